//! Retrieval evaluation on BEIR-layout datasets: `corpus.jsonl` (`_id`, `title`, `text`),
//! `queries.jsonl` (`_id`, `text`) and `qrels/test.tsv` (`query-id`, `corpus-id`, `score`, header
//! line). Reports nDCG@10, Recall@100 and MRR@10 per run.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use wattos_core::{Error, RequestContext, Result};

use crate::Rag;
use crate::document::Document;
use crate::retrieve::SearchRequest;

/// A corpus document.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CorpusDoc {
    /// Document id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Title (may be empty).
    #[serde(default)]
    pub title: String,
    /// Body.
    pub text: String,
}

#[derive(Deserialize)]
struct QueryLine {
    #[serde(rename = "_id")]
    id: String,
    text: String,
}

/// A loaded dataset.
#[derive(Debug, Clone, Default)]
pub struct BeirDataset {
    /// Corpus.
    pub corpus: Vec<CorpusDoc>,
    /// Queries with at least one judgement, `(id, text)`.
    pub queries: Vec<(String, String)>,
    /// Judgements: query id -> document id -> grade (> 0 is relevant).
    pub qrels: HashMap<String, HashMap<String, i32>>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::invalid_input(format!("cannot read {}: {e}", path.display())))
}

impl BeirDataset {
    /// Reads `dir/corpus.jsonl`, `dir/queries.jsonl` and `dir/qrels/<split>.tsv`.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] naming the file and line of a malformed entry.
    pub fn load(dir: impl AsRef<Path>, split: &str) -> Result<Self> {
        let dir = dir.as_ref();
        let mut ds = Self::default();
        for (i, line) in read(&dir.join("corpus.jsonl"))?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            ds.corpus.push(
                serde_json::from_str(line).map_err(|e| {
                    Error::invalid_input(format!("corpus.jsonl line {}: {e}", i + 1))
                })?,
            );
        }
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        for (i, line) in read(&qrels_path)?.lines().enumerate() {
            let cols: Vec<&str> = line.split('\t').collect();
            if i == 0 && cols.first().is_some_and(|c| c.starts_with("query"))
                || line.trim().is_empty()
            {
                continue;
            }
            let [q, d, s] = cols[..] else {
                return Err(Error::invalid_input(format!(
                    "{} line {}: expected 3 columns",
                    qrels_path.display(),
                    i + 1
                )));
            };
            let grade: i32 = s.trim().parse().map_err(|_| {
                Error::invalid_input(format!(
                    "{} line {}: bad score",
                    qrels_path.display(),
                    i + 1
                ))
            })?;
            ds.qrels
                .entry(q.to_owned())
                .or_default()
                .insert(d.to_owned(), grade);
        }
        for (i, line) in read(&dir.join("queries.jsonl"))?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let q: QueryLine = serde_json::from_str(line)
                .map_err(|e| Error::invalid_input(format!("queries.jsonl line {}: {e}", i + 1)))?;
            if ds.qrels.contains_key(&q.id) {
                ds.queries.push((q.id, q.text));
            }
        }
        Ok(ds)
    }

    /// The corpus as documents (title on its own line above the text).
    pub fn documents(&self) -> Vec<Document> {
        self.corpus
            .iter()
            .map(|d| {
                let text = if d.title.is_empty() {
                    d.text.clone()
                } else {
                    format!("{}\n\n{}", d.title, d.text)
                };
                let mut doc = Document::text(d.id.clone(), text);
                if !d.title.is_empty() {
                    doc = doc.with_title(d.title.clone());
                }
                doc
            })
            .collect()
    }
}

/// Mean metrics over the queries of one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Metrics {
    /// nDCG@10 (graded gains, log2 discount).
    pub ndcg_at_10: f64,
    /// Recall@100.
    pub recall_at_100: f64,
    /// MRR@10.
    pub mrr_at_10: f64,
    /// Queries evaluated.
    pub queries: usize,
}

