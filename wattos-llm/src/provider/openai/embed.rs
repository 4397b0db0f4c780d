//! OpenAI `/embeddings`.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use wattos_core::embedding::{EmbeddingModel, Embeddings};
use wattos_core::llm::Usage;
use wattos_core::{Error, RequestContext, Result};

use super::{Dialect, OpenAiConfig, error, openai_headers, provider_label};
use crate::http::HttpClient;
use crate::pricing::Pricing;
pub use crate::provider::openai_known_dimensions as known_dimensions;

/// An embedding model behind the OpenAI embeddings API.
#[derive(Debug, Clone)]
pub struct OpenAiEmbeddings {
    http: HttpClient,
    dialect: Dialect,
    model: String,
    dimensions: usize,
    send_dimensions: bool,
    pricing: Pricing,
    name: String,
    max_batch: usize,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<EmbedUsage>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct EmbedUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

impl OpenAiEmbeddings {
    /// Embeddings with `model`; `dimensions` is required unless [`known_dimensions`] knows the model.
    /// For `text-embedding-3-*` an explicit `dimensions` is also sent (the API shortens vectors).
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] when the dimensions are unknown.
    pub fn new(
        cfg: OpenAiConfig,
        model: impl Into<String>,
        dimensions: Option<usize>,
    ) -> Result<Self> {
        let label = provider_label(&cfg);
        let http = HttpClient::new(label, &cfg.options.http, openai_headers(&cfg))?;
        let dialect = Dialect::OpenAi {
            base_url: cfg.base_url,
        };
        Self::from_parts(
            http,
            dialect,
            model.into(),
            dimensions,
            cfg.options.pricing,
            cfg.options.name,
        )
    }

    pub(crate) fn from_parts(
        http: HttpClient,
        dialect: Dialect,
        model: String,
        dimensions: Option<usize>,
        pricing: Pricing,
        name: Option<String>,
    ) -> Result<Self> {
        let resolved = dimensions
            .or_else(|| known_dimensions(&model))
            .ok_or_else(|| {
                Error::invalid_field(
                    "embedding_dimensions",
                    format!("unknown vector size for model '{model}'; set it in the configuration"),
                )
            })?;
        Ok(Self {
            name: name.unwrap_or_else(|| format!("{}/{model}", http.provider())),
            send_dimensions: dimensions.is_some() && model.starts_with("text-embedding-3"),
            http,
            dialect,
            model,
            dimensions: resolved,
            pricing,
            max_batch: 256,
        })
    }
}

#[async_trait]
impl EmbeddingModel for OpenAiEmbeddings {
    fn name(&self) -> &str {
        &self.name
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn max_batch_size(&self) -> usize {
        self.max_batch
    }

    async fn embed(&self, ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        let provider = self.http.provider();
        let mut body = json!({"input": inputs, "encoding_format": "float"});
        if matches!(self.dialect, Dialect::OpenAi { .. }) {
            body["model"] = Value::from(self.model.clone());
        }
        if self.send_dimensions {
            body["dimensions"] = self.dimensions.into();
        }
        let resp: Response = self
            .http
            .post_for_json(
                ctx,
                &self.dialect.url("embeddings"),
                &body,
                error::map_error,
            )
            .await?;
        let mut data = resp.data;
        data.sort_by_key(|d| d.index);
        if data.len() != inputs.len() {
            return Err(Error::upstream(
                provider,
                None,
                false,
                format!("{} vectors for {} inputs", data.len(), inputs.len()),
            ));
        }
        if let Some(bad) = data.iter().find(|d| d.embedding.len() != self.dimensions) {
            return Err(Error::upstream(
                provider,
                None,
                false,
                format!(
                    "vector of length {} but the model is configured for {}",
                    bad.embedding.len(),
                    self.dimensions
                ),
            ));
        }
        let model = resp.model.unwrap_or_else(|| self.model.clone());
        let usage = Usage {
            input_tokens: resp.usage.map_or(0, |u| u.prompt_tokens),
            ..Usage::default()
        };
        Ok(Embeddings {
            vectors: data.into_iter().map(|d| d.embedding).collect(),
            cost: self.pricing.cost(&model, &usage),
            model,
            usage,
        })
    }
}
