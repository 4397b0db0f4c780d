//! The embedding seam: [`EmbeddingModel`] turns texts into vectors.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::llm::{Cost, Usage};

/// Vectors for a batch of inputs, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embeddings {
    /// One vector per input.
    pub vectors: Vec<Vec<f32>>,
    /// The model that produced them.
    pub model: String,
    /// Tokens consumed (`output_tokens` stays 0).
    pub usage: Usage,
    /// Cost, when the model's price is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
}

/// A model that embeds texts.
///
/// Implement [`EmbeddingModel::embed`] for a batch that already fits [`EmbeddingModel::max_batch_size`];
/// callers use [`EmbeddingModel::embed_all`], which validates and splits larger inputs.
///
/// ```
/// use async_trait::async_trait;
/// use wattos_core::embedding::{EmbeddingModel, Embeddings};
/// use wattos_core::llm::Usage;
/// use wattos_core::{RequestContext, Result, TenantId};
///
/// /// Embeds text as (length, vowel count), L2-normalised.
/// struct Toy;
///
/// #[async_trait]
/// impl EmbeddingModel for Toy {
///     fn name(&self) -> &str { "toy" }
///     fn dimensions(&self) -> usize { 2 }
///     async fn embed(&self, _ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
///         let vectors = inputs.iter().map(|t| {
///             let v = [t.len() as f32, t.chars().filter(|c| "aeiou".contains(*c)).count() as f32];
///             let n = (v[0] * v[0] + v[1] * v[1]).sqrt().max(f32::EPSILON);
///             vec![v[0] / n, v[1] / n]
///         }).collect();
///         Ok(Embeddings { vectors, model: "toy".into(), usage: Usage::default(), cost: None })
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let ctx = RequestContext::system(TenantId::new("acme")?);
/// let v = Toy.embed_one(&ctx, "hello").await?;
/// assert_eq!(v.len(), 2);
/// assert!(Toy.embed_all(&ctx, &["".to_string()]).await.is_err()); // empty input is rejected
/// # Ok::<_, wattos_core::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait EmbeddingModel: Send + Sync {
    /// Model identifier.
    fn name(&self) -> &str;

    /// Length of every vector.
    fn dimensions(&self) -> usize;

    /// Largest batch [`EmbeddingModel::embed`] accepts.
    fn max_batch_size(&self) -> usize {
        64
    }

    /// Embeds one batch of at most [`EmbeddingModel::max_batch_size`] non-empty inputs.
    ///
    /// # Errors
    /// Typed [`crate::Error`]s as for chat models.
    async fn embed(&self, ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings>;

    /// Embeds any number of inputs: rejects empty strings, splits into batches, joins results.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] naming the first empty input; otherwise as `embed`.
    async fn embed_all(&self, ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        if let Some(i) = inputs.iter().position(|s| s.trim().is_empty()) {
            return Err(Error::invalid_field(
                format!("input[{i}]"),
                "must not be empty",
            ));
        }
        let mut out = Embeddings {
            vectors: Vec::with_capacity(inputs.len()),
            model: self.name().to_owned(),
            usage: Usage::default(),
            cost: None,
        };
        for batch in inputs.chunks(self.max_batch_size().max(1)) {
            let part = self.embed(ctx, batch).await?;
            if part.vectors.len() != batch.len() {
                return Err(Error::internal(format!(
                    "{} returned {} vectors for {} inputs",
                    self.name(),
                    part.vectors.len(),
                    batch.len()
                )));
            }
            out.vectors.extend(part.vectors);
            out.usage.add(&part.usage);
            out.model = part.model;
            if let Some(c) = part.cost {
                let total = out.cost.get_or_insert_with(Cost::default);
                total.input_usd += c.input_usd;
                total.cached_input_usd += c.cached_input_usd;
                total.output_usd += c.output_usd;
            }
        }
        Ok(out)
    }

    /// Embeds a single text.
    ///
    /// # Errors
    /// As for [`EmbeddingModel::embed_all`].
    async fn embed_one(&self, ctx: &RequestContext, input: &str) -> Result<Vec<f32>> {
        let mut e = self.embed_all(ctx, &[input.to_owned()]).await?;
        e.vectors
            .pop()
            .ok_or_else(|| Error::internal(format!("{} returned no vector", self.name())))
    }
}

#[async_trait]
impl<T: EmbeddingModel + ?Sized> EmbeddingModel for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn dimensions(&self) -> usize {
        (**self).dimensions()
    }
    fn max_batch_size(&self) -> usize {
        (**self).max_batch_size()
    }
    async fn embed(&self, ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        (**self).embed(ctx, inputs).await
    }
}

/// Compile-time check that the trait stays object safe.
#[allow(dead_code)]
fn _object_safe(_: &dyn EmbeddingModel) {}
