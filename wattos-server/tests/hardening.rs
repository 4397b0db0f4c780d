//! Hostile but authenticated input against the production configuration (`auth.mode = "required"`):
//! each reproduction of the hardening issue is a test here. Numbers out of range are 400s naming the
//! field (never a panic or a dropped connection), caller input is not echoed at length, slow bodies
//! hold no concurrency slot, errors take the shape of the route's API, and a panicking handler
//! answers 500 while the server keeps serving everyone else.

#![allow(clippy::unwrap_used)]

mod jwt_support;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wattos_core::config::ConfigSources;
use wattos_server::AppState;
use wattos_server::bootstrap::build_state;
use wattos_server::settings::Settings;

const SECRET: &str = "a-test-hs256-secret-of-at-least-32-bytes!";
const ISSUER: &str = "wattos-tests";

fn jwt(tenant: &str, roles: &[&str]) -> String {
    jwt_support::TestIssuer {
        secret: SECRET,
        issuer: ISSUER,
        subject: "ops",
        ttl_secs: 600,
    }
    .token(tenant, roles)
}

/// A correctly signed token with an arbitrary `exp`.
fn jwt_with_exp(tenant: &str, exp: u64) -> String {
    let claims = json!({"sub": "ops", "tenant": tenant, "roles": ["owner"], "iss": ISSUER,
        "aud": "wattos", "exp": exp, "jti": uuid::Uuid::new_v4().to_string()});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

struct Server {
    base: String,
    addr: std::net::SocketAddr,
    http: reqwest::Client,
}

impl Server {
    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        Resp {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            len: text.len(),
        }
    }

    /// Creates tenant `id` and an API key with `roles` for it; returns the key.
    async fn tenant_key(&self, id: &str, roles: &[&str]) -> String {
        let admin = jwt("platform", &["platform_admin"]);
        let r = self
            .call(
                "POST",
                "/v1/admin/tenants",
                &admin,
                Some(json!({"id": id, "name": id})),
            )
            .await;
        assert!(r.status == 201 || r.status == 409, "{:?}", r.body);
        let r = self
            .call(
                "POST",
                &format!("/v1/admin/tenants/{id}/keys"),
                &admin,
                Some(json!({"name": "k", "roles": roles})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["key"].as_str().unwrap().to_owned()
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    len: usize,
}

impl Resp {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    fn param(&self) -> &str {
        self.body["error"]["param"].as_str().unwrap_or("")
    }
}

async fn boom() -> &'static str {
    panic!("a handler bug")
}

/// The production server (required auth, no local models) with `extra` settings, plus one
/// embedder route that panics.
async fn start(extra: &[(&str, &str)]) -> Server {
    let mut env = jwt_support::required_auth_env("hardening", SECRET, ISSUER);
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let state = build_state(Settings::from_sources(&ConfigSources { file: None, env }).unwrap())
        .await
        .unwrap();
    let embedder_routes: Router<AppState> = Router::new().route("/v1/boom", get(boom));
    let app = wattos_server::app_with_routes(state, embedder_routes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        base: format!("http://{addr}"),
        addr,
        http: reqwest::Client::new(),
    }
}

/// `per_key_rpm: 4294967295` made the limiter divide by zero with its lock held; the poisoned
/// lock then admitted everything for every tenant. Now the value is refused where it is parsed, and
/// the limiter keeps limiting other tenants.
#[tokio::test]
async fn out_of_range_rate_limits_are_refused_and_limiting_keeps_working() {
    let s = start(&[]).await;
    let a_owner = jwt("ta", &["owner"]);
    let b_owner = jwt("tb", &["owner"]);
    s.tenant_key("ta", &["developer"]).await;
    let b_key = s.tenant_key("tb", &["developer"]).await;

    let mut cfg = s.call("GET", "/v1/admin/config", &b_owner, None).await.body;
    cfg["rate_limits"] = json!({"per_key_rpm": 1, "burst": 0});
    let r = s.call("PUT", "/v1/admin/config", &b_owner, Some(cfg)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let before: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            v.push(s.call("GET", "/v1/models", &b_key, None).await.status);
        }
        v
    };
    assert_eq!(before, [200, 429]);

    for (field, value) in [
        ("per_key_rpm", json!(4_294_967_295_u64)),
        ("per_user_rpm", json!(60_000_001)),
        ("per_tenant_rpm", json!(4_294_967_295_u64)),
        ("burst", json!(4_294_967_295_u64)),
        ("max_concurrent", json!(4_294_967_295_u64)),
    ] {
        let mut cfg = s.call("GET", "/v1/admin/config", &a_owner, None).await.body;
        cfg["rate_limits"] = json!({ field: value });
        let r = s.call("PUT", "/v1/admin/config", &a_owner, Some(cfg)).await;
        assert_eq!(r.status, 400, "{field}: {:?}", r.body);
        assert_eq!(r.param(), format!("rate_limits.{field}"));
    }
    // Values beyond the JSON type (negative, fractional, > u32) are 400s too, never a 5xx.
    for value in [json!(-1), json!(1.5), json!(1e30), json!("many")] {
        let mut cfg = s.call("GET", "/v1/admin/config", &a_owner, None).await.body;
        cfg["rate_limits"] = json!({ "per_key_rpm": value });
        let r = s.call("PUT", "/v1/admin/config", &a_owner, Some(cfg)).await;
        // Wrong JSON types are the JSON extractor's 422, naming the field in the message.
        assert_eq!(r.status, 422, "{value}: {:?}", r.body);
        assert_eq!(r.code(), "invalid_input");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("rate_limits.per_key_rpm"), "{message}");
    }
    // Tenant A's own requests still work, and tenant B is still limited.
    assert_eq!(
        s.call("GET", "/v1/models", &a_owner, None).await.status,
        200
    );
    assert_eq!(s.call("GET", "/v1/models", &b_key, None).await.status, 429);
}

