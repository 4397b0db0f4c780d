//! The vector store seam: tenant-namespaced upsert, delete, search and count.
//!
//! Every method takes a [`RequestContext`]; a store keeps each tenant's records in their own namespace
//! and never returns another tenant's records. There is no tenant-less way to read or write.
//!
//! Records carry the chunk text and free-form JSON metadata next to the vector, so a search hit is
//! enough to build a cited answer. [`Filter`] expresses metadata conditions every backend can translate
//! (embedded scan, SQL on `jsonb`, Qdrant payload conditions).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::context::RequestContext;
use crate::error::{Error, Result};

/// Largest `top_k` a search may ask for.
pub const MAX_TOP_K: usize = 10_000;

/// One stored chunk: id, owning document, vector, text and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorRecord {
    /// Unique id of the chunk within the tenant (e.g. `"{document_id}#{index}"`).
    pub id: String,
    /// The document this chunk belongs to; [`VectorStore::delete_documents`] removes by it.
    pub document_id: String,
    /// The embedding.
    pub vector: Vec<f32>,
    /// The chunk text, returned with hits.
    pub text: String,
    /// Free-form metadata (title, source, offsets, language, ...), filterable with [`Filter`].
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl VectorRecord {
    /// A record with empty metadata.
    pub fn new(
        id: impl Into<String>,
        document_id: impl Into<String>,
        vector: Vec<f32>,
        text: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            document_id: document_id.into(),
            vector,
            text: text.into(),
            metadata: Map::new(),
        }
    }

    /// Adds one metadata entry.
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Checks ids, vector length and finiteness against `dimensions`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] naming the record.
    pub fn validate(&self, dimensions: usize) -> Result<()> {
        if self.id.is_empty() || self.document_id.is_empty() {
            return Err(Error::invalid_field(
                "id",
                "record id and document_id must not be empty",
            ));
        }
        if self.vector.len() != dimensions {
            return Err(Error::invalid_field(
                "vector",
                format!(
                    "record {}: expected {dimensions} dimensions, got {}",
                    self.id,
                    self.vector.len()
                ),
            ));
        }
        if self.vector.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid_field(
                "vector",
                format!("record {}: vector has a non-finite value", self.id),
            ));
        }
        Ok(())
    }
}

/// A metadata condition. `document_id` is addressable as a key too.
///
/// ```
/// use serde_json::json;
/// use wattos_core::vector_store::Filter;
///
/// let f = Filter::eq("lang", "de").and(Filter::any_of("year", [json!(2024), json!(2025)]));
/// let meta = json!({"lang": "de", "year": 2025});
/// assert!(f.matches("doc-1", meta.as_object().unwrap()));
/// assert!(!Filter::eq("lang", "en").matches("doc-1", meta.as_object().unwrap()));
/// assert!(Filter::eq("document_id", "doc-1").matches("doc-1", meta.as_object().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Filter {
    /// `metadata[key] == value`.
    Eq {
        /// Metadata key.
        key: String,
        /// Expected value (string, number or bool).
        value: Value,
    },
    /// `metadata[key]` is one of `values`.
    In {
        /// Metadata key.
        key: String,
        /// Accepted values.
        values: Vec<Value>,
    },
    /// Every inner filter matches (an empty list matches everything).
    And(Vec<Filter>),
    /// At least one inner filter matches (an empty list matches nothing).
    Or(Vec<Filter>),
    /// The inner filter does not match.
    Not(Box<Filter>),
}

/// The pseudo metadata key that addresses [`VectorRecord::document_id`] in filters.
pub const DOCUMENT_ID_KEY: &str = "document_id";

impl Filter {
    /// `metadata[key] == value`.
    pub fn eq(key: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Eq {
            key: key.into(),
            value: value.into(),
        }
    }

    /// `metadata[key]` in `values`.
    pub fn any_of(key: impl Into<String>, values: impl IntoIterator<Item = Value>) -> Self {
        Self::In {
            key: key.into(),
            values: values.into_iter().collect(),
        }
    }

    /// Both `self` and `other`.
    pub fn and(self, other: Filter) -> Self {
        match self {
            Self::And(mut v) => {
                v.push(other);
                Self::And(v)
            }
            s => Self::And(vec![s, other]),
        }
    }

    /// Either `self` or `other`.
    pub fn or(self, other: Filter) -> Self {
        match self {
            Self::Or(mut v) => {
                v.push(other);
                Self::Or(v)
            }
            s => Self::Or(vec![s, other]),
        }
    }

