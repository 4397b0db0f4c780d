//! Long-term memory: namespaced, per tenant and user, searchable by meaning, with TTLs.
//!
//! [`MemoryStore`] is the seam. Three implementations share one engine ([`super::index`]):
//! [`InMemoryMemoryStore`] (process memory), and [`super::SqlMemoryStore`] over SQLite (embedded) or
//! Postgres (shared). Each keeps the memories themselves in its rows and, given a [`MemoryIndex`]
//! (any [`wattos_core::embedding::EmbeddingModel`] plus any [`wattos_core::vector_store::VectorStore`]),
//! ranks searches by embedding similarity; without an index, or when the index fails and keyword
//! fallback is on, it ranks by shared words weighted by rarity.
//!
//! Scoping: the tenant always comes from the [`RequestContext`]; below it a [`Namespace`] names a
//! user and a path of caller-chosen segments (`["prefs", "food"]`), like LangGraph's namespace
//! tuples. Searches and lists take a namespace *prefix* and never cross users.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wattos_core::vector_store::Filter;
use wattos_core::{Error, RequestContext, Result};

use super::index::{Engine, ExpiredKey, Rows};

pub use super::index::MemoryIndex;

/// Deepest namespace path.
pub const MAX_PATH_DEPTH: usize = 8;
/// Longest memory text, in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Largest `limit` of a search or list.
pub const MAX_LIMIT: usize = 1000;
/// Metadata keys starting with this are the store's own (rejected in callers' metadata).
pub const RESERVED_PREFIX: &str = "wattos_mem.";

/// Where memories live below the caller's tenant: one user and a path of caller-chosen segments.
///
/// The user is any non-empty string without control characters (up to 256 bytes; typically the
/// principal's subject, see [`Namespace::for_caller`]); segments are 1 to 64 ASCII letters, digits,
/// `_`, `-`, `.`, `:` or `@`, at most [`MAX_PATH_DEPTH`] of them.
///
/// ```
/// use wattos_agents::memory::Namespace;
/// let prefs = Namespace::new("ann", ["prefs"]).unwrap();
/// let food = prefs.child("food").unwrap();
/// assert!(prefs.is_prefix_of(&food));
/// assert!(!food.is_prefix_of(&prefs));
/// assert!(Namespace::new("ann", ["a/b"]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawNamespace")]
pub struct Namespace {
    user: String,
    path: Vec<String>,
}

#[derive(Deserialize)]
struct RawNamespace {
    user: String,
    #[serde(default)]
    path: Vec<String>,
}

impl TryFrom<RawNamespace> for Namespace {
    type Error = Error;
    fn try_from(r: RawNamespace) -> Result<Self> {
        Self::new(r.user, r.path)
    }
}

fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > 256 || user.chars().any(char::is_control) {
        return Err(Error::invalid_field(
            "user",
            "must be 1..=256 bytes without control characters",
        ));
    }
    Ok(())
}

fn check_segment(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "namespace",
            format!(
                "segment {s:?}: segments are 1-64 ASCII letters, digits, '_', '-', '.', ':' or '@'"
            ),
        ))
    }
}

