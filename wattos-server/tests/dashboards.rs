//! The shipped Grafana dashboards and Prometheus alert rules (`deploy/`): the dashboard JSON is
//! well-formed for Grafana, every metric name used by a dashboard or rule is one the server's
//! `/metrics` exposes after some traffic (or is listed in `deploy/metrics-allowlist.txt` with a
//! reason), and `promtool` accepts and unit-tests the rules and parses every dashboard query.
//!
//! `promtool` comes from the Debian `prometheus` package, which `scripts/test.sh` installs; without
//! it the promtool test says it is skipped.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod jwt_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use wattos_core::config::ConfigSources;
use wattos_llm::testing::{Fault, MockServer};
use wattos_server::bootstrap::build_state;
use wattos_server::settings::Settings;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = deploy().join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    assert!(!out.is_empty(), "no dashboards in {}", dir.display());
    out
}

/// The `expr` of every rule in an alert-rules file. A deliberately small reader for the two forms
/// the file uses (`expr: <one line>` and `expr: |` block scalars); the caller checks that it found
/// one expression per rule, so a form it cannot read fails instead of passing silently.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("expr:") {
            let rest = rest.trim();
            if rest == "|" || rest == ">" || rest == "|-" || rest == ">-" {
                let indent = line.len() - trimmed.len();
                let mut block = Vec::new();
                i += 1;
                while i < lines.len() {
                    let l = lines[i];
                    let lt = l.trim_start();
                    if !lt.is_empty() && l.len() - lt.len() <= indent {
                        break;
                    }
                    block.push(lt);
                    i += 1;
                }
                out.push(block.join("\n"));
                continue;
            }
            out.push(rest.trim_matches(|c| c == '\'' || c == '"').to_owned());
        }
        i += 1;
    }
    out
}

fn rules_file() -> String {
    std::fs::read_to_string(deploy().join("prometheus/wattos-alerts.yml")).unwrap()
}

/// Every panel target's expression, with the panel title.
fn dashboard_exprs(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        if let Some(inner) = p["panels"].as_array() {
            stack.extend(inner);
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap_or("").to_owned(),
                t["expr"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    out
}

/// Grafana variables replaced by values PromQL parses, for syntax checks.
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__range", "1h")
        .replace("$__interval", "1m")
        .replace("$job", ".*")
        .replace("$instance", ".*")
}

/// PromQL keywords and aggregation operators (which may be followed by `by (...)` instead of `(`).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];

/// The metric names a PromQL expression selects: identifiers that are not functions or
/// aggregations (followed by `(`), keywords, label names (inside `{}` or grouping lists), label
/// values (strings) or durations (inside `[]`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut prev_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&prev_word.as_str()) =>
            {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                prev_word.clear();
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                let is_call = j < chars.len() && chars[j] == '(';
                if !is_call && !KEYWORDS.contains(&word.as_str()) {
                    names.insert(word.clone());
                }
                prev_word = word;
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || ((chars[i] == '+' || chars[i] == '-') && chars[i - 1] == 'e'))
                {
                    i += 1;
                }
            }
            _ => {
                if !c.is_whitespace() {
                    prev_word.clear();
                }
                i += 1;
            }
        }
    }
    names
}

fn allowlist() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(deploy().join("metrics-allowlist.txt")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, why) = l.split_once('#').unwrap_or((l, ""));
            assert!(
                !why.trim().is_empty(),
                "allow-list entry without a reason: {l}"
            );
            (name.trim().to_owned(), why.trim().to_owned())
        })
        .collect()
}

#[test]
fn promql_name_extraction() {
    let names = metric_names(
        r#"sum by (route, le) (rate(http_request_duration_ms_bucket{job=~"$job", route!~"/metrics|x"}[$__rate_interval])) / clamp_min(sum(rate(up[5m])), 1e-9) > 0.5 and on (job) foo:bar offset 5m"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["foo:bar", "http_request_duration_ms_bucket", "up"]
    );
}

#[test]
fn dashboards_are_valid_grafana_json() {
    for (file, d) in dashboards() {
        for key in ["uid", "title"] {
            assert!(
                d[key].as_str().is_some_and(|s| !s.is_empty()),
                "{file}: {key}"
            );
        }
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 30,
            "{file}: schemaVersion"
        );
        let vars: BTreeSet<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        let mut ids = BTreeSet::new();
        let mut stack: Vec<&Value> = d["panels"].as_array().unwrap().iter().collect();
        assert!(!stack.is_empty(), "{file}: no panels");
        while let Some(p) = stack.pop() {
            if let Some(inner) = p["panels"].as_array() {
                stack.extend(inner);
            }
            let title = p["title"].as_str().unwrap_or("");
            assert!(!title.is_empty(), "{file}: a panel without title");
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: duplicate panel id in `{title}`"
            );
            let g = &p["gridPos"];
            let (x, w, h) = (
                g["x"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(
                w > 0 && h > 0 && x + w <= 24,
                "{file}: `{title}` gridPos {g}"
            );
            assert!(g["y"].is_u64(), "{file}: `{title}` gridPos.y");
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}: `{title}` datasource"
            );
            let targets = p["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("{file}: `{title}` has no targets"));
            assert!(!targets.is_empty(), "{file}: `{title}` has no targets");
            let mut refs = BTreeSet::new();
            for t in targets {
                assert!(
                    refs.insert(t["refId"].as_str().unwrap()),
                    "{file}: `{title}` duplicate refId"
                );
                let expr = t["expr"].as_str().unwrap();
                assert!(!expr.trim().is_empty(), "{file}: `{title}` empty expr");
                assert_eq!(
                    expr.matches('(').count(),
                    expr.matches(')').count(),
                    "{file}: `{title}` parens: {expr}"
                );
                for var in ["$job", "$instance"] {
                    if expr.contains(var) {
                        assert!(
                            vars.contains(&var[1..]),
                            "{file}: `{title}` uses undefined {var}"
                        );
                    }
                }
            }
        }
    }
}

