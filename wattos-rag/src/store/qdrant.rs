//! Qdrant vector store (feature `qdrant`, crate `qdrant-client`, gRPC).
//!
//! One collection for all tenants (Qdrant's recommended multitenancy): every point carries a
//! `tenant` payload field with a keyword index created with `is_tenant = true`, so Qdrant keeps each
//! tenant's points together, and every request is built with a `tenant == caller` condition — there
//! is no code path that searches, counts or deletes without it.
//!
//! Payload of a point:
//!
//! | field | content |
//! | --- | --- |
//! | `tenant` | tenant id (keyword index, `is_tenant`) |
//! | `record_id` | the record id (point ids are UUIDs derived from tenant and record id) |
//! | `document_id` | keyword index; `delete_documents` and `replace_document` filter on it |
//! | `text` | chunk text |
//! | `metadata` | the metadata object, returned as is |
//! | `f` | scalar metadata values under escaped keys, the target of metadata filters |
//!
//! Filters are translated to Qdrant conditions with the same semantics as
//! [`Filter::matches`]: numbers compare as f64 (a closed range), a missing key fails `Eq`/`In` and
//! so passes `Not`, `And([])` matches everything and `Or([])` nothing. Keys may contain `.`, which
//! Qdrant reads as a path, so filterable copies live under `f` with `_` escaped as `__` and `.` as
//! `_d`.
//!
//! Consistency: every write waits for Qdrant to apply it (`wait = true`). Qdrant has no
//! multi-request transactions: [`VectorStore::replace_document`] upserts the new chunks first and
//! then deletes the document's other chunks, so a concurrent reader may briefly see both, never
//! neither; `delete_where` returns the count taken just before the delete.

use async_trait::async_trait;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter as QFilter, KeywordIndexParamsBuilder,
    PointId, PointStruct, QueryPointsBuilder, Range, ScoredPoint, UpsertPointsBuilder,
    VectorParamsBuilder, vectors_config,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use wattos_core::vector_store::{
    DOCUMENT_ID_KEY, Filter, Hit, VectorQuery, VectorRecord, VectorStore, check_same_document,
    sort_hits,
};
use wattos_core::{Error, RequestContext, Result};

const TENANT: &str = "tenant";
const RECORD_ID: &str = "record_id";
const DOCUMENT_ID: &str = "document_id";
const TEXT: &str = "text";
const METADATA: &str = "metadata";
const FILTERABLE: &str = "f";

/// Qdrant-backed [`VectorStore`]. Cheap to clone.
#[derive(Clone)]
pub struct QdrantStore {
    client: std::sync::Arc<Qdrant>,
    collection: String,
    dims: usize,
}

impl std::fmt::Debug for QdrantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantStore")
            .field("collection", &self.collection)
            .field("dims", &self.dims)
            .finish()
    }
}

fn q_err(what: &str, e: QdrantError) -> Error {
    Error::unavailable(format!("qdrant: {what}: {e}")).with_source(e)
}

/// Point id of a record: a UUID made from SHA-256 of tenant and record id, so two tenants can use
/// the same record id and any string id maps to a valid Qdrant id.
fn point_id(tenant: &str, id: &str) -> PointId {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0u8]);
    h.update(id.as_bytes());
    let d = hex::encode(&h.finalize()[..16]);
    PointId::from(format!(
        "{}-{}-{}-{}-{}",
        &d[0..8],
        &d[8..12],
        &d[12..16],
        &d[16..20],
        &d[20..32]
    ))
}

/// Injective escape of a metadata key into one path segment (no `.`).
fn filter_key(key: &str) -> String {
    let mut out = String::with_capacity(FILTERABLE.len() + 1 + key.len());
    out.push_str(FILTERABLE);
    out.push('.');
    for c in key.chars() {
        match c {
            '_' => out.push_str("__"),
            '.' => out.push_str("_d"),
            c => out.push(c),
        }
    }
    out
}

fn escaped(key: &str) -> String {
    filter_key(key)[FILTERABLE.len() + 1..].to_owned()
}

/// Always true for this store's points (every point has a tenant).
fn always() -> Condition {
    QFilter::must_not([Condition::is_empty(TENANT)]).into()
}

/// Always false for this store's points.
fn never() -> Condition {
    Condition::is_empty(TENANT)
}