/// A revocation's `exp` of 2^64-1 or 2^63-1 panicked; one in the past answered 204 and the token
/// kept working. All three are 400s naming `exp`; a real revocation still works.
#[tokio::test]
async fn token_revocation_validates_exp() {
    let s = start(&[]).await;
    s.tenant_key("tr", &["developer"]).await;
    let owner = jwt("tr", &["owner"]);
    for exp in [
        json!(18_446_744_073_709_551_615_u64),
        json!(9_223_372_036_854_775_807_u64),
        json!(253_402_300_800_u64),
        json!(1),
    ] {
        let r = s
            .call(
                "POST",
                "/v1/admin/tokens/revoke",
                &owner,
                Some(json!({"jti": "x", "exp": exp})),
            )
            .await;
        assert_eq!(r.status, 400, "{exp}: {:?}", r.body);
        assert_eq!(r.param(), "exp");
    }
    // Not an unsigned integer at all: the JSON extractor's 422.
    for exp in [json!(-5), json!(1e300), json!("tomorrow")] {
        let r = s
            .call(
                "POST",
                "/v1/admin/tokens/revoke",
                &owner,
                Some(json!({"jti": "x", "exp": exp})),
            )
            .await;
        assert_eq!(r.status, 422, "{exp}: {:?}", r.body);
    }
    let r = s
        .call(
            "POST",
            "/v1/admin/tokens/revoke",
            &owner,
            Some(json!({"jti": "x", "exp": 1})),
        )
        .await;
    assert_eq!(r.param(), "exp");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("past")
    );

    // A token whose exp is far beyond year 9999 (>= 2^63 panicked) is refused, not a dropped
    // connection.
    for exp in [1_u64 << 63, u64::MAX, 253_402_300_800] {
        let r = s
            .call("GET", "/v1/models", &jwt_with_exp("tr", exp), None)
            .await;
        assert_eq!(r.status, 401, "exp {exp}: {:?}", r.body);
    }
    assert_eq!(
        s.call("GET", "/v1/models", &owner, None).await.status,
        200,
        "the server still serves"
    );
}

/// A 1 MB model name or metadata key came back inside a 1 MB error body.
#[tokio::test]
async fn caller_input_is_not_echoed_at_length() {
    let s = start(&[]).await;
    let key = s.tenant_key("te", &["developer"]).await;
    let huge = "m".repeat(1_000_000);
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": huge, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        ("/v1/embeddings", json!({"model": huge, "input": "hi"})),
        (
            "/v1/messages",
            json!({"model": huge, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "x", "messages": [{"role": huge, "content": "hi"}]}),
        ),
    ] {
        let r = s.call("POST", path, &key, Some(body)).await;
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
        assert!(r.len < 2048, "{path}: a {} byte error body", r.len);
    }
}

