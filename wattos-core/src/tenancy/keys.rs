//! API key records and revocation: the storage traits behind key and token authentication.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::context::TenantId;
use crate::error::Result;

/// A stored API key. The secret itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public id: the visible prefix of the key (`wk_<id>_<secret>`). Unique across tenants.
    pub id: String,
    /// The tenant the key acts for.
    pub tenant: TenantId,
    /// Human label.
    pub name: String,
    /// Roles the key holds within its tenant.
    pub roles: Vec<String>,
    /// Hex hash of the secret (never returned by the admin API).
    #[serde(skip_serializing, default)]
    pub secret_hash: String,
    /// Who created it.
    pub created_by: String,
    /// Creation time (unix ms).
    pub created_at_ms: i64,
    /// Expiry (unix ms), if any.
    pub expires_at_ms: Option<i64>,
    /// Revocation time (unix ms), if revoked.
    pub revoked_at_ms: Option<i64>,
    /// Last successful use (unix ms), updated lazily.
    pub last_used_at_ms: Option<i64>,
}

impl ApiKeyRecord {
    /// Whether the key may be used at `now_ms`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| now_ms < e)
    }
}

/// Storage for API keys. Every method except [`ApiKeyStore::find_by_id`] is tenant-scoped: a key of
/// another tenant behaves exactly like a missing key (`not_found`).
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key.
    ///
    /// # Errors
    /// `conflict` when the id exists.
    async fn insert(&self, key: &ApiKeyRecord) -> Result<()>;
    /// Looks a key up by id across tenants: used only by authentication.
    async fn find_by_id(&self, id: &str) -> Result<Option<ApiKeyRecord>>;
    /// The tenant's key `id`.
    ///
    /// # Errors
    /// `not_found` when missing or owned by another tenant.
    async fn get(&self, tenant: &TenantId, id: &str) -> Result<ApiKeyRecord>;
    /// The tenant's keys, newest first.
    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>>;
    /// Marks the tenant's key `id` revoked at `at_ms` (idempotent).
    ///
    /// # Errors
    /// `not_found` when missing or owned by another tenant.
    async fn revoke(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()>;
    /// Records last-used times in one batch (`(id, unix ms)`).
    async fn touch(&self, used: &[(String, i64)]) -> Result<()>;
}

/// Revoked credential ids (JWT `jti`s, key ids) until their natural expiry.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Revokes `id` until `until` (after which the credential would be expired anyway).
    async fn revoke(&self, id: &str, until: SystemTime) -> Result<()>;
    /// Whether `id` is revoked.
    async fn is_revoked(&self, id: &str) -> Result<bool>;
}

#[async_trait]
impl<T: ApiKeyStore + ?Sized> ApiKeyStore for Arc<T> {
    async fn insert(&self, key: &ApiKeyRecord) -> Result<()> {
        (**self).insert(key).await
    }
    async fn find_by_id(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        (**self).find_by_id(id).await
    }
    async fn get(&self, tenant: &TenantId, id: &str) -> Result<ApiKeyRecord> {
        (**self).get(tenant, id).await
    }
    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
        (**self).list(tenant).await
    }
    async fn revoke(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()> {
        (**self).revoke(tenant, id, at_ms).await
    }
    async fn touch(&self, used: &[(String, i64)]) -> Result<()> {
        (**self).touch(used).await
    }
}

#[async_trait]
impl<T: RevocationStore + ?Sized> RevocationStore for Arc<T> {
    async fn revoke(&self, id: &str, until: SystemTime) -> Result<()> {
        (**self).revoke(id, until).await
    }
    async fn is_revoked(&self, id: &str) -> Result<bool> {
        (**self).is_revoked(id).await
    }
}

#[cfg(test)]
fn _object_safe(_: Arc<dyn ApiKeyStore>, _: Arc<dyn RevocationStore>) {}
