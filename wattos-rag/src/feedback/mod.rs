//! Answer feedback: a rating and comment on any answer, linked to its request id, model, collection,
//! retrieved chunks and citations; stored per tenant ([`SqlFeedbackStore`], SQLite with feature
//! `sqlite`, Postgres with feature `postgres`).
//!
//! [`FeedbackStore::report`] summarises ratings by model and by collection; [`export_beir`] turns
//! well-rated answers into a BEIR-layout evaluation set that [`crate::eval::BeirDataset::load`]
//! reads, so feedback becomes a retrieval regression test.
//!
//! Ratings are 1..=5 (thumbs-style clients send 1 for down and 5 for up). An answer rated 4 or 5
//! makes its question an eval query whose cited documents are judged 2 and whose other retrieved
//! documents are judged 1; documents retrieved for lower-rated answers enter the corpus as
//! distractors only.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wattos_core::{Error, RequestContext, Result};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlFeedbackStore;

/// Longest accepted comment, characters.
pub const MAX_COMMENT_CHARS: usize = 4000;

/// Lowest rating that counts as positive.
pub const POSITIVE_RATING: u8 = 4;

/// A chunk the answer was built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievedChunk {
    /// Chunk id.
    pub chunk_id: String,
    /// Owning document.
    pub document_id: String,
    /// Document title, if known.
    #[serde(default)]
    pub title: Option<String>,
    /// The chunk text.
    pub text: String,
    /// Retrieval score.
    #[serde(default)]
    pub score: f32,
}

/// Feedback to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewFeedback {
    /// The request that produced the answer.
    pub request_id: String,
    /// 1 (bad) ..= 5 (good).
    pub rating: u8,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
    /// Model that answered.
    #[serde(default)]
    pub model: Option<String>,
    /// Collection searched.
    #[serde(default)]
    pub collection: Option<String>,
    /// The question.
    #[serde(default)]
    pub query: String,
    /// The answer text.
    #[serde(default)]
    pub answer: String,
    /// Chunks retrieved for the answer.
    #[serde(default)]
    pub chunks: Vec<RetrievedChunk>,
    /// Ids of the documents the answer cited.
    #[serde(default)]
    pub citations: Vec<String>,
    /// Conversation the answer belongs to.
    #[serde(default)]
    pub conversation_id: Option<String>,
}

impl NewFeedback {
    /// Checks ranges and sizes.
    ///
    /// # Errors
    /// `invalid_input` naming the field.
    pub fn validate(&self) -> Result<()> {
        let id = self.request_id.trim();
        if id.is_empty() || id.len() > 128 {
            return Err(Error::invalid_field(
                "request_id",
                "must be 1-128 characters",
            ));
        }
        if !(1..=5).contains(&self.rating) {
            return Err(Error::invalid_field("rating", "must be between 1 and 5"));
        }
        if self
            .comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
        {
            return Err(Error::invalid_field(
                "comment",
                format!("longer than {MAX_COMMENT_CHARS} characters"),
            ));
        }
        if self.chunks.len() > 200 {
            return Err(Error::invalid_field("chunks", "more than 200 chunks"));
        }
        if let Some(c) = self.chunks.iter().find(|c| c.document_id.trim().is_empty()) {
            return Err(Error::invalid_field(
                "chunks",
                format!("chunk {:?} has no document_id", c.chunk_id),
            ));
        }
        Ok(())
    }
}

/// Stored feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// Id (UUIDv7).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Who rated.
    pub user: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// What was recorded.
    #[serde(flatten)]
    pub body: NewFeedback,
}

/// Rating statistics for one model or collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatingStats {
    /// Model or collection name (`"(none)"` when not given).
    pub key: String,
    /// Ratings.
    pub count: u64,
    /// Mean rating.
    pub mean: f64,
    /// Ratings >= [`POSITIVE_RATING`].
    pub positive: u64,
}

/// Ratings by model and by collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedbackReport {
    /// All ratings.
    pub total: u64,
    /// Per model, by name.
    pub by_model: Vec<RatingStats>,
    /// Per collection, by name.
    pub by_collection: Vec<RatingStats>,
}

/// Which feedback to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeedbackFilter {
    /// Only this model.
    pub model: Option<String>,
    /// Only this collection.
    pub collection: Option<String>,
    /// Only ratings at or above.
    pub min_rating: Option<u8>,
    /// Most records (default and cap 10,000).
    pub limit: Option<u32>,
}

