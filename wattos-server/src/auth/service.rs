//! [`Auth`]: the one object the server needs for authentication, authorization, limits and audit.

use std::sync::Arc;
use std::time::Duration;

use wattos_core::resilience::{Admission, AdmissionLimits};
use wattos_core::tenancy::{
    ApiKeyStore, AuditEvent, AuditLog, Authenticator, BuiltinRole, Credentials, Identity, Outcome,
    Permission, PermissionSet, RevocationStore, TenantConfig, TenantConfigCache, TenantStore,
    effective_permissions,
};
use wattos_core::{Error, Result, TenantId};
use wattos_llm::router::TenantConfigPolicies;

use super::apikey::{ApiKeyAuthenticator, KeyHasher, looks_like_api_key, now_ms};
use super::jwt::JwtAuthenticator;
use super::ratelimit::{MemoryRateLimiter, RateLimiter};
use crate::tenancy::admin::UsageReporter;

/// How long tenant records, configuration and API key records are cached by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);

/// The tenant every event without a trustworthy tenant (failed authentication) is audited under.
pub const PLATFORM_AUDIT_TENANT: &str = "_platform";

/// The stores and services [`Auth`] is built from.
#[derive(Clone)]
pub struct AuthParts {
    /// Tenant registry and configuration.
    pub tenants: Arc<dyn TenantStore>,
    /// API key records.
    pub keys: Arc<dyn ApiKeyStore>,
    /// Revoked token and key ids.
    pub revocations: Arc<dyn RevocationStore>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// Request rate limiter.
    pub limiter: Arc<dyn RateLimiter>,
    /// API key hasher (holds the pepper).
    pub hasher: KeyHasher,
    /// JWT validation, when JWTs are accepted.
    pub jwt: Option<Arc<JwtAuthenticator>>,
    /// Any other authenticator, tried for bearer tokens that are neither API keys nor accepted JWTs.
    pub custom: Option<Arc<dyn Authenticator>>,
    /// Where usage reports come from (the router's usage sink), when available.
    pub usage: Option<Arc<dyn UsageReporter>>,
    /// The routers' view of tenant configuration: authentication reads tenant configuration
    /// through its cache, so one invalidation reaches both (without it, authentication keeps a
    /// cache of its own over `tenants`).
    pub policies: Option<Arc<TenantConfigPolicies>>,
    /// How long tenant records, configuration and API key records are cached.
    pub cache_ttl: Duration,
    /// Deadline given to each request's context, if any.
    pub request_timeout: Option<Duration>,
    /// The only tenant whose principals may hold `platform:admin` (default `platform`); the
    /// permission is stripped from everyone else, whatever their token or key says.
    pub platform_tenant: TenantId,
}

impl std::fmt::Debug for AuthParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthParts")
            .field("jwt", &self.jwt)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

impl AuthParts {
    /// Parts over one SQL store (tenants, keys, audit), in-memory revocations and rate limits, no
    /// JWT: the embedded setup. Replace fields for shared mode (Redis revocations and limiter).
    pub fn embedded(store: crate::tenancy::SqlStore, hasher: KeyHasher) -> Self {
        let store = Arc::new(store);
        Self {
            tenants: store.clone(),
            keys: store.clone(),
            revocations: Arc::new(super::revocation::MemoryRevocations::new()),
            audit: store,
            limiter: Arc::new(MemoryRateLimiter::new()),
            hasher,
            jwt: None,
            custom: None,
            usage: None,
            policies: None,
            cache_ttl: DEFAULT_CACHE_TTL,
            request_timeout: None,
            platform_tenant: TenantId::new("platform")
                .unwrap_or_else(|_| unreachable!("a valid literal id")),
        }
    }
}

/// What authentication resolved for a tenant: enabled or not, and its configuration.
#[derive(Debug, Clone)]
pub(crate) struct TenantEntry {
    pub(crate) config: Arc<TenantConfig>,
}

/// Authentication, authorization, limits and audit for the server. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    pub(crate) inner: Arc<AuthInner>,
}

pub(crate) struct AuthInner {
    pub(crate) parts: AuthParts,
    pub(crate) api_keys: Arc<ApiKeyAuthenticator>,
    /// Requests in flight per tenant (the tenant's `rate_limits.max_concurrent`).
    pub(crate) concurrency: Admission,
    /// Tenant status and configuration: the policy source's cache when there is one, so both
    /// see a change at the same time.
    configs: Arc<TenantConfigCache>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("parts", &self.inner.parts)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Builds the service from its parts.
    pub fn new(parts: AuthParts) -> Self {
        let api_keys = Arc::new(ApiKeyAuthenticator::new(
            parts.keys.clone(),
            parts.revocations.clone(),
            parts.hasher.clone(),
            parts.cache_ttl,
        ));
        let configs = match &parts.policies {
            Some(p) => p.configs().clone(),
            None => Arc::new(TenantConfigCache::new(
                parts.tenants.clone(),
                parts.cache_ttl,
            )),
        };
        Self {
            inner: Arc::new(AuthInner {
                parts,
                api_keys,
                concurrency: Admission::new(
                    "requests",
                    AdmissionLimits {
                        // Only the tenant's own limit applies (the server-wide one is load_shed's).
                        global: usize::MAX,
                        per_tenant: usize::MAX,
                        retry_after: Duration::from_secs(1),
                    },
                ),
                configs,
            }),
        }
    }

