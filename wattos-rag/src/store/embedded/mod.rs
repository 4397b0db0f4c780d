//! The default store: in-process, persistent, no services.
//!
//! * Each tenant is its own partition (vectors, records, index); a query only touches its tenant.
//! * Search: an inverted-file (IVF) index picks candidate lists, their members are ranked by an int8
//!   dot product and the best [`EmbeddedOptions::rescore`] are re-scored exactly (cosine on the
//!   stored f32 vectors); small partitions and selective filters fall back to an exact scan, so
//!   filtered queries never lose hits to the approximation.
//! * Durability: every write is appended to a CRC-framed log and fsynced before it is applied and
//!   acknowledged; [`EmbeddedStore::compact`] writes a snapshot atomically (temp file, fsync, rename)
//!   and empties the log. Reopening replays snapshot then log, dropping a torn tail.
//!
//! Why our own IVF rather than a crate: the index is rebuilt from the log on open (no second on-disk
//! format to keep consistent), stays deterministic, supports deletes and tenant partitions directly,
//! and the exact re-scoring makes recall depend on `nprobe` (measured in `benches/search.rs`).
//! `ann-compare/` measures it against hnsw_rs, usearch and hannoy on the same data (figures in
//! `docs/rag.md`).

mod distance;
mod ivf;
mod wal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use serde_json::{Map, Value};
use wattos_core::vector_store::{
    DOCUMENT_ID_KEY, Filter, Hit, VectorQuery, VectorRecord, VectorStore, check_same_document,
    sort_hits,
};
use wattos_core::{Error, RequestContext, Result};

use distance::{WithSimd, dot, vectorized};
use ivf::{Candidate, Ivf, Probe, ProbeStats, TopK};
use wal::{Op, Wal};

/// Tuning for [`EmbeddedStore`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Partitions smaller than this are scanned exactly (no index).
    pub index_threshold: usize,
    /// Lists probed at least per query. Beyond these, probing continues (best bound first) until
    /// no unvisited list can hold a member scoring above the k-th best found, so requests for more
    /// candidates probe more lists by themselves.
    pub nprobe: usize,
    /// Lists probed at most per query: bounds the latency on data whose lists overlap so much that
    /// the bound cannot stop the scan (recall then depends on this cap).
    pub max_nprobe: usize,
    /// Candidates ranked by the int8 scan that are re-scored exactly (at least `2 * top_k`).
    pub rescore: usize,
    /// k-means iterations when (re)training.
    pub train_iterations: usize,
    /// Compact automatically once the log exceeds this many bytes.
    pub compact_after_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            index_threshold: 4096,
            nprobe: 16,
            max_nprobe: 128,
            rescore: 64,
            train_iterations: 6,
            compact_after_bytes: 256 * 1024 * 1024,
        }
    }
}

struct Meta {
    id: String,
    document_id: String,
    text: String,
    metadata: Map<String, Value>,
}

#[derive(Default)]
struct Partition {
    ids: HashMap<String, u32>,
    slots: Vec<Option<Meta>>,
    vectors: Vec<f32>,
    free: Vec<u32>,
    by_document: HashMap<String, Vec<u32>>,
    ivf: Option<Ivf>,
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

impl Partition {
    fn live(&self) -> usize {
        self.ids.len()
    }

    fn vector(&self, dims: usize, slot: u32) -> &[f32] {
        &self.vectors[slot as usize * dims..(slot as usize + 1) * dims]
    }

    fn insert(&mut self, dims: usize, r: VectorRecord) {
        self.remove(dims, &r.id);
        let v = normalised(&r.vector);
        let slot = if let Some(s) = self.free.pop() {
            self.vectors[s as usize * dims..(s as usize + 1) * dims].copy_from_slice(&v);
            s
        } else {
            self.vectors.extend_from_slice(&v);
            self.slots.push(None);
            (self.slots.len() - 1) as u32
        };
        self.by_document
            .entry(r.document_id.clone())
            .or_default()
            .push(slot);
        self.ids.insert(r.id.clone(), slot);
        if let Some(ivf) = &mut self.ivf {
            ivf.insert(slot, &v);
        }
        self.slots[slot as usize] = Some(Meta {
            id: r.id,
            document_id: r.document_id,
            text: r.text,
            metadata: r.metadata,
        });
    }

