//! Google Gemini API: `models/{model}:generateContent`, `:streamGenerateContent?alt=sse`,
//! `:embedContent` and `:batchEmbedContents`, authenticated with `x-goog-api-key`.
//!
//! Gemini function calls carry no ids; the provider synthesises `call_<n>` ids and, when a tool
//! result comes back, finds the function name from the assistant turn that made the call.

mod codec;
mod embed;
pub(crate) mod error;
mod stream;

use async_trait::async_trait;
use serde_json::Value;
use wattos_core::config::Secret;
use wattos_core::llm::{
    Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, FinishReason, StreamAccumulator,
};
use wattos_core::{Error, RequestContext, Result};

pub use embed::GeminiEmbeddings;

use crate::http::{HttpClient, join_url};
use crate::provider::ProviderOptions;
use crate::provider::common::generated_id;
use crate::provider::stream::{Framing, decode};

/// Gemini API base URL (v1beta, where tools and JSON schema live).
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
/// Provider label in errors and metrics.
pub const PROVIDER: &str = "gemini";

/// Settings of the Gemini provider.
#[derive(Debug, Clone)]
pub struct GeminiConfig {
    /// Base URL including the version (`.../v1beta`).
    pub base_url: String,
    /// Key sent as `x-goog-api-key`.
    pub api_key: Secret<String>,
    /// Common options.
    pub options: ProviderOptions,
}

impl GeminiConfig {
    /// Gemini with `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            base_url: GEMINI_BASE_URL.to_owned(),
            api_key: Secret::new(api_key.into()),
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

    pub(crate) fn client(&self) -> Result<HttpClient> {
        if self.base_url.trim().is_empty() {
            return Err(Error::invalid_field("base_url", "must not be empty"));
        }
        HttpClient::new(
            PROVIDER,
            &self.options.http,
            vec![("x-goog-api-key", self.api_key.expose().clone())],
        )
    }
}

/// `models/{model}:{method}` under the base URL.
pub(crate) fn method_url(base: &str, model: &str, method: &str) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    join_url(base, &format!("models/{model}:{method}"))
}

/// A chat model behind Gemini's generateContent.
#[derive(Debug, Clone)]
pub struct GeminiChat {
    http: HttpClient,
    base_url: String,
    options: ProviderOptions,
    name: String,
}

impl GeminiChat {
    /// A client for `cfg`.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] for an empty base URL or unusable key.
    pub fn new(cfg: GeminiConfig) -> Result<Self> {
        Ok(Self {
            http: cfg.client()?,
            base_url: cfg.base_url.clone(),
            name: cfg.options.display_name(PROVIDER),
            options: cfg.options,
        })
    }

    fn prepare(&self, req: &ChatRequest) -> Result<(String, Value)> {
        req.validate()?;
        let model = self.options.resolve_model(&req.model)?;
        if model.contains(['/', '?', '#']) && !model.starts_with("models/") {
            return Err(Error::invalid_field("model", "must be a plain model name"));
        }
        Ok((model, Value::Object(codec::chat_body(req)?)))
    }
}

#[async_trait]
impl ChatModel for GeminiChat {
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
        let (model, body) = self.prepare(&req)?;
        let url = method_url(&self.base_url, &model, "generateContent");
        let r: codec::GenerateResponse = self
            .http
            .post_for_json(ctx, &url, &body, error::map_error)
            .await?;
        let mut deltas = Vec::new();
        let mut calls = 0;
        let out = codec::chunk_deltas(&r, &mut calls, &mut deltas);
        let mut acc = StreamAccumulator::new(r.model_version.clone().unwrap_or(model));
        for d in deltas {
            acc.push(d);
        }
        let reason = match (&out.finish, out.blocked) {
            (Some(f), _) => codec::finish_reason(f, calls > 0),
            (None, true) => FinishReason::ContentFilter,
            (None, false) if calls > 0 => FinishReason::ToolCalls,
            (None, false) => FinishReason::Stop,
        };
        acc.push(wattos_core::llm::ChatDelta::Finish { reason });
        if let Some(u) = r.usage_metadata {
            acc.push(wattos_core::llm::ChatDelta::Usage(u.normalize()));
        }
        let mut resp = acc.finish()?;
        resp.id = r.response_id.unwrap_or_else(|| generated_id("gemini-"));
        if let Some(cand) = r.candidates.into_iter().next() {
            resp.provider_fields.extend(
                cand.rest
                    .into_iter()
                    .filter(|(k, v)| k != "index" && !v.is_null()),
            );
        }
        if let Some(f) = r.prompt_feedback {
            resp.provider_fields.insert("promptFeedback".into(), f);
        }
        Ok(self.options.price(resp))
    }

    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        let (model, body) = self.prepare(&req)?;
        let url = format!(
            "{}?alt=sse",
            method_url(&self.base_url, &model, "streamGenerateContent")
        );
        let resp = self
            .http
            .post_json(ctx, &url, &body, error::map_error)
            .await?;
        Ok(decode(
            PROVIDER,
            resp,
            Framing::sse(),
            stream::GeminiDecoder::new(PROVIDER, model),
            self.options.http.timeout,
        ))
    }
}
