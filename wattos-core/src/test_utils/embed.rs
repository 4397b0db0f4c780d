//! Deterministic embedders for tests.
//!
//! [`HashingEmbedder`] hashes lower-cased words and character trigrams into a fixed number of buckets
//! (signed feature hashing) and L2-normalises the result. Texts sharing words or word stems score
//! higher than unrelated texts, which is enough to test retrieval end to end without a model.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::context::RequestContext;
use crate::embedding::{EmbeddingModel, Embeddings};
use crate::error::{Error, Result};
use crate::llm::Usage;

/// Feature-hashing embedder: words plus character trigrams, L2-normalised, fully deterministic.
///
/// ```
/// use wattos_core::embedding::EmbeddingModel;
/// use wattos_core::test_utils::embed::HashingEmbedder;
/// use wattos_core::vector_store::cosine;
/// use wattos_core::{RequestContext, TenantId};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let e = HashingEmbedder::new(256);
/// let ctx = RequestContext::system(TenantId::new("t")?);
/// let a = e.embed_one(&ctx, "the cat sat on the mat").await?;
/// let b = e.embed_one(&ctx, "a cat sitting on a mat").await?;
/// let c = e.embed_one(&ctx, "quarterly revenue grew strongly").await?;
/// assert!(cosine(&a, &b) > cosine(&a, &c));
/// # Ok::<_, wattos_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct HashingEmbedder {
    dims: usize,
    calls: AtomicU64,
    texts: AtomicU64,
}

impl HashingEmbedder {
    /// An embedder producing `dims`-dimensional vectors (at least 8).
    pub fn new(dims: usize) -> Self {
        Self {
            dims: dims.max(8),
            calls: AtomicU64::new(0),
            texts: AtomicU64::new(0),
        }
    }

    /// A shareable embedder.
    pub fn shared(dims: usize) -> Arc<Self> {
        Arc::new(Self::new(dims))
    }

    /// How many `embed` calls were made (to test caching and batching).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// How many texts were embedded in total.
    pub fn texts_embedded(&self) -> u64 {
        self.texts.load(Ordering::Relaxed)
    }

    /// Embeds one text synchronously.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dims];
        let lower = text.to_lowercase();
        for word in lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            self.add(&mut v, word.as_bytes(), 1.0);
            let padded: Vec<char> = format!("^{word}$").chars().collect();
            for tri in padded.windows(3) {
                let s: String = tri.iter().collect();
                self.add(&mut v, s.as_bytes(), 0.5);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    fn add(&self, v: &mut [f32], feature: &[u8], weight: f32) {
        let h = fnv1a(feature);
        let bucket = (h % self.dims as u64) as usize;
        let sign = if (h >> 63) & 1 == 0 { 1.0 } else { -1.0 };
        v[bucket] += sign * weight;
    }
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        Self::new(384)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[async_trait]
impl EmbeddingModel for HashingEmbedder {
    fn name(&self) -> &str {
        "hashing-embedder"
    }

    fn dimensions(&self) -> usize {
        self.dims
    }

    fn max_batch_size(&self) -> usize {
        32
    }

    async fn embed(&self, _ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        if inputs.len() > self.max_batch_size() {
            return Err(Error::invalid_input(format!(
                "batch of {} exceeds {}",
                inputs.len(),
                self.max_batch_size()
            )));
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.texts.fetch_add(inputs.len() as u64, Ordering::Relaxed);
        let vectors = inputs.iter().map(|t| self.vector(t)).collect();
        let input_tokens = inputs
            .iter()
            .map(|t| t.split_whitespace().count() as u64)
            .sum();
        Ok(Embeddings {
            vectors,
            model: self.name().to_owned(),
            usage: Usage {
                input_tokens,
                ..Usage::default()
            },
            cost: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector_store::cosine;

    #[test]
    fn deterministic_and_normalised() {
        let e = HashingEmbedder::new(64);
        let a = e.vector("Hello world");
        assert_eq!(a, e.vector("hello WORLD"));
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
        assert!(e.vector("").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn similar_texts_score_higher() {
        let e = HashingEmbedder::new(384);
        let q = e.vector("solar panel efficiency");
        let near = e.vector("efficiency of solar panels on roofs");
        let far = e.vector("the history of medieval castles");
        assert!(cosine(&q, &near) > cosine(&q, &far) + 0.2);
    }
}