/// Errors from the layers in front of `/v1/messages` (authentication, body checks) take
/// Anthropic's shape there, and OpenAI's everywhere else.
#[tokio::test]
async fn layer_errors_take_the_shape_of_the_routes_api() {
    let s = start(&[]).await;
    let r = s.call("POST", "/v1/messages", "wk_bogus", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["type"], "error", "{:?}", r.body);
    assert_eq!(r.body["error"]["type"], "authentication_error");
    assert!(r.body["error"]["message"].is_string());
    let r = s
        .call("POST", "/v1/chat/completions", "wk_bogus", None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "unauthenticated");
    assert_eq!(r.body["error"]["type"], "authentication_error");
}

/// CORS with `server.cors_allowed_origins`: a preflight from an allowed origin is answered with
/// the origin, the methods and the headers the browser asked for (the official SDKs send their own,
/// e.g. `x-stainless-*`), a simple cross-origin request gets the origin and the exposed headers, and
/// a refused origin gets no CORS header at all (the browser then blocks the response). Without the
/// setting, no CORS header is ever sent.
#[tokio::test]
async fn cors_admits_configured_origins_only() {
    const ALLOWED: &str = "https://console.example.com";
    const REFUSED: &str = "https://evil.example.net";
    let s = start(&[(
        "WATTOS_SERVER__CORS_ALLOWED_ORIGINS",
        "https://console.example.com, https://other.example.com",
    )])
    .await;
    let key = s.tenant_key("cors", &["developer"]).await;
    let preflight = |origin: &'static str| {
        s.http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/chat/completions", s.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, x-stainless-lang, x-stainless-retry-count",
            )
            .send()
    };
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
    };

    let r = preflight(ALLOWED).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(ALLOWED)
    );
    let methods = header(&r, "access-control-allow-methods").unwrap();
    assert!(methods.contains("post"), "{methods}");
    let allowed_headers = header(&r, "access-control-allow-headers").unwrap();
    for h in [
        "authorization",
        "content-type",
        "x-stainless-lang",
        "x-stainless-retry-count",
    ] {
        assert!(allowed_headers.contains(h), "{h} not in {allowed_headers}");
    }
    assert!(header(&r, "access-control-allow-credentials").is_none());
    assert!(header(&r, "vary").unwrap().contains("origin"));

    let r = preflight(REFUSED).await.unwrap();
    assert!(
        header(&r, "access-control-allow-origin").is_none(),
        "{:?}",
        r.headers()
    );

    // Simple (actual) requests: the allowed origin sees the response and the exposed headers.
    let get = |origin: &'static str| {
        s.http
            .get(format!("{}/v1/models", s.base))
            .bearer_auth(&key)
            .header("origin", origin)
            .send()
    };
    let r = get(ALLOWED).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(ALLOWED)
    );
    let exposed = header(&r, "access-control-expose-headers").unwrap();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("retry-after"),
        "{exposed}"
    );
    // A refused origin: the server still answers (CORS is the browser's check), without CORS headers.
    let r = get(REFUSED).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(&r, "access-control-allow-origin").is_none());
    // Errors carry the CORS headers too, so a browser client can read them.
    let r = s
        .http
        .get(format!("{}/v1/models", s.base))
        .bearer_auth("wk_bogus")
        .header("origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(ALLOWED)
    );

    // Not configured: no CORS at all.
    let plain = start(&[]).await;
    let r = plain
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/chat/completions", plain.base),
        )
        .header("origin", ALLOWED)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        header(&r, "access-control-allow-origin").is_none(),
        "{:?}",
        r.headers()
    );
}