impl Namespace {
    /// The namespace `path` of `user`.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] for a bad user, segment or depth.
    pub fn new(
        user: impl Into<String>,
        path: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self> {
        let user = user.into();
        check_user(&user)?;
        let path: Vec<String> = path.into_iter().map(Into::into).collect();
        if path.len() > MAX_PATH_DEPTH {
            return Err(Error::invalid_field(
                "namespace",
                format!("at most {MAX_PATH_DEPTH} segments"),
            ));
        }
        path.iter().try_for_each(|s| check_segment(s))?;
        Ok(Self { user, path })
    }

    /// The root namespace of `user` (every memory of the user is below it).
    ///
    /// # Errors
    /// A bad user id.
    pub fn user(user: impl Into<String>) -> Result<Self> {
        Self::new(user, std::iter::empty::<String>())
    }

    /// The root namespace of the calling principal (`ctx.principal().subject`), so a run or a
    /// request only ever reaches its own user's memories.
    ///
    /// # Errors
    /// A subject that is not a valid user id.
    pub fn for_caller(ctx: &RequestContext) -> Result<Self> {
        Self::user(ctx.principal().subject.clone())
    }

    /// This namespace with `segment` appended.
    ///
    /// # Errors
    /// A bad segment, or the path would be deeper than [`MAX_PATH_DEPTH`].
    pub fn child(&self, segment: impl Into<String>) -> Result<Self> {
        let mut path = self.path.clone();
        path.push(segment.into());
        Self::new(self.user.clone(), path)
    }

    /// This namespace with every segment of `path` appended.
    ///
    /// # Errors
    /// As [`Namespace::child`].
    pub fn join(&self, path: impl IntoIterator<Item = impl Into<String>>) -> Result<Self> {
        let mut all = self.path.clone();
        all.extend(path.into_iter().map(Into::into));
        Self::new(self.user.clone(), all)
    }

    /// The user.
    pub fn user_id(&self) -> &str {
        &self.user
    }

    /// The path segments.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// Whether `other` is this namespace or below it (same user, path starts with this path).
    pub fn is_prefix_of(&self, other: &Namespace) -> bool {
        self.user == other.user && other.path.starts_with(&self.path)
    }

    /// The path as stored: every segment followed by `/` (`""` for the root), so that a string
    /// prefix test is a path prefix test.
    pub(crate) fn path_key(&self) -> String {
        self.path.iter().map(|s| format!("{s}/")).collect()
    }

    /// Inverse of [`Namespace::path_key`].
    pub(crate) fn from_key(user: String, key: &str) -> Result<Self> {
        Self::new(
            user,
            key.split('/').filter(|s| !s.is_empty()).map(str::to_owned),
        )
    }
}

/// A remembered item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Its id, unique within its namespace.
    pub id: String,
    /// Where it lives.
    pub namespace: Namespace,
    /// The text (what is embedded and searched).
    pub text: String,
    /// Free-form metadata, filterable with [`Filter`].
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// When it was first stored (Unix ms).
    pub created_ms: i64,
    /// When it was last written (Unix ms).
    pub updated_ms: i64,
    /// When it expires (Unix ms); `None` keeps it until forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
}

/// How a hit was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// By embedding similarity through the [`MemoryIndex`] (score: cosine similarity).
    Semantic,
    /// By shared words weighted by rarity (score: unbounded, higher is better).
    Keyword,
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryHit {
    /// The memory.
    pub memory: Memory,
    /// Relevance, higher is better (see [`MatchKind`] for the scale).
    pub score: f32,
    /// How it was found.
    pub matched_by: MatchKind,
}

/// A memory to store: text, optional id (a fresh UUIDv7 otherwise), metadata and TTL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewMemory {
    /// The id: storing under an existing id replaces that memory (keeping its `created_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The text.
    pub text: String,
    /// Metadata (keys must not start with [`RESERVED_PREFIX`]).
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Time to live from now; `None` uses the store's default (none unless configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
}

impl NewMemory {
    /// A memory of `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }

    /// Stores it under `id` (replacing a memory with that id in the same namespace).
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds one metadata entry.
    #[must_use]
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Expires it `ttl` from now.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.text.trim().is_empty() {
            return Err(Error::invalid_field("text", "must not be empty"));
        }
        if self.text.len() > MAX_TEXT_BYTES {
            return Err(Error::invalid_field(
                "text",
                format!("at most {MAX_TEXT_BYTES} bytes"),
            ));
        }
        if let Some(id) = &self.id {
            check_id(id)?;
        }
        if let Some(k) = self
            .metadata
            .keys()
            .find(|k| k.starts_with(RESERVED_PREFIX))
        {
            return Err(Error::invalid_field(
                "metadata",
                format!("key {k:?}: keys starting with {RESERVED_PREFIX:?} are reserved"),
            ));
        }
        if self.ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid_field("ttl", "must be positive"));
        }
        Ok(())
    }
}

/// Checks a memory id: 1 to 128 visible ASCII characters.
pub(crate) fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid_field(
            "id",
            "must be 1..=128 visible ASCII characters",
        ));
    }
    Ok(())
}

/// Which memories a search or list returns: a metadata filter and a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryQuery {
    /// Only memories whose metadata match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// At most this many (1..=[`MAX_LIMIT`], default 10).
    pub limit: usize,
    /// Skip this many first.
    pub offset: usize,
}

impl Default for MemoryQuery {
    fn default() -> Self {
        Self {
            filter: None,
            limit: 10,
            offset: 0,
        }
    }
}