fn in_condition(key: &str, values: &[Value]) -> Condition {
    if key == DOCUMENT_ID_KEY {
        // `document_id` is a string: other value types never match it.
        let ids: Vec<String> = values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        return if ids.is_empty() {
            never()
        } else {
            Condition::matches(DOCUMENT_ID, ids)
        };
    }
    let field = filter_key(key);
    let strings: Vec<String> = values
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let mut any: Vec<Condition> = Vec::new();
    if !strings.is_empty() {
        any.push(Condition::matches(field.clone(), strings));
    }
    for v in values {
        match v {
            Value::Bool(b) => any.push(Condition::matches(field.clone(), *b)),
            // Numbers compare as f64 in `Filter::matches`: a closed range does the same for
            // integer and float payloads.
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    any.push(Condition::range(
                        field.clone(),
                        Range {
                            gte: Some(x),
                            lte: Some(x),
                            ..Default::default()
                        },
                    ));
                }
            }
            _ => {}
        }
    }
    match any.len() {
        0 => never(),
        1 => any.pop().unwrap_or_else(never),
        _ => QFilter::should(any).into(),
    }
}

/// The Qdrant condition with the semantics of [`Filter::matches`].
fn condition(f: &Filter) -> Condition {
    match f {
        Filter::Eq { key, value } => in_condition(key, std::slice::from_ref(value)),
        Filter::In { key, values } => in_condition(key, values),
        Filter::And(fs) if fs.is_empty() => always(),
        Filter::Or(fs) if fs.is_empty() => never(),
        Filter::And(fs) => QFilter::must(fs.iter().map(condition)).into(),
        Filter::Or(fs) => QFilter::should(fs.iter().map(condition)).into(),
        Filter::Not(inner) => QFilter::must_not([condition(inner)]).into(),
        // `Filter` is non-exhaustive: an unknown condition matches nothing rather than everything.
        #[allow(unreachable_patterns)]
        _ => never(),
    }
}

/// `tenant == ctx.tenant` AND the optional filter: the only way this store builds a filter.
fn scoped(ctx: &RequestContext, filter: Option<&Filter>) -> QFilter {
    let mut must = vec![Condition::matches(TENANT, ctx.tenant().as_str().to_owned())];
    if let Some(f) = filter {
        must.push(condition(f));
    }
    QFilter::must(must)
}

fn payload(tenant: &str, r: &VectorRecord) -> Payload {
    let mut filterable = Map::new();
    for (k, v) in &r.metadata {
        if matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            filterable.insert(escaped(k), v.clone());
        }
    }
    let mut p = Map::new();
    p.insert(TENANT.into(), Value::String(tenant.to_owned()));
    p.insert(RECORD_ID.into(), Value::String(r.id.clone()));
    p.insert(DOCUMENT_ID.into(), Value::String(r.document_id.clone()));
    p.insert(TEXT.into(), Value::String(r.text.clone()));
    p.insert(METADATA.into(), Value::Object(r.metadata.clone()));
    p.insert(FILTERABLE.into(), Value::Object(filterable));
    Payload::from(p)
}

fn hit(p: ScoredPoint) -> Result<Hit> {
    let mut payload: Map<String, Value> = p
        .payload
        .into_iter()
        .map(|(k, v)| (k, Value::from(v)))
        .collect();
    let mut string = |key: &str| match payload.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(Error::upstream(
            "qdrant",
            None,
            false,
            format!("qdrant: point without a string `{key}` payload"),
        )),
    };
    let id = string(RECORD_ID)?;
    let document_id = string(DOCUMENT_ID)?;
    let text = string(TEXT)?;
    let metadata = match payload.remove(METADATA) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    Ok(Hit {
        id,
        document_id,
        score: p.score,
        text,
        metadata,
    })
}

impl QdrantStore {
    /// Connects to the gRPC endpoint `url` (e.g. `http://127.0.0.1:6334`) and prepares
    /// `collection` (see [`QdrantStore::with_client`]).
    ///
    /// # Errors
    /// As for [`QdrantStore::with_client`]; a malformed URL.
    pub async fn connect(url: &str, collection: &str, dims: usize) -> Result<Self> {
        let client = Qdrant::from_url(url)
            .build()
            .map_err(|e| q_err("connect", e))?;
        Self::with_client(client, collection, dims).await
    }