/// JSON routes read JSON only: a body declared as something else is 415, like OpenAI's API.
#[tokio::test]
async fn json_routes_require_a_json_content_type() {
    let s = start(&[]).await;
    let key = s.tenant_key("tc", &["developer"]).await;
    let body = r#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#;
    for (path, ctype) in [
        ("/v1/chat/completions", Some("text/plain")),
        ("/v1/chat/completions", None),
        ("/v1/embeddings", Some("application/x-www-form-urlencoded")),
        ("/v1/messages", Some("text/plain")),
        ("/v1/rag/collections", Some("text/plain")),
    ] {
        let mut req = s
            .http
            .post(format!("{}{path}", s.base))
            .bearer_auth(&key)
            .body(body);
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 415, "{path} {ctype:?}");
        let v: Value = resp.json().await.unwrap();
        if path == "/v1/messages" {
            assert_eq!(v["type"], "error", "{v}");
        } else {
            assert_eq!(v["error"]["code"], "unsupported_media_type", "{v}");
        }
    }
    // With the JSON type the same body goes through (to the model lookup: 404 here).
    let r = s
        .http
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&key)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// Starts a request whose 20-byte body never finishes arriving.
async fn trickle(addr: std::net::SocketAddr, key: &str) -> tokio::net::TcpStream {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: 20\r\n\r\n{{"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn
}

/// Slow bodies held every concurrency slot, so other tenants got 503. Bodies are now received
/// before a slot is taken, and one still arriving after the body read timeout is answered 408.
#[tokio::test]
async fn slow_bodies_hold_no_slot_and_time_out() {
    let s = start(&[
        ("WATTOS_SERVER__MAX_CONCURRENT_REQUESTS", "2"),
        ("WATTOS_SERVER__BODY_READ_TIMEOUT", "1500ms"),
    ])
    .await;
    let key = s.tenant_key("ts", &["developer"]).await;
    let other = s.tenant_key("tt", &["developer"]).await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(trickle(s.addr, &key).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let r = s.call("GET", "/v1/models", &other, None).await;
        assert_eq!(r.status, 200, "another tenant is served: {:?}", r.body);
    }
    for mut conn in slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut chunk = [0_u8; 4096];
            loop {
                let n = conn.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.ends_with(b"}") {
                    break;
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the slow request is answered");
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("request_timeout"), "{text}");
    }
    assert!(started.elapsed() >= Duration::from_millis(1400));
}

/// A panic in a handler is a 500 JSON error, counted in `http_panics_total`; the server and its
/// shared state keep serving every tenant.
#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
    let s = start(&[]).await;
    let key = s.tenant_key("tp", &["developer"]).await;
    for _ in 0..3 {
        let r = s.call("GET", "/v1/boom", &key, None).await;
        assert_eq!(r.status, 500);
        assert_eq!(r.code(), "internal_error");
        assert!(r.headers.contains_key("x-request-id"));
        assert_eq!(r.body["error"]["message"], "internal server error");
    }
    assert_eq!(s.call("GET", "/v1/models", &key, None).await.status, 200);
    let other = s.tenant_key("tq", &["developer"]).await;
    assert_eq!(s.call("GET", "/v1/models", &other, None).await.status, 200);
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("http_panics_total"))
        .unwrap_or_else(|| panic!("no http_panics_total in:\n{metrics}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 3.0, "{line}");
}

mod props {
    //! Any JSON value of the right shape sent to the admin API is answered with a 2xx or a 4xx,
    //! never a 5xx, a panic or a dropped connection, and the server keeps serving afterwards.

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use serde_json::Value;
    use wattos_core::test_utils::json::{object, tenant_config};

    /// (method, path, body) of an admin request with an arbitrary body of the right shape.
    fn admin_request() -> impl Strategy<Value = (&'static str, &'static str, Value)> {
        prop_oneof![
            tenant_config().prop_map(|b| ("PUT", "/v1/admin/config", b)),
            object(&["jti", "exp"]).prop_map(|b| ("POST", "/v1/admin/tokens/revoke", b)),
            object(&["name", "roles", "expires_in_secs"]).prop_map(|b| (
                "POST",
                "/v1/admin/keys",
                b
            )),
            object(&["id", "name"]).prop_map(|b| ("POST", "/v1/admin/tenants", b)),
        ]
    }

    #[test]
    fn any_admin_body_of_the_right_shape_gets_a_2xx_or_4xx() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let s = rt.block_on(super::start(&[]));
        rt.block_on(s.tenant_key("tz", &["developer"]));
        let owner = super::jwt("tz", &["owner"]);
        let admin = super::jwt("platform", &["platform_admin"]);
        let mut runner = TestRunner::new(Config {
            cases: 300,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&admin_request(), |(method, path, body)| {
                let token = if path == "/v1/admin/tenants" {
                    &admin
                } else {
                    &owner
                };
                let r = rt.block_on(s.call(method, path, token, Some(body.clone())));
                prop_assert!(
                    r.status < 500,
                    "{method} {path} {body} -> {} {:?}",
                    r.status,
                    r.body
                );
                Ok(())
            })
            .unwrap();
        // (Another tenant: the fuzzed configuration may well have rate limited this one.)
        let r = rt.block_on(s.call("GET", "/v1/models", &admin, None));
        assert_eq!(r.status, 200, "still serving: {:?}", r.body);
    }
}

/// Replays the `jwt` cargo-fuzz corpus (`fuzz/corpus/jwt/`) through the fuzz target's harness.
#[test]
fn jwt_fuzz_corpus_replays_cleanly() {
    wattos_core::test_utils::fuzz::replay_corpus("jwt", wattos_server::fuzz::jwt);
}
