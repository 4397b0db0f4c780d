//! `POST /v1/rag/collections/{collection}/crawl` end to end: a local site served by the test
//! (nested pages, a sitemap-only page, a robots.txt disallow, a redirect loop, a 10 MB page, a
//! PDF), crawled by the job worker and ingested through the RAG API's service. Exactly the allowed
//! pages become documents, each fetched once; a re-crawl of the unchanged site embeds nothing; the
//! operator's network policy and caps hold; bad requests are 400 before anything is queued.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wattos_core::config::Config;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_rag::jobs::MemoryJobQueue;
use wattos_server::gateway::ModelCatalog;
use wattos_server::jobs::{CrawlSettings, JobSettings, Jobs};
use wattos_server::{AppState, app};

#[derive(Clone, Default)]
struct Site {
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

fn html(body: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<html><head><title>Page</title></head><body>{body}</body></html>"),
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(to).unwrap());
    r
}

async fn serve_site(State(site): State<Site>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    *site.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match path.as_str() {
        "/robots.txt" => "User-agent: *\nDisallow: /private/\n".into_response(),
        "/sitemap.xml" => (
            [(header::CONTENT_TYPE, "application/xml")],
            format!(
                "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
                 <url><loc>http://{host}/</loc></url><url><loc>http://{host}/orphan</loc></url></urlset>"
            ),
        )
            .into_response(),
        "/" => html(
            "<h1>Heat pump handbook</h1><p>Start here.</p>\
             <a href=\"/docs/install\">Install</a> <a href=\"/docs/winter\">Winter</a>\
             <a href=\"/private/salaries\">Private</a> <a href=\"/loop-a\">Loop</a>\
             <a href=\"/huge\">Huge</a> <a href=\"/manual.pdf\">PDF</a>",
        ),
        "/docs/install" => html(
            "<h1>Installation</h1><p>Mount the outdoor unit on a solid base.</p>\
             <a href=\"/docs/winter\">Winter</a> <a href=\"/\">Home</a>",
        ),
        "/docs/winter" => html(
            "<h1>Winter operation</h1><p>Defrost cycles keep the coil free of ice.</p>",
        ),
        "/orphan" => html("<h1>Warranty</h1><p>Five years on the compressor.</p>"),
        "/private/salaries" => html("<p>Never to be crawled.</p>"),
        "/loop-a" => redirect("/loop-b"),
        "/loop-b" => redirect("/loop-a"),
        "/huge" => html(&"<p>ten megabytes of padding</p>".repeat(400_000)),
        "/manual.pdf" => ([(header::CONTENT_TYPE, "application/pdf")], "%PDF-1.4").into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_site() -> (String, Site) {
    let site = Site::default();
    let router = Router::new().fallback(serve_site).with_state(site.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, site)
}

struct Server {
    base: String,
    embedder: Arc<HashingEmbedder>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The server with the RAG API (hashing embedder) and an in-process job worker whose crawls may
/// reach loopback when `allow_loopback`.
async fn start_server(allow_loopback: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_sources(
        None,
        vec![(
            "WATTOS_DATA_DIR".to_owned(),
            dir.path().display().to_string(),
        )],
    )
    .unwrap();
    let embedder = HashingEmbedder::shared(64);
    let mut catalog = ModelCatalog::default();
    catalog.add_embedding(
        "hashing-embedder",
        "wattos",
        embedder.clone() as Arc<dyn EmbeddingModel>,
    );
    let (rag, _) = wattos_server::apis::build_services(&config, &catalog, None)
        .await
        .unwrap();
    let rag = rag.unwrap();
    let settings = JobSettings {
        crawl: CrawlSettings {
            allow_loopback,
            per_host_delay_ms: 0,
            max_depth: 3,
            max_pages: 50,
            ..CrawlSettings::default()
        },
        ..JobSettings::default()
    };
    let jobs = Jobs::new(
        Arc::new(MemoryJobQueue::new()),
        Some(Arc::new(rag.clone())),
        settings,
    );
    let stop = CancellationToken::new();
    jobs.spawn_worker(stop.child_token()).unwrap();
    let state = AppState::with_parts(config.clone(), AppState::default_health(&config), catalog)
        .with_rag(Some(rag))
        .with_jobs(Some(jobs));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    Server {
        base,
        embedder,
        stop,
        _dir: dir,
    }
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Submits a crawl and waits for the job to end; returns its final status.
async fn crawl(c: &reqwest::Client, base: &str, body: Value) -> Value {
    let (status, job) = post(c, format!("{base}/v1/rag/collections/handbook/crawl"), body).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["duplicate"], false);
    let url = format!("{base}{}", job["status_url"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
        match st["state"].as_str().unwrap() {
            "succeeded" | "dead_lettered" => return st,
            _ if Instant::now() > deadline => panic!("crawl job did not finish: {st}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn paths(urls: &Value) -> BTreeSet<String> {
    urls.as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let u = u.as_str().unwrap();
            let rest = u.split_once("//").unwrap().1;
            rest[rest.find('/').unwrap()..].to_owned()
        })
        .collect()
}

fn ingest_total(result: &Value, field: &str) -> u64 {
    result["ingest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[field].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn crawl_job_ingests_exactly_the_allowed_pages_and_recrawls_embed_nothing() {
    let (site_url, site) = start_site().await;
    let s = start_server(true).await;
    let c = reqwest::Client::new();
    let (status, _) = post(
        &c,
        format!("{}/v1/rag/collections", s.base),
        json!({"name": "handbook"}),
    )
    .await;
    assert_eq!(status, 201);

    let first = crawl(&c, &s.base, json!({"seeds": [format!("{site_url}/")]})).await;
    assert_eq!(first["state"], "succeeded", "{first}");
    let result = &first["result"];
    let expected: BTreeSet<String> = ["/", "/docs/install", "/docs/winter", "/orphan"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(paths(&result["crawl"]["pages"]), expected, "{result}");
    let reasons: BTreeSet<String> = result["crawl"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap().to_owned())
        .collect();
    for reason in [
        "robots_disallowed",
        "redirect_loop",
        "too_large",
        "content_type",
    ] {
        assert!(reasons.contains(reason), "{reason} missing in {reasons:?}");
    }
    assert_eq!(ingest_total(result, "indexed"), 4, "{result}");
    // Each allowed page was fetched once; the disallowed one never.
    let hits = site.hits.lock().unwrap().clone();
    for page in &expected {
        assert_eq!(hits.get(page), Some(&1), "{page}: {hits:?}");
    }
    assert_eq!(hits.get("/private/salaries"), None);

    // The pages are documents of the collection, with their URLs as ids and locations.
    let docs: Value = c
        .get(format!("{}/v1/rag/collections/handbook/documents", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = docs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{docs}");
    assert!(ids.iter().all(|id| id.starts_with(&site_url)), "{ids:?}");
    let (status, hits) = post(
        &c,
        format!("{}/v1/rag/collections/handbook/search", s.base),
        json!({"query": "defrost cycles ice", "top_k": 1, "mode": "keyword"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        hits["data"][0]["document_id"]
            .as_str()
            .unwrap()
            .ends_with("/docs/winter"),
        "{hits}"
    );

    // A re-crawl of the unchanged site is a new job, and embeds nothing.
    let embedded = s.embedder.calls();
    let second = crawl(&c, &s.base, json!({"seeds": [format!("{site_url}/")]})).await;
    assert_eq!(second["state"], "succeeded", "{second}");
    assert_ne!(second["id"], first["id"]);
    assert_eq!(ingest_total(&second["result"], "unchanged"), 4);
    assert_eq!(ingest_total(&second["result"], "indexed"), 0);
    assert_eq!(s.embedder.calls(), embedded, "a re-crawl embedded again");

    // The request narrows the operator's limits.
    let shallow = crawl(
        &c,
        &s.base,
        json!({"seeds": [format!("{site_url}/")], "max_depth": 0, "max_pages": 1}),
    )
    .await;
    assert_eq!(
        shallow["result"]["crawl"]["pages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(ingest_total(&shallow["result"], "unchanged"), 1);
}

#[tokio::test]
async fn bad_crawl_requests_are_400_and_the_network_policy_is_the_operators() {
    let (site_url, site) = start_site().await;
    let s = start_server(false).await;
    let c = reqwest::Client::new();
    post(
        &c,
        format!("{}/v1/rag/collections", s.base),
        json!({"name": "handbook"}),
    )
    .await;
    let url = format!("{}/v1/rag/collections/handbook/crawl", s.base);
    for (body, param) in [
        (json!({"seeds": []}), "seeds"),
        (json!({"seeds": ["file:///etc/passwd"]}), "seeds[0]"),
        (json!({"seeds": ["not a url"]}), "seeds[0]"),
        (
            json!({"seeds": ["https://example.org/"], "max_depth": 99}),
            "max_depth",
        ),
        (
            json!({"seeds": ["https://example.org/"], "max_pages": 0}),
            "max_pages",
        ),
    ] {
        let (status, e) = post(&c, url.clone(), body.clone()).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["code"], "invalid_input");
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
    }
    let (status, e) = post(
        &c,
        url.clone(),
        json!({"seeds": ["https://example.org/"], "allow_loopback": true}),
    )
    .await;
    assert_eq!(
        status, 400,
        "a request cannot widen the network policy: {e}"
    );
    let (status, _) = post(
        &c,
        format!("{}/v1/rag/collections/Bad Name/crawl", s.base),
        json!({"seeds": ["https://example.org/"]}),
    )
    .await;
    assert_eq!(status, 400);

    // Loopback is off on this server: the job succeeds, reaches nothing and says why.
    let done = crawl(&c, &s.base, json!({"seeds": [format!("{site_url}/")]})).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let result = &done["result"];
    assert_eq!(result["crawl"]["pages"], json!([]));
    assert_eq!(result["crawl"]["skipped"][0]["reason"], "blocked_address");
    assert_eq!(result["ingest"], json!([]));
    assert!(
        site.hits.lock().unwrap().is_empty(),
        "the site was contacted"
    );
}