    /// The negation of `self`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Self {
        Self::Not(Box::new(self))
    }

    /// Evaluates the filter against a record's document id and metadata.
    pub fn matches(&self, document_id: &str, metadata: &Map<String, Value>) -> bool {
        let lookup = |key: &str| -> Option<Value> {
            if key == DOCUMENT_ID_KEY {
                Some(Value::String(document_id.to_owned()))
            } else {
                metadata.get(key).cloned()
            }
        };
        match self {
            Self::Eq { key, value } => lookup(key).is_some_and(|v| values_equal(&v, value)),
            Self::In { key, values } => {
                lookup(key).is_some_and(|v| values.iter().any(|x| values_equal(&v, x)))
            }
            Self::And(fs) => fs.iter().all(|f| f.matches(document_id, metadata)),
            Self::Or(fs) => fs.iter().any(|f| f.matches(document_id, metadata)),
            Self::Not(f) => !f.matches(document_id, metadata),
        }
    }

    /// Rejects keys backends cannot address safely (empty, or with characters other than ASCII
    /// letters, digits, `_`, `-`, `.`) and nested values.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] naming the key.
    pub fn validate(&self) -> Result<()> {
        let check_key = |k: &str| {
            if k.is_empty()
                || k.len() > 128
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                Err(Error::invalid_field(
                    "filter",
                    format!("invalid metadata key {k:?}"),
                ))
            } else {
                Ok(())
            }
        };
        let check_value = |v: &Value| {
            if v.is_array() || v.is_object() || v.is_null() {
                Err(Error::invalid_field(
                    "filter",
                    "filter values must be strings, numbers or booleans",
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Self::Eq { key, value } => {
                check_key(key)?;
                check_value(value)
            }
            Self::In { key, values } => {
                check_key(key)?;
                values.iter().try_for_each(check_value)
            }
            Self::And(fs) | Self::Or(fs) => fs.iter().try_for_each(Filter::validate),
            Self::Not(f) => f.validate(),
        }
    }
}

/// Numbers compare by value (`1 == 1.0`), everything else structurally.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A nearest-neighbour query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorQuery {
    /// The query embedding.
    pub vector: Vec<f32>,
    /// How many hits to return, 1..=[`MAX_TOP_K`].
    pub top_k: usize,
    /// Only records matching this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

impl VectorQuery {
    /// A query for the `top_k` nearest records.
    pub fn new(vector: Vec<f32>, top_k: usize) -> Self {
        Self {
            vector,
            top_k,
            filter: None,
        }
    }

    /// Restricts the query to records matching `filter`.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Checks `top_k`, the vector and the filter.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`].
    pub fn validate(&self, dimensions: usize) -> Result<()> {
        if self.top_k == 0 || self.top_k > MAX_TOP_K {
            return Err(Error::invalid_field(
                "top_k",
                format!("must be 1..={MAX_TOP_K}"),
            ));
        }
        if self.vector.len() != dimensions {
            return Err(Error::invalid_field(
                "vector",
                format!(
                    "expected {dimensions} dimensions, got {}",
                    self.vector.len()
                ),
            ));
        }
        if self.vector.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid_field(
                "vector",
                "query vector has a non-finite value",
            ));
        }
        self.filter.as_ref().map_or(Ok(()), Filter::validate)
    }
}

/// One search result: the record (without its vector) and its cosine similarity to the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Record id.
    pub id: String,
    /// Owning document.
    pub document_id: String,
    /// Cosine similarity in -1..=1, higher is closer.
    pub score: f32,
    /// Chunk text.
    pub text: String,
    /// Record metadata.
    pub metadata: Map<String, Value>,
}

