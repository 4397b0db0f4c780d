//! Shared support of the RAG and agents API tests: a server built by `bootstrap` from settings
//! with the real local models, and an SSE parser.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use wattos_core::config::ConfigSources;
use wattos_server::AppState;
use wattos_server::bootstrap::build_state;
use wattos_server::settings::Settings;

/// HS256 secret of the tests' JWTs.
pub(crate) const SECRET: &str = "a-test-hs256-secret-of-at-least-32-bytes!";

/// The models folder, or `None` (the caller skips loudly).
pub(crate) fn models_dir() -> Option<String> {
    match std::env::var("WATTOS_MODELS__DIR") {
        Ok(d) if Path::new(&d).join("all-minilm-l6-v2").exists() => Some(d),
        _ => {
            wattos_core::test_utils::skip::skip(
                "local-model API test",
                "WATTOS_MODELS__DIR is not set to the local models folder (scripts/fetch-models.sh prints it)",
            );
            None
        }
    }
}

/// A fresh data folder.
pub(crate) fn data_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wattos-{name}-{}", uuid::Uuid::new_v4().simple()))
}

/// Builds the server state from settings (real local models from `models`) over `data`; with
/// `auth`, authentication is required (JWT HS256 with [`SECRET`]).
pub(crate) async fn state(
    models: &str,
    data: &Path,
    auth: bool,
    extra: &[(&str, &str)],
) -> AppState {
    let mut env = vec![
        ("WATTOS_DATA_DIR".to_owned(), data.display().to_string()),
        ("WATTOS_MODELS__DIR".to_owned(), models.to_owned()),
        // The local model on a loaded CI machine can take longer than the default 60 s.
        (
            "WATTOS_SERVER__REQUEST_TIMEOUT".to_owned(),
            "10m".to_owned(),
        ),
    ];
    if auth {
        for (k, v) in [
            ("WATTOS_AUTH__MODE", "required"),
            ("WATTOS_AUTH__KEY_PEPPER", "pepper-for-the-test-suite"),
            ("WATTOS_AUTH__JWT__HS256_SECRET", SECRET),
            ("WATTOS_AUTH__JWT__ISSUER", "wattos-tests"),
            ("WATTOS_AUTH__JWT__AUDIENCE", "wattos"),
        ] {
            env.push((k.to_owned(), v.to_owned()));
        }
    }
    for (k, v) in extra {
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    let sources = ConfigSources { file: None, env };
    build_state(Settings::from_sources(&sources).unwrap())
        .await
        .unwrap()
}

/// A running server.
pub(crate) struct Server {
    /// Base URL.
    pub(crate) base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Shuts down gracefully and waits until every connection is closed and the state is dropped
    /// (the embedded stores release their files).
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

/// Serves `state` on a loopback port.
pub(crate) async fn start(state: AppState) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, wattos_server::app(state))
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Server { base, stop, task }
}

/// Serves `state` on a loopback port for the rest of the test; returns the base URL.
pub(crate) async fn serve(state: AppState) -> String {
    let server = start(state).await;
    let base = server.base.clone();
    std::mem::forget(server);
    base
}

/// A JWT for `tenant` with `roles`.
pub(crate) fn jwt(tenant: &str, roles: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"sub": format!("user-{tenant}"), "tenant": tenant, "roles": roles,
        "iss": "wattos-tests", "aud": "wattos", "exp": now + 600, "iat": now,
        "jti": uuid::Uuid::new_v4().to_string()});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Parses a `text/event-stream` body into `(event name, JSON data)`, checking the framing: every
/// event ends with a blank line, has exactly one `event:` and one `data:` line, and comment lines
/// (keep-alives) start with `:`.
pub(crate) fn parse_sse(body: &str) -> Vec<(String, Value)> {
    assert!(
        body.ends_with("\n\n"),
        "stream ends with a blank line: {body:?}"
    );
    let mut out = Vec::new();
    for block in body.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut data = None;
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            }
            if let Some(v) = line.strip_prefix("event: ") {
                assert!(
                    name.replace(v.to_owned()).is_none(),
                    "one event line: {block}"
                );
            } else if let Some(v) = line.strip_prefix("data: ") {
                assert!(
                    data.replace(v.to_owned()).is_none(),
                    "one data line: {block}"
                );
            } else {
                panic!("unexpected SSE line {line:?}");
            }
        }
        if let (Some(n), Some(d)) = (name, data) {
            out.push((n, serde_json::from_str(&d).unwrap()));
        }
    }
    out
}

/// Builds a one-page PDF with a Helvetica text line (offsets computed, so the xref is valid).
pub(crate) fn tiny_pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}
