//! The axum side: [`AuthLayer`] authenticates every request once, [`Authenticated`] hands the
//! result to handlers, [`RequirePermissionLayer`] guards a route.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use tower::{Layer, Service};
use wattos_core::resilience::AdmissionPermit;
use wattos_core::tenancy::{
    Credentials, Outcome, Permission, PermissionSet, TenantConfig, actions, require_in,
};
use wattos_core::{Error, PrincipalKind, RequestContext, RequestId, TenantId};

use super::mutations;
use super::ratelimit::{Decision, Quota};
use super::service::{Auth, PLATFORM_AUDIT_TENANT};
use crate::error::{ApiError, WireFormat, error_response};
use crate::middleware::RequestMeta;

/// The authenticated caller of a request: its [`RequestContext`], permissions and tenant
/// configuration. Extract it in handlers; it is present on every request behind [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Tenant, principal, request id, trace and deadline.
    pub ctx: RequestContext,
    /// What the principal may do.
    pub permissions: PermissionSet,
    /// The tenant's configuration at authentication time.
    pub config: Arc<TenantConfig>,
}

impl Authenticated {
    /// Fails with `forbidden` unless the caller holds `permission`.
    ///
    /// # Errors
    /// `forbidden` (403, code `forbidden`).
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        require_in(self.permissions, permission).map_err(ApiError)
    }

    /// The caller's tenant.
    pub fn tenant(&self) -> &TenantId {
        self.ctx.tenant()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Without the layer in front there is no identity: deny rather than guess.
        parts
            .extensions
            .get::<Authenticated>()
            .cloned()
            .ok_or_else(|| ApiError(Error::unauthenticated("authentication required")))
    }
}

/// Reads `Authorization: Bearer ...` or `x-api-key`.
pub fn credentials_from(headers: &HeaderMap) -> Option<Credentials> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = v.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
            return Some(Credentials::Bearer(token.trim().to_owned()));
        }
        return None;
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| Credentials::ApiKey(v.to_owned()))
}

/// What a credential looks like in the audit log: never the secret, at most the key id.
fn credential_label(creds: Option<&Credentials>) -> String {
    match creds {
        None => "none".to_owned(),
        Some(c) => match super::apikey::parse_key(c.secret()) {
            Some((id, _)) => format!("api_key:{id}"),
            None if matches!(c, Credentials::ApiKey(_)) => "api_key:malformed".to_owned(),
            None => "bearer".to_owned(),
        },
    }
}

fn rate_headers(headers: &mut HeaderMap, d: &Decision) {
    let secs = |dur: std::time::Duration| dur.as_secs() + u64::from(dur.subsec_nanos() > 0);
    for (name, value) in [
        ("ratelimit-limit", u64::from(d.limit)),
        ("ratelimit-remaining", u64::from(d.remaining)),
        ("ratelimit-reset", secs(d.reset)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            headers.insert(name, v);
        }
    }
}

struct Admitted {
    auth: Authenticated,
    tightest: Option<Decision>,
    _permit: Option<AdmissionPermit>,
}

impl Auth {
    /// Records a refused authentication (`auth.failed`) on the platform chain, where a platform
    /// admin reads it: no tenant chain can be trusted for a credential that did not authenticate.
    async fn audit_refusal(&self, e: &Error, actor: &str, target: &str, request_id: &RequestId) {
        if e.kind() == wattos_core::ErrorKind::Unauthenticated
            && let Ok(platform) = TenantId::new(PLATFORM_AUDIT_TENANT)
        {
            self.audit_event(
                &platform,
                actor,
                actions::AUTH_FAILED,
                target,
                Outcome::Denied,
                request_id.as_str(),
                Some(e.message().to_owned()),
            )
            .await;
        }
    }

