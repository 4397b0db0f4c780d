//! Long-term memory per tenant and user, searchable by text.
//!
//! [`MemoryStore`] is deliberately small. [`InMemoryMemoryStore`] ranks by word overlap; a store backed by
//! the platform's vector store trait (semantic search over embeddings) plugs in behind the same trait
//! once that trait lands in `wattos-core`.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wattos_core::{Error, RequestContext, Result};

/// A remembered fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Its id.
    pub id: String,
    /// The text.
    pub text: String,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryHit {
    /// The memory.
    pub memory: Memory,
    /// Relevance, higher is better.
    pub score: f32,
}

/// Long-term memories, namespaced by the caller's tenant and a user id.
#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// Stores a memory for `user`; returns its id.
    ///
    /// # Errors
    /// Invalid input (empty text); storage failures.
    async fn remember(
        &self,
        ctx: &RequestContext,
        user: &str,
        text: &str,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<String>;

    /// The `limit` memories of `user` most relevant to `query`.
    ///
    /// # Errors
    /// Storage failures.
    async fn search(
        &self,
        ctx: &RequestContext,
        user: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<MemoryHit>>;

    /// Forgets a memory (idempotent).
    ///
    /// # Errors
    /// Storage failures.
    async fn forget(&self, ctx: &RequestContext, user: &str, id: &str) -> Result<()>;
}

/// Compile-time check that the trait stays object safe.
#[allow(dead_code)]
fn _object_safe(_: &dyn MemoryStore) {}

/// Memories in process memory, ranked by shared words (weighted by rarity).
#[derive(Debug, Default)]
pub struct InMemoryMemoryStore {
    items: Mutex<HashMap<(String, String), Vec<Memory>>>,
}

fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .collect()
}

impl InMemoryMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Vec<Memory>>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(ctx: &RequestContext, user: &str) -> (String, String) {
        (ctx.tenant().as_str().to_owned(), user.to_owned())
    }
}

#[async_trait]
impl MemoryStore for InMemoryMemoryStore {
    async fn remember(
        &self,
        ctx: &RequestContext,
        user: &str,
        text: &str,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        if text.trim().is_empty() {
            return Err(Error::invalid_field("text", "must not be empty"));
        }
        let id = uuid::Uuid::now_v7().to_string();
        self.lock()
            .entry(Self::key(ctx, user))
            .or_default()
            .push(Memory {
                id: id.clone(),
                text: text.to_owned(),
                metadata,
            });
        Ok(id)
    }

    async fn search(
        &self,
        ctx: &RequestContext,
        user: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<MemoryHit>> {
        let items = self.lock();
        let Some(list) = items.get(&Self::key(ctx, user)) else {
            return Ok(Vec::new());
        };
        let query = words(query);
        let docs: Vec<HashSet<String>> = list.iter().map(|m| words(&m.text)).collect();
        let n = docs.len() as f32;
        let mut hits: Vec<MemoryHit> = list
            .iter()
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
                (score > 0.0).then(|| MemoryHit {
                    memory: m.clone(),
                    score,
                })
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(limit);
        Ok(hits)
    }

    async fn forget(&self, ctx: &RequestContext, user: &str, id: &str) -> Result<()> {
        if let Some(list) = self.lock().get_mut(&Self::key(ctx, user)) {
            list.retain(|m| m.id != id);
        }
        Ok(())
    }
}
