//! The [`Ctx`] extractor: the caller's [`RequestContext`], put into request extensions by the
//! authentication layer (or by [`embedded_identity`] when authentication is off).

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use wattos_core::{Error, Principal, RequestContext, TenantId};

use crate::error::ApiError;
use crate::middleware::RequestMeta;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .map(Ctx)
            .ok_or_else(|| ApiError(Error::unauthenticated("missing or invalid credentials")))
    }
}

/// The caller's tenant configuration, when authentication is on (`None` in embedded mode without
/// authentication). Never rejects.
#[derive(Debug, Clone, Default)]
pub struct CallerConfig(pub Option<std::sync::Arc<wattos_core::tenancy::TenantConfig>>);

impl<S: Send + Sync> FromRequestParts<S> for CallerConfig {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<crate::auth::Authenticated>()
                .map(|a| a.config.clone()),
        ))
    }
}

/// The tenant every request belongs to when authentication is off (embedded single-user mode).
pub const EMBEDDED_TENANT: &str = "default";

/// Middleware for embedded single-user mode: every request acts as the system principal of the
/// [`EMBEDDED_TENANT`] tenant, with the request id, trace and deadline of the request.
pub async fn embedded_identity(mut req: Request, next: Next) -> Response {
    if let Ok(tenant) = TenantId::new(EMBEDDED_TENANT) {
        let mut ctx = RequestContext::new(tenant, Principal::system());
        if let Some(meta) = req.extensions().get::<RequestMeta>() {
            ctx = ctx
                .with_request_id(meta.request_id.clone())
                .with_trace(meta.trace.clone());
        }
        tracing::Span::current().record("tenant_id", EMBEDDED_TENANT);
        req.extensions_mut().insert(ctx);
    }
    next.run(req).await
}
