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

/// Where [`MmrReranker`] takes a candidate's relevance from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MmrRelevance {
    /// The first stage's scores, min-max normalised to 0..=1 over the candidates (the default).
    /// Keeps what the first stage knew: after hybrid retrieval that includes the keyword match,
    /// which the embedding alone does not see. Also saves embedding the query.
    #[default]
    Retrieval,
    /// Cosine similarity of query and candidate embeddings: classic MMR, which ranks by the
    /// embedding model alone and discards the first stage's order.
    Embedding,
}

/// Maximal marginal relevance: picks, one at a time, the hit maximising
/// `lambda * relevance(hit) - (1 - lambda) * max sim(hit, picked)`, where `sim` is the cosine of
/// the hits' embeddings and `relevance` comes from [`MmrRelevance`]. Embeds the hit texts with the
/// given model: share one [`crate::embed::CachedEmbedder`] with ingestion so that these are the
/// vectors computed at ingest time, not new model calls.
///
/// ```
/// use wattos_core::test_utils::embed::HashingEmbedder;
/// use wattos_core::vector_store::Hit;
/// use wattos_core::{RequestContext, TenantId};
/// use wattos_rag::rerank::{MmrReranker, Reranker};
///
/// # futures::executor::block_on(async {
/// let hit = |id: &str, text: &str, score: f32| Hit {
///     id: id.into(),
///     document_id: id.into(),
///     score,
///     text: text.into(),
///     metadata: Default::default(),
/// };
/// let hits = vec![
///     hit("a", "heat pumps move heat from outside air", 0.9),
///     hit("b", "heat pumps move heat from outside air", 0.8), // a duplicate of a
///     hit("c", "solar panels on the roof", 0.5),
/// ];
/// let mmr = MmrReranker::new(HashingEmbedder::shared(64), 0.5);
/// let ctx = RequestContext::system(TenantId::new("acme").unwrap());
/// let top = mmr.rerank(&ctx, "heat pumps", hits, 2).await.unwrap();
/// let ids: Vec<&str> = top.iter().map(|h| h.id.as_str()).collect();
/// assert_eq!(ids, ["a", "c"]); // the duplicate gives way to something new
/// # });
/// ```
pub struct MmrReranker {
    embedder: Arc<dyn EmbeddingModel>,
    lambda: f32,
    relevance: MmrRelevance,
}

impl MmrReranker {
    /// `lambda` in 0..=1: 1 is pure relevance, 0 pure diversity; 0.7 is a common choice.
    /// Relevance comes from the first stage's scores ([`MmrRelevance::Retrieval`]).
    pub fn new(embedder: Arc<dyn EmbeddingModel>, lambda: f32) -> Self {
        Self {
            embedder,
            lambda: lambda.clamp(0.0, 1.0),
            relevance: MmrRelevance::default(),
        }
    }

    /// Chooses where relevance comes from.
    #[must_use]
    pub fn with_relevance(mut self, relevance: MmrRelevance) -> Self {
        self.relevance = relevance;
        self
    }
}

/// Scores min-max normalised to 0..=1 (all 1 when they are equal).
fn normalised(scores: impl Iterator<Item = f32> + Clone) -> Vec<f32> {
    let (lo, hi) = scores
        .clone()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), s| {
            (lo.min(s), hi.max(s))
        });
    let span = hi - lo;
    scores
        .map(|s| if span > 0.0 { (s - lo) / span } else { 1.0 })
        .collect()
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
        let with_query = self.relevance == MmrRelevance::Embedding;
        let mut inputs: Vec<String> = Vec::with_capacity(hits.len() + 1);
        if with_query {
            inputs.push(query.to_owned());
        }
        inputs.extend(hits.iter().map(|h| {
            if h.text.trim().is_empty() {
                h.id.clone()
            } else {
                h.text.clone()
            }
        }));
        let vectors = self.embedder.embed_all(ctx, &inputs).await?.vectors;
        if vectors.len() != inputs.len() {
            return Err(wattos_core::Error::internal(format!(
                "{} returned {} vectors for {} inputs",
                self.embedder.name(),
                vectors.len(),
                inputs.len()
            )));
        }
        let (relevance, docs): (Vec<f32>, &[Vec<f32>]) = if with_query {
            let (q, docs) = vectors
                .split_first()
                .ok_or_else(|| wattos_core::Error::internal("no query vector"))?;
            (docs.iter().map(|d| cosine(q, d)).collect(), docs)
        } else {
            (normalised(hits.iter().map(|h| h.score)), &vectors[..])
        };
        let mut picked: Vec<usize> = Vec::new();
        let mut left: Vec<usize> = (0..hits.len()).collect();
        // Highest similarity of each candidate to anything picked so far, updated with each pick
        // (one cosine per remaining candidate and pick, not one per already-picked item).
        let mut redundancy = vec![0.0f32; hits.len()];
        while picked.len() < top_k && !left.is_empty() {
            let (pos, _) = left
                .iter()
                .enumerate()
                .map(|(pos, &i)| {
                    (
                        pos,
                        self.lambda * relevance[i] - (1.0 - self.lambda) * redundancy[i],
                    )
                })
                .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                .unwrap_or((0, 0.0));
            let chosen = left.remove(pos);
            for &i in &left {
                redundancy[i] = redundancy[i].max(cosine(&docs[i], &docs[chosen]));
            }
            picked.push(chosen);
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
    use wattos_core::test_utils::embed::HashingEmbedder;
    use wattos_core::{RequestContext, TenantId};

    fn hit(id: &str, text: &str, score: f32) -> Hit {
        Hit {
            id: id.into(),
            document_id: id.into(),
            score,
            text: text.into(),
            metadata: Default::default(),
        }
    }

    #[tokio::test]
    async fn mmr_keeps_first_stage_order_unless_embedding_relevance_is_asked_for() {
        let ctx = RequestContext::system(TenantId::new("acme").unwrap());
        // The first stage (say a keyword match on an error code) ranked "code" first although its
        // text is far from the query's wording.
        let hits = vec![
            hit("code", "E0499 explained", 0.9),
            hit("words", "borrow checker mutable reference twice", 0.2),
        ];
        let query = "borrow checker mutable reference twice";
        let mmr = MmrReranker::new(HashingEmbedder::shared(64), 1.0);
        let ids = |v: Vec<Hit>| v.into_iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(
            ids(mmr.rerank(&ctx, query, hits.clone(), 2).await.unwrap()),
            ["code", "words"]
        );
        let classic = MmrReranker::new(HashingEmbedder::shared(64), 1.0)
            .with_relevance(MmrRelevance::Embedding);
        assert_eq!(
            ids(classic.rerank(&ctx, query, hits, 2).await.unwrap()),
            ["words", "code"]
        );
    }

    #[test]
    fn scores_normalise_to_unit_range() {
        assert_eq!(normalised([2.0, 4.0, 3.0].into_iter()), [0.0, 1.0, 0.5]);
        assert_eq!(normalised([0.3, 0.3].into_iter()), [1.0, 1.0]);
    }

    #[test]
    fn ranking_parser_ignores_noise() {
        assert_eq!(parse_ranking("3, 1, 9, 3, 2", 3), vec![2, 0, 1]);
        assert_eq!(parse_ranking("[2] > [1]", 2), vec![1, 0]);
        assert!(parse_ranking("none", 3).is_empty());
    }
}