/// A tenant-namespaced vector store.
///
/// Scores are cosine similarities, higher is better; hits come sorted by score, best first, ties by id.
/// Upserting an existing id replaces the record. Implementations must keep tenants apart: nothing
/// written under one tenant's context is visible under another's.
///
/// ```
/// use std::sync::Arc;
/// use async_trait::async_trait;
/// use tokio::sync::Mutex;
/// use wattos_core::vector_store::{Filter, Hit, VectorQuery, VectorRecord, VectorStore};
/// use wattos_core::{RequestContext, Result, TenantId};
///
/// /// A brute-force store for one tenant at a time (a sketch; real stores keep tenants apart).
/// #[derive(Default)]
/// struct Tiny(Mutex<Vec<(String, VectorRecord)>>);
///
/// #[async_trait]
/// impl VectorStore for Tiny {
///     fn name(&self) -> &str { "tiny" }
///     fn dimensions(&self) -> usize { 2 }
///     async fn upsert(&self, ctx: &RequestContext, records: Vec<VectorRecord>) -> Result<()> {
///         let mut g = self.0.lock().await;
///         for r in records {
///             r.validate(2)?;
///             g.retain(|(t, x)| !(t == ctx.tenant().as_str() && x.id == r.id));
///             g.push((ctx.tenant().to_string(), r));
///         }
///         Ok(())
///     }
///     async fn delete_where(&self, ctx: &RequestContext, f: &Filter) -> Result<u64> {
///         let mut g = self.0.lock().await;
///         let before = g.len();
///         g.retain(|(t, r)| !(t == ctx.tenant().as_str() && f.matches(&r.document_id, &r.metadata)));
///         Ok((before - g.len()) as u64)
///     }
///     async fn search(&self, ctx: &RequestContext, q: &VectorQuery) -> Result<Vec<Hit>> {
///         q.validate(2)?;
///         let g = self.0.lock().await;
///         let mut hits: Vec<Hit> = g.iter()
///             .filter(|(t, r)| t == ctx.tenant().as_str()
///                 && q.filter.as_ref().is_none_or(|f| f.matches(&r.document_id, &r.metadata)))
///             .map(|(_, r)| Hit { id: r.id.clone(), document_id: r.document_id.clone(),
///                 score: wattos_core::vector_store::cosine(&q.vector, &r.vector),
///                 text: r.text.clone(), metadata: r.metadata.clone() })
///             .collect();
///         wattos_core::vector_store::sort_hits(&mut hits);
///         hits.truncate(q.top_k);
///         Ok(hits)
///     }
///     async fn count(&self, ctx: &RequestContext, f: Option<&Filter>) -> Result<u64> {
///         let g = self.0.lock().await;
///         Ok(g.iter().filter(|(t, r)| t == ctx.tenant().as_str()
///             && f.is_none_or(|f| f.matches(&r.document_id, &r.metadata))).count() as u64)
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store: Arc<dyn VectorStore> = Arc::new(Tiny::default());
/// let acme = RequestContext::system(TenantId::new("acme")?);
/// let other = RequestContext::system(TenantId::new("other")?);
/// store.upsert(&acme, vec![VectorRecord::new("d1#0", "d1", vec![1.0, 0.0], "hello")]).await?;
/// let hits = store.search(&acme, &VectorQuery::new(vec![1.0, 0.0], 5)).await?;
/// assert_eq!(hits[0].id, "d1#0");
/// assert!(store.search(&other, &VectorQuery::new(vec![1.0, 0.0], 5)).await?.is_empty());
/// assert_eq!(store.delete_documents(&acme, &["d1".into()]).await?, 1);
/// # Ok::<_, wattos_core::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Backend name for logs and metrics.
    fn name(&self) -> &str;

    /// Length of every stored vector.
    fn dimensions(&self) -> usize;

    /// Inserts or replaces records by id, all or nothing.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for a bad record (nothing is written); backend failures as
    /// [`crate::ErrorKind::Unavailable`] / [`crate::ErrorKind::Upstream`].
    async fn upsert(&self, ctx: &RequestContext, records: Vec<VectorRecord>) -> Result<()>;

    /// Deletes every record matching `filter`; returns how many went.
    ///
    /// # Errors
    /// Invalid filters; backend failures.
    async fn delete_where(&self, ctx: &RequestContext, filter: &Filter) -> Result<u64>;

    /// The `top_k` records nearest to the query vector that match its filter.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for a bad query; backend failures.
    async fn search(&self, ctx: &RequestContext, query: &VectorQuery) -> Result<Vec<Hit>>;

    /// How many records match `filter` (all of the tenant's records when `None`).
    ///
    /// # Errors
    /// Backend failures.
    async fn count(&self, ctx: &RequestContext, filter: Option<&Filter>) -> Result<u64>;

    /// Deletes every record of the given documents; returns how many went.
    ///
    /// # Errors
    /// Backend failures.
    async fn delete_documents(&self, ctx: &RequestContext, document_ids: &[String]) -> Result<u64> {
        if document_ids.is_empty() {
            return Ok(0);
        }
        let filter = Filter::any_of(
            DOCUMENT_ID_KEY,
            document_ids.iter().map(|d| Value::String(d.clone())),
        );
        self.delete_where(ctx, &filter).await
    }

    /// Replaces all records of `document_id` with `records`.
    ///
    /// The default deletes then upserts (two steps); stores that can do better override it so that a
    /// reader sees either the old or the new chunks, never a mix.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] when a record belongs to another document; backend failures.
    async fn replace_document(
        &self,
        ctx: &RequestContext,
        document_id: &str,
        records: Vec<VectorRecord>,
    ) -> Result<()> {
        check_same_document(document_id, &records, self.dimensions())?;
        self.delete_documents(ctx, &[document_id.to_owned()])
            .await?;
        if records.is_empty() {
            return Ok(());
        }
        self.upsert(ctx, records).await
    }
}

