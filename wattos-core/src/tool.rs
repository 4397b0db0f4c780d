//! The tool seam: something a model may call, with a name, a description and a JSON Schema of its
//! arguments.
//!
//! Implement [`Tool`] directly when the schema is dynamic, or build a [`FnTool`] from an async closure over
//! a typed argument struct: the schema is derived with `schemars` and arguments are validated by
//! deserialising them, so a bad call becomes a [`ToolError::InvalidArguments`] that an agent feeds back to
//! the model instead of failing the run.
//!
//! ```
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//! use wattos_core::tool::{FnTool, Tool, ToolError};
//! use wattos_core::{RequestContext, TenantId};
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct AddArgs { a: i64, b: i64 }
//!
//! let add = FnTool::new("add", "Adds two integers.", |_ctx: RequestContext, args: AddArgs| async move {
//!     Ok::<_, ToolError>(args.a + args.b)
//! });
//! assert_eq!(add.definition().parameters["required"], serde_json::json!(["a", "b"]));
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let ctx = RequestContext::system(TenantId::new("acme")?);
//! assert_eq!(add.invoke(&ctx, serde_json::json!({"a": 2, "b": 3})).await.unwrap(), 5);
//! let err = add.invoke(&ctx, serde_json::json!({"a": "two"})).await.unwrap_err();
//! assert!(matches!(err, ToolError::InvalidArguments(_)));
//! # Ok::<_, wattos_core::Error>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::context::RequestContext;
use crate::error::{Error, ErrorKind};
use crate::llm::ToolDefinition;

/// Why a tool call failed. Every variant renders to a message meant for the model
/// ([`ToolError::to_model_text`]).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments did not match the schema (or were not JSON).
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// No tool of that name is available to the caller.
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    /// The tool ran past its time limit.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A human rejected the call.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(Error),
}

impl ToolError {
    /// The text given back to the model as the tool's result.
    pub fn to_model_text(&self) -> String {
        format!("Error: {self}")
    }

    /// Whether the model may reasonably retry (fix its arguments, try again later).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::InvalidArguments(_) | Self::UnknownTool(_) | Self::Timeout(_) => true,
            Self::Rejected(_) => false,
            Self::Failed(e) => e.is_retryable(),
        }
    }
}

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        if e.kind() == ErrorKind::InvalidInput {
            Self::InvalidArguments(e.to_string())
        } else {
            Self::Failed(e)
        }
    }
}

/// A callable tool.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Name the model calls it by (`^[a-zA-Z0-9_-]{1,64}$`).
    fn name(&self) -> &str;

    /// What the tool does, for the model.
    fn description(&self) -> &str;

    /// JSON Schema of the arguments object.
    fn parameters(&self) -> Value;

    /// The definition sent to the model.
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: self.name().to_owned(),
            description: self.description().to_owned(),
            parameters: self.parameters(),
            strict: None,
        }
    }

    /// The tool's own time limit, if any (a tool node may impose a default).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// `Some(request)` when this call needs a human's approval before it runs (for example a payment over
    /// a threshold). The request is shown to the approver; agents interrupt the run until they answer.
    fn approval_request(&self, _args: &Value) -> Option<Value> {
        None
    }

    /// Runs the tool.
    ///
    /// # Errors
    /// [`ToolError::InvalidArguments`] for arguments that do not fit the schema; [`ToolError::Failed`]
    /// for failures of the tool itself.
    async fn invoke(&self, ctx: &RequestContext, args: Value) -> Result<Value, ToolError>;
}

#[async_trait]
impl<T: Tool + ?Sized> Tool for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn description(&self) -> &str {
        (**self).description()
    }
    fn parameters(&self) -> Value {
        (**self).parameters()
    }
    fn definition(&self) -> ToolDefinition {
        (**self).definition()
    }
    fn timeout(&self) -> Option<Duration> {
        (**self).timeout()
    }
    fn approval_request(&self, args: &Value) -> Option<Value> {
        (**self).approval_request(args)
    }
    async fn invoke(&self, ctx: &RequestContext, args: Value) -> Result<Value, ToolError> {
        (**self).invoke(ctx, args).await
    }
}

/// Compile-time check that the trait stays object safe.
#[allow(dead_code)]
fn _object_safe(_: &dyn Tool) {}

/// The JSON Schema of `A`, as sent to models (no `$schema` key, no title).
pub fn schema_for<A: JsonSchema>() -> Value {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<A>();
    let mut value = serde_json::to_value(schema).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("$schema");
        map.remove("title");
    }
    value
}