    /// Uses a configured client (API key, timeouts, TLS); creates `collection` (cosine distance,
    /// `dims`-long vectors) and its `tenant` (`is_tenant`) and `document_id` keyword indexes if
    /// missing.
    ///
    /// # Errors
    /// Invalid collection name (letters, digits, `_`, `-`; 1..=128) or dimensions;
    /// [`wattos_core::ErrorKind::Unavailable`] when Qdrant cannot be reached;
    /// [`wattos_core::ErrorKind::Conflict`] when the collection exists with another vector size.
    pub async fn with_client(client: Qdrant, collection: &str, dims: usize) -> Result<Self> {
        if collection.is_empty()
            || collection.len() > 128
            || !collection
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Error::invalid_field(
                "collection",
                "must be 1..=128 letters, digits, '_' or '-'",
            ));
        }
        if dims == 0 || dims > 65_536 {
            return Err(Error::invalid_field("dimensions", "must be 1..=65536"));
        }
        let store = Self {
            client: std::sync::Arc::new(client),
            collection: collection.to_owned(),
            dims,
        };
        store.prepare().await?;
        Ok(store)
    }

    /// The underlying client (e.g. to drop a test collection).
    pub fn client(&self) -> &Qdrant {
        &self.client
    }

    async fn prepare(&self) -> Result<()> {
        let c = &self.collection;
        let exists = self
            .client
            .collection_exists(c.as_str())
            .await
            .map_err(|e| q_err("collection exists", e))?;
        if !exists {
            let created =
                self.client
                    .create_collection(CreateCollectionBuilder::new(c.as_str()).vectors_config(
                        VectorParamsBuilder::new(self.dims as u64, Distance::Cosine),
                    ))
                    .await;
            // Another process may have created it meanwhile: only fail if it is still missing.
            if let Err(e) = created {
                let now = self
                    .client
                    .collection_exists(c.as_str())
                    .await
                    .map_err(|e| q_err("collection exists", e))?;
                if !now {
                    return Err(q_err("create collection", e));
                }
            }
        }
        let info = self
            .client
            .collection_info(c.as_str())
            .await
            .map_err(|e| q_err("collection info", e))?;
        let size = info
            .result
            .and_then(|i| i.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config)
            .and_then(|c| match c {
                vectors_config::Config::Params(p) => Some(p.size),
                vectors_config::Config::ParamsMap(_) => None,
            });
        match size {
            Some(s) if s == self.dims as u64 => {}
            Some(s) => {
                return Err(Error::conflict(format!(
                    "collection {c} stores {s}-dimensional vectors, not {}",
                    self.dims
                )));
            }
            None => {
                return Err(Error::conflict(format!(
                    "collection {c} has no single unnamed vector"
                )));
            }
        }
        // Creating an existing payload index is a no-op in Qdrant.
        self.client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(c.as_str(), TENANT, FieldType::Keyword)
                    .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                    .wait(true),
            )
            .await
            .map_err(|e| q_err("create tenant index", e))?;
        self.client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(c.as_str(), DOCUMENT_ID, FieldType::Keyword)
                    .wait(true),
            )
            .await
            .map_err(|e| q_err("create document index", e))?;
        Ok(())
    }

    fn points(&self, tenant: &str, records: &[VectorRecord]) -> Vec<PointStruct> {
        records
            .iter()
            .map(|r| {
                PointStruct::new(
                    point_id(tenant, &r.id),
                    r.vector.clone(),
                    payload(tenant, r),
                )
            })
            .collect()
    }

    async fn count_filter(&self, filter: QFilter) -> Result<u64> {
        let r = self
            .client
            .count(
                CountPointsBuilder::new(self.collection.as_str())
                    .filter(filter)
                    .exact(true),
            )
            .await
            .map_err(|e| q_err("count", e))?;
        Ok(r.result.map_or(0, |c| c.count))
    }

    async fn delete_filter(&self, filter: QFilter) -> Result<()> {
        self.client
            .delete_points(
                DeletePointsBuilder::new(self.collection.as_str())
                    .points(filter)
                    .wait(true),
            )
            .await
            .map_err(|e| q_err("delete", e))?;
        Ok(())
    }
}

#[async_trait]
impl VectorStore for QdrantStore {
    fn name(&self) -> &str {
        "qdrant"
    }

    fn dimensions(&self) -> usize {
        self.dims
    }

