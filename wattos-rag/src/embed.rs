//! Embedding helpers: [`CachedEmbedder`] reuses vectors by content hash, and [`embed_concurrently`]
//! runs batches in parallel.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use wattos_core::embedding::{EmbeddingModel, Embeddings};
use wattos_core::llm::Usage;
use wattos_core::{Error, RequestContext, Result};

use crate::document::text_hash;

/// Cached vectors plus insertion order for FIFO eviction.
type VectorCache = (HashMap<String, Arc<Vec<f32>>>, VecDeque<String>);

/// Wraps a model with a bounded in-memory cache keyed by (model name, SHA-256 of the text). Only
/// texts not in the cache reach the model. Embeddings do not depend on the tenant, so the cache is
/// shared; it never returns text, only vectors for text the caller already has.
pub struct CachedEmbedder {
    inner: Arc<dyn EmbeddingModel>,
    capacity: usize,
    cache: Mutex<VectorCache>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CachedEmbedder {
    /// Caches up to `capacity` vectors (FIFO eviction).
    pub fn new(inner: Arc<dyn EmbeddingModel>, capacity: usize) -> Self {
        Self {
            inner,
            capacity: capacity.max(1),
            cache: Mutex::new((HashMap::new(), VecDeque::new())),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn key(&self, text: &str) -> String {
        format!("{}:{}", self.inner.name(), text_hash(text))
    }
}

#[async_trait]
impl EmbeddingModel for CachedEmbedder {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    fn max_batch_size(&self) -> usize {
        self.inner.max_batch_size()
    }

    async fn embed(&self, ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        let keys: Vec<String> = inputs.iter().map(|t| self.key(t)).collect();
        let mut out: Vec<Option<Arc<Vec<f32>>>> = {
            let g = self
                .cache
                .lock()
                .map_err(|_| Error::internal("embedding cache poisoned"))?;
            keys.iter().map(|k| g.0.get(k).cloned()).collect()
        };
        let missing: Vec<usize> = (0..inputs.len()).filter(|i| out[*i].is_none()).collect();
        self.hits
            .fetch_add((inputs.len() - missing.len()) as u64, Ordering::Relaxed);
        self.misses
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        let mut usage = Usage::default();
        let mut model = self.inner.name().to_owned();
        if !missing.is_empty() {
            let texts: Vec<String> = missing.iter().map(|i| inputs[*i].clone()).collect();
            let e = self.inner.embed(ctx, &texts).await?;
            if e.vectors.len() != texts.len() {
                return Err(Error::internal(format!(
                    "{} returned {} vectors for {} inputs",
                    self.inner.name(),
                    e.vectors.len(),
                    texts.len()
                )));
            }
            usage = e.usage;
            model = e.model;
            let mut g = self
                .cache
                .lock()
                .map_err(|_| Error::internal("embedding cache poisoned"))?;
            for (i, v) in missing.iter().zip(e.vectors) {
                let v = Arc::new(v);
                if g.0.insert(keys[*i].clone(), v.clone()).is_none() {
                    g.1.push_back(keys[*i].clone());
                }
                while g.1.len() > self.capacity {
                    if let Some(old) = g.1.pop_front() {
                        g.0.remove(&old);
                    }
                }
                out[*i] = Some(v);
            }
        }
        let vectors = out
            .into_iter()
            .map(|v| v.map(|v| (*v).clone()).unwrap_or_default())
            .collect();
        Ok(Embeddings {
            vectors,
            model,
            usage,
            cost: None,
        })
    }
}

/// Embeds `texts` in batches of the model's `max_batch_size`, up to `concurrency` batches at once,
/// keeping input order.
///
/// # Errors
/// The first failing batch's error; empty texts are invalid input.
pub async fn embed_concurrently(
    model: &dyn EmbeddingModel,
    ctx: &RequestContext,
    texts: &[String],
    concurrency: usize,
) -> Result<Vec<Vec<f32>>> {
    if let Some(i) = texts.iter().position(|s| s.trim().is_empty()) {
        return Err(Error::invalid_field(
            format!("input[{i}]"),
            "must not be empty",
        ));
    }
    let batches: Vec<&[String]> = texts.chunks(model.max_batch_size().max(1)).collect();
    let results: Vec<Vec<Vec<f32>>> = futures::stream::iter(batches)
        .map(|b| async move {
            let e = model.embed(ctx, b).await?;
            if e.vectors.len() != b.len() {
                return Err(Error::internal(format!(
                    "{} returned {} vectors for {} inputs",
                    model.name(),
                    e.vectors.len(),
                    b.len()
                )));
            }
            Ok(e.vectors)
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok(results.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattos_core::TenantId;
    use wattos_core::test_utils::embed::HashingEmbedder;

    #[tokio::test]
    async fn cache_skips_known_texts() {
        let base = HashingEmbedder::shared(16);
        let cached = CachedEmbedder::new(base.clone(), 10);
        let ctx = RequestContext::system(TenantId::new("t").unwrap());
        let texts: Vec<String> = vec!["a b".into(), "c d".into()];
        let first = embed_concurrently(&cached, &ctx, &texts, 2).await.unwrap();
        let again = embed_concurrently(&cached, &ctx, &texts, 2).await.unwrap();
        assert_eq!(first, again);
        assert_eq!(base.texts_embedded(), 2);
        assert_eq!(cached.stats(), (2, 2));
        assert!(
            embed_concurrently(&cached, &ctx, &[" ".into()], 1)
                .await
                .is_err()
        );
    }
}