    fn remove(&mut self, dims: usize, id: &str) -> bool {
        let Some(slot) = self.ids.remove(id) else {
            return false;
        };
        if let Some(meta) = self.slots[slot as usize].take()
            && let Some(list) = self.by_document.get_mut(&meta.document_id)
        {
            list.retain(|s| *s != slot);
            if list.is_empty() {
                self.by_document.remove(&meta.document_id);
            }
        }
        if let Some(mut ivf) = self.ivf.take() {
            ivf.remove(slot, self.vector(dims, slot));
            self.ivf = Some(ivf);
        }
        self.free.push(slot);
        true
    }

    fn apply(&mut self, dims: usize, op: Op) {
        match op {
            Op::Upsert { records, .. } => records.into_iter().for_each(|r| self.insert(dims, r)),
            Op::Delete { ids, .. } => ids.iter().for_each(|id| {
                self.remove(dims, id);
            }),
            Op::ReplaceDocument {
                document_id,
                records,
                ..
            } => {
                let old: Vec<String> = self.document_ids(&document_id);
                old.iter().for_each(|id| {
                    self.remove(dims, id);
                });
                records.into_iter().for_each(|r| self.insert(dims, r));
            }
        }
    }

    fn document_ids(&self, document_id: &str) -> Vec<String> {
        self.by_document
            .get(document_id)
            .map(|slots| {
                slots
                    .iter()
                    .filter_map(|s| self.slots[*s as usize].as_ref().map(|m| m.id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn maybe_train(&mut self, dims: usize, opts: &EmbeddedOptions) {
        let live = self.live();
        let needs = live >= opts.index_threshold
            && self.ivf.as_ref().is_none_or(|i| live >= i.trained_at * 2);
        if live < opts.index_threshold {
            self.ivf = None;
        } else if needs {
            let slots: Vec<u32> = self
                .ids
                .values()
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let nlist = ((live as f64).sqrt() as usize).clamp(16, 1024);
            self.ivf = Some(Ivf::train(
                dims,
                &self.vectors,
                &slots,
                nlist,
                opts.train_iterations,
            ));
        }
    }

    fn matches(&self, slot: u32, filter: Option<&Filter>) -> bool {
        match (&self.slots[slot as usize], filter) {
            (Some(_), None) => true,
            (Some(m), Some(f)) => f.matches(&m.document_id, &m.metadata),
            (None, _) => false,
        }
    }

    /// Exact top `k` over all slots that pass `filter`.
    fn top_k(&self, dims: usize, q: &[f32], k: usize, filter: Option<&Filter>) -> Vec<Candidate> {
        vectorized(ExactScan {
            p: self,
            dims,
            q,
            k,
            filter,
        })
    }

    fn search(
        &self,
        dims: usize,
        q: &[f32],
        k: usize,
        filter: Option<&Filter>,
        opts: &EmbeddedOptions,
    ) -> (Vec<Candidate>, SearchStats) {
        if let Some(ivf) = &self.ivf {
            let probe = Probe {
                min: opts.nprobe.max(1),
                max: opts.max_nprobe.max(opts.nprobe).max(1),
            };
            let (found, s) = ivf.search(&self.vectors, q, k, probe, opts.rescore, |slot| {
                self.matches(slot, filter)
            });
            let stats = SearchStats::from_probe(s, ivf.nlist());
            // A selective filter can leave too few candidates in the probed lists: scan exactly.
            if found.len() >= k.min(self.live()) || filter.is_none() && found.len() >= k {
                return (found, stats);
            }
            let total = (0..self.slots.len() as u32)
                .filter(|s| self.matches(*s, filter))
                .take(k)
                .count();
            if found.len() >= total {
                return (found, stats);
            }
        }
        let top = self.top_k(dims, q, k, filter);
        (
            top,
            SearchStats {
                exact: true,
                scanned: self.live(),
                ..SearchStats::default()
            },
        )
    }
}

/// An exact scan of a partition, run under [`vectorized`].
struct ExactScan<'a> {
    p: &'a Partition,
    dims: usize,
    q: &'a [f32],
    k: usize,
    filter: Option<&'a Filter>,
}

impl WithSimd for ExactScan<'_> {
    type Output = Vec<Candidate>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Vec<Candidate> {
        let mut top = TopK::new(self.k);
        for slot in 0..self.p.slots.len() as u32 {
            if self.p.matches(slot, self.filter) {
                top.push(dot(self.q, self.p.vector(self.dims, slot)), slot);
            }
        }
        top.into_sorted()
    }
}

/// How the embedded store answered one query (see [`EmbeddedStore::search_with_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Lists in the tenant's index (0: no index).
    pub lists: usize,
    /// Lists probed.
    pub lists_probed: usize,
    /// Vectors scanned (int8 codes when probing, f32 when exact).
    pub scanned: usize,
    /// Probing stopped because no unprobed list could hold a better hit than the k-th found (the
    /// result is then the exact top k up to int8 ranking error), not at `max_nprobe`.
    pub stopped_by_bound: bool,
    /// The partition was scanned exactly (small partition, or a filter too selective for the index).
    pub exact: bool,
}

impl SearchStats {
    fn from_probe(p: ProbeStats, lists: usize) -> Self {
        Self {
            lists,
            lists_probed: p.lists,
            scanned: p.scanned,
            stopped_by_bound: p.stopped_by_bound || p.lists == lists,
            exact: false,
        }
    }
}

/// The single document a filter is restricted to, if it is `document_id == x` or an `And` with it.
fn document_scope(f: &Filter) -> Option<&str> {
    match f {
        Filter::Eq {
            key,
            value: Value::String(s),
        } if key == DOCUMENT_ID_KEY => Some(s),
        Filter::And(fs) => fs.iter().find_map(document_scope),
        _ => None,
    }
}

#[derive(Default)]
struct State {
    tenants: HashMap<String, Partition>,
}

/// The embedded, persistent, tenant-partitioned vector store. Cheap to clone (shared state).
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    dims: usize,
    opts: EmbeddedOptions,
    dir: Option<PathBuf>,
    state: RwLock<State>,
    /// Serialises writers; holds the log for persistent stores.
    writer: Mutex<Option<Wal>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dims", &self.inner.dims)
            .field("dir", &self.inner.dir)
            .finish()
    }
}

fn poisoned() -> Error {
    Error::internal("embedded store lock poisoned")
}

const WAL_FILE: &str = "vectors.wal";
const SNAPSHOT_FILE: &str = "vectors.snapshot";

impl EmbeddedStore {
    /// A store that lives only in memory.
    pub fn in_memory(dims: usize) -> Self {
        Self::build(
            dims,
            EmbeddedOptions::default(),
            None,
            State::default(),
            None,
        )
    }