/// Validates `records` for [`VectorStore::replace_document`]: each valid and owned by `document_id`.
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] naming the offending record.
pub fn check_same_document(
    document_id: &str,
    records: &[VectorRecord],
    dimensions: usize,
) -> Result<()> {
    for r in records {
        r.validate(dimensions)?;
        if r.document_id != document_id {
            return Err(Error::invalid_field(
                "document_id",
                format!(
                    "record {} belongs to {}, not {document_id}",
                    r.id, r.document_id
                ),
            ));
        }
    }
    Ok(())
}

/// Cosine similarity; 0 when either vector is all zeros.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Sorts hits best first, ties by id, so every backend orders equal scores the same way.
pub fn sort_hits(hits: &mut [Hit]) {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
}

#[async_trait]
impl<T: VectorStore + ?Sized> VectorStore for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn dimensions(&self) -> usize {
        (**self).dimensions()
    }
    async fn upsert(&self, ctx: &RequestContext, records: Vec<VectorRecord>) -> Result<()> {
        (**self).upsert(ctx, records).await
    }
    async fn delete_where(&self, ctx: &RequestContext, filter: &Filter) -> Result<u64> {
        (**self).delete_where(ctx, filter).await
    }
    async fn search(&self, ctx: &RequestContext, query: &VectorQuery) -> Result<Vec<Hit>> {
        (**self).search(ctx, query).await
    }
    async fn count(&self, ctx: &RequestContext, filter: Option<&Filter>) -> Result<u64> {
        (**self).count(ctx, filter).await
    }
    async fn delete_documents(&self, ctx: &RequestContext, document_ids: &[String]) -> Result<u64> {
        (**self).delete_documents(ctx, document_ids).await
    }
    async fn replace_document(
        &self,
        ctx: &RequestContext,
        document_id: &str,
        records: Vec<VectorRecord>,
    ) -> Result<()> {
        (**self).replace_document(ctx, document_id, records).await
    }
}

/// Compile-time check that the trait stays object safe.
#[allow(dead_code)]
fn _object_safe(_: &dyn VectorStore) {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn filter_semantics() {
        let m = meta(json!({"lang": "de", "n": 2, "ok": true}));
        assert!(Filter::eq("n", 2.0).matches("d", &m));
        assert!(Filter::eq("ok", true).matches("d", &m));
        assert!(!Filter::eq("missing", "x").matches("d", &m));
        assert!(Filter::eq("missing", "x").not().matches("d", &m));
        assert!(Filter::And(vec![]).matches("d", &m));
        assert!(!Filter::Or(vec![]).matches("d", &m));
        assert!(
            Filter::eq("lang", "en")
                .or(Filter::eq("lang", "de"))
                .matches("d", &m)
        );
        assert!(Filter::any_of(DOCUMENT_ID_KEY, [json!("d")]).matches("d", &m));
    }

    #[test]
    fn filter_validation_rejects_odd_keys_and_nested_values() {
        assert!(Filter::eq("a'b", "x").validate().is_err());
        assert!(Filter::eq("a", json!([1])).validate().is_err());
        assert!(Filter::eq("a.b_c-d", 1).validate().is_ok());
    }

    #[test]
    fn query_and_record_validation() {
        assert!(VectorQuery::new(vec![1.0], 0).validate(1).is_err());
        assert!(VectorQuery::new(vec![1.0, 2.0], 1).validate(1).is_err());
        assert!(VectorQuery::new(vec![f32::NAN], 1).validate(1).is_err());
        assert!(
            VectorRecord::new("", "d", vec![1.0], "t")
                .validate(1)
                .is_err()
        );
        assert!(
            VectorRecord::new("a", "d", vec![1.0], "t")
                .validate(1)
                .is_ok()
        );
    }

    #[test]
    fn cosine_handles_zero_vectors() {
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
    }
}
