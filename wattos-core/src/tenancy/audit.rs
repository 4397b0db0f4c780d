//! The audit log: an append-only, per-tenant hash chain of security-relevant events.
//!
//! Each record stores the hash of its predecessor; a record's hash covers its sequence number, the
//! previous hash and the [canonical bytes](AuditEvent::canonical_bytes) of its event. Editing a row
//! breaks its hash, deleting one breaks the sequence or the link of its successor, and deleting the
//! newest rows is caught against the stored chain head.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::context::TenantId;
use crate::error::Result;

/// Well-known audit actions. Stored as their string form; other strings are allowed.
pub mod actions {
    /// A credential was rejected.
    pub const AUTH_FAILED: &str = "auth.failed";
    /// An authenticated principal lacked a permission.
    pub const ACCESS_DENIED: &str = "access.denied";
    /// A request was rate limited.
    pub const RATE_LIMITED: &str = "rate.limited";
    /// An API key was created.
    pub const KEY_CREATED: &str = "key.created";
    /// An API key was revoked.
    pub const KEY_REVOKED: &str = "key.revoked";
    /// A token (jti) was revoked.
    pub const TOKEN_REVOKED: &str = "token.revoked";
    /// A tenant was created.
    pub const TENANT_CREATED: &str = "tenant.created";
    /// A tenant was enabled or disabled.
    pub const TENANT_UPDATED: &str = "tenant.updated";
    /// A tenant's configuration changed.
    pub const CONFIG_UPDATED: &str = "config.updated";
    /// Documents were ingested.
    pub const RAG_INGESTED: &str = "rag.ingested";
    /// Documents were deleted.
    pub const RAG_DELETED: &str = "rag.deleted";
    /// An agent action was approved or rejected by a human.
    pub const AGENT_APPROVAL: &str = "agent.approval";
}

/// Whether the audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was refused (authentication, authorization, limits).
    Denied,
    /// It failed.
    Failure,
}

impl Outcome {
    /// Wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failure => "failure",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Success, Self::Denied, Self::Failure]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One security-relevant event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The tenant whose chain the event joins.
    pub tenant: TenantId,
    /// Who acted (subject, key id, or `anonymous`).
    pub actor: String,
    /// What happened (see [`actions`]).
    pub action: String,
    /// What it happened to (key id, tenant id, route...).
    pub target: String,
    /// Whether it succeeded.
    pub outcome: Outcome,
    /// The request that caused it.
    pub request_id: String,
    /// When (unix ms).
    pub time_ms: i64,
    /// Extra detail (no secrets).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// The canonical serialisation hashed into the chain: every field, in a fixed order, each as a
    /// big-endian u32 length followed by its UTF-8 bytes (absent detail: length `u32::MAX`). No
    /// field can bleed into another, and no serde format or map order is involved.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        let mut put = |s: &str| {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        put(self.tenant.as_str());
        put(&self.actor);
        put(&self.action);
        put(&self.target);
        put(self.outcome.as_str());
        put(&self.request_id);
        put(&self.time_ms.to_string());
        match &self.detail {
            Some(d) => put(d),
            None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
        }
        out
    }
}

/// A stored event with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the tenant's chain, from 1.
    pub seq: i64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hex hash of the previous record (64 zeros for the first).
    pub prev_hash: String,
    /// Hex hash of this record.
    pub hash: String,
}

/// Which records to return. Every field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// Exact action.
    pub action: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact target.
    pub target: Option<String>,
    /// Exact outcome.
    pub outcome: Option<Outcome>,
    /// Events at or after (unix ms).
    pub since_ms: Option<i64>,
    /// Events before (unix ms).
    pub until_ms: Option<i64>,
}

/// Keyset pagination: records with `seq` below `before` (newest first), at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Exclusive upper bound on `seq`; `None` starts at the newest.
    pub before: Option<i64>,
    /// Page size (clamped to 1..=1000 by stores).
    pub limit: u32,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            before: None,
            limit: 100,
        }
    }
}

/// One page of records, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The records.
    pub records: Vec<AuditRecord>,
    /// Pass as `before` for the next page; `None` at the end.
    pub next_before: Option<i64>,
}

/// The result of checking a tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    /// Whether the chain is intact.
    pub valid: bool,
    /// Records checked.
    pub checked: u64,
    /// The first sequence number where the chain breaks.
    pub broken_at: Option<i64>,
    /// Why it breaks.
    pub reason: Option<String>,
}

/// Somewhere to send audit events (fire and forget from the caller's view).
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Appends `event` to its tenant's chain.
    async fn append(&self, event: AuditEvent) -> Result<AuditRecord>;
}

/// An audit log that can also be queried and verified.
#[async_trait]
pub trait AuditLog: AuditSink {
    /// The tenant's records matching `filter`, newest first.
    async fn query(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<AuditPage>;
    /// Recomputes the tenant's chain.
    async fn verify(&self, tenant: &TenantId) -> Result<ChainReport>;
}

#[async_trait]
impl<T: AuditSink + ?Sized> AuditSink for Arc<T> {
    async fn append(&self, event: AuditEvent) -> Result<AuditRecord> {
        (**self).append(event).await
    }
}

#[async_trait]
impl<T: AuditLog + ?Sized> AuditLog for Arc<T> {
    async fn query(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<AuditPage> {
        (**self).query(tenant, filter, page).await
    }
    async fn verify(&self, tenant: &TenantId) -> Result<ChainReport> {
        (**self).verify(tenant).await
    }
}

#[cfg(test)]
fn _object_safe(_: Arc<dyn AuditLog>, _: Arc<dyn AuditSink>) {}