    /// Authenticates a request's headers into an [`Authenticated`], applying rate and concurrency
    /// limits and auditing failures. Used by [`AuthLayer`]; callable directly for other transports.
    async fn admit(
        &self,
        headers: &HeaderMap,
        meta: Option<&RequestMeta>,
    ) -> Result<Admitted, (Error, Option<Decision>)> {
        let request_id = meta.map_or_else(RequestId::generate, |m| m.request_id.clone());
        let creds = credentials_from(headers);
        let identified = match &creds {
            None => Err(Error::unauthenticated(
                "missing credentials: send Authorization: Bearer <token> or x-api-key",
            )),
            Some(c) => self.identify(c).await,
        };
        let identity = match identified {
            Ok(id) => id,
            Err(e) => {
                self.audit_refusal(
                    &e,
                    "anonymous",
                    &credential_label(creds.as_ref()),
                    &request_id,
                )
                .await;
                return Err((e, None));
            }
        };
        let entry = match self.tenant_entry(&identity.tenant).await {
            Ok(entry) => entry,
            Err(e) => {
                // A valid credential of an unknown or disabled tenant (whose own chain may not
                // exist).
                self.audit_refusal(
                    &e,
                    &identity.principal.subject,
                    &format!("tenant:{}", identity.tenant),
                    &request_id,
                )
                .await;
                return Err((e, None));
            }
        };
        let permissions =
            self.permissions(&identity.tenant, &identity.principal.roles, &entry.config);
        tracing::Span::current().record("tenant_id", identity.tenant.as_str());
        let mut ctx = RequestContext::new(identity.tenant.clone(), identity.principal)
            .with_request_id(request_id);
        if let Some(m) = meta {
            ctx = ctx.with_trace(m.trace.clone());
        }
        if let Some(t) = self.inner.parts.request_timeout {
            ctx = ctx.with_timeout(t);
        }

        // Rate limits: key or user, then tenant. The tightest allowed decision feeds the headers.
        let rl = &entry.config.rate_limits;
        let principal = ctx.principal();
        let subject_limit = match principal.kind {
            PrincipalKind::ApiKey => rl
                .per_key_rpm
                .map(|r| (format!("key:{}", principal.subject), r, "API key")),
            _ => rl.per_user_rpm.map(|r| {
                (
                    format!("user:{}:{}", ctx.tenant(), principal.subject),
                    r,
                    "user",
                )
            }),
        };
        let tenant_limit = rl
            .per_tenant_rpm
            .map(|r| (format!("tenant:{}", ctx.tenant()), r, "tenant"));
        let mut tightest: Option<Decision> = None;
        for (key, rpm, what) in subject_limit.into_iter().chain(tenant_limit) {
            let quota = Quota {
                per_minute: rpm,
                burst: rl.burst,
            };
            let d = self
                .inner
                .parts
                .limiter
                .check(&key, quota)
                .await
                .map_err(|e| (e, None))?;
            if !d.allowed {
                metrics::counter!(wattos_core::telemetry::names::RATE_LIMITED_TOTAL,
                    "scope" => match what { "tenant" => "tenant_rpm", "user" => "user_rpm", _ => "key_rpm" })
                .increment(1);
                return Err((d.to_error(what), Some(d)));
            }
            if tightest.is_none_or(|t| d.remaining < t.remaining) {
                tightest = Some(d);
            }
        }
        let permit = match rl.max_concurrent {
            Some(max) => Some(
                self.inner
                    .concurrency
                    .try_admit_within(ctx.tenant(), usize::try_from(max).unwrap_or(usize::MAX))
                    .map_err(|e| (e, None))?,
            ),
            None => None,
        };
        Ok(Admitted {
            auth: Authenticated {
                ctx,
                permissions,
                config: entry.config,
            },
            tightest,
            _permit: permit,
        })
    }

    /// A layer authenticating every request (see [`AuthLayer`]).
    pub fn layer(&self) -> AuthLayer {
        AuthLayer { auth: self.clone() }
    }

    /// A layer requiring `permission` of the authenticated caller (see [`RequirePermissionLayer`]).
    pub fn require(&self, permission: Permission) -> RequirePermissionLayer {
        RequirePermissionLayer {
            auth: self.clone(),
            permission,
        }
    }
}