/// Feedback storage, scoped by the caller's tenant.
#[async_trait]
pub trait FeedbackStore: Send + Sync {
    /// Records feedback from the caller.
    ///
    /// # Errors
    /// Invalid input; storage failures.
    async fn record(&self, ctx: &RequestContext, feedback: NewFeedback) -> Result<Feedback>;

    /// The tenant's feedback, newest first.
    ///
    /// # Errors
    /// Storage failures.
    async fn list(&self, ctx: &RequestContext, filter: &FeedbackFilter) -> Result<Vec<Feedback>>;

    /// Ratings by model and collection for the tenant.
    ///
    /// # Errors
    /// Storage failures.
    async fn report(&self, ctx: &RequestContext) -> Result<FeedbackReport>;
}

/// What [`export_beir`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    /// Queries (positively rated answers with at least one retrieved document).
    pub queries: usize,
    /// Corpus documents.
    pub documents: usize,
    /// Judgement lines.
    pub judgements: usize,
}

/// The three files of a BEIR dataset, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeirFiles {
    /// `corpus.jsonl`.
    pub corpus: String,
    /// `queries.jsonl`.
    pub queries: String,
    /// `qrels/test.tsv` (with header line).
    pub qrels: String,
    /// Counts.
    pub summary: ExportSummary,
}

/// Builds the BEIR files for `feedback` (see the module docs for the grading).
pub fn beir_files(feedback: &[Feedback]) -> BeirFiles {
    // Corpus: every retrieved document, its distinct chunk texts joined in chunk order.
    let mut docs: BTreeMap<String, (String, Vec<(String, String)>)> = BTreeMap::new();
    for f in feedback {
        for c in &f.body.chunks {
            let e = docs
                .entry(c.document_id.clone())
                .or_insert_with(|| (c.title.clone().unwrap_or_default(), Vec::new()));
            if !e.1.iter().any(|(id, _)| *id == c.chunk_id) {
                e.1.push((c.chunk_id.clone(), c.text.clone()));
            }
        }
    }
    let mut out = BeirFiles {
        qrels: "query-id\tcorpus-id\tscore\n".into(),
        ..BeirFiles::default()
    };
    for (id, (title, chunks)) in &docs {
        if id.contains(['\t', '\n']) {
            continue;
        }
        let text = chunks
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        out.corpus
            .push_str(&serde_json::json!({"_id": id, "title": title, "text": text}).to_string());
        out.corpus.push('\n');
        out.summary.documents += 1;
    }
    for f in feedback {
        if f.body.rating < POSITIVE_RATING || f.body.query.trim().is_empty() {
            continue;
        }
        let cited: HashSet<&str> = f.body.citations.iter().map(String::as_str).collect();
        let mut judged: Vec<(&str, u8)> = Vec::new();
        for c in &f.body.chunks {
            // Ids with tabs or newlines would break the TSV; the pipeline never makes them.
            if c.document_id.contains(['\t', '\n'])
                || judged.iter().any(|(d, _)| *d == c.document_id)
            {
                continue;
            }
            let grade = if cited.is_empty() || cited.contains(c.document_id.as_str()) {
                2
            } else {
                1
            };
            judged.push((&c.document_id, grade));
        }
        if judged.is_empty() {
            continue;
        }
        out.queries
            .push_str(&serde_json::json!({"_id": f.id, "text": f.body.query}).to_string());
        out.queries.push('\n');
        out.summary.queries += 1;
        for (d, g) in judged {
            out.qrels.push_str(&format!("{}\t{d}\t{g}\n", f.id));
            out.summary.judgements += 1;
        }
    }
    out
}

/// Writes [`beir_files`] under `dir`: `corpus.jsonl`, `queries.jsonl` and `qrels/test.tsv`.
///
/// # Errors
/// `invalid_input` when the files cannot be written.
pub fn export_beir(feedback: &[Feedback], dir: &Path) -> Result<ExportSummary> {
    let files = beir_files(feedback);
    let write = |path: std::path::PathBuf, text: &str| {
        std::fs::write(&path, text)
            .map_err(|e| Error::invalid_input(format!("cannot write {}: {e}", path.display())))
    };
    std::fs::create_dir_all(dir.join("qrels"))
        .map_err(|e| Error::invalid_input(format!("cannot create {}: {e}", dir.display())))?;
    write(dir.join("corpus.jsonl"), &files.corpus)?;
    write(dir.join("queries.jsonl"), &files.queries)?;
    write(dir.join("qrels").join("test.tsv"), &files.qrels)?;
    Ok(files.summary)
}