impl MemoryQuery {
    /// The first `limit` results.
    pub fn top(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Only memories matching `filter`.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Skips `offset` results.
    #[must_use]
    pub fn with_offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(Error::invalid_field(
                "limit",
                format!("must be 1..={MAX_LIMIT}"),
            ));
        }
        if self.offset > 100_000 {
            return Err(Error::invalid_field("offset", "must be at most 100000"));
        }
        self.filter.as_ref().map_or(Ok(()), Filter::validate)
    }
}

/// Long-term memories, namespaced by the caller's tenant, a user and a path.
///
/// Every call takes the caller's [`RequestContext`]: nothing stored under one tenant is visible
/// under another, and a [`Namespace`] never reaches another user's memories. Expired memories are
/// invisible at once; [`MemoryStore::purge_expired`] reclaims their space.
///
/// ```
/// use std::time::Duration;
/// use wattos_agents::memory::{InMemoryMemoryStore, MemoryQuery, MemoryStore, Namespace, NewMemory};
/// use wattos_core::{RequestContext, TenantId};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // Keyword ranking; give it a `MemoryIndex` (embedder + vector store) for semantic search.
/// let store = InMemoryMemoryStore::new();
/// let ctx = RequestContext::system(TenantId::new("acme")?);
/// let ann = Namespace::new("ann", ["prefs"])?;
/// store.put(&ctx, &ann, NewMemory::new("Ann drinks green tea").with_meta("kind", "drink")).await?;
/// store.put(&ctx, &ann, NewMemory::new("Ann's flight is on Friday").with_ttl(Duration::from_secs(3600))).await?;
///
/// let hits = store.search(&ctx, &Namespace::user("ann")?, "what tea does she like", &MemoryQuery::top(1)).await?;
/// assert_eq!(hits[0].memory.text, "Ann drinks green tea");
/// // Bob's namespace sees nothing of Ann's.
/// assert!(store.list(&ctx, &Namespace::user("bob")?, &MemoryQuery::default()).await?.is_empty());
/// assert_eq!(store.forget_user(&ctx, "ann").await?, 2);
/// # Ok::<_, wattos_core::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// Stores `memory` in `namespace` (replacing the memory with the same id there); returns it as
    /// stored.
    ///
    /// # Errors
    /// Invalid input (empty text, reserved metadata keys, zero TTL); embedding or storage failures.
    async fn put(
        &self,
        ctx: &RequestContext,
        namespace: &Namespace,
        memory: NewMemory,
    ) -> Result<Memory>;

    /// The memory `id` of `namespace`, unless it is missing or expired.
    ///
    /// # Errors
    /// Storage failures.
    async fn get(
        &self,
        ctx: &RequestContext,
        namespace: &Namespace,
        id: &str,
    ) -> Result<Option<Memory>>;

    /// The memories in `prefix` (the namespace and below) most relevant to `query`, best first.
    ///
    /// # Errors
    /// Invalid queries; embedding or storage failures (unless keyword fallback is on).
    async fn search(
        &self,
        ctx: &RequestContext,
        prefix: &Namespace,
        query: &str,
        options: &MemoryQuery,
    ) -> Result<Vec<MemoryHit>>;

    /// The memories in `prefix`, most recently written first.
    ///
    /// # Errors
    /// Invalid queries; storage failures.
    async fn list(
        &self,
        ctx: &RequestContext,
        prefix: &Namespace,
        options: &MemoryQuery,
    ) -> Result<Vec<Memory>>;

    /// Forgets memory `id` of `namespace`; whether it existed. Idempotent.
    ///
    /// # Errors
    /// Storage failures.
    async fn forget(&self, ctx: &RequestContext, namespace: &Namespace, id: &str) -> Result<bool>;

    /// Forgets every memory of `user` in the caller's tenant (erasure on request); how many went.
    ///
    /// # Errors
    /// Storage failures.
    async fn forget_user(&self, ctx: &RequestContext, user: &str) -> Result<u64>;

    /// Deletes the caller's tenant's expired memories; how many went.
    ///
    /// # Errors
    /// Storage failures.
    async fn purge_expired(&self, ctx: &RequestContext) -> Result<u64>;

    /// Stores `text` in `namespace` with no metadata.
    ///
    /// # Errors
    /// As [`MemoryStore::put`].
    async fn remember(
        &self,
        ctx: &RequestContext,
        namespace: &Namespace,
        text: &str,
    ) -> Result<Memory> {
        self.put(ctx, namespace, NewMemory::new(text)).await
    }
}