const SECRET: &str = "a-dashboards-test-hs256-secret-32-bytes!";

fn jwt(tenant: &str, roles: &[&str]) -> String {
    jwt_support::TestIssuer {
        secret: SECRET,
        issuer: "wattos-tests",
        subject: "ops",
        ttl_secs: 600,
    }
    .token(tenant, roles)
}

/// Serves the configured server (auth on) with two priced OpenAI-compatible deployments on mock
/// servers, a group `main` (`flaky`, falling back to `steady`), breakers that open after two
/// failures, a one-call bulkhead on `steady` and room for four requests at once; then drives the
/// traffic every panel and alert is about and returns the metric names `/metrics` exposes:
/// ordinary requests, RAG ingestion and a repeated search, calls under the tenant's budget, a
/// fallback with a retry, a breaker that opens, rejects, half-opens and closes, a full bulkhead,
/// shed requests and a rate-limited key.
async fn exposed_metric_names() -> BTreeSet<String> {
    let flaky = MockServer::openai().await;
    flaky.set_embedding_dimensions(1536);
    let steady = MockServer::openai().await;
    let file = format!(
        r#"[server]
max_concurrent_requests = 4

[llm.providers.flaky]
kind = "openai"
base_url = "{}"
api_key = "sk-test"
model = "gpt-4o-mini"
price = {{ input = 1.0, output = 2.0 }}
embedding_model = "text-embedding-3-small"

[llm.providers.steady]
kind = "openai"
base_url = "{}"
api_key = "sk-test"
model = "gpt-4o-mini"
price = {{ input = 1.0, output = 2.0 }}

[llm.router]
breaker_failure_threshold = 2
breaker_open_secs = 1

[llm.router.groups.main]
deployments = ["flaky"]
fallbacks = ["steady"]

[llm.router.deployments.steady]
max_concurrent = 1
"#,
        flaky.base_url(),
        steady.base_url()
    );
    let env = jwt_support::required_auth_env("dashboards", SECRET, "wattos-tests");
    let dir = env
        .iter()
        .find(|(k, _)| k == "WATTOS_DATA_DIR")
        .map(|(_, v)| v.clone())
        .unwrap();
    let sources = ConfigSources {
        file: Some(("wattos.toml".into(), file)),
        env,
    };
    let state = build_state(Settings::from_sources(&sources).unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, wattos_server::app(state)).await });
    let http = reqwest::Client::new();
    let admin = jwt("platform", &["platform_admin"]);
    let r = http
        .post(format!("{base}/v1/admin/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"id": "dash", "name": "Dashboards"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key: Value = http
        .post(format!("{base}/v1/admin/tenants/dash/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "k", "roles": ["owner"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    for (method, path, auth) in [
        ("GET", "/health", false),
        ("GET", "/v1/models", true),
        ("GET", "/v1/models", false),
        ("GET", "/v1/admin/keys", true),
        ("GET", "/v1/admin/audit", true),
        ("GET", "/v1/admin/usage", true),
        ("GET", "/console/", false),
        ("GET", "/no/such/route", false),
    ] {
        let mut req = http.request(method.parse().unwrap(), format!("{base}{path}"));
        if auth {
            req = req.bearer_auth(&key);
        }
        req.send().await.unwrap();
    }
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let chat = |model: &str| {
        post(
            "/v1/chat/completions",
            json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
        )
    };

    // RAG: ingestion (documents and chunks indexed) and a repeated search (a query cache hit).
    let r = post("/v1/rag/collections", json!({"name": "kb"}))
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = post(
        "/v1/rag/collections/kb/documents",
        json!({"documents": [{"id": "d1", "text": "Solar panels turn sunlight into electricity."}]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for _ in 0..2 {
        let r = post("/v1/rag/collections/kb/search", json!({"query": "solar"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    // A plain call (calls, latency, tokens, cost, overhead, the tenant's budget gauge).
    assert_eq!(chat("main").await.unwrap().status(), 200);
    // `flaky` fails twice: each call falls back to `steady` (a fallback and a retry), and the
    // second failure opens its breaker.
    for _ in 0..2 {
        flaky.push_fault(Fault::status(500));
        assert_eq!(chat("main").await.unwrap().status(), 200);
    }
    // Open: the call passes `flaky` over (a breaker rejection) and goes to `steady`.
    let before = flaky.requests().len();
    assert_eq!(chat("main").await.unwrap().status(), 200);
    assert_eq!(
        flaky.requests().len(),
        before,
        "the open breaker let a call through"
    );
    // After the open period a trial call succeeds: half-open, then closed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(chat("main").await.unwrap().status(), 200);
    assert_eq!(flaky.requests().len(), before + 1, "no trial call");

    // Shedding: four slow calls fill the server's four slots; a fifth request is shed.
    for _ in 0..4 {
        flaky.push_fault(Fault::Latency(Duration::from_millis(1500)));
    }
    let slow: Vec<_> = (0..4).map(|_| tokio::spawn(chat("flaky"))).collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = http
        .get(format!("{base}/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "not shed: {}", r.text().await.unwrap());
    for t in slow {
        assert_eq!(t.await.unwrap().unwrap().status(), 200);
    }
    // Bulkhead: `steady` takes one call at a time; a second one meanwhile is turned away.
    steady.push_fault(Fault::Latency(Duration::from_millis(1500)));
    let holder = tokio::spawn(chat("steady"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = chat("steady").await.unwrap();
    assert_eq!(r.status(), 503, "bulkhead: {}", r.text().await.unwrap());
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);

    // A rate-limited key: one request a minute, the second is refused.
    let r = http
        .put(format!("{base}/v1/admin/tenants/dash/config"))
        .bearer_auth(&admin)
        .json(&json!({"rate_limits": {"per_key_rpm": 1, "burst": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // A fresh key: no request of this minute counted yet.
    let limited: Value = http
        .post(format!("{base}/v1/admin/tenants/dash/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "rl", "roles": ["owner"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let limited = limited["key"].as_str().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let r = http
            .get(format!("{base}/v1/models"))
            .bearer_auth(limited)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 429]);

    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_metric_in_dashboards_and_rules_is_exposed_or_allow_listed() {
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    for (file, d) in dashboards() {
        for (title, expr) in dashboard_exprs(&d) {
            for name in metric_names(&expr) {
                used.entry(name)
                    .or_insert_with(|| format!("{file}: {title}"));
            }
        }
    }
    let rules = rules_file();
    let exprs = rule_exprs(&rules);
    assert_eq!(
        exprs.len(),
        rules.matches("- alert:").count() + rules.matches("- record:").count(),
        "one expr per rule"
    );
    for expr in &exprs {
        for name in metric_names(expr) {
            used.entry(name)
                .or_insert_with(|| format!("wattos-alerts.yml: {expr}"));
        }
    }
    // `up` is written by Prometheus itself for every scrape target.
    used.remove("up");
    assert!(used.contains_key("http_requests_total") && used.contains_key("circuit_breaker_state"));

    let exposed = exposed_metric_names().await;
    println!("exposed: {exposed:?}");
    let allow = allowlist();
    let missing: Vec<String> = used
        .iter()
        .filter(|(n, _)| !exposed.contains(*n) && !allow.contains_key(*n))
        .map(|(n, w)| format!("{n} (used by {w})"))
        .collect();
    assert!(
        missing.is_empty(),
        "metric names the server does not expose: {missing:#?}"
    );
    let stale: Vec<&String> = allow.keys().filter(|n| exposed.contains(*n)).collect();
    assert!(
        stale.is_empty(),
        "now exposed; delete from deploy/metrics-allowlist.txt: {stale:?}"
    );
    let unused: Vec<&String> = allow.keys().filter(|n| !used.contains_key(*n)).collect();
    assert!(
        unused.is_empty(),
        "allow-listed but used nowhere: {unused:?}"
    );
}

#[test]
fn promtool_checks_and_unit_tests_the_rules_and_parses_dashboard_queries() {
    let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        wattos_core::test_utils::skip::skip(
            "promtool rules check",
            "promtool not found (scripts/test.sh installs the Debian `prometheus` package)",
        );
        return;
    };
    assert!(out.status.success());
    let prom = deploy().join("prometheus");
    for args in [
        vec!["check", "rules", "wattos-alerts.yml"],
        vec!["test", "rules", "wattos-alerts.test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(&prom)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every dashboard query as a recording rule, so promtool's PromQL parser checks it.
    let mut yaml = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    let mut n = 0;
    for (_, d) in dashboards() {
        for (_, expr) in dashboard_exprs(&d) {
            n += 1;
            let q = serde_json::to_string(&grafana_to_promql(&expr)).unwrap();
            yaml.push_str(&format!(
                "      - record: wattos:dashboard_query_{n}\n        expr: {q}\n"
            ));
        }
    }
    let file = std::env::temp_dir().join(format!(
        "wattos-dashboard-queries-{}.yml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, yaml).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "dashboard queries do not parse:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
