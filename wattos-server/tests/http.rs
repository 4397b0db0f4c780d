//! The server over real HTTP: health, metrics, request ids, error shape, load shedding, timeouts,
//! graceful shutdown and configuration errors of the binary.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;
use wattos_core::config::Config;
use wattos_core::health::{HealthRegistry, StaticCheck};
use wattos_server::checks::TcpReachableCheck;
use wattos_server::{AppState, app_with_routes, serve_router};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wattos-test-{tag}-{}-{}",
        std::process::id(),
        fastrand_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now())
}

fn config(extra: &[(&str, &str)]) -> Config {
    let data = temp_dir("data");
    let mut env: Vec<(String, String)> =
        vec![("WATTOS_DATA_DIR".into(), data.display().to_string())];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_sources(None, env).unwrap()
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.handle.await.unwrap().unwrap();
    }
}

/// Starts the server with a test route `/test/sleep/{ms}` behind the standard middleware.
async fn start(state: AppState) -> Running {
    let extra = Router::new().route(
        "/test/sleep/{ms}",
        get(
            |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "done"
            },
        ),
    );
    let router = app_with_routes(state.clone(), extra);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(serve_router(listener, state, router, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        handle,
    }
}

#[tokio::test]
async fn health_endpoints_report_components() {
    let server = start(AppState::new(config(&[]))).await;
    let client = reqwest::Client::new();

    let live = client
        .get(server.url("/health/liveness"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(
        live.json::<serde_json::Value>().await.unwrap()["status"],
        "alive"
    );

    let ready = client
        .get(server.url("/health/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["components"]["data_dir"]["status"], "healthy");
    assert!(body["components"].get("local_models").is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn unreachable_critical_dependency_makes_the_service_unhealthy_and_not_ready() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut health = HealthRegistry::default();
    health.register(StaticCheck::new("embedded_store", None));
    health.register(
        TcpReachableCheck::from_url("postgres", &format!("postgres://127.0.0.1:{port}/x"), 5432)
            .unwrap(),
    );
    let server = start(AppState::with_health(config(&[]), health)).await;

    for path in ["/health", "/health/readiness"] {
        let resp = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(resp.status(), 503, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["components"]["postgres"]["status"], "unhealthy");
        assert!(
            body["components"]["postgres"]["detail"]
                .as_str()
                .unwrap()
                .contains("unreachable")
        );
        assert_eq!(body["components"]["embedded_store"]["status"], "healthy");
    }
    // Liveness never depends on dependencies.
    assert_eq!(
        reqwest::get(server.url("/health/liveness"))
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown().await;
}

#[tokio::test]
async fn non_critical_failure_degrades_but_stays_ready() {
    let mut health = HealthRegistry::default();
    health.register(wattos_server::checks::LocalModelsCheck::new(temp_dir(
        "empty-models",
    )));
    let server = start(AppState::with_health(config(&[]), health)).await;
    let resp = reqwest::get(server.url("/health")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["ready"], true);
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_expose_http_series_with_route_templates() {
    let server = start(AppState::new(config(&[]))).await;
    for _ in 0..3 {
        reqwest::get(server.url("/test/sleep/1")).await.unwrap();
    }
    reqwest::get(server.url("/does-not-exist")).await.unwrap();
    let resp = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("route=\"/test/sleep/{ms}\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no series for the route template in:\n{text}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    assert!(text.contains("http_request_duration_ms_bucket{"), "{text}");
    assert!(text.contains("# TYPE http_requests_in_flight gauge"));
    assert!(
        !text.contains("/does-not-exist"),
        "raw paths must not become labels"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let server = start(AppState::new(config(&[]))).await;
    let client = reqwest::Client::new();
    let resp = client
        .get(server.url("/health/liveness"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    let resp = client
        .get(server.url("/health/liveness"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(generated, "bad id with spaces");
    assert_eq!(generated.len(), 36);
    server.shutdown().await;
}

#[tokio::test]
async fn errors_use_the_json_error_shape() {
    let server = start(AppState::new(config(&[]))).await;
    let resp = reqwest::get(server.url("/no/such/route")).await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["param"].is_null());
    let resp = reqwest::Client::new()
        .post(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("POST"));
    server.shutdown().await;
}

#[tokio::test]
async fn load_is_shed_beyond_max_concurrent_requests() {
    let server = start(AppState::new(config(&[(
        "WATTOS_SERVER__MAX_CONCURRENT_REQUESTS",
        "2",
    )])))
    .await;
    let client = reqwest::Client::new();
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let c = client.clone();
            let url = server.url("/test/sleep/700");
            tokio::spawn(async move { c.get(url).send().await.unwrap().status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shed = client
        .get(server.url("/test/sleep/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: serde_json::Value = shed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    // Probes are never shed.
    assert_eq!(
        client
            .get(server.url("/health/liveness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for s in slow {
        assert_eq!(s.await.unwrap(), 200);
    }
    // Capacity is back once the slow requests finished.
    assert_eq!(
        client
            .get(server.url("/test/sleep/1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown().await;
}

#[tokio::test]
async fn slow_requests_time_out_with_504() {
    let server = start(AppState::new(config(&[(
        "WATTOS_SERVER__REQUEST_TIMEOUT",
        "100ms",
    )])))
    .await;
    let resp = reqwest::get(server.url("/test/sleep/2000")).await.unwrap();
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "timeout");
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_completes_in_flight_requests_and_fails_readiness() {
    let state = AppState::new(config(&[]));
    let server = start(state.clone()).await;
    let client = reqwest::Client::new();
    let url = server.url("/test/sleep/600");
    let in_flight = tokio::spawn({
        let c = client.clone();
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let Running {
        addr,
        mut stop,
        handle,
    } = server;
    stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(state.is_draining());
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "done");
    handle.await.unwrap().unwrap();
    // The listener is closed once drained.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn binary_exits_non_zero_naming_each_missing_variable() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wattos-server"))
        .env_clear()
        .env("WATTOS_MODE", "shared")
        .env("WATTOS_SERVER__MAX_CONCURRENT_REQUESTS", "lots")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in [
        "WATTOS_DATABASE__URL",
        "WATTOS_REDIS__URL",
        "WATTOS_NATS__URL",
        "WATTOS_SERVER__MAX_CONCURRENT_REQUESTS",
    ] {
        assert!(stderr.contains(var), "{var} not named in:\n{stderr}");
    }
}

#[tokio::test]
async fn binary_serves_health_and_stops_on_sigterm() {
    let data = temp_dir("bin");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wattos-server"))
        .env_clear()
        .env("HOME", &data)
        .env("WATTOS_SERVER__BIND", "127.0.0.1:0")
        .env("WATTOS_DATA_DIR", &data)
        .env("WATTOS_TELEMETRY__LOG_FILTER", "info")
        .env("WATTOS_TELEMETRY__LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in '{line}'"))
        .to_owned();
    let resp = reqwest::Client::new()
        .get(format!("{url}/health"))
        .header("x-request-id", "log-probe-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let pid = child.id().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    // Logs are JSON lines; the access log line carries the request id in its span fields.
    let logs = String::from_utf8_lossy(&out.stderr);
    let access = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["message"] == "request finished" && v["spans"][0]["request_id"] == "log-probe-1"
        })
        .unwrap_or_else(|| panic!("no JSON access log with the request id in:\n{logs}"));
    assert_eq!(access["status"], 200);
    assert!(access["spans"][0].get("trace_id").is_some());
}

#[tokio::test]
async fn job_routes_without_a_queue_are_documented_and_answer_404_not_found() {
    let server = start(AppState::new(config(&[]))).await;
    let http = reqwest::Client::new();
    let spec: serde_json::Value = reqwest::get(server.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &spec["paths"];
    assert!(
        paths["/v1/rag/collections/{collection}/jobs"]["post"]["responses"]["404"].is_object(),
        "{paths}"
    );
    assert!(paths["/v1/jobs/{id}"]["get"]["responses"]["404"].is_object());

    let doc = serde_json::json!({"documents": [{"id": "a", "text": "hello"}]});
    let r = http
        .post(server.url("/v1/rag/collections/docs/jobs"))
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("background jobs are not configured"),
        "{body}"
    );
    let r = http
        .get(server.url("/v1/jobs/job_0123456789abcdef0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not configured"),
        "{body}"
    );

    // Bad input is still a 400 naming the field, queue or not.
    for (url, body, param) in [
        (
            "/v1/rag/collections/Bad%20Name/jobs",
            doc.clone(),
            "collection",
        ),
        (
            "/v1/rag/collections/docs/jobs",
            serde_json::json!({"documents": []}),
            "documents",
        ),
    ] {
        let r = http.post(server.url(url)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{url}");
        let b: serde_json::Value = r.json().await.unwrap();
        assert_eq!(b["error"]["param"], param, "{b}");
    }
    let r = http.get(server.url("/v1/jobs/nope")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    server.shutdown().await;
}
