//! Gemini embeddings: `:embedContent` for one text, `:batchEmbedContents` for several.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use wattos_core::embedding::{EmbeddingModel, Embeddings};
use wattos_core::llm::Usage;
use wattos_core::{Error, RequestContext, Result};

use super::{GeminiConfig, PROVIDER, error, method_url};
use crate::http::HttpClient;
use crate::pricing::Pricing;

/// Known output sizes of Gemini embedding models.
fn known_dimensions(model: &str) -> Option<usize> {
    match model.strip_prefix("models/").unwrap_or(model) {
        "text-embedding-004" | "embedding-001" => Some(768),
        "gemini-embedding-001" => Some(3072),
        _ => None,
    }
}

/// A Gemini embedding model.
#[derive(Debug, Clone)]
pub struct GeminiEmbeddings {
    http: HttpClient,
    base_url: String,
    model: String,
    dimensions: usize,
    send_dimensions: bool,
    task_type: Option<String>,
    pricing: Pricing,
    name: String,
}

#[derive(Deserialize)]
struct Values {
    values: Vec<f32>,
}

#[derive(Deserialize)]
struct Single {
    embedding: Values,
}

#[derive(Deserialize)]
struct Batch {
    embeddings: Vec<Values>,
}

impl GeminiEmbeddings {
    /// Embeddings with `model` (e.g. `text-embedding-004`). An explicit `dimensions` is sent as
    /// `outputDimensionality`. `task_type` is Gemini's `taskType` (e.g. `RETRIEVAL_DOCUMENT`).
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] when the dimensions are unknown.
    pub fn new(
        cfg: GeminiConfig,
        model: impl Into<String>,
        dimensions: Option<usize>,
        task_type: Option<String>,
    ) -> Result<Self> {
        let model = model.into();
        let resolved = dimensions
            .or_else(|| known_dimensions(&model))
            .ok_or_else(|| {
                Error::invalid_field(
                    "embedding_dimensions",
                    format!("unknown vector size for model '{model}'; set it in the configuration"),
                )
            })?;
        Ok(Self {
            http: cfg.client()?,
            base_url: cfg.base_url.clone(),
            name: cfg
                .options
                .name
                .clone()
                .unwrap_or_else(|| format!("{PROVIDER}/{model}")),
            model,
            dimensions: resolved,
            send_dimensions: dimensions.is_some(),
            task_type,
            pricing: cfg.options.pricing,
        })
    }

    fn request(&self, text: &str) -> serde_json::Value {
        let model = self.model.strip_prefix("models/").unwrap_or(&self.model);
        let mut r =
            json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
        if let Some(t) = &self.task_type {
            r["taskType"] = t.clone().into();
        }
        if self.send_dimensions {
            r["outputDimensionality"] = self.dimensions.into();
        }
        r
    }
}

#[async_trait]
impl EmbeddingModel for GeminiEmbeddings {
    fn name(&self) -> &str {
        &self.name
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn max_batch_size(&self) -> usize {
        100
    }

    async fn embed(&self, ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        let vectors: Vec<Vec<f32>> = if let [one] = inputs {
            let url = method_url(&self.base_url, &self.model, "embedContent");
            let r: Single = self
                .http
                .post_for_json(ctx, &url, &self.request(one), error::map_error)
                .await?;
            vec![r.embedding.values]
        } else {
            let url = method_url(&self.base_url, &self.model, "batchEmbedContents");
            let body =
                json!({"requests": inputs.iter().map(|t| self.request(t)).collect::<Vec<_>>()});
            let r: Batch = self
                .http
                .post_for_json(ctx, &url, &body, error::map_error)
                .await?;
            r.embeddings.into_iter().map(|v| v.values).collect()
        };
        if vectors.len() != inputs.len() {
            return Err(Error::upstream(
                PROVIDER,
                None,
                false,
                format!("{} vectors for {} inputs", vectors.len(), inputs.len()),
            ));
        }
        if vectors.iter().any(|v| v.len() != self.dimensions) {
            return Err(Error::upstream(
                PROVIDER,
                None,
                false,
                format!(
                    "vector size differs from the configured {}",
                    self.dimensions
                ),
            ));
        }
        // Gemini's embedding responses carry no token counts.
        let usage = Usage::default();
        Ok(Embeddings {
            vectors,
            cost: self.pricing.cost(&self.model, &usage),
            model: self.model.clone(),
            usage,
        })
    }
}