    /// The parts this service was built from.
    pub fn parts(&self) -> &AuthParts {
        &self.inner.parts
    }

    /// The API key authenticator (to flush last-used times, or spawn its flusher).
    pub fn api_keys(&self) -> &Arc<ApiKeyAuthenticator> {
        &self.inner.api_keys
    }

    /// Resolves credentials to an identity: `wk_` keys through the key store, other bearer tokens
    /// through the JWT validator, then the custom authenticator.
    ///
    /// # Errors
    /// `unauthenticated` for every rejected credential.
    pub async fn identify(&self, creds: &Credentials) -> Result<Identity> {
        let parts = &self.inner.parts;
        if matches!(creds, Credentials::ApiKey(_)) || looks_like_api_key(creds.secret()) {
            return self.inner.api_keys.authenticate(creds).await;
        }
        match (&parts.jwt, &parts.custom) {
            (Some(jwt), None) => jwt.authenticate(creds).await,
            (None, Some(custom)) => custom.authenticate(creds).await,
            (Some(jwt), Some(custom)) => match jwt.authenticate(creds).await {
                Ok(id) => Ok(id),
                Err(e) if e.kind() == wattos_core::ErrorKind::Unauthenticated => {
                    custom.authenticate(creds).await
                }
                Err(e) => Err(e),
            },
            (None, None) => Err(Error::unauthenticated("invalid token")),
        }
    }

    /// The tenant's enabled entry (configuration), from the tenant configuration cache shared
    /// with the routers' policy source (one cache, one invalidation).
    ///
    /// # Errors
    /// `unauthenticated` when the tenant is unknown or disabled.
    pub(crate) async fn tenant_entry(&self, tenant: &TenantId) -> Result<TenantEntry> {
        match self.inner.configs.config(tenant).await? {
            Some(config) => Ok(TenantEntry { config }),
            None => Err(Error::unauthenticated("unknown or disabled tenant")),
        }
    }

    /// The tenant configuration cache (shared with the routers' policy source when there is one).
    pub fn tenant_configs(&self) -> &Arc<TenantConfigCache> {
        &self.inner.configs
    }

    /// Forgets the cached entry of `tenant` (after a configuration change in this process), for
    /// authentication and the routers alike: with a policy source, `configs` is its cache.
    pub fn invalidate_tenant(&self, tenant: &TenantId) {
        self.inner.configs.invalidate(tenant);
    }

    /// The permissions of `roles` in `tenant` under its configuration. `platform:admin` is kept only
    /// for principals of the platform tenant; the `system` role (WattOS's own background work,
    /// [`wattos_core::Principal::system`]) grants nothing when a credential names it.
    pub fn permissions(
        &self,
        tenant: &TenantId,
        roles: &[String],
        config: &TenantConfig,
    ) -> PermissionSet {
        let system = BuiltinRole::System.name();
        let granted: Vec<String> = roles.iter().filter(|r| *r != system).cloned().collect();
        let perms = effective_permissions(&granted, &config.roles);
        if *tenant == self.inner.parts.platform_tenant {
            perms
        } else {
            perms.without(PermissionSet::of(&[Permission::PlatformAdmin]))
        }
    }

    /// Appends an audit event; failures are logged, never returned (auditing must not turn a
    /// request into an error after its effect happened).
    pub async fn audit(&self, event: AuditEvent) {
        super::mutations::mark_audited();
        if let Err(e) = self.inner.parts.audit.append(event).await {
            tracing::error!(error = %e, "audit append failed");
        }
    }

    /// Builds and appends an audit event.
    #[allow(clippy::too_many_arguments)]
    pub async fn audit_event(
        &self,
        tenant: &TenantId,
        actor: &str,
        action: &str,
        target: &str,
        outcome: Outcome,
        request_id: &str,
        detail: Option<String>,
    ) {
        self.audit(AuditEvent {
            tenant: tenant.clone(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome,
            request_id: request_id.to_owned(),
            time_ms: now_ms(),
            detail,
        })
        .await;
    }
}

/// Counts one operation on one of the authentication caches (`cache_operations_total`).
pub(crate) fn cache_op(cache: &'static str, result: &'static str) {
    metrics::counter!(wattos_core::telemetry::names::CACHE_OPERATIONS_TOTAL,
        "cache" => cache, "result" => result)
    .increment(1);
}
