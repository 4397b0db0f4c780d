//! The admin API: library functions (usable without HTTP) and an axum router over them.
//!
//! Tenant-scoped operations act on the caller's own tenant only; an object of another tenant is
//! reported exactly like a missing one (`404 not_found`, same message). Cross-tenant operations
//! live under `/v1/admin/tenants/...` and need `platform:admin`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use wattos_core::tenancy::{
    ApiKeyRecord, AuditFilter, AuditPage, BuiltinRole, ChainReport, Outcome, PageRequest,
    Permission, Tenant, TenantConfig, actions, effective_permissions,
};
use wattos_core::{Error, Result, TenantId};

use crate::auth::{Auth, Authenticated, key_revocation_id, now_ms, token_revocation_id};
use crate::error::ApiResult;

/// Usage of one model in a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelUsage {
    /// Model name.
    pub model: String,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Spend in USD.
    pub cost_usd: f64,
    /// Prompt tokens served from the provider's cache.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Calls that failed (counted in `requests`).
    #[serde(default)]
    pub failed: u64,
    /// Mean upstream latency in milliseconds.
    #[serde(default)]
    pub avg_latency_ms: f64,
}

/// Usage of one API key (or user) in a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyUsage {
    /// API key id, user id or `system`.
    pub principal: String,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Spend in USD.
    pub cost_usd: f64,
}

/// Usage of one UTC day in a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DayUsage {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Spend in USD.
    pub cost_usd: f64,
}

/// A tenant's usage over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Period start (unix ms, inclusive).
    pub since_ms: i64,
    /// Period end (unix ms, exclusive).
    pub until_ms: i64,
    /// Per-model figures.
    pub models: Vec<ModelUsage>,
    /// Per API key (or user) figures.
    #[serde(default)]
    pub keys: Vec<KeyUsage>,
    /// Per UTC day figures, oldest first.
    #[serde(default)]
    pub days: Vec<DayUsage>,
    /// Total spend in USD.
    #[serde(default)]
    pub total_cost_usd: f64,
}

/// The hook the router's usage sink implements to serve `GET /v1/admin/usage`.
#[async_trait]
pub trait UsageReporter: Send + Sync {
    /// The tenant's usage in `[since_ms, until_ms)`.
    async fn report(&self, tenant: &TenantId, since_ms: i64, until_ms: i64) -> Result<UsageReport>;
}

/// Body of a key creation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Label.
    pub name: String,
    /// Roles the key holds (built-in or the tenant's own).
    pub roles: Vec<String>,
    /// Lifetime in seconds; none for a key that does not expire.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// A created key: the record plus the secret, shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    /// The stored record (without hash).
    #[serde(flatten)]
    pub record: ApiKeyRecord,
    /// The full key. It cannot be retrieved again.
    pub key: String,
}

/// Body of a token revocation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp` (unix seconds): the revocation is kept until then.
    pub exp: u64,
}

/// Body of a tenant creation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Tenant id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
}

/// Body of a tenant update.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// Enable (false) or disable (true).
    pub disabled: bool,
}

/// The longest key lifetime accepted (`expires_in_secs`): 100 years.
pub const MAX_KEY_LIFETIME_SECS: u64 = 100 * 365 * 24 * 3600;

fn key_not_found() -> Error {
    Error::not_found("api key")
}

fn actor(caller: &Authenticated) -> &str {
    &caller.ctx.principal().subject
}

fn rid(caller: &Authenticated) -> &str {
    caller.ctx.request_id().as_str()
}

