//! Second-stage reranking behind [`Reranker`]: [`MmrReranker`] (diversity) and [`LlmReranker`]
//! (a chat model orders the candidates).

use std::sync::Arc;

use async_trait::async_trait;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::{ChatModel, ChatRequest, Message};
use wattos_core::vector_store::{Hit, cosine};
use wattos_core::{RequestContext, Result};

/// Reorders (and cuts to `top_k`) first-stage candidates for a query.
#[async_trait]
pub trait Reranker: Send + Sync {
    /// Name for logs and eval reports.
    fn name(&self) -> &str;

    /// The best `top_k` of `hits` for `query`, best first.
    ///
    /// # Errors
    /// Failures of the model the reranker calls.
    async fn rerank(
        &self,
        ctx: &RequestContext,
        query: &str,
        hits: Vec<Hit>,
        top_k: usize,
    ) -> Result<Vec<Hit>>;
}

#[async_trait]
impl<T: Reranker + ?Sized> Reranker for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn rerank(
        &self,
        ctx: &RequestContext,
        query: &str,
        hits: Vec<Hit>,
        top_k: usize,
    ) -> Result<Vec<Hit>> {
        (**self).rerank(ctx, query, hits, top_k).await
    }
}

/// Maximal marginal relevance: picks, one at a time, the hit maximising
/// `lambda * sim(query, hit) - (1 - lambda) * max sim(hit, picked)`. Embeds the query and the hit
/// texts with the given model (wrap it in [`crate::embed::CachedEmbedder`] to reuse vectors).
pub struct MmrReranker {
    embedder: Arc<dyn EmbeddingModel>,
    lambda: f32,
}

impl MmrReranker {
    /// `lambda` in 0..=1: 1 is pure relevance, 0 pure diversity; 0.7 is a common choice.
    pub fn new(embedder: Arc<dyn EmbeddingModel>, lambda: f32) -> Self {
        Self {
            embedder,
            lambda: lambda.clamp(0.0, 1.0),
        }
    }
}

#[async_trait]
impl Reranker for MmrReranker {
    fn name(&self) -> &str {
        "mmr"
    }

    async fn rerank(
        &self,
        ctx: &RequestContext,
        query: &str,
        hits: Vec<Hit>,
        top_k: usize,
    ) -> Result<Vec<Hit>> {
        if hits.is_empty() || top_k == 0 {
            return Ok(Vec::new());
        }
        let mut inputs: Vec<String> = Vec::with_capacity(hits.len() + 1);
        inputs.push(query.to_owned());
        inputs.extend(hits.iter().map(|h| {
            if h.text.trim().is_empty() {
                h.id.clone()
            } else {
                h.text.clone()
            }
        }));
        let vectors = self.embedder.embed_all(ctx, &inputs).await?.vectors;
        let (q, docs) = vectors
            .split_first()
            .ok_or_else(|| wattos_core::Error::internal("no query vector"))?;
        let relevance: Vec<f32> = docs.iter().map(|d| cosine(q, d)).collect();
        let mut picked: Vec<usize> = Vec::new();
        let mut left: Vec<usize> = (0..hits.len()).collect();
        while picked.len() < top_k && !left.is_empty() {
            let (pos, _) = left
                .iter()
                .enumerate()
                .map(|(pos, &i)| {
                    let redundancy = picked
                        .iter()
                        .map(|&p| cosine(&docs[i], &docs[p]))
                        .fold(0.0f32, f32::max);
                    (
                        pos,
                        self.lambda * relevance[i] - (1.0 - self.lambda) * redundancy,
                    )
                })
                .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                .unwrap_or((0, 0.0));
            picked.push(left.remove(pos));
        }
        let n = picked.len();
        let mut slots: Vec<Option<Hit>> = hits.into_iter().map(Some).collect();
        Ok(picked
            .into_iter()
            .enumerate()
            .filter_map(|(rank, i)| {
                slots[i].take().map(|h| Hit {
                    score: (n - rank) as f32 / n as f32,
                    ..h
                })
            })
            .collect())
    }
}

/// Asks a chat model to order the candidates by relevance (listwise). Candidates the model leaves
/// out keep their first-stage order after the ones it ranked; numbers it invents are ignored.
pub struct LlmReranker {
    model: Arc<dyn ChatModel>,
    model_name: String,
    max_chars_per_passage: usize,
}

impl LlmReranker {
    /// Reranks with `model`, sending requests for `model_name`.
    pub fn new(model: Arc<dyn ChatModel>, model_name: impl Into<String>) -> Self {
        Self {
            model,
            model_name: model_name.into(),
            max_chars_per_passage: 600,
        }
    }

    /// Truncates passages in the prompt to `n` chars (default 600).
    pub fn with_max_chars_per_passage(mut self, n: usize) -> Self {
        self.max_chars_per_passage = n.max(1);
        self
    }
}

/// Passage numbers (1-based) in the order they first appear in `text`.
pub(crate) fn parse_ranking(text: &str, n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut num = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            num.push(c);
        } else if !num.is_empty() {
            if let Ok(i) = num.parse::<usize>()
                && (1..=n).contains(&i)
                && !out.contains(&(i - 1))
            {
                out.push(i - 1);
            }
            num.clear();
        }
    }
    out
}

#[async_trait]
impl Reranker for LlmReranker {
    fn name(&self) -> &str {
        "llm"
    }

    async fn rerank(
        &self,
        ctx: &RequestContext,
        query: &str,
        hits: Vec<Hit>,
        top_k: usize,
    ) -> Result<Vec<Hit>> {
        if hits.is_empty() || top_k == 0 {
            return Ok(Vec::new());
        }
        let mut prompt = format!("Query: {query}\n\nPassages:\n");
        for (i, h) in hits.iter().enumerate() {
            let text: String = h.text.chars().take(self.max_chars_per_passage).collect();
            prompt.push_str(&format!("[{}] {}\n", i + 1, text.replace('\n', " ")));
        }
        prompt.push_str("\nList the passage numbers from most to least relevant to the query, comma-separated, nothing else.");
        let req = ChatRequest::new(
            self.model_name.clone(),
            vec![
                Message::system("You rank passages by relevance to a query."),
                Message::user(prompt),
            ],
        )
        .with_temperature(0.0);
        let resp = self.model.chat(ctx, req).await?;
        let mut order = parse_ranking(resp.text(), hits.len());
        for i in 0..hits.len() {
            if !order.contains(&i) {
                order.push(i);
            }
        }
        order.truncate(top_k);
        let n = order.len();
        let mut slots: Vec<Option<Hit>> = hits.into_iter().map(Some).collect();
        Ok(order
            .into_iter()
            .enumerate()
            .filter_map(|(rank, i)| {
                slots[i].take().map(|h| Hit {
                    score: (n - rank) as f32 / n as f32,
                    ..h
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_parser_ignores_noise() {
        assert_eq!(parse_ranking("3, 1, 9, 3, 2", 3), vec![2, 0, 1]);
        assert_eq!(parse_ranking("[2] > [1]", 2), vec![1, 0]);
        assert!(parse_ranking("none", 3).is_empty());
    }
}
