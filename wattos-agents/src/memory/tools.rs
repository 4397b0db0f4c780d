//! Memory inside graphs: `remember` / `recall` tools for agents, and a recall helper for nodes.
//!
//! The namespace always comes from the run's [`RequestContext`]: the principal's subject is the
//! user, under the caller's tenant, below an optional fixed path. A model cannot name another user,
//! so one user's memories never reach another user's run.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use wattos_core::llm::Message;
use wattos_core::tool::{Tool, ToolError, parse_args, schema_for};
use wattos_core::{RequestContext, Result};

use super::store::{MemoryQuery, MemoryStore, Namespace, NewMemory};

/// Builds the `remember` and `recall` tools over a store.
///
/// ```
/// use std::sync::Arc;
/// use wattos_agents::memory::{InMemoryMemoryStore, MemoryTools};
/// use wattos_core::tool::Tool;
/// use wattos_core::{RequestContext, TenantId};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let tools = MemoryTools::new(Arc::new(InMemoryMemoryStore::new())).with_path(["assistant"]);
/// let ctx = RequestContext::system(TenantId::new("acme")?);
/// tools.remember_tool().invoke(&ctx, serde_json::json!({"text": "The user's dog is called Rex"})).await.unwrap();
/// let found = tools.recall_tool().invoke(&ctx, serde_json::json!({"query": "dog name"})).await.unwrap();
/// assert!(found.to_string().contains("Rex"));
/// # Ok::<_, wattos_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryTools {
    store: Arc<dyn MemoryStore>,
    path: Vec<String>,
    limit: usize,
}

impl std::fmt::Debug for MemoryTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTools")
            .field("path", &self.path)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl MemoryTools {
    /// Tools over `store`, at the caller's root namespace, recalling 5 memories.
    pub fn new(store: Arc<dyn MemoryStore>) -> Self {
        Self {
            store,
            path: Vec::new(),
            limit: 5,
        }
    }

    /// Keeps the memories below `path` in the caller's namespace.
    #[must_use]
    pub fn with_path(mut self, path: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.path = path.into_iter().map(Into::into).collect();
        self
    }

    /// How many memories `recall` returns.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, 50);
        self
    }

    /// The caller's namespace: its subject's root, plus the configured path.
    ///
    /// # Errors
    /// A subject or path that is not a valid namespace.
    pub fn namespace(&self, ctx: &RequestContext) -> Result<Namespace> {
        Namespace::for_caller(ctx)?.join(self.path.iter().cloned())
    }

    /// `remember {text}`: stores a fact about the user.
    pub fn remember_tool(&self) -> Arc<dyn Tool> {
        Arc::new(RememberTool(self.clone()))
    }

    /// `recall {query}`: the memories most relevant to `query`.
    pub fn recall_tool(&self) -> Arc<dyn Tool> {
        Arc::new(RecallTool(self.clone()))
    }

    /// Both tools.
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        vec![self.remember_tool(), self.recall_tool()]
    }

    /// A system message listing the caller's memories relevant to `query` (for a node to put
    /// before the conversation); `None` when nothing is relevant.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn recall_message(
        &self,
        ctx: &RequestContext,
        query: &str,
    ) -> Result<Option<Message>> {
        recall_message(&*self.store, ctx, &self.namespace(ctx)?, query, self.limit).await
    }
}

/// A system message listing the memories in `prefix` most relevant to `query` ("What you remember
/// about the user: - ..."), or `None` when there are none.
///
/// # Errors
/// The store's errors.
pub async fn recall_message(
    store: &dyn MemoryStore,
    ctx: &RequestContext,
    prefix: &Namespace,
    query: &str,
    limit: usize,
) -> Result<Option<Message>> {
    if query.trim().is_empty() {
        return Ok(None);
    }
    let hits = store
        .search(ctx, prefix, query, &MemoryQuery::top(limit.clamp(1, 50)))
        .await?;
    if hits.is_empty() {
        return Ok(None);
    }
    let lines: Vec<String> = hits
        .iter()
        .map(|h| format!("- {}", h.memory.text))
        .collect();
    Ok(Some(Message::system(format!(
        "What you remember about the user:\n{}",
        lines.join("\n")
    ))))
}

/// Longest `text` / `query` the tools take, in characters (also in their schemas, so a local
/// model's constrained decoding closes the string in time).
const MAX_ARG_CHARS: usize = 200;

fn check_len(field: &str, value: &str) -> Result<(), ToolError> {
    if value.trim().is_empty() {
        return Err(ToolError::InvalidArguments(format!(
            "{field} must not be empty"
        )));
    }
    if value.chars().count() > MAX_ARG_CHARS {
        return Err(ToolError::InvalidArguments(format!(
            "{field} is longer than {MAX_ARG_CHARS} characters"
        )));
    }
    Ok(())
}

/// Arguments of `remember`.
#[derive(Deserialize, schemars::JsonSchema)]
struct RememberArgs {
    /// The fact to remember, as a short sentence.
    #[schemars(length(min = 1, max = 200))]
    text: String,
}

/// Arguments of `recall`.
#[derive(Deserialize, schemars::JsonSchema)]
struct RecallArgs {
    /// What to look for.
    #[schemars(length(min = 1, max = 200))]
    query: String,
}

struct RememberTool(MemoryTools);
struct RecallTool(MemoryTools);

#[async_trait]
impl Tool for RememberTool {
    fn name(&self) -> &str {
        "remember"
    }
    fn description(&self) -> &str {
        "Stores a fact about the user in long-term memory, for later conversations."
    }
    fn parameters(&self) -> Value {
        schema_for::<RememberArgs>()
    }
    async fn invoke(&self, ctx: &RequestContext, args: Value) -> Result<Value, ToolError> {
        let args: RememberArgs = parse_args(args)?;
        check_len("text", &args.text)?;
        let ns = self.0.namespace(ctx)?;
        let m = self
            .0
            .store
            .put(ctx, &ns, NewMemory::new(args.text))
            .await?;
        Ok(json!({"stored": true, "id": m.id}))
    }
}

#[async_trait]
impl Tool for RecallTool {
    fn name(&self) -> &str {
        "recall"
    }
    fn description(&self) -> &str {
        "Searches long-term memory for facts about the user relevant to the query."
    }
    fn parameters(&self) -> Value {
        schema_for::<RecallArgs>()
    }
    async fn invoke(&self, ctx: &RequestContext, args: Value) -> Result<Value, ToolError> {
        let args: RecallArgs = parse_args(args)?;
        check_len("query", &args.query)?;
        let ns = self.0.namespace(ctx)?;
        let hits = self
            .0
            .store
            .search(ctx, &ns, &args.query, &MemoryQuery::top(self.0.limit))
            .await?;
        let texts: Vec<&str> = hits.iter().map(|h| h.memory.text.as_str()).collect();
        Ok(json!(texts))
    }
}