    /// Opens (creating) a persistent store in `dir`, replaying its snapshot and log.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::Unavailable`] on I/O failures; invalid input for `dims == 0`.
    pub fn open(dir: impl AsRef<Path>, dims: usize) -> Result<Self> {
        Self::open_with(dir, dims, EmbeddedOptions::default())
    }

    /// [`EmbeddedStore::open`] with options.
    ///
    /// # Errors
    /// As for [`EmbeddedStore::open`].
    pub fn open_with(dir: impl AsRef<Path>, dims: usize, opts: EmbeddedOptions) -> Result<Self> {
        if dims == 0 {
            return Err(Error::invalid_field("dimensions", "must be > 0"));
        }
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::unavailable(format!("embedded store: create {}: {e}", dir.display()))
        })?;
        let mut state = State::default();
        let (snap_ops, _) = wal::read_all(&dir.join(SNAPSHOT_FILE), dims)?;
        let (log_ops, good) = wal::read_all(&dir.join(WAL_FILE), dims)?;
        for op in snap_ops.into_iter().chain(log_ops) {
            let tenant = match &op {
                Op::Upsert { tenant, .. }
                | Op::Delete { tenant, .. }
                | Op::ReplaceDocument { tenant, .. } => tenant.clone(),
            };
            state.tenants.entry(tenant).or_default().apply(dims, op);
        }
        for p in state.tenants.values_mut() {
            p.maybe_train(dims, &opts);
        }
        let wal = Wal::open(&dir.join(WAL_FILE), good)?;
        Ok(Self::build(dims, opts, Some(dir), state, Some(wal)))
    }

    /// A store with custom options, in memory.
    pub fn in_memory_with(dims: usize, opts: EmbeddedOptions) -> Self {
        Self::build(dims, opts, None, State::default(), None)
    }

    fn build(
        dims: usize,
        opts: EmbeddedOptions,
        dir: Option<PathBuf>,
        state: State,
        wal: Option<Wal>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                dims,
                opts,
                dir,
                state: RwLock::new(state),
                writer: Mutex::new(wal),
            }),
        }
    }

    /// Writes a snapshot atomically and empties the log (persistent stores only).
    ///
    /// # Errors
    /// I/O failures as [`wattos_core::ErrorKind::Unavailable`]; the old snapshot and log stay valid.
    pub fn compact(&self) -> Result<()> {
        let mut writer = self.inner.writer.lock().map_err(|_| poisoned())?;
        self.compact_locked(&mut writer)
    }

    fn compact_locked(&self, writer: &mut Option<Wal>) -> Result<()> {
        let (Some(dir), Some(wal)) = (&self.inner.dir, writer.as_mut()) else {
            return Ok(());
        };
        let dims = self.inner.dims;
        {
            let state = self.inner.state.read().map_err(|_| poisoned())?;
            let frames = state.tenants.iter().flat_map(|(tenant, p)| {
                let records: Vec<VectorRecord> = p
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(s, m)| {
                        m.as_ref().map(|m| VectorRecord {
                            id: m.id.clone(),
                            document_id: m.document_id.clone(),
                            vector: p.vector(dims, s as u32).to_vec(),
                            text: m.text.clone(),
                            metadata: m.metadata.clone(),
                        })
                    })
                    .collect();
                records
                    .chunks(1024)
                    .map(|c| {
                        wal::encode(&Op::Upsert {
                            tenant: tenant.clone(),
                            records: c.to_vec(),
                        })
                    })
                    .collect::<Vec<_>>()
            });
            wal::write_atomically(&dir.join(SNAPSHOT_FILE), frames)?;
        }
        wal.reset()
    }

    /// Logs (when persistent) then applies one operation.
    fn write(&self, tenant: &str, op: Op) -> Result<()> {
        let mut writer = self.inner.writer.lock().map_err(|_| poisoned())?;
        if let Some(wal) = writer.as_mut() {
            wal.append(&wal::encode(&op)?)?;
        }
        {
            let mut state = self.inner.state.write().map_err(|_| poisoned())?;
            let p = state.tenants.entry(tenant.to_owned()).or_default();
            p.apply(self.inner.dims, op);
            p.maybe_train(self.inner.dims, &self.inner.opts);
        }
        if writer
            .as_ref()
            .is_some_and(|w| w.len > self.inner.opts.compact_after_bytes)
        {
            self.compact_locked(&mut writer)?;
        }
        Ok(())
    }

    /// [`VectorStore::search`] plus how the query was answered (lists probed, vectors scanned).
    ///
    /// # Errors
    /// As for [`VectorStore::search`].
    pub fn search_with_stats(
        &self,
        ctx: &RequestContext,
        query: &VectorQuery,
    ) -> Result<(Vec<Hit>, SearchStats)> {
        query.validate(self.inner.dims)?;
        let q = normalised(&query.vector);
        let state = self.inner.state.read().map_err(|_| poisoned())?;
        let Some(p) = state.tenants.get(ctx.tenant().as_str()) else {
            return Ok((Vec::new(), SearchStats::default()));
        };
        let (scored, stats) = p.search(
            self.inner.dims,
            &q,
            query.top_k,
            query.filter.as_ref(),
            &self.inner.opts,
        );
        let mut hits: Vec<Hit> = scored
            .into_iter()
            .filter_map(|Candidate(score, slot)| {
                p.slots[slot as usize].as_ref().map(|m| Hit {
                    id: m.id.clone(),
                    document_id: m.document_id.clone(),
                    score,
                    text: m.text.clone(),
                    metadata: m.metadata.clone(),
                })
            })
            .collect();
        sort_hits(&mut hits);
        Ok((hits, stats))
    }

    /// Records and vector memory of one tenant, approximately, in bytes.
    pub fn approx_memory_bytes(&self, ctx: &RequestContext) -> usize {
        let Ok(state) = self.inner.state.read() else {
            return 0;
        };
        state.tenants.get(ctx.tenant().as_str()).map_or(0, |p| {
            p.vectors.len() * 4
                + p.ivf.as_ref().map_or(0, Ivf::memory_bytes)
                + p.slots
                    .iter()
                    .flatten()
                    .map(|m| {
                        m.id.len() * 2
                            + m.document_id.len()
                            + m.text.len()
                            + Value::Object(m.metadata.clone()).to_string().len()
                            + 96
                    })
                    .sum::<usize>()
        })
    }
}

