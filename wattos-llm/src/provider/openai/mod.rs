//! OpenAI chat completions and embeddings, also used for Azure OpenAI (feature `azure`) and any
//! OpenAI-compatible endpoint (vLLM, LM Studio, Together, llama.cpp server...).
//!
//! ```no_run
//! use wattos_core::llm::{ChatModel, ChatRequest, Message};
//! use wattos_core::{RequestContext, TenantId};
//! use wattos_llm::provider::openai::{OpenAiChat, OpenAiConfig};
//!
//! # async fn run() -> wattos_core::Result<()> {
//! let model = OpenAiChat::new(OpenAiConfig::new("sk-...").with_model("gpt-4o-mini"))?;
//! let ctx = RequestContext::system(TenantId::new("acme")?);
//! let answer = model.chat(&ctx, ChatRequest::new("", vec![Message::user("Hi")])).await?;
//! println!("{} (cost {:?})", answer.text(), answer.cost);
//! # Ok(()) }
//! ```

mod codec;
mod embed;
pub(crate) mod error;
mod stream;

use async_trait::async_trait;
use wattos_core::config::Secret;
use wattos_core::llm::{Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream};
use wattos_core::{Error, RequestContext, Result};

pub use codec::MaxTokensField;
pub use embed::{OpenAiEmbeddings, known_dimensions};

use crate::http::{HttpClient, join_url};
use crate::provider::ProviderOptions;
use crate::provider::stream::{Framing, decode};

/// OpenAI's public API base URL.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Settings of an OpenAI or OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URL including the version prefix (`.../v1`).
    pub base_url: String,
    /// API key sent as `Authorization: Bearer`; optional for local compatible servers.
    pub api_key: Option<Secret<String>>,
    /// `OpenAI-Organization` header.
    pub organization: Option<String>,
    /// `OpenAI-Project` header.
    pub project: Option<String>,
    /// Which field carries `max_tokens`.
    pub max_tokens_field: MaxTokensField,
    /// A third-party OpenAI-compatible server (labelled `openai_compatible` in errors and metrics).
    pub compatible: bool,
    /// Common options (fixed model, HTTP, pricing).
    pub options: ProviderOptions,
}

impl OpenAiConfig {
    /// OpenAI itself with `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            base_url: OPENAI_BASE_URL.to_owned(),
            api_key: Some(Secret::new(api_key.into())),
            organization: None,
            project: None,
            max_tokens_field: MaxTokensField::MaxCompletionTokens,
            compatible: false,
            options: ProviderOptions::default(),
        }
    }

    /// Any OpenAI-compatible server at `base_url` (e.g. `http://localhost:8000/v1`), key optional.
    pub fn compatible(base_url: impl Into<String>, api_key: Option<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: api_key.map(Secret::new),
            organization: None,
            project: None,
            max_tokens_field: MaxTokensField::MaxTokens,
            compatible: true,
            options: ProviderOptions::default(),
        }
    }

    /// Pins the model every call uses.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.options.model = Some(model.into());
        self
    }

    /// Replaces the base URL.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }
}

/// Where and how requests go: OpenAI-style paths or Azure deployment paths.
#[derive(Debug, Clone)]
pub(crate) enum Dialect {
    OpenAi {
        base_url: String,
    },
    #[cfg_attr(not(feature = "azure"), allow(dead_code))]
    Azure {
        endpoint: String,
        deployment: String,
        api_version: String,
    },
}

impl Dialect {
    pub(crate) fn url(&self, op: &str) -> String {
        match self {
            Self::OpenAi { base_url } => join_url(base_url, op),
            Self::Azure {
                endpoint,
                deployment,
                api_version,
            } => format!(
                "{}?api-version={api_version}",
                join_url(endpoint, &format!("openai/deployments/{deployment}/{op}"))
            ),
        }
    }

    /// Azure ignores `model`; the deployment decides.
    fn sends_model(&self) -> bool {
        matches!(self, Self::OpenAi { .. })
    }
}

/// A chat model behind the OpenAI chat completions API.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    http: HttpClient,
    dialect: Dialect,
    max_tokens_field: MaxTokensField,
    options: ProviderOptions,
    name: String,
}

pub(crate) fn openai_headers(cfg: &OpenAiConfig) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    if let Some(key) = &cfg.api_key {
        headers.push(("authorization", format!("Bearer {}", key.expose())));
    }
    if let Some(org) = &cfg.organization {
        headers.push(("openai-organization", org.clone()));
    }
    if let Some(project) = &cfg.project {
        headers.push(("openai-project", project.clone()));
    }
    headers
}

fn provider_label(cfg: &OpenAiConfig) -> &'static str {
    if cfg.compatible {
        "openai_compatible"
    } else {
        "openai"
    }
}

impl OpenAiChat {
    /// A client for `cfg`.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] for unusable header values or an empty base URL.
    pub fn new(cfg: OpenAiConfig) -> Result<Self> {
        if cfg.base_url.trim().is_empty() {
            return Err(Error::invalid_field("base_url", "must not be empty"));
        }
        let label = provider_label(&cfg);
        let http = HttpClient::new(label, &cfg.options.http, openai_headers(&cfg))?;
        Ok(Self {
            http,
            name: cfg.options.display_name(label),
            dialect: Dialect::OpenAi {
                base_url: cfg.base_url,
            },
            max_tokens_field: cfg.max_tokens_field,
            options: cfg.options,
        })
    }

    #[cfg_attr(not(feature = "azure"), allow(dead_code))]
    pub(crate) fn from_parts(
        http: HttpClient,
        dialect: Dialect,
        max_tokens_field: MaxTokensField,
        options: ProviderOptions,
        name: String,
    ) -> Self {
        Self {
            http,
            dialect,
            max_tokens_field,
            options,
            name,
        }
    }

    fn body(&self, req: &ChatRequest, stream: bool) -> Result<(String, serde_json::Value)> {
        req.validate()?;
        let model = self.options.resolve_model(&req.model).or_else(|e| {
            // Azure needs no model name: the deployment is the model.
            if self.dialect.sends_model() {
                Err(e)
            } else {
                Ok(String::new())
            }
        })?;
        let sent = self.dialect.sends_model().then_some(model.as_str());
        let body = codec::chat_body(req, sent, self.max_tokens_field, stream)?;
        Ok((model, serde_json::Value::Object(body)))
    }
}

#[async_trait]
impl ChatModel for OpenAiChat {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            tools: true,
            json_schema: true,
            vision: true,
            context_window: None,
            max_output_tokens: None,
        }
    }

    async fn chat(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        let (model, body) = self.body(&req, false)?;
        let provider = self.http.provider();
        let resp = self
            .http
            .post_json(
                ctx,
                &self.dialect.url("chat/completions"),
                &body,
                error::map_error,
            )
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| crate::http::transport_error(provider, e, self.options.http.timeout))?;
        let parsed = codec::parse_response(provider, &model, &bytes)?;
        Ok(self.options.price(parsed))
    }

    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        let (model, body) = self.body(&req, true)?;
        let provider = self.http.provider();
        let resp = self
            .http
            .post_json(
                ctx,
                &self.dialect.url("chat/completions"),
                &body,
                error::map_error,
            )
            .await?;
        Ok(decode(
            provider,
            resp,
            Framing::sse(),
            stream::OpenAiDecoder::new(provider, model),
            self.options.http.timeout,
        ))
    }
}