/// Mints a key for `tenant`. The requested roles may not grant more than the caller holds (no
/// escalation), and `platform_admin` only by a platform admin.
///
/// # Errors
/// `forbidden` without `keys:manage` or for escalation; `invalid_input` for unknown roles or a bad
/// name.
pub async fn create_key(
    auth: &Auth,
    caller: &Authenticated,
    tenant: &TenantId,
    req: CreateKey,
) -> Result<CreatedKey> {
    let platform = caller.permissions.contains(Permission::PlatformAdmin);
    if !platform {
        wattos_core::tenancy::require_in(caller.permissions, Permission::KeysManage)?;
    }
    if req.name.trim().is_empty() || req.name.len() > 128 {
        return Err(Error::invalid_field("name", "must be 1..=128 characters"));
    }
    if req.roles.is_empty() {
        return Err(Error::invalid_field(
            "roles",
            "at least one role is required",
        ));
    }
    let config = auth.parts().tenants.get_config(tenant).await?;
    for role in &req.roles {
        if role == BuiltinRole::System.name() {
            return Err(Error::invalid_field(
                "roles",
                "`system` is WattOS's own role and cannot be given to a key",
            ));
        }
        if BuiltinRole::from_name(role).is_none() && config.roles.get(role).is_none() {
            return Err(Error::invalid_field(
                "roles",
                format!("unknown role `{role}`"),
            ));
        }
    }
    let granted = effective_permissions(&req.roles, &config.roles);
    if !granted.is_subset_of(caller.permissions) {
        return Err(Error::forbidden(
            "a key cannot hold permissions its creator does not hold",
        ));
    }
    let expires_at_ms = match req.expires_in_secs {
        Some(s) if !(1..=MAX_KEY_LIFETIME_SECS).contains(&s) => {
            return Err(Error::invalid_field(
                "expires_in_secs",
                format!("must be 1..={MAX_KEY_LIFETIME_SECS} (100 years)"),
            ));
        }
        // In range: s * 1000 fits an i64 many times over.
        Some(s) => Some(now_ms().saturating_add(i64::try_from(s * 1000).unwrap_or(i64::MAX))),
        None => None,
    };
    let new = auth.parts().hasher.mint()?;
    let record = ApiKeyRecord {
        id: new.id.clone(),
        tenant: tenant.clone(),
        name: req.name,
        roles: req.roles,
        secret_hash: new.secret_hash.clone(),
        created_by: actor(caller).to_owned(),
        created_at_ms: now_ms(),
        expires_at_ms,
        revoked_at_ms: None,
        last_used_at_ms: None,
    };
    auth.parts().keys.insert(&record).await?;
    auth.audit_event(
        tenant,
        actor(caller),
        actions::KEY_CREATED,
        &record.id,
        Outcome::Success,
        rid(caller),
        Some(format!("roles={}", record.roles.join(","))),
    )
    .await;
    Ok(CreatedKey {
        record,
        key: new.key,
    })
}

/// The caller's tenant's keys.
///
/// # Errors
/// `forbidden` without `keys:manage`.
pub async fn list_keys(auth: &Auth, caller: &Authenticated) -> Result<Vec<ApiKeyRecord>> {
    wattos_core::tenancy::require_in(caller.permissions, Permission::KeysManage)?;
    auth.parts().keys.list(caller.tenant()).await
}

/// One of the caller's tenant's keys.
///
/// # Errors
/// `not_found` when missing or another tenant's; `forbidden` without `keys:manage`.
pub async fn get_key(auth: &Auth, caller: &Authenticated, id: &str) -> Result<ApiKeyRecord> {
    wattos_core::tenancy::require_in(caller.permissions, Permission::KeysManage)?;
    auth.parts()
        .keys
        .get(caller.tenant(), id)
        .await
        .map_err(|e| {
            if e.kind() == wattos_core::ErrorKind::NotFound {
                key_not_found()
            } else {
                e
            }
        })
}

