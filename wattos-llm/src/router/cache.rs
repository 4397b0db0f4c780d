//! Optional exact-match response cache: the key is a hash of the normalised request (model group
//! instead of alias, `user` dropped), scoped to the tenant, so tenants never see each other's answers.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wattos_core::TenantId;
use wattos_core::llm::{ChatRequest, ChatResponse};
use wattos_core::state::{CacheStore, StateKey};
use wattos_core::telemetry::names;

#[derive(Clone)]
pub(crate) struct ResponseCache {
    pub(crate) store: Arc<dyn CacheStore>,
    pub(crate) ttl: Duration,
}

impl ResponseCache {
    pub(crate) fn key(tenant: &TenantId, group: &str, req: &ChatRequest) -> Option<StateKey> {
        let mut norm = req.clone();
        norm.model = group.to_owned();
        norm.user = None;
        let bytes = serde_json::to_vec(&norm).ok()?;
        let digest = Sha256::digest(&bytes);
        Some(StateKey::tenant(
            tenant,
            "cache",
            &["chat", &hex::encode(digest)],
        ))
    }

    pub(crate) async fn get(&self, key: &StateKey) -> Option<ChatResponse> {
        let hit = match self.store.get(key).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "response cache read failed");
                None
            }
        };
        let resp = hit.and_then(|b| serde_json::from_slice::<ChatResponse>(&b).ok());
        let result = if resp.is_some() { "hit" } else { "miss" };
        metrics::counter!(names::CACHE_OPERATIONS_TOTAL, "cache" => "llm_response", "result" => result)
            .increment(1);
        resp
    }

    pub(crate) async fn put(&self, key: &StateKey, resp: &ChatResponse) {
        let Ok(bytes) = serde_json::to_vec(resp) else {
            return;
        };
        if let Err(e) = self.store.put(key, bytes, self.ttl).await {
            tracing::warn!(error = %e, "response cache write failed");
        } else {
            metrics::counter!(names::CACHE_OPERATIONS_TOTAL, "cache" => "llm_response", "result" => "set")
                .increment(1);
        }
    }
}