#[async_trait]
impl<T: MemoryStore + ?Sized> MemoryStore for std::sync::Arc<T> {
    async fn put(&self, ctx: &RequestContext, ns: &Namespace, m: NewMemory) -> Result<Memory> {
        (**self).put(ctx, ns, m).await
    }
    async fn get(&self, ctx: &RequestContext, ns: &Namespace, id: &str) -> Result<Option<Memory>> {
        (**self).get(ctx, ns, id).await
    }
    async fn search(
        &self,
        ctx: &RequestContext,
        prefix: &Namespace,
        query: &str,
        options: &MemoryQuery,
    ) -> Result<Vec<MemoryHit>> {
        (**self).search(ctx, prefix, query, options).await
    }
    async fn list(
        &self,
        ctx: &RequestContext,
        prefix: &Namespace,
        options: &MemoryQuery,
    ) -> Result<Vec<Memory>> {
        (**self).list(ctx, prefix, options).await
    }
    async fn forget(&self, ctx: &RequestContext, ns: &Namespace, id: &str) -> Result<bool> {
        (**self).forget(ctx, ns, id).await
    }
    async fn forget_user(&self, ctx: &RequestContext, user: &str) -> Result<u64> {
        (**self).forget_user(ctx, user).await
    }
    async fn purge_expired(&self, ctx: &RequestContext) -> Result<u64> {
        (**self).purge_expired(ctx).await
    }
}

/// Compile-time check that the trait stays object safe.
#[allow(dead_code)]
fn _object_safe(_: &dyn MemoryStore) {}

/// Implements [`MemoryStore`] for a type with an `engine: Engine<_>` field.
macro_rules! delegate_memory_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::memory::MemoryStore for $ty {
            async fn put(
                &self,
                ctx: &wattos_core::RequestContext,
                ns: &$crate::memory::Namespace,
                m: $crate::memory::NewMemory,
            ) -> wattos_core::Result<$crate::memory::Memory> {
                self.engine.put(ctx, ns, m).await
            }
            async fn get(
                &self,
                ctx: &wattos_core::RequestContext,
                ns: &$crate::memory::Namespace,
                id: &str,
            ) -> wattos_core::Result<Option<$crate::memory::Memory>> {
                self.engine.get(ctx, ns, id).await
            }
            async fn search(
                &self,
                ctx: &wattos_core::RequestContext,
                prefix: &$crate::memory::Namespace,
                query: &str,
                options: &$crate::memory::MemoryQuery,
            ) -> wattos_core::Result<Vec<$crate::memory::MemoryHit>> {
                self.engine.search(ctx, prefix, query, options).await
            }
            async fn list(
                &self,
                ctx: &wattos_core::RequestContext,
                prefix: &$crate::memory::Namespace,
                options: &$crate::memory::MemoryQuery,
            ) -> wattos_core::Result<Vec<$crate::memory::Memory>> {
                self.engine.list(ctx, prefix, options).await
            }
            async fn forget(
                &self,
                ctx: &wattos_core::RequestContext,
                ns: &$crate::memory::Namespace,
                id: &str,
            ) -> wattos_core::Result<bool> {
                self.engine.forget(ctx, ns, id).await
            }
            async fn forget_user(
                &self,
                ctx: &wattos_core::RequestContext,
                user: &str,
            ) -> wattos_core::Result<u64> {
                self.engine.forget_user(ctx, user).await
            }
            async fn purge_expired(
                &self,
                ctx: &wattos_core::RequestContext,
            ) -> wattos_core::Result<u64> {
                self.engine.purge_expired(ctx).await
            }
        }
    };
}
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use delegate_memory_store;

/// Lower-cased words of two or more characters.
pub(crate) fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 1)
        .map(str::to_lowercase)
        .collect()
}

/// Ranks `candidates` by the words they share with `query`, each weighted by its rarity among the
/// candidates; drops those sharing none.
pub(crate) fn keyword_rank(query: &str, candidates: Vec<Memory>) -> Vec<MemoryHit> {
    let query = words(query);
    let docs: Vec<HashSet<String>> = candidates.iter().map(|m| words(&m.text)).collect();
    let n = docs.len() as f32;
    let mut hits: Vec<MemoryHit> = candidates
        .into_iter()
        .zip(&docs)
        .filter_map(|(m, doc)| {
            let score: f32 = query
                .iter()
                .filter(|w| doc.contains(*w))
                .map(|w| {
                    let df = docs.iter().filter(|d| d.contains(w)).count() as f32;
                    (1.0 + n / df).ln()
                })
                .sum();
            (score > 0.0).then_some(MemoryHit {
                memory: m,
                score,
                matched_by: MatchKind::Keyword,
            })
        })
        .collect();
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.memory.updated_ms.cmp(&a.memory.updated_ms))
    });
    hits
}