    async fn upsert(&self, ctx: &RequestContext, records: Vec<VectorRecord>) -> Result<()> {
        for r in &records {
            r.validate(self.dims)?;
        }
        if records.is_empty() {
            return Ok(());
        }
        // One request: Qdrant applies a single upsert as one operation.
        let points = self.points(ctx.tenant().as_str(), &records);
        self.client
            .upsert_points(UpsertPointsBuilder::new(self.collection.as_str(), points).wait(true))
            .await
            .map_err(|e| q_err("upsert", e))?;
        Ok(())
    }

    async fn delete_where(&self, ctx: &RequestContext, filter: &Filter) -> Result<u64> {
        filter.validate()?;
        let n = self.count_filter(scoped(ctx, Some(filter))).await?;
        if n > 0 {
            self.delete_filter(scoped(ctx, Some(filter))).await?;
        }
        Ok(n)
    }

    async fn replace_document(
        &self,
        ctx: &RequestContext,
        document_id: &str,
        records: Vec<VectorRecord>,
    ) -> Result<()> {
        check_same_document(document_id, &records, self.dims)?;
        let tenant = ctx.tenant().as_str();
        let keep: Vec<PointId> = records.iter().map(|r| point_id(tenant, &r.id)).collect();
        if !records.is_empty() {
            let points = self.points(tenant, &records);
            self.client
                .upsert_points(
                    UpsertPointsBuilder::new(self.collection.as_str(), points).wait(true),
                )
                .await
                .map_err(|e| q_err("upsert", e))?;
        }
        // Then drop the document's chunks that the new version does not have.
        let mut stale = QFilter::must([
            Condition::matches(TENANT, tenant.to_owned()),
            Condition::matches(DOCUMENT_ID, document_id.to_owned()),
        ]);
        if !keep.is_empty() {
            stale.must_not = vec![Condition::has_id(keep)];
        }
        self.delete_filter(stale).await
    }

    async fn search(&self, ctx: &RequestContext, query: &VectorQuery) -> Result<Vec<Hit>> {
        query.validate(self.dims)?;
        if let Some(f) = &query.filter {
            f.validate()?;
        }
        let r = self
            .client
            .query(
                QueryPointsBuilder::new(self.collection.as_str())
                    .query(query.vector.clone())
                    .filter(scoped(ctx, query.filter.as_ref()))
                    .limit(query.top_k as u64)
                    .with_payload(true),
            )
            .await
            .map_err(|e| q_err("query", e))?;
        let mut hits = r.result.into_iter().map(hit).collect::<Result<Vec<_>>>()?;
        sort_hits(&mut hits);
        Ok(hits)
    }

    async fn count(&self, ctx: &RequestContext, filter: Option<&Filter>) -> Result<u64> {
        if let Some(f) = filter {
            f.validate()?;
        }
        self.count_filter(scoped(ctx, filter)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[test]
    fn keys_escape_injectively_and_ids_are_uuids() {
        assert_eq!(filter_key("a.b"), "f.a_db");
        assert_eq!(filter_key("a_db"), "f.a__db");
        assert_ne!(filter_key("a.b"), filter_key("a_db"));
        let id = format!("{:?}", point_id("t", "x"));
        assert_ne!(
            format!("{:?}", point_id("t", "x")),
            format!("{:?}", point_id("u", "x"))
        );
        assert!(id.contains('-'), "{id}");
    }

    /// Runs against `QDRANT_URL` (gRPC, e.g. `http://127.0.0.1:6334`); skips loudly without it.
    #[tokio::test]
    async fn qdrant_passes_conformance_and_restart() {
        let Ok(url) = std::env::var("QDRANT_URL") else {
            wattos_core::test_utils::skip::skip_optional(
                "qdrant conformance",
                "QDRANT_URL is not set (no Qdrant server)",
            );
            return;
        };
        let collection = format!("wattos_conf_{}", std::process::id());
        let store = QdrantStore::connect(&url, &collection, conformance::DIMS)
            .await
            .unwrap();
        conformance::run_all(&store).await.unwrap();
        let (u, c) = (url.clone(), collection.clone());
        conformance::restart(&store, move || async move {
            QdrantStore::connect(&u, &c, conformance::DIMS).await
        })
        .await
        .unwrap();
        assert!(
            QdrantStore::connect(&url, &collection, 8).await.is_err(),
            "dimension mismatch detected"
        );
        store
            .client()
            .delete_collection(collection.as_str())
            .await
            .unwrap();
    }
}
