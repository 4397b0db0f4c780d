//! Ollama: `POST /api/chat` (NDJSON streaming, tools, `format` for JSON / JSON schema) and
//! `POST /api/embed`. Self-hosted, so calls are priced at zero unless configured otherwise.

mod codec;
pub(crate) mod error;
mod stream;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use wattos_core::config::Secret;
use wattos_core::embedding::{EmbeddingModel, Embeddings};
use wattos_core::llm::{
    Capabilities, ChatDelta, ChatModel, ChatRequest, ChatResponse, ChatStream, StreamAccumulator,
    Usage,
};
use wattos_core::{Error, RequestContext, Result};

use crate::http::{HttpClient, join_url};
use crate::pricing::{ModelPrice, Pricing};
use crate::provider::ProviderOptions;
use crate::provider::common::{generated_id, unknown_fields};
use crate::provider::stream::{Framing, decode};

/// Ollama's default local address.
pub const OLLAMA_BASE_URL: &str = "http://127.0.0.1:11434";
/// Provider label in errors and metrics.
pub const PROVIDER: &str = "ollama";

/// Settings of an Ollama server.
#[derive(Debug, Clone)]
pub struct OllamaConfig {
    /// Server URL without `/api`.
    pub base_url: String,
    /// Optional bearer token (for Ollama behind an authenticating proxy).
    pub api_key: Option<Secret<String>>,
    /// `keep_alive` sent with each request (e.g. `"5m"`), server default when `None`.
    pub keep_alive: Option<String>,
    /// Common options. Pricing defaults to free.
    pub options: ProviderOptions,
}

impl OllamaConfig {
    /// An Ollama server at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            keep_alive: None,
            options: ProviderOptions {
                pricing: Pricing::Fixed(ModelPrice::FREE),
                ..ProviderOptions::default()
            },
        }
    }

    /// Pins the model.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.options.model = Some(model.into());
        self
    }

    fn client(&self) -> Result<HttpClient> {
        if self.base_url.trim().is_empty() {
            return Err(Error::invalid_field("base_url", "must not be empty"));
        }
        let headers = self
            .api_key
            .iter()
            .map(|k| ("authorization", format!("Bearer {}", k.expose())))
            .collect();
        HttpClient::new(PROVIDER, &self.options.http, headers)
    }
}

impl Default for OllamaConfig {
    fn default() -> Self {
        Self::new(OLLAMA_BASE_URL)
    }
}

/// A chat model served by Ollama.
#[derive(Debug, Clone)]
pub struct OllamaChat {
    http: HttpClient,
    url: String,
    keep_alive: Option<String>,
    options: ProviderOptions,
    name: String,
}

impl OllamaChat {
    /// A client for `cfg`.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] for an empty base URL.
    pub fn new(cfg: OllamaConfig) -> Result<Self> {
        Ok(Self {
            http: cfg.client()?,
            url: join_url(&cfg.base_url, "api/chat"),
            keep_alive: cfg.keep_alive,
            name: cfg.options.display_name(PROVIDER),
            options: cfg.options,
        })
    }

    fn body(&self, req: &ChatRequest, stream: bool) -> Result<(String, Value)> {
        req.validate()?;
        let model = self.options.resolve_model(&req.model)?;
        let body = codec::chat_body(req, &model, stream, self.keep_alive.as_deref())?;
        Ok((model, Value::Object(body)))
    }
}

#[async_trait]
impl ChatModel for OllamaChat {
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
        let mut line: codec::ChatLine = self
            .http
            .post_for_json(ctx, &self.url, &body, error::map_error)
            .await?;
        if let Some(e) = line.error.take() {
            return Err(error::map_stream_error(PROVIDER, e));
        }
        let mut acc = StreamAccumulator::new(line.model.clone().unwrap_or(model));
        let mut deltas = Vec::new();
        let mut calls = 0;
        line.deltas(&mut calls, &mut deltas);
        for d in deltas {
            acc.push(d);
        }
        acc.push(ChatDelta::Usage(line.usage()));
        acc.push(ChatDelta::Finish {
            reason: line.finish_reason(calls > 0),
        });
        let mut resp = acc.finish()?;
        resp.id = generated_id("ollama-");
        resp.provider_fields = unknown_fields(line.rest, &[]);
        Ok(self.options.price(resp))
    }

    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        let (model, body) = self.body(&req, true)?;
        let resp = self
            .http
            .post_json(ctx, &self.url, &body, error::map_error)
            .await?;
        Ok(decode(
            PROVIDER,
            resp,
            Framing::ndjson(),
            stream::OllamaDecoder::new(PROVIDER, model),
            self.options.http.timeout,
        ))
    }
}

/// An embedding model served by Ollama's `/api/embed`.
#[derive(Debug, Clone)]
pub struct OllamaEmbeddings {
    http: HttpClient,
    url: String,
    model: String,
    dimensions: usize,
    keep_alive: Option<String>,
    pricing: Pricing,
    name: String,
}

#[derive(Deserialize)]
struct EmbedResponse {
    embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
}

impl OllamaEmbeddings {
    /// Embeddings with `model`. `dimensions` is required unless the model is a well-known one.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] when the dimensions are unknown.
    pub fn new(
        cfg: OllamaConfig,
        model: impl Into<String>,
        dimensions: Option<usize>,
    ) -> Result<Self> {
        let model = model.into();
        let base = model.split(':').next().unwrap_or(&model);
        let dimensions = dimensions
            .or_else(|| crate::provider::openai_known_dimensions(base))
            .ok_or_else(|| {
                Error::invalid_field(
                    "embedding_dimensions",
                    format!("unknown vector size for model '{model}'; set it in the configuration"),
                )
            })?;
        Ok(Self {
            http: cfg.client()?,
            url: join_url(&cfg.base_url, "api/embed"),
            name: cfg
                .options
                .name
                .clone()
                .unwrap_or_else(|| format!("{PROVIDER}/{model}")),
            model,
            dimensions,
            keep_alive: cfg.keep_alive,
            pricing: cfg.options.pricing,
        })
    }
}

#[async_trait]
impl EmbeddingModel for OllamaEmbeddings {
    fn name(&self) -> &str {
        &self.name
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        let mut body = json!({"model": self.model, "input": inputs});
        if let Some(k) = &self.keep_alive {
            body["keep_alive"] = k.clone().into();
        }
        let r: EmbedResponse = self
            .http
            .post_for_json(ctx, &self.url, &body, error::map_error)
            .await?;
        if r.embeddings.len() != inputs.len()
            || r.embeddings.iter().any(|v| v.len() != self.dimensions)
        {
            return Err(Error::upstream(
                PROVIDER,
                None,
                false,
                format!(
                    "expected {} vectors of size {}, got {}",
                    inputs.len(),
                    self.dimensions,
                    r.embeddings.len()
                ),
            ));
        }
        let model = r.model.unwrap_or_else(|| self.model.clone());
        let usage = Usage {
            input_tokens: r.prompt_eval_count.unwrap_or(0),
            ..Usage::default()
        };
        Ok(Embeddings {
            vectors: r.embeddings,
            cost: self.pricing.cost(&model, &usage),
            model,
            usage,
        })
    }
}