type Key = (String, String, String);

/// Memories in process memory: lost on restart. Ranks by keywords unless given a [`MemoryIndex`].
#[derive(Default)]
pub struct InMemoryMemoryStore {
    engine: Engine<MemRows>,
}

impl std::fmt::Debug for InMemoryMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryMemoryStore")
            .finish_non_exhaustive()
    }
}

impl InMemoryMemoryStore {
    /// An empty store ranking by keywords.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ranks searches semantically through `index`.
    #[must_use]
    pub fn with_index(mut self, index: MemoryIndex) -> Self {
        self.engine = self.engine.with_index(index);
        self
    }

    /// Memories stored without a TTL expire `ttl` after they are written.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.engine = self.engine.with_default_ttl(ttl);
        self
    }
}

delegate_memory_store!(InMemoryMemoryStore);

/// Rows in process memory: tenant -> (user, path key, id) -> memory.
#[derive(Default)]
pub(crate) struct MemRows {
    items: Mutex<HashMap<String, BTreeMap<Key, Memory>>>,
}

impl MemRows {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, BTreeMap<Key, Memory>>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(ns: &Namespace, id: &str) -> Key {
    (ns.user_id().to_owned(), ns.path_key(), id.to_owned())
}

fn live(m: &Memory, now: i64) -> bool {
    m.expires_ms.is_none_or(|e| e > now)
}

#[async_trait]
impl Rows for MemRows {
    async fn upsert(&self, tenant: &str, m: &Memory) -> Result<i64> {
        let mut items = self.lock();
        let rows = items.entry(tenant.to_owned()).or_default();
        let k = key(&m.namespace, &m.id);
        let created = rows.get(&k).map_or(m.created_ms, |old| old.created_ms);
        let mut m = m.clone();
        m.created_ms = created;
        rows.insert(k, m);
        Ok(created)
    }

    async fn get(
        &self,
        tenant: &str,
        ns: &Namespace,
        id: &str,
        now: i64,
    ) -> Result<Option<Memory>> {
        Ok(self
            .lock()
            .get(tenant)
            .and_then(|rows| rows.get(&key(ns, id)))
            .filter(|m| live(m, now))
            .cloned())
    }

    async fn scan(
        &self,
        tenant: &str,
        prefix: &Namespace,
        now: i64,
        limit: Option<usize>,
    ) -> Result<Vec<Memory>> {
        let items = self.lock();
        let Some(rows) = items.get(tenant) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Memory> = rows
            .values()
            .filter(|m| prefix.is_prefix_of(&m.namespace) && live(m, now))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            b.updated_ms
                .cmp(&a.updated_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        if let Some(l) = limit {
            out.truncate(l);
        }
        Ok(out)
    }

    async fn delete(&self, tenant: &str, ns: &Namespace, id: &str) -> Result<bool> {
        Ok(self
            .lock()
            .get_mut(tenant)
            .and_then(|rows| rows.remove(&key(ns, id)))
            .is_some())
    }

    async fn delete_user(&self, tenant: &str, user: &str) -> Result<u64> {
        let mut items = self.lock();
        let Some(rows) = items.get_mut(tenant) else {
            return Ok(0);
        };
        let before = rows.len();
        rows.retain(|(u, _, _), _| u != user);
        Ok((before - rows.len()) as u64)
    }

    async fn take_expired(&self, tenant: Option<&str>, now: i64) -> Result<Vec<ExpiredKey>> {
        let mut items = self.lock();
        let mut out = Vec::new();
        for (t, rows) in items.iter_mut() {
            if tenant.is_some_and(|x| x != t) {
                continue;
            }
            rows.retain(|_, m| {
                let keep = live(m, now);
                if !keep {
                    out.push(ExpiredKey {
                        tenant: t.clone(),
                        namespace: m.namespace.clone(),
                        id: m.id.clone(),
                    });
                }
                keep
            });
        }
        Ok(out)
    }
}
