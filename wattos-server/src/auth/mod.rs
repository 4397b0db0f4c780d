//! Authentication and authorization for the server: JWT and API key authenticators, revocation
//! stores, rate limiters, and the axum layer / extractor that enforce them in one place.
//!
//! Wiring (see `docs/security.md`):
//!
//! ```no_run
//! # async fn f() -> wattos_core::Result<()> {
//! use axum::{Router, routing::post};
//! use wattos_core::tenancy::Permission;
//! use wattos_server::auth::{Auth, AuthParts, Authenticated, KeyHasher};
//! use wattos_server::tenancy::{SqlStore, admin};
//!
//! let store = SqlStore::connect("sqlite::memory:").await?;
//! let auth = Auth::new(AuthParts::embedded(store, KeyHasher::new("a-long-server-pepper")?));
//! async fn chat(caller: Authenticated) -> String { caller.tenant().to_string() }
//! let api: Router = Router::new()
//!     .route("/v1/chat/completions", post(chat).route_layer(auth.require(Permission::ChatInvoke)))
//!     .merge(admin::admin_routes(auth.clone()))
//!     .layer(auth.layer());
//! # Ok(()) }
//! ```

mod apikey;
pub(crate) use apikey::hmac_sha256;
mod jwt;
mod layer;
mod mutations;
mod ratelimit;
mod revocation;
mod service;

pub use apikey::{
    ApiKeyAuthenticator, KEY_PREFIX, KeyHasher, NewKey, key_revocation_id, looks_like_api_key,
    now_ms, parse_key,
};
pub use jwt::{JwtAuthenticator, JwtConfig, JwtKeys, MAX_EXP_SECS, token_revocation_id};
pub use layer::{
    AuthLayer, AuthService, Authenticated, RequirePermission, RequirePermissionLayer,
    credentials_from,
};
pub use mutations::{QUERY_ROUTES, is_mutation, mutation_action};
#[cfg(feature = "redis")]
pub use ratelimit::RedisRateLimiter;
pub use ratelimit::{Decision, MemoryRateLimiter, Quota, RateLimiter};
pub use revocation::MemoryRevocations;
#[cfg(feature = "redis")]
pub use revocation::RedisRevocations;
pub use service::{Auth, AuthParts, DEFAULT_CACHE_TTL, PLATFORM_AUDIT_TENANT};