/// Authenticates each request (`Authorization: Bearer <jwt|api key>` or `x-api-key`), builds its
/// [`RequestContext`] from the [`RequestMeta`] of the request-context middleware, records
/// `tenant_id` on the request span, applies rate and concurrency limits, and inserts
/// [`Authenticated`] (and the `RequestContext`) into request extensions. Failures answer 401 / 429
/// with the JSON error shape and are audited. Adds `RateLimit-*` headers to responses.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Auth,
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service of [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Auth,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for AuthService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> BoxFuture {
        // Take the service that was driven to readiness; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let format = WireFormat::for_path(req.uri().path());
            let meta = req.extensions().get::<RequestMeta>().cloned();
            match auth.admit(req.headers(), meta.as_ref()).await {
                Ok(admitted) => {
                    let method = req.method().clone();
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(|m| m.as_str().to_owned());
                    let caller = admitted.auth.clone();
                    req.extensions_mut().insert(admitted.auth.ctx.clone());
                    req.extensions_mut().insert(admitted.auth);
                    let (resp, audited) = mutations::tracked(inner.call(req)).await;
                    let mut resp = resp?;
                    // Every successful state change is audited, here, once, unless the handler
                    // wrote its own record.
                    if let Some(route) = route
                        && !audited
                        && resp.status().is_success()
                        && mutations::is_mutation(&method, &route)
                    {
                        auth.audit_event(
                            caller.tenant(),
                            &caller.ctx.principal().subject,
                            &mutations::mutation_action(&method, &route),
                            &route,
                            Outcome::Success,
                            caller.ctx.request_id().as_str(),
                            Some(format!("{method} {}", resp.status().as_u16())),
                        )
                        .await;
                    }
                    if let Some(d) = &admitted.tightest {
                        rate_headers(resp.headers_mut(), d);
                    }
                    drop(admitted._permit);
                    Ok(resp)
                }
                Err((err, decision)) => {
                    let mut resp = error_response(format, &err);
                    if let Some(d) = &decision {
                        rate_headers(resp.headers_mut(), d);
                    }
                    Ok(resp)
                }
            }
        })
    }
}

/// Answers 403 (code `forbidden`, audited as `access.denied`) unless the caller holds the
/// permission; 401 when the request was not authenticated. Use with `Router::route_layer`.
#[derive(Debug, Clone)]
pub struct RequirePermissionLayer {
    auth: Auth,
    permission: Permission,
}

impl<S> Layer<S> for RequirePermissionLayer {
    type Service = RequirePermission<S>;
    fn layer(&self, inner: S) -> RequirePermission<S> {
        RequirePermission {
            inner,
            auth: self.auth.clone(),
            permission: self.permission,
        }
    }
}

/// The service of [`RequirePermissionLayer`].
#[derive(Debug, Clone)]
pub struct RequirePermission<S> {
    inner: S,
    auth: Auth,
    permission: Permission,
}

impl<S> Service<Request> for RequirePermission<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> BoxFuture {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let permission = self.permission;
        Box::pin(async move {
            let format = WireFormat::for_path(req.uri().path());
            let Some(caller) = req.extensions().get::<Authenticated>().cloned() else {
                return Ok(error_response(
                    format,
                    &Error::unauthenticated("authentication required"),
                ));
            };
            if let Err(e) = caller.require(permission) {
                auth.audit_denied(&caller, permission, req.uri().path())
                    .await;
                return Ok(error_response(format, &e.0));
            }
            inner.call(req).await
        })
    }
}

impl Auth {
    /// Audits an `access.denied` event for `caller` lacking `permission` on `target`.
    pub async fn audit_denied(&self, caller: &Authenticated, permission: Permission, target: &str) {
        self.audit_event(
            caller.tenant(),
            &caller.ctx.principal().subject,
            actions::ACCESS_DENIED,
            target,
            Outcome::Denied,
            caller.ctx.request_id().as_str(),
            Some(format!("missing {permission}")),
        )
        .await;
    }
}
