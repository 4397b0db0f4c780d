//! The router: routes plus the middleware stack.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::middleware::{
    BodyLimits, REQUEST_ID_HEADER, catch_panic, http_metrics, load_shed, receive_body,
    request_context, request_timeout,
};
use crate::routes;
use crate::state::AppState;
use wattos_core::tenancy::Permission;

/// Builds the application router for `state`.
///
/// Layers, outermost first: request id + trace context + access log, HTTP metrics, panic recovery,
/// CORS (when origins are configured), body receipt (size limit and read deadline, before a slot is
/// taken), load shedding, request timeout, body size limit, JSON rejections.
pub fn app(state: AppState) -> Router {
    app_with_routes(state, Router::new())
}

/// Like [`app`], with extra routes of an embedding application served behind the same middleware.
pub fn app_with_routes(state: AppState, extra: Router<AppState>) -> Router {
    let server = &state.config().server;
    let slots = Arc::new(Semaphore::new(server.max_concurrent_requests));
    let gateway = crate::gateway::routes::<AppState>().merge(crate::conversations::routes());
    // Authentication is enforced here, in one place, for every API route; operational routes
    // (/health*, /metrics, /openapi.json) stay open.
    let jobs = crate::jobs::routes(&state);
    let api = match state.auth() {
        Some(auth) => gateway
            .route_layer(auth.require(Permission::ChatInvoke))
            .merge(jobs)
            .merge(crate::tenancy::admin::admin_routes(auth.clone()))
            .merge(crate::rag::routes(Some(auth)))
            .merge(crate::agents::routes(Some(auth)))
            .merge(crate::memories::routes(Some(auth)))
            .layer(auth.layer()),
        None => gateway
            .merge(crate::rag::routes(None))
            .merge(crate::agents::routes(None))
            .merge(crate::memories::routes(None))
            .merge(jobs)
            .layer(from_fn(crate::gateway::embedded_identity)),
    };
    // A worker-only instance serves health and metrics, not the API.
    let api = match state.jobs() {
        Some(j) if !j.role().serves_api() => Router::new(),
        _ => api,
    };
    let mut router = extra
        .merge(api)
        .merge(crate::console::routes(&state))
        .route("/", get(routes::index))
        .route("/health", get(routes::health))
        .route("/health/liveness", get(routes::liveness))
        .route("/health/readiness", get(routes::readiness))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(from_fn_with_state(
            server.body_limit_bytes,
            crate::rejections::json_rejections,
        ))
        .layer(DefaultBodyLimit::max(server.body_limit_bytes))
        .layer(from_fn_with_state(server.request_timeout, request_timeout))
        .layer(from_fn_with_state(slots, load_shed))
        .layer(from_fn_with_state(
            BodyLimits {
                max_bytes: server.body_limit_bytes,
                read_timeout: server.body_read_timeout,
            },
            receive_body,
        ));
    if let Some(cors) = cors_layer(&server.cors_allowed_origins) {
        router = router.layer(cors);
    }
    router
        .layer(from_fn(catch_panic))
        .layer(from_fn(http_metrics))
        .layer(from_fn(request_context))
        .with_state(state)
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            // The official SDKs send their own headers from a browser (`x-stainless-*`,
            // `anthropic-version`, `anthropic-dangerous-direct-browser-access`, ...): an allowed
            // origin may send any header. Credentials are bearer tokens and API keys, never
            // cookies, so no `Access-Control-Allow-Credentials`.
            .allow_headers(AllowHeaders::mirror_request())
            .max_age(Duration::from_secs(600))
            .expose_headers([
                HeaderName::from_static(REQUEST_ID_HEADER),
                axum::http::header::RETRY_AFTER,
            ]),
    )
}