/// Revokes one of the caller's tenant's keys, effective immediately in every process sharing the
/// revocation store.
///
/// # Errors
/// `not_found` when missing or another tenant's; `forbidden` without `keys:manage`.
pub async fn revoke_key(auth: &Auth, caller: &Authenticated, id: &str) -> Result<ApiKeyRecord> {
    let record = get_key(auth, caller, id).await?;
    let now = now_ms();
    auth.parts().keys.revoke(caller.tenant(), id, now).await?;
    let until = record
        .expires_at_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or(
            UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 4),
            |ms| UNIX_EPOCH + Duration::from_millis(ms),
        );
    auth.parts()
        .revocations
        .revoke(&key_revocation_id(id), until)
        .await?;
    auth.api_keys().invalidate(id);
    auth.audit_event(
        caller.tenant(),
        actor(caller),
        actions::KEY_REVOKED,
        id,
        Outcome::Success,
        rid(caller),
        None,
    )
    .await;
    auth.parts().keys.get(caller.tenant(), id).await
}

/// Revokes a JWT of the caller's tenant by `jti` until its expiry.
///
/// # Errors
/// `forbidden` without `keys:manage`; `invalid_input` for an empty jti.
pub async fn revoke_token(auth: &Auth, caller: &Authenticated, req: RevokeToken) -> Result<()> {
    wattos_core::tenancy::require_in(caller.permissions, Permission::KeysManage)?;
    if req.jti.is_empty() || req.jti.len() > 256 {
        return Err(Error::invalid_field("jti", "must be 1..=256 characters"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if req.exp > crate::auth::MAX_EXP_SECS {
        return Err(Error::invalid_field(
            "exp",
            format!(
                "must be a unix time in seconds no later than {} (year 9999)",
                crate::auth::MAX_EXP_SECS
            ),
        ));
    }
    if req.exp <= now {
        // Such a revocation would expire at once and leave a still-valid token working: the
        // caller has the wrong exp. Say so instead of answering 204.
        return Err(Error::invalid_field(
            "exp",
            "is in the past: send the token's own `exp` claim (a token past it is refused anyway)",
        ));
    }
    // Keep it past exp by the largest plausible leeway.
    let until = UNIX_EPOCH
        .checked_add(Duration::from_secs(req.exp.saturating_add(300)))
        .ok_or_else(|| Error::invalid_field("exp", "out of range"))?;
    auth.parts()
        .revocations
        .revoke(&token_revocation_id(caller.tenant(), &req.jti), until)
        .await?;
    auth.audit_event(
        caller.tenant(),
        actor(caller),
        actions::TOKEN_REVOKED,
        &req.jti,
        Outcome::Success,
        rid(caller),
        None,
    )
    .await;
    Ok(())
}

/// Replaces a tenant's configuration after validation.
///
/// # Errors
/// `invalid_input` naming the bad field; `forbidden` without `tenant:configure`.
pub async fn put_config(
    auth: &Auth,
    caller: &Authenticated,
    tenant: &TenantId,
    config: TenantConfig,
) -> Result<TenantConfig> {
    config.validate()?;
    auth.parts().tenants.put_config(tenant, &config).await?;
    auth.invalidate_tenant(tenant);
    auth.audit_event(
        tenant,
        actor(caller),
        actions::CONFIG_UPDATED,
        "config",
        Outcome::Success,
        rid(caller),
        None,
    )
    .await;
    Ok(config)
}

/// Registers a tenant (platform admins only).
///
/// # Errors
/// `forbidden` without `platform:admin`; `conflict` when it exists.
pub async fn create_tenant(
    auth: &Auth,
    caller: &Authenticated,
    req: CreateTenant,
) -> Result<Tenant> {
    wattos_core::tenancy::require_in(caller.permissions, Permission::PlatformAdmin)?;
    if req.name.trim().is_empty() || req.name.len() > 256 {
        return Err(Error::invalid_field("name", "must be 1..=256 characters"));
    }
    // `platform` (the platform tenant, created at start) and `_`-prefixed ids (internal chains
    // such as the platform audit tenant) are the server's own.
    if req.id == auth.parts().platform_tenant || req.id.as_str().starts_with('_') {
        return Err(Error::invalid_field(
            "id",
            format!("`{}` is a reserved tenant id", req.id),
        ));
    }
    let tenant = Tenant {
        id: req.id,
        name: req.name,
        disabled: false,
        created_at_ms: now_ms(),
    };
    auth.parts().tenants.create_tenant(&tenant).await?;
    auth.audit_event(
        &tenant.id,
        actor(caller),
        actions::TENANT_CREATED,
        tenant.id.as_str(),
        Outcome::Success,
        rid(caller),
        None,
    )
    .await;
    Ok(tenant)
}

fn need(caller: &Authenticated, p: Permission) -> Result<()> {
    wattos_core::tenancy::require_in(caller.permissions, p)
}

// ---- handlers ----

async fn h_create_key(
    State(auth): State<Auth>,
    caller: Authenticated,
    Json(req): Json<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let tenant = caller.tenant().clone();
    Ok((
        StatusCode::CREATED,
        Json(create_key(&auth, &caller, &tenant, req).await?),
    ))
}

async fn h_list_keys(
    State(auth): State<Auth>,
    caller: Authenticated,
) -> ApiResult<Json<Vec<ApiKeyRecord>>> {
    Ok(Json(list_keys(&auth, &caller).await?))
}

async fn h_get_key(
    State(auth): State<Auth>,
    caller: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyRecord>> {
    Ok(Json(get_key(&auth, &caller, &id).await?))
}

async fn h_revoke_key(
    State(auth): State<Auth>,
    caller: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyRecord>> {
    Ok(Json(revoke_key(&auth, &caller, &id).await?))
}

async fn h_revoke_token(
    State(auth): State<Auth>,
    caller: Authenticated,
    Json(req): Json<RevokeToken>,
) -> ApiResult<StatusCode> {
    revoke_token(&auth, &caller, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn h_get_config(
    State(auth): State<Auth>,
    caller: Authenticated,
) -> ApiResult<Json<TenantConfig>> {
    need(&caller, Permission::TenantConfigure)?;
    Ok(Json(
        auth.parts().tenants.get_config(caller.tenant()).await?,
    ))
}

async fn h_put_config(
    State(auth): State<Auth>,
    caller: Authenticated,
    Json(config): Json<TenantConfig>,
) -> ApiResult<Json<TenantConfig>> {
    need(&caller, Permission::TenantConfigure)?;
    let tenant = caller.tenant().clone();
    Ok(Json(put_config(&auth, &caller, &tenant, config).await?))
}

/// Query string of `GET /v1/admin/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    /// Exact action.
    pub action: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact target.
    pub target: Option<String>,
    /// Exact outcome.
    pub outcome: Option<Outcome>,
    /// From (unix ms).
    pub since_ms: Option<i64>,
    /// Until (unix ms).
    pub until_ms: Option<i64>,
    /// Page cursor.
    pub before: Option<i64>,
    /// Page size.
    pub limit: Option<u32>,
    /// Whose chain: the caller's own tenant by default. A platform administrator may name any
    /// tenant, including the platform chain `_platform` (refused authentication of every tenant).
    pub tenant: Option<TenantId>,
}

/// Query string of `GET /v1/admin/audit/verify`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditChainQuery {
    /// As [`AuditQuery::tenant`].
    pub tenant: Option<TenantId>,
}

/// The audit chain `caller` asked for: its own, or (platform administrators only, a denial is
/// audited) any tenant's.
async fn audit_chain(
    auth: &Auth,
    caller: &Authenticated,
    requested: Option<TenantId>,
) -> Result<TenantId> {
    need(caller, Permission::AuditRead)?;
    match requested {
        None => Ok(caller.tenant().clone()),
        Some(t) if t == *caller.tenant() => Ok(t),
        Some(t) => {
            if let Err(e) = need(caller, Permission::PlatformAdmin) {
                auth.audit_denied(caller, Permission::PlatformAdmin, &format!("audit:{t}"))
                    .await;
                return Err(e);
            }
            Ok(t)
        }
    }
}

async fn h_audit(
    State(auth): State<Auth>,
    caller: Authenticated,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let chain = audit_chain(&auth, &caller, q.tenant).await?;
    let filter = AuditFilter {
        action: q.action,
        actor: q.actor,
        target: q.target,
        outcome: q.outcome,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
    };
    let page = PageRequest {
        before: q.before,
        limit: q.limit.unwrap_or(100),
    };
    Ok(Json(auth.parts().audit.query(&chain, &filter, page).await?))
}

async fn h_audit_verify(
    State(auth): State<Auth>,
    caller: Authenticated,
    Query(q): Query<AuditChainQuery>,
) -> ApiResult<Json<ChainReport>> {
    let chain = audit_chain(&auth, &caller, q.tenant).await?;
    Ok(Json(auth.parts().audit.verify(&chain).await?))
}

/// Query string of `GET /v1/admin/usage`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UsageQuery {
    /// From (unix ms); default 30 days ago.
    pub since_ms: Option<i64>,
    /// Until (unix ms); default now.
    pub until_ms: Option<i64>,
}

async fn h_usage(
    State(auth): State<Auth>,
    caller: Authenticated,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Json<UsageReport>> {
    need(&caller, Permission::UsageRead)?;
    let reporter = auth
        .parts()
        .usage
        .clone()
        .ok_or_else(|| Error::unavailable("usage reporting is not configured"))?;
    let until = q.until_ms.unwrap_or_else(now_ms);
    let since = q
        .since_ms
        .unwrap_or_else(|| until.saturating_sub(30 * 24 * 3600 * 1000));
    Ok(Json(reporter.report(caller.tenant(), since, until).await?))
}

/// Query string of `GET /v1/admin/tenants`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TenantListQuery {
    /// Page cursor: the last id of the previous page.
    pub after: Option<TenantId>,
    /// Page size.
    pub limit: Option<u32>,
}

async fn h_create_tenant(
    State(auth): State<Auth>,
    caller: Authenticated,
    Json(req): Json<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    Ok((
        StatusCode::CREATED,
        Json(create_tenant(&auth, &caller, req).await?),
    ))
}

async fn h_list_tenants(
    State(auth): State<Auth>,
    caller: Authenticated,
    Query(q): Query<TenantListQuery>,
) -> ApiResult<Json<Vec<Tenant>>> {
    need(&caller, Permission::PlatformAdmin)?;
    Ok(Json(
        auth.parts()
            .tenants
            .list_tenants(q.after.as_ref(), q.limit.unwrap_or(100))
            .await?,
    ))
}

async fn platform_tenant(auth: &Auth, caller: &Authenticated, id: &str) -> Result<Tenant> {
    need(caller, Permission::PlatformAdmin)?;
    let id = TenantId::new(id).map_err(|_| Error::not_found("tenant"))?;
    auth.parts()
        .tenants
        .get_tenant(&id)
        .await?
        .ok_or_else(|| Error::not_found("tenant"))
}

async fn h_get_tenant(
    State(auth): State<Auth>,
    caller: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(platform_tenant(&auth, &caller, &id).await?))
}

async fn h_update_tenant(
    State(auth): State<Auth>,
    caller: Authenticated,
    Path(id): Path<String>,
    Json(req): Json<UpdateTenant>,
) -> ApiResult<Json<Tenant>> {
    let t = platform_tenant(&auth, &caller, &id).await?;
    auth.parts()
        .tenants
        .set_disabled(&t.id, req.disabled)
        .await?;
    auth.invalidate_tenant(&t.id);
    auth.audit_event(
        &t.id,
        actor(&caller),
        actions::TENANT_UPDATED,
        t.id.as_str(),
        Outcome::Success,
        rid(&caller),
        Some(format!("disabled={}", req.disabled)),
    )
    .await;
    Ok(Json(platform_tenant(&auth, &caller, &id).await?))
}

async fn h_tenant_get_config(
    State(auth): State<Auth>,
    caller: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<TenantConfig>> {
    let t = platform_tenant(&auth, &caller, &id).await?;
    Ok(Json(auth.parts().tenants.get_config(&t.id).await?))
}

async fn h_tenant_put_config(
    State(auth): State<Auth>,
    caller: Authenticated,
    Path(id): Path<String>,
    Json(config): Json<TenantConfig>,
) -> ApiResult<Json<TenantConfig>> {
    let t = platform_tenant(&auth, &caller, &id).await?;
    Ok(Json(put_config(&auth, &caller, &t.id, config).await?))
}

async fn h_tenant_create_key(
    State(auth): State<Auth>,
    caller: Authenticated,
    Path(id): Path<String>,
    Json(req): Json<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let t = platform_tenant(&auth, &caller, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(create_key(&auth, &caller, &t.id, req).await?),
    ))
}

/// The admin routes, to be served behind [`Auth::layer`]:
///
/// | Method | Path | Permission |
/// |---|---|---|
/// | POST, GET | `/v1/admin/keys` | `keys:manage` |
/// | GET, DELETE | `/v1/admin/keys/{id}` | `keys:manage` |
/// | POST | `/v1/admin/tokens/revoke` | `keys:manage` |
/// | GET, PUT | `/v1/admin/config` | `tenant:configure` |
/// | GET | `/v1/admin/audit`, `/v1/admin/audit/verify` | `audit:read` (`?tenant=` of another tenant, e.g. `_platform`: `platform:admin`) |
/// | GET | `/v1/admin/usage` | `usage:read` |
/// | POST, GET | `/v1/admin/tenants` | `platform:admin` |
/// | GET, PATCH | `/v1/admin/tenants/{id}` | `platform:admin` |
/// | GET, PUT | `/v1/admin/tenants/{id}/config` | `platform:admin` |
/// | POST | `/v1/admin/tenants/{id}/keys` | `platform:admin` |
pub fn admin_routes<S: Clone + Send + Sync + 'static>(auth: Auth) -> Router<S> {
    // The permission of each route is checked (and every denial audited) by the route layer; the
    // handlers' own checks stay for the library functions they call and for finer rules.
    let keys = auth.require(Permission::KeysManage);
    let configure = auth.require(Permission::TenantConfigure);
    let audit = auth.require(Permission::AuditRead);
    let usage = auth.require(Permission::UsageRead);
    let platform = auth.require(Permission::PlatformAdmin);
    Router::new()
        .route(
            "/v1/admin/keys",
            post(h_create_key)
                .get(h_list_keys)
                .route_layer(keys.clone()),
        )
        .route(
            "/v1/admin/keys/{id}",
            get(h_get_key)
                .delete(h_revoke_key)
                .route_layer(keys.clone()),
        )
        .route(
            "/v1/admin/tokens/revoke",
            post(h_revoke_token).route_layer(keys),
        )
        .route(
            "/v1/admin/config",
            get(h_get_config).put(h_put_config).route_layer(configure),
        )
        .route("/v1/admin/audit", get(h_audit).route_layer(audit.clone()))
        .route(
            "/v1/admin/audit/verify",
            get(h_audit_verify).route_layer(audit),
        )
        .route("/v1/admin/usage", get(h_usage).route_layer(usage))
        .route(
            "/v1/admin/tenants",
            post(h_create_tenant)
                .get(h_list_tenants)
                .route_layer(platform.clone()),
        )
        .route(
            "/v1/admin/tenants/{id}",
            get(h_get_tenant)
                .patch(h_update_tenant)
                .route_layer(platform.clone()),
        )
        .route(
            "/v1/admin/tenants/{id}/config",
            get(h_tenant_get_config)
                .put(h_tenant_put_config)
                .route_layer(platform.clone()),
        )
        .route(
            "/v1/admin/tenants/{id}/keys",
            post(h_tenant_create_key).route_layer(platform),
        )
        .with_state(auth)
}

#[cfg(test)]
fn _object_safe(_: std::sync::Arc<dyn UsageReporter>) {}