/// Metrics for one ranked list of document ids against graded judgements.
pub fn score_ranking(ranked: &[String], rels: &HashMap<String, i32>) -> Metrics {
    let gain = |d: &str| f64::from(rels.get(d).copied().unwrap_or(0).max(0));
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, d)| (2f64.powf(gain(d)) - 1.0) / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<f64> = rels
        .values()
        .map(|g| f64::from((*g).max(0)))
        .filter(|g| *g > 0.0)
        .collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, g)| (2f64.powf(*g) - 1.0) / ((i + 2) as f64).log2())
        .sum();
    let relevant = rels.values().filter(|g| **g > 0).count();
    let found = ranked.iter().take(100).filter(|d| gain(d) > 0.0).count();
    let mrr = ranked
        .iter()
        .take(10)
        .position(|d| gain(d) > 0.0)
        .map_or(0.0, |p| 1.0 / (p + 1) as f64);
    Metrics {
        ndcg_at_10: if idcg > 0.0 { dcg / idcg } else { 0.0 },
        recall_at_100: if relevant > 0 {
            found as f64 / relevant as f64
        } else {
            0.0
        },
        mrr_at_10: mrr,
        queries: 1,
    }
}

/// Runs every query of `dataset` through `rag` with the given request template (query and
/// `top_k = 100` are set here) and averages the metrics. Chunk hits are collapsed to documents by
/// first occurrence. The corpus must already be ingested (see [`ingest`]).
///
/// # Errors
/// Retrieval failures.
pub async fn evaluate(
    ctx: &RequestContext,
    rag: &Rag,
    dataset: &BeirDataset,
    template: &SearchRequest,
) -> Result<Metrics> {
    let mut total = Metrics::default();
    for (qid, text) in &dataset.queries {
        let mut req = template.clone();
        req.query = text.clone();
        req.top_k = 100;
        let hits = rag.search(ctx, &req).await?;
        let mut ranked: Vec<String> = Vec::new();
        for h in hits {
            if !ranked.contains(&h.document_id) {
                ranked.push(h.document_id);
            }
        }
        let empty = HashMap::new();
        let m = score_ranking(&ranked, dataset.qrels.get(qid).unwrap_or(&empty));
        total.ndcg_at_10 += m.ndcg_at_10;
        total.recall_at_100 += m.recall_at_100;
        total.mrr_at_10 += m.mrr_at_10;
        total.queries += 1;
    }
    if total.queries > 0 {
        let n = total.queries as f64;
        total.ndcg_at_10 /= n;
        total.recall_at_100 /= n;
        total.mrr_at_10 /= n;
    }
    Ok(total)
}

/// Ingests the dataset's corpus into `rag`. Documents that cannot be indexed because of what they
/// contain (blank, unreadable: `invalid_input`) are skipped and returned, as public corpora hold a
/// few; the evaluation then runs on the rest (their judgements count as misses).
///
/// # Errors
/// Pipeline failures, and any failure that is not about one document's content (an embedder or
/// store that is down), or when no document at all could be indexed.
pub async fn ingest(
    ctx: &RequestContext,
    rag: &Rag,
    dataset: &BeirDataset,
) -> Result<Vec<(String, Error)>> {
    let report = rag
        .pipeline()
        .ingest_documents(ctx, dataset.documents())
        .await?;
    let failed = report.failed();
    if let Some((id, e)) = failed
        .iter()
        .find(|(_, e)| e.kind() != wattos_core::ErrorKind::InvalidInput)
    {
        return Err(Error::new(
            e.kind(),
            format!("corpus document {id} failed: {e}"),
        ));
    }
    if !dataset.corpus.is_empty() && failed.len() == dataset.corpus.len() {
        let (id, e) = failed[0];
        return Err(Error::invalid_input(format!(
            "no corpus document could be indexed, e.g. {id}: {e}"
        )));
    }
    Ok(failed
        .into_iter()
        .map(|(id, e)| (id.to_owned(), Error::new(e.kind(), e.message().to_owned())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_hand_computation() {
        let rels: HashMap<String, i32> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
        let m = score_ranking(&["x".into(), "a".into(), "b".into()], &rels);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!((m.ndcg_at_10 - dcg / idcg).abs() < 1e-9);
        assert_eq!(m.mrr_at_10, 0.5);
        assert_eq!(m.recall_at_100, 1.0);
        let none = score_ranking(&[], &rels);
        assert_eq!(none.ndcg_at_10, 0.0);
    }
}