#[async_trait]
impl VectorStore for EmbeddedStore {
    fn name(&self) -> &str {
        "embedded"
    }

    fn dimensions(&self) -> usize {
        self.inner.dims
    }

    async fn upsert(&self, ctx: &RequestContext, records: Vec<VectorRecord>) -> Result<()> {
        for r in &records {
            r.validate(self.inner.dims)?;
        }
        if records.is_empty() {
            return Ok(());
        }
        let tenant = ctx.tenant().as_str();
        self.write(
            tenant,
            Op::Upsert {
                tenant: tenant.to_owned(),
                records,
            },
        )
    }

    async fn delete_where(&self, ctx: &RequestContext, filter: &Filter) -> Result<u64> {
        filter.validate()?;
        let tenant = ctx.tenant().as_str();
        let ids: Vec<String> = {
            let state = self.inner.state.read().map_err(|_| poisoned())?;
            let Some(p) = state.tenants.get(tenant) else {
                return Ok(0);
            };
            p.slots
                .iter()
                .flatten()
                .filter(|m| filter.matches(&m.document_id, &m.metadata))
                .map(|m| m.id.clone())
                .collect()
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let n = ids.len() as u64;
        self.write(
            tenant,
            Op::Delete {
                tenant: tenant.to_owned(),
                ids,
            },
        )?;
        Ok(n)
    }

    async fn delete_documents(&self, ctx: &RequestContext, document_ids: &[String]) -> Result<u64> {
        let tenant = ctx.tenant().as_str();
        let ids: Vec<String> = {
            let state = self.inner.state.read().map_err(|_| poisoned())?;
            let Some(p) = state.tenants.get(tenant) else {
                return Ok(0);
            };
            document_ids
                .iter()
                .flat_map(|d| p.document_ids(d))
                .collect()
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let n = ids.len() as u64;
        self.write(
            tenant,
            Op::Delete {
                tenant: tenant.to_owned(),
                ids,
            },
        )?;
        Ok(n)
    }

    async fn replace_document(
        &self,
        ctx: &RequestContext,
        document_id: &str,
        records: Vec<VectorRecord>,
    ) -> Result<()> {
        check_same_document(document_id, &records, self.inner.dims)?;
        let tenant = ctx.tenant().as_str();
        // One log entry, applied under one write lock: readers see old or new, never a mix.
        self.write(
            tenant,
            Op::ReplaceDocument {
                tenant: tenant.to_owned(),
                document_id: document_id.to_owned(),
                records,
            },
        )
    }

    async fn search(&self, ctx: &RequestContext, query: &VectorQuery) -> Result<Vec<Hit>> {
        self.search_with_stats(ctx, query).map(|(hits, _)| hits)
    }

    async fn count(&self, ctx: &RequestContext, filter: Option<&Filter>) -> Result<u64> {
        if let Some(f) = filter {
            f.validate()?;
        }
        let state = self.inner.state.read().map_err(|_| poisoned())?;
        let Some(p) = state.tenants.get(ctx.tenant().as_str()) else {
            return Ok(0);
        };
        Ok(match filter {
            None => p.live() as u64,
            Some(f) => match document_scope(f) {
                // Incremental indexing asks "is this document at this hash?": answer from the
                // per-document slots instead of scanning the partition.
                Some(doc) => p.by_document.get(doc).map_or(0, |slots| {
                    slots.iter().filter(|s| p.matches(**s, Some(f))).count() as u64
                }),
                None => p
                    .slots
                    .iter()
                    .flatten()
                    .filter(|m| f.matches(&m.document_id, &m.metadata))
                    .count() as u64,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;
    use wattos_core::TenantId;

    #[tokio::test]
    async fn in_memory_store_passes_conformance() {
        let store = EmbeddedStore::in_memory(conformance::DIMS);
        conformance::run_all(&store).await.unwrap();
    }

    #[tokio::test]
    async fn indexed_store_passes_conformance() {
        let opts = EmbeddedOptions {
            index_threshold: 8,
            nprobe: 2,
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::in_memory_with(conformance::DIMS, opts);
        conformance::run_all(&store).await.unwrap();
    }

    #[tokio::test]
    async fn persistent_store_passes_conformance_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), conformance::DIMS).unwrap();
        conformance::run_all(&store).await.unwrap();
        let path = dir.path().to_path_buf();
        conformance::restart(&store, move || {
            let p = path.clone();
            async move { EmbeddedStore::open(&p, conformance::DIMS) }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn survives_compaction_and_torn_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = RequestContext::system(TenantId::new("t").unwrap());
        {
            let s = EmbeddedStore::open(dir.path(), 2).unwrap();
            s.upsert(&ctx, vec![VectorRecord::new("a", "d", vec![1.0, 0.0], "a")])
                .await
                .unwrap();
            s.compact().unwrap();
            s.upsert(&ctx, vec![VectorRecord::new("b", "d", vec![0.0, 1.0], "b")])
                .await
                .unwrap();
        }
        // Simulate a crash mid-append.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(WAL_FILE))
            .unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let s = EmbeddedStore::open(dir.path(), 2).unwrap();
        assert_eq!(s.count(&ctx, None).await.unwrap(), 2);
        s.upsert(&ctx, vec![VectorRecord::new("c", "d", vec![1.0, 1.0], "c")])
            .await
            .unwrap();
        drop(s);
        let s = EmbeddedStore::open(dir.path(), 2).unwrap();
        assert_eq!(s.count(&ctx, None).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn search_stats_report_probing_and_exact_scans() {
        let dims = 16;
        let store = EmbeddedStore::in_memory_with(
            dims,
            EmbeddedOptions {
                index_threshold: 200,
                nprobe: 2,
                max_nprobe: 5,
                ..Default::default()
            },
        );
        let big = RequestContext::system(TenantId::new("big").unwrap());
        let small = RequestContext::system(TenantId::new("small").unwrap());
        let data = crate::synthetic::clustered_vectors(1000, dims, 30, 3);
        let records = |prefix: &str, n: usize| -> Vec<VectorRecord> {
            data.iter()
                .take(n)
                .enumerate()
                .map(|(i, v)| VectorRecord::new(format!("{prefix}{i}"), "d", v.clone(), ""))
                .collect()
        };
        store.upsert(&big, records("b", 1000)).await.unwrap();
        store.upsert(&small, records("s", 50)).await.unwrap();
        let q = VectorQuery::new(data[7].clone(), 10);
        let (hits, stats) = store.search_with_stats(&big, &q).unwrap();
        assert_eq!(hits.len(), 10);
        assert_eq!(hits[0].id, "b7");
        assert_eq!(stats.lists, 31, "sqrt(1000) lists");
        assert!((2..=5).contains(&stats.lists_probed), "{stats:?}");
        assert!(!stats.exact && stats.scanned > 0 && stats.scanned < 1000);
        let (hits, stats) = store.search_with_stats(&small, &q).unwrap();
        assert_eq!(hits[0].id, "s7");
        assert!(stats.exact && stats.lists == 0 && stats.scanned == 50);
        let nobody = RequestContext::system(TenantId::new("nobody").unwrap());
        let (hits, stats) = store.search_with_stats(&nobody, &q).unwrap();
        assert!(hits.is_empty() && stats == SearchStats::default());
    }

    #[tokio::test]
    async fn ivf_recall_matches_exact_on_clustered_data() {
        let dims = 32;
        let exact = EmbeddedStore::in_memory_with(
            dims,
            EmbeddedOptions {
                index_threshold: usize::MAX,
                ..Default::default()
            },
        );
        let ann = EmbeddedStore::in_memory_with(
            dims,
            EmbeddedOptions {
                index_threshold: 100,
                nprobe: 8,
                ..Default::default()
            },
        );
        let ctx = RequestContext::system(TenantId::new("t").unwrap());
        let data = crate::synthetic::clustered_vectors(3000, dims, 40, 7);
        let records: Vec<VectorRecord> = data
            .iter()
            .enumerate()
            .map(|(i, v)| VectorRecord::new(format!("r{i}"), format!("d{}", i % 50), v.clone(), ""))
            .collect();
        exact.upsert(&ctx, records.clone()).await.unwrap();
        ann.upsert(&ctx, records).await.unwrap();
        let queries = crate::synthetic::clustered_vectors(50, dims, 40, 99);
        let mut found = 0;
        for q in &queries {
            let e = exact
                .search(&ctx, &VectorQuery::new(q.clone(), 10))
                .await
                .unwrap();
            let a = ann
                .search(&ctx, &VectorQuery::new(q.clone(), 10))
                .await
                .unwrap();
            found += a.iter().filter(|h| e.iter().any(|x| x.id == h.id)).count();
        }
        let recall = found as f64 / (queries.len() * 10) as f64;
        assert!(recall > 0.9, "recall@10 {recall}");
    }
}
