//! The operator console: a small single-page app (plain HTML, CSS and ES modules, no build step)
//! compiled into the binary and served at `/console/`.
//!
//! The console holds no data and no privileges of its own. The operator logs in with an API key
//! (kept in the tab's `sessionStorage`) and every data call goes through the public HTTP API with
//! `Authorization: Bearer <key>`, so the same authentication, RBAC and tenant scoping apply as for
//! any other client. [`session`] (`GET /v1/console/session`) tells the console who the key belongs
//! to and which permissions it holds, so it can hide actions the key lacks; the server refuses them
//! anyway.
//!
//! Every console response carries a strict Content Security Policy (`default-src 'self'`, no
//! inline scripts or styles, no framing) and related headers: nothing outside the server is ever
//! loaded.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::middleware::{from_fn, map_response};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Json};
use serde::Serialize;
use wattos_core::tenancy::{BuiltinRole, Permission, PermissionSet};
use wattos_core::{Error, RequestContext};

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::state::AppState;

/// Path prefix of the console.
pub const CONSOLE_PATH: &str = "/console";

/// The Content Security Policy of every console response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One file of the console, built into the binary.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Path below `/console/`.
    pub path: &'static str,
    /// `Content-Type` it is served with.
    pub content_type: &'static str,
    /// The file's text.
    pub body: &'static str,
}