/// Validates `args` by deserialising them into `A`.
///
/// # Errors
/// [`ToolError::InvalidArguments`] with serde's explanation (missing field, wrong type, ...).
pub fn parse_args<A: DeserializeOwned>(args: Value) -> Result<A, ToolError> {
    // `null` (a model that sent no arguments) means an empty object.
    let args = if args.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        args
    };
    serde_json::from_value(args).map_err(|e| ToolError::InvalidArguments(e.to_string()))
}

/// Decides per call whether a typed tool needs approval (see [`Tool::approval_request`]).
type ApprovalFn = Arc<dyn Fn(&Value) -> Option<Value> + Send + Sync>;

/// A [`Tool`] from an async function over typed arguments `A` returning a serialisable `R`.
pub struct FnTool<A, F> {
    name: String,
    description: String,
    parameters: Value,
    timeout: Option<Duration>,
    approval: Option<ApprovalFn>,
    f: F,
    _args: PhantomData<fn(A)>,
}

impl<A, F> fmt::Debug for FnTool<A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTool")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<A, R, F, Fut> FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    R: Serialize,
    F: Fn(RequestContext, A) -> Fut + Send + Sync,
    Fut: Future<Output = Result<R, ToolError>> + Send,
{
    /// A tool named `name` that runs `f` on validated arguments; the schema is derived from `A`.
    pub fn new(name: impl Into<String>, description: impl Into<String>, f: F) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters: schema_for::<A>(),
            timeout: None,
            approval: None,
            f,
            _args: PhantomData,
        }
    }

    /// Sets the tool's own time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Requires a human's approval for every call.
    pub fn requiring_approval(self) -> Self {
        self.with_approval_policy(|args| Some(args.clone()))
    }

    /// Requires approval for the calls where `policy` returns a request.
    pub fn with_approval_policy(
        mut self,
        policy: impl Fn(&Value) -> Option<Value> + Send + Sync + 'static,
    ) -> Self {
        self.approval = Some(Arc::new(policy));
        self
    }
}

#[async_trait]
impl<A, R, F, Fut> Tool for FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    R: Serialize,
    F: Fn(RequestContext, A) -> Fut + Send + Sync,
    Fut: Future<Output = Result<R, ToolError>> + Send,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> Value {
        self.parameters.clone()
    }
    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    fn approval_request(&self, args: &Value) -> Option<Value> {
        self.approval.as_ref().and_then(|p| p(args))
    }
    async fn invoke(&self, ctx: &RequestContext, args: Value) -> Result<Value, ToolError> {
        let args: A = parse_args(args)?;
        let out = (self.f)(ctx.clone(), args).await?;
        serde_json::to_value(out).map_err(|e| {
            ToolError::Failed(Error::internal(format!("tool output is not JSON: {e}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::TenantId;
    use serde::Deserialize;

    #[derive(Deserialize, JsonSchema)]
    struct Weather {
        /// City name.
        city: String,
        #[serde(default)]
        celsius: bool,
    }

    fn weather() -> impl Tool {
        FnTool::new(
            "weather",
            "Current weather",
            |ctx: RequestContext, a: Weather| async move {
                Ok::<_, ToolError>(format!(
                    "{}:{}:{}",
                    ctx.tenant().as_str(),
                    a.city,
                    a.celsius
                ))
            },
        )
    }

    #[tokio::test]
    async fn typed_tool_validates_and_sees_the_tenant() {
        let ctx = RequestContext::system(TenantId::new("acme").unwrap());
        let t = weather();
        let def = t.definition();
        assert_eq!(def.name, "weather");
        assert_eq!(def.parameters["properties"]["city"]["type"], "string");
        assert!(def.parameters.get("$schema").is_none());
        let ok = t
            .invoke(&ctx, serde_json::json!({"city": "Oslo"}))
            .await
            .unwrap();
        assert_eq!(ok, "acme:Oslo:false");
        let err = t.invoke(&ctx, serde_json::json!({})).await.unwrap_err();
        assert!(
            err.to_model_text().contains("missing field `city`"),
            "{err}"
        );
        assert!(err.is_retryable());
    }

    #[test]
    fn approval_policy_is_per_call() {
        let t = FnTool::new("w", "d", |_c: RequestContext, _a: Weather| async move {
            Ok::<_, ToolError>(())
        })
        .with_approval_policy(|a| (a["city"] == "Paris").then(|| a.clone()));
        assert!(
            t.approval_request(&serde_json::json!({"city": "Oslo"}))
                .is_none()
        );
        assert!(
            t.approval_request(&serde_json::json!({"city": "Paris"}))
                .is_some()
        );
    }
}
