//! Anthropic Messages API (`POST /v1/messages`): top-level `system`, content blocks,
//! `tool_use` / `tool_result`, SSE streaming, prompt-cache usage.
//!
//! Sampling fields Anthropic does not accept (`seed`, `presence_penalty`, `frequency_penalty`) are
//! not sent; temperature is clamped to Anthropic's 0..=1. JSON-schema output is requested with a
//! forced tool whose input is returned as the answer text.

mod codec;
pub(crate) mod error;
mod stream;

use async_trait::async_trait;
use wattos_core::config::Secret;
use wattos_core::llm::{Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream};
use wattos_core::{Error, RequestContext, Result};

use crate::http::{HttpClient, join_url};
use crate::provider::ProviderOptions;
use crate::provider::stream::{Framing, decode};

/// Anthropic's API base URL.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header value sent unless configured.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` is required by Anthropic; this is used when the request has none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
/// Provider label in errors and metrics.
pub const PROVIDER: &str = "anthropic";

/// Settings of the Anthropic provider.
#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    /// Base URL without `/v1`.
    pub base_url: String,
    /// Key sent as `x-api-key`.
    pub api_key: Secret<String>,
    /// `anthropic-version` header.
    pub version: String,
    /// `anthropic-beta` header, when set.
    pub beta: Option<String>,
    /// `max_tokens` when the request has none.
    pub default_max_tokens: u32,
    /// Common options.
    pub options: ProviderOptions,
}

impl AnthropicConfig {
    /// Anthropic's API with `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            base_url: ANTHROPIC_BASE_URL.to_owned(),
            api_key: Secret::new(api_key.into()),
            version: ANTHROPIC_VERSION.to_owned(),
            beta: None,
            default_max_tokens: DEFAULT_MAX_TOKENS,
            options: ProviderOptions::default(),
        }
    }

    /// Pins the model.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.options.model = Some(model.into());
        self
    }

    /// Replaces the base URL.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }
}

/// A chat model behind Anthropic's Messages API.
#[derive(Debug, Clone)]
pub struct AnthropicChat {
    http: HttpClient,
    url: String,
    default_max_tokens: u32,
    options: ProviderOptions,
    name: String,
}

impl AnthropicChat {
    /// A client for `cfg`.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] for unusable header values or an empty base URL.
    pub fn new(cfg: AnthropicConfig) -> Result<Self> {
        if cfg.base_url.trim().is_empty() {
            return Err(Error::invalid_field("base_url", "must not be empty"));
        }
        let mut headers = vec![
            ("x-api-key", cfg.api_key.expose().clone()),
            ("anthropic-version", cfg.version.clone()),
        ];
        if let Some(beta) = &cfg.beta {
            headers.push(("anthropic-beta", beta.clone()));
        }
        Ok(Self {
            http: HttpClient::new(PROVIDER, &cfg.options.http, headers)?,
            url: join_url(&cfg.base_url, "v1/messages"),
            default_max_tokens: cfg.default_max_tokens,
            name: cfg.options.display_name(PROVIDER),
            options: cfg.options,
        })
    }

    fn body(
        &self,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<(String, serde_json::Value, Option<String>)> {
        req.validate()?;
        let model = self.options.resolve_model(&req.model)?;
        let (body, json_tool) = codec::chat_body(req, &model, self.default_max_tokens, stream)?;
        Ok((model, serde_json::Value::Object(body), json_tool))
    }
}

#[async_trait]
impl ChatModel for AnthropicChat {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            tools: true,
            json_schema: true,
            vision: true,
            context_window: Some(200_000),
            max_output_tokens: None,
        }
    }

    async fn chat(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        let (model, body, json_tool) = self.body(&req, false)?;
        let resp = self
            .http
            .post_json(ctx, &self.url, &body, error::map_error)
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| crate::http::transport_error(PROVIDER, e, self.options.http.timeout))?;
        let parsed = codec::parse_response(PROVIDER, &model, json_tool.as_deref(), &bytes)?;
        Ok(self.options.price(parsed))
    }

    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        let (model, body, json_tool) = self.body(&req, true)?;
        let resp = self
            .http
            .post_json(ctx, &self.url, &body, error::map_error)
            .await?;
        Ok(decode(
            PROVIDER,
            resp,
            Framing::sse(),
            stream::AnthropicDecoder::new(PROVIDER, model, json_tool),
            self.options.http.timeout,
        ))
    }
}