macro_rules! asset {
    ($path:literal, $ty:expr) => {
        Asset {
            path: $path,
            content_type: $ty,
            body: include_str!(concat!("../console/", $path)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every console file. A file missing here is a 404, so a new page module must be listed.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("style.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/charts.js", JS),
    asset!("js/metrics.js", JS),
    asset!("js/pages/keys.js", JS),
    asset!("js/pages/usage.js", JS),
    asset!("js/pages/health.js", JS),
    asset!("js/pages/rag.js", JS),
    asset!("js/pages/agents.js", JS),
    asset!("js/pages/audit.js", JS),
];

/// The asset at `path` (below `/console/`), if any.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// What `GET /v1/console/session` answers: who the credentials belong to and what they may do.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// Whether the server authenticates requests. Without authentication the console acts as the
    /// embedded tenant's system principal and the admin API is not served.
    pub auth: bool,
    /// The caller's tenant.
    pub tenant: String,
    /// Subject (API key id, JWT `sub`, or `system`).
    pub subject: String,
    /// Role names.
    pub roles: Vec<String>,
    /// Effective permissions (`area:verb`).
    pub permissions: PermissionSet,
}

/// `GET /v1/console/session`: the authenticated caller's tenant, subject, roles and permissions.
///
/// # Errors
/// `unauthenticated` (401) without valid credentials, from the authentication layer.
pub async fn session(caller: Authenticated) -> Json<Session> {
    let principal = caller.ctx.principal();
    Json(Session {
        auth: true,
        tenant: caller.tenant().to_string(),
        subject: principal.subject.clone(),
        roles: principal.roles.clone(),
        permissions: caller.permissions,
    })
}

async fn embedded_session(
    ctx: Option<Extension<RequestContext>>,
) -> Result<Json<Session>, ApiError> {
    let Some(Extension(ctx)) = ctx else {
        return Err(ApiError(Error::unauthenticated("no identity")));
    };
    let principal = ctx.principal();
    let permissions = principal
        .roles
        .iter()
        .filter_map(|r| BuiltinRole::from_name(r))
        .fold(PermissionSet::EMPTY, |acc, r| acc.union(r.permissions()))
        .without(PermissionSet::of(&[Permission::PlatformAdmin]));
    Ok(Json(Session {
        auth: false,
        tenant: ctx.tenant().to_string(),
        subject: principal.subject.clone(),
        roles: principal.roles.clone(),
        permissions,
    }))
}

async fn index() -> Response {
    serve("index.html")
}

async fn file(Path(path): Path<String>) -> Response {
    serve(&path)
}

fn serve(path: &str) -> Response {
    match asset(path) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                // Revalidate every time: the files change with the binary.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => ApiError(Error::not_found(format!("no console file `{path}`"))).into_response(),
    }
}

/// Adds the console's security headers to a response.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// The console's routes: the files under `/console/` (open, like any static page: they contain no
/// data) and `GET /v1/console/session` behind the same authentication as the rest of the API.
/// Merge into the application router.
pub fn routes(state: &AppState) -> Router<AppState> {
    let session_route = match state.auth() {
        Some(auth) => Router::new()
            .route("/v1/console/session", get(session))
            .layer(auth.layer()),
        None => Router::new()
            .route("/v1/console/session", get(embedded_session))
            .layer(from_fn(crate::gateway::embedded_identity)),
    };
    let files = Router::new()
        .route(
            CONSOLE_PATH,
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/{*path}", get(file))
        .layer(map_response(security_headers));
    files.merge(session_route)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;
    use wattos_core::config::Config;

    fn router() -> Router {
        crate::app(AppState::new(Config::from_sources(None, []).unwrap()))
    }

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = to_bytes(resp.into_body(), 1 << 22).await.unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_and_the_security_headers() {
        let (status, headers, body) = get("/console/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(body.contains(r#"<script type="module" src="js/app.js">"#));
        for a in ASSETS {
            let (status, headers, body) = get(&format!("/console/{}", a.path)).await;
            assert_eq!(status, StatusCode::OK, "{}", a.path);
            assert_eq!(headers["content-type"], a.content_type, "{}", a.path);
            assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert_eq!(headers["x-frame-options"], "DENY");
            assert_eq!(headers["referrer-policy"], "no-referrer");
            assert_eq!(body, a.body);
        }
        let (status, headers, _) = get("/console").await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(headers["location"], "/console/");
    }

    #[tokio::test]
    async fn unknown_and_traversing_paths_are_json_404s() {
        for path in [
            "/console/nope.js",
            "/console/../Cargo.toml",
            "/console/js/../../src/console.rs",
            "/console/%2e%2e/Cargo.toml",
        ] {
            let (status, headers, body) = get(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["code"], "not_found", "{path}");
            assert!(headers.get("content-security-policy").is_some(), "{path}");
        }
    }

    /// Every file the console references (`src=`, `href=`, `import ... from`) is one of the
    /// built-in assets, and nothing points outside the server.
    #[test]
    fn references_resolve_to_built_in_files_and_nothing_loads_from_elsewhere() {
        for a in ASSETS {
            let without_ns = a.body.replace("http://www.w3.org/2000/svg", "");
            for bad in ["http://", "https://", "//cdn", "@import", "url(http"] {
                assert!(!without_ns.contains(bad), "{} contains `{bad}`", a.path);
            }
            let dir = a.path.rsplit_once('/').map_or("", |(d, _)| d);
            let mut refs = Vec::new();
            for marker in ["src=\"", "href=\"", " from \""] {
                for part in a.body.split(marker).skip(1) {
                    let target = part.split('"').next().unwrap();
                    if !target.starts_with('#') && !target.contains('$') && !target.is_empty() {
                        refs.push(target.to_owned());
                    }
                }
            }
            for r in refs {
                let mut parts: Vec<&str> = if dir.is_empty() {
                    Vec::new()
                } else {
                    dir.split('/').collect()
                };
                for seg in r.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    asset(&resolved).is_some(),
                    "{} references `{r}` ({resolved}), which is not a console asset",
                    a.path
                );
            }
        }
        // No inline scripts or style attributes, which the CSP would block.
        let index = asset("index.html").unwrap().body;
        assert!(!index.contains(" style="));
        assert_eq!(index.matches("<script").count(), 1);
    }

    #[tokio::test]
    async fn embedded_session_is_the_default_tenant_without_platform_rights() {
        let (status, _, body) = get("/v1/console/session").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["auth"], false);
        assert_eq!(v["tenant"], crate::gateway::EMBEDDED_TENANT);
        let perms = v["permissions"].as_array().unwrap();
        assert!(perms.contains(&"rag:query".into()));
        assert!(!perms.contains(&"platform:admin".into()));
    }
}
