//! End-to-end test of the operator console: the real `wattos-server` binary with authentication
//! required, driven in headless Debian Chromium by `tests/console/console_e2e.mjs`
//! (playwright-core). Screenshots land in `<target>/console-artifacts/`.
//!
//! The chat model is a mock OpenAI endpoint (`wattos_llm::testing::MockServer`, OpenAI's wire
//! format) configured as a provider: it echoes the prompt, so a RAG answer quotes its numbered
//! sources and the playground's citation links are really followed. Embeddings are the local
//! MiniLM (when the models folder is set).
//!
//! `scripts/test.sh` installs Chromium and runs `npm ci` in `tests/console`; run directly with
//! `cargo test` on a machine without them, the test says it is skipped.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod jwt_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SECRET: &str = "a-console-test-hs256-secret-of-32-bytes!";

fn e2e_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console"))
}

fn chromium() -> Option<PathBuf> {
    let path =
        PathBuf::from(std::env::var("WATTOS_CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    path.is_file().then_some(path)
}

fn artifacts() -> PathBuf {
    if let Ok(dir) = std::env::var("WATTOS_CONSOLE_ARTIFACTS") {
        return dir.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("console-artifacts")
}

fn jwt(tenant: &str, roles: &[&str]) -> String {
    jwt_support::TestIssuer {
        secret: SECRET,
        issuer: "wattos-tests",
        subject: "console-test-operator",
        ttl_secs: 600,
    }
    .token(tenant, roles)
}

/// The server binary, killed when dropped.
struct Server {
    child: Child,
    base: String,
    models: bool,
    _data: TempDir,
    _upstream: wattos_llm::testing::MockServer,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start_server() -> Server {
    let data = TempDir(
        std::env::temp_dir().join(format!("wattos-console-{}", uuid::Uuid::new_v4().simple())),
    );
    // Local models only when the test environment has them (scripts/test.sh sets the dir): the
    // RAG and agent flows need a chat model; the rest of the console does not.
    let models = std::env::var("WATTOS_MODELS__DIR")
        .map(|d| Path::new(&d).is_dir())
        .unwrap_or(false);
    std::fs::create_dir_all(&data.0).unwrap();
    let upstream = wattos_llm::testing::MockServer::openai().await;
    let config = data.0.join("wattos.toml");
    std::fs::write(
        &config,
        format!(
            "[llm.providers.mock-gpt]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-console\"\nmodel = \"gpt-4o-mini\"\n",
            upstream.base_url()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wattos-server"));
    // The server rejects unknown WATTOS_* settings: drop the test harness' own variables
    // (SDK_TEST_PYTHON, WATTOS_CONSOLE_*, ...) and keep only the models folder.
    for (key, _) in std::env::vars() {
        if key.starts_with("WATTOS_") && key != "WATTOS_MODELS__DIR" {
            cmd.env_remove(key);
        }
    }
    cmd.env("WATTOS_SERVER__BIND", "127.0.0.1:0")
        .env("WATTOS_DATA_DIR", &data.0)
        .env("WATTOS_AUTH__MODE", "required")
        .env("WATTOS_AUTH__KEY_PEPPER", "pepper-for-the-console-test")
        .env("WATTOS_AUTH__JWT__HS256_SECRET", SECRET)
        .env("WATTOS_AUTH__JWT__ISSUER", "wattos-tests")
        .env("WATTOS_AUTH__JWT__AUDIENCE", "wattos")
        .env("WATTOS_CONFIG", &config)
        .env("WATTOS_MODELS__LOCAL_CHAT", "false")
        .env("WATTOS_MODELS__LOCAL_EMBEDDINGS", models.to_string())
        .env("WATTOS_TELEMETRY__LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("the wattos-server binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("WattOS server listening on ") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("wattos-server exited before listening");
    })
    .await
    .expect("wattos-server listens within 120 s");
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server {
        child,
        base,
        models,
        _data: data,
        _upstream: upstream,
    }
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: String,
    token: &str,
    body: Value,
) -> Value {
    let req = match method {
        "POST" => http.post(&url).json(&body),
        _ => http.get(&url),
    };
    let resp = req.bearer_auth(token).send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{method} {url}: {status} {v}");
    v
}

async fn mint(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    tenant: &str,
    name: &str,
    roles: &[&str],
) -> String {
    let v = call(
        http,
        "POST",
        format!("{base}/v1/admin/tenants/{tenant}/keys"),
        admin,
        json!({"name": name, "roles": roles}),
    )
    .await;
    v["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn console_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        wattos_core::test_utils::skip::skip(
            "console e2e",
            "no Chromium at /usr/bin/chromium (scripts/test.sh installs Debian `chromium`)",
        );
        return;
    };
    if !e2e_dir().join("node_modules/playwright-core").is_dir() {
        wattos_core::test_utils::skip::skip(
            "console e2e",
            "tests/console/node_modules is missing (scripts/test.sh runs npm ci there)",
        );
        return;
    }
    let mut server = start_server().await;
    let base = server.base.clone();
    let http = reqwest::Client::new();

    // The platform administrator (JWT) sets up two tenants and their keys.
    let admin = jwt("platform", &["platform_admin"]);
    for (id, name) in [("acme", "Acme GmbH"), ("globex", "Globex Corp")] {
        call(
            &http,
            "POST",
            format!("{base}/v1/admin/tenants"),
            &admin,
            json!({"id": id, "name": name}),
        )
        .await;
    }
    let keys = json!({
        "platform": mint(&http, &base, &admin, "platform", "platform-console", &["platform_admin"]).await,
        "acme_owner": mint(&http, &base, &admin, "acme", "acme-owner", &["owner"]).await,
        "acme_viewer": mint(&http, &base, &admin, "acme", "acme-viewer", &["viewer"]).await,
        "globex_owner": mint(&http, &base, &admin, "globex", "globex-owner", &["owner"]).await,
    });
    // Each tenant does something of its own, so isolation has data to leak.
    mint(&http, &base, &admin, "globex", "globex-batch", &["member"]).await;
    call(
        &http,
        "POST",
        format!("{base}/v1/admin/keys"),
        keys["acme_owner"].as_str().unwrap(),
        json!({"name": "acme-ci", "roles": ["developer"]}),
    )
    .await;

    let art = artifacts();
    let out = Command::new("node")
        .arg("console_e2e.mjs")
        .current_dir(e2e_dir())
        .env("WATTOS_BASE_URL", &base)
        .env("WATTOS_CONSOLE_KEYS", keys.to_string())
        .env("WATTOS_CONSOLE_ARTIFACTS", &art)
        .env("WATTOS_CHROMIUM", &chromium)
        .env(
            "WATTOS_CONSOLE_MODELS",
            if server.models { "1" } else { "0" },
        )
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}\nscreenshots: {}", art.display());
    assert!(
        out.status.success(),
        "console e2e failed:\n{stdout}\n{stderr}"
    );
    for shot in [
        "01-login-rejected",
        "02-health",
        "03-key-created",
        "04-key-revoked",
        "05-audit",
        "10-viewer",
        "11-other-tenant",
    ] {
        assert!(
            art.join(format!("{shot}.png")).is_file(),
            "screenshot {shot}"
        );
    }
    server.child.kill().await.unwrap();
}
