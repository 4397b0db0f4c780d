//! The crawler against a local site served by the test: nested pages, a sitemap, a robots.txt
//! disallow, a redirect loop, a 10 MB page, non-HTML files, a canonical alias and a noindex page.
//! Exactly the allowed pages are ingested, once; a re-crawl of unchanged pages embeds nothing.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::{ErrorKind, RequestContext, TenantId};
use wattos_rag::Rag;
use wattos_rag::web::{CrawlConfig, Crawler, SkipReason};

#[derive(Clone, Default)]
struct Site {
    hits: Arc<Mutex<Vec<(String, Instant)>>>,
    changed: Arc<Mutex<bool>>,
}

impl Site {
    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    }
}

fn html(body: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<html><head><title>t</title></head><body>{body}</body></html>"),
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(to).unwrap());
    r
}

async fn serve(State(site): State<Site>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    site.hits
        .lock()
        .unwrap()
        .push((path.clone(), Instant::now()));
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    match path.as_str() {
        "/robots.txt" => (
            [(header::CONTENT_TYPE, "text/plain")],
            format!("User-agent: *\nDisallow: /private/\n\nSitemap: http://{host}/sitemap.xml\n"),
        )
            .into_response(),
        "/sitemap.xml" => (
            [(header::CONTENT_TYPE, "application/xml")],
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>http://{host}/</loc></url>
  <url><loc>http://{host}/orphan.html</loc></url>
  <url><loc>http://{host}/private/listed.html</loc></url>
</urlset>"#
            ),
        )
            .into_response(),
        "/" => html(
            r#"<h1>Home</h1><p>Welcome to the solar co-op.</p>
            <a href="/a.html">A</a> <a href="a.html#part">A again</a> <a href="/a.html?utm_source=x">A tagged</a>
            <a href="/alias.html">Alias</a> <a href="/docs/b.html">B</a> <a href="/moved">Moved</a>
            <a href="/private/secret.html">Secret</a> <a href="/loop1">Loop</a>
            <a href="/big.html">Big</a> <a href="/file.pdf">PDF</a> <a href="/data.json">JSON</a>
            <a href="/hidden.html">Hidden</a> <a href="/missing.html">Missing</a>
            <a href="http://elsewhere.invalid/x.html">Elsewhere</a> <a href="mailto:x@y.z">Mail</a>"#,
        ),
        "/a.html" => {
            let text = if *site.changed.lock().unwrap() {
                "Page A now talks about wind turbines."
            } else {
                "Page A talks about heat pumps."
            };
            html(&format!("<h1>A</h1><p>{text}</p><a href=\"/\">Home</a>"))
        }
        "/alias.html" => html(
            r#"<link rel="canonical" href="/a.html"><h1>A</h1><p>Page A talks about heat pumps.</p>"#,
        )
        .into_response(),
        "/docs/b.html" => html(r#"<h2>B</h2><p>Batteries.</p><a href="deep/c.html">C</a>"#),
        "/docs/deep/c.html" => html(r#"<p>Cables.</p><a href="deeper/d.html">D</a>"#),
        "/docs/deep/deeper/d.html" => html(r#"<p>Diodes.</p><a href="e.html">E</a>"#),
        "/docs/deep/deeper/e.html" => html("<p>Too deep: electrons.</p>"),
        "/orphan.html" => html("<p>Only the sitemap links to this orphan page.</p>"),
        "/hidden.html" => html(
            r#"<meta name="robots" content="noindex"><p>Do not index.</p><a href="/via-hidden.html">V</a>"#,
        ),
        "/via-hidden.html" => html("<p>Reached through a noindex page.</p>"),
        "/moved" => redirect("/docs/b.html"),
        "/loop1" => redirect("/loop2"),
        "/loop2" => redirect(&format!("http://{host}/loop1")),
        "/big.html" => {
            // 10 MB streamed without Content-Length: the limit must hold while reading.
            let stream = futures::stream::iter(
                (0..10).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024 * 1024])),
            );
            ([(header::CONTENT_TYPE, "text/html")], Body::from_stream(stream)).into_response()
        }
        "/file.pdf" => (
            [(header::CONTENT_TYPE, "application/pdf")],
            b"%PDF-1.4 not really".to_vec(),
        )
            .into_response(),
        "/data.json" => ([(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start(site: Site) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(serve).with_state(site);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn config() -> CrawlConfig {
    CrawlConfig {
        max_depth: 3,
        max_bytes: 1024 * 1024,
        per_host_delay_ms: 5,
        // The test site is on this host; the default policy refuses loopback (see below).
        allow_loopback: true,
        ..CrawlConfig::default()
    }
}

const ALLOWED: &[&str] = &[
    "/",
    "/a.html",
    "/docs/b.html",
    "/docs/deep/c.html",
    "/docs/deep/deeper/d.html",
    "/orphan.html",
    "/via-hidden.html",
];

#[tokio::test]
async fn crawls_exactly_the_allowed_pages_once_and_recrawl_embeds_nothing() {
    let site = Site::default();
    let base = start(site.clone()).await;
    let embedder = HashingEmbedder::shared(128);
    let rag = Rag::in_memory(embedder.clone()).unwrap();
    let ctx = RequestContext::system(TenantId::new("crawl").unwrap());
    let crawler = Crawler::new(config()).unwrap();

    let report = crawler
        .crawl_and_ingest(&ctx, rag.pipeline(), &[format!("{base}/")])
        .await
        .unwrap();
    let ids: BTreeSet<String> = report.crawl.pages.iter().map(|p| p.url.clone()).collect();
    let expected: BTreeSet<String> = ALLOWED.iter().map(|p| format!("{base}{p}")).collect();
    assert_eq!(ids, expected, "skipped: {:#?}", report.crawl.skipped);
    assert_eq!(
        report.crawl.pages.len(),
        ALLOWED.len(),
        "a page was ingested twice"
    );
    assert_eq!(report.ingest.indexed(), ALLOWED.len());
    assert!(report.ingest.failed().is_empty());

    let reasons: HashMap<String, SkipReason> = report
        .crawl
        .skipped
        .iter()
        .map(|s| (s.url.trim_start_matches(&base).to_owned(), s.reason.clone()))
        .collect();
    assert_eq!(
        reasons["/private/secret.html"],
        SkipReason::RobotsDisallowed
    );
    assert_eq!(
        reasons["/private/listed.html"],
        SkipReason::RobotsDisallowed
    );
    assert!(matches!(reasons["/loop1"], SkipReason::RedirectLoop { .. }));
    assert_eq!(
        reasons["/big.html"],
        SkipReason::TooLarge { max: 1024 * 1024 }
    );
    assert!(
        matches!(&reasons["/file.pdf"], SkipReason::ContentType { content_type } if content_type == "application/pdf")
    );
    assert!(matches!(
        &reasons["/data.json"],
        SkipReason::ContentType { .. }
    ));
    assert_eq!(reasons["/hidden.html"], SkipReason::NoIndex);
    assert_eq!(
        reasons["/missing.html"],
        SkipReason::HttpStatus { status: 404 }
    );
    assert!(
        matches!(&reasons["/alias.html"], SkipReason::Duplicate { canonical } if canonical == &format!("{base}/a.html"))
    );
    assert!(
        matches!(&reasons["/moved"], SkipReason::Duplicate { canonical } if canonical == &format!("{base}/docs/b.html"))
    );

    // Robots-disallowed, off-depth and off-site pages are never requested; every page once.
    assert_eq!(site.hits("/private/secret.html"), 0);
    assert_eq!(site.hits("/private/listed.html"), 0);
    assert_eq!(site.hits("/docs/deep/deeper/e.html"), 0);
    assert_eq!(site.hits("/robots.txt"), 1);
    for p in ALLOWED.iter().filter(|p| **p != "/docs/b.html") {
        assert_eq!(site.hits(p), 1, "{p} fetched more than once");
    }
    assert_eq!(site.hits("/loop1"), 1);
    assert_eq!(site.hits("/loop2"), 1);

    // Text keeps headings and absolute links.
    let home = report
        .crawl
        .pages
        .iter()
        .find(|p| p.url == format!("{base}/"))
        .unwrap();
    assert!(
        home.document.text.starts_with("# Home"),
        "{}",
        home.document.text
    );
    assert!(
        home.document
            .text
            .contains(&format!("[B]({base}/docs/b.html)"))
    );
    let hits = rag
        .search(
            &ctx,
            &wattos_rag::retrieve::SearchRequest::new("heat pumps", 1),
        )
        .await
        .unwrap();
    assert_eq!(hits[0].document_id, format!("{base}/a.html"));

    // Re-crawl: nothing changed, so nothing is embedded or written.
    let calls = embedder.calls();
    let again = crawler
        .crawl_and_ingest(&ctx, rag.pipeline(), &[format!("{base}/")])
        .await
        .unwrap();
    assert_eq!(again.crawl.pages.len(), ALLOWED.len());
    assert_eq!(again.ingest.unchanged(), ALLOWED.len());
    assert_eq!(again.ingest.indexed(), 0);
    assert_eq!(
        embedder.calls(),
        calls,
        "a re-crawl of unchanged pages embedded"
    );

    // One page changes: exactly that page is re-embedded.
    *site.changed.lock().unwrap() = true;
    let third = crawler
        .crawl_and_ingest(&ctx, rag.pipeline(), &[format!("{base}/")])
        .await
        .unwrap();
    assert_eq!(third.ingest.indexed(), 1);
    assert_eq!(third.ingest.unchanged(), ALLOWED.len() - 1);
    assert!(embedder.calls() > calls);
}

#[tokio::test]
async fn requests_to_one_host_are_paced() {
    let site = Site::default();
    let base = start(site.clone()).await;
    let crawler = Crawler::new(CrawlConfig {
        per_host_delay_ms: 40,
        max_depth: 1,
        sitemaps: false,
        ..config()
    })
    .unwrap();
    let ctx = RequestContext::system(TenantId::new("pace").unwrap());
    let report = crawler.crawl(&ctx, &[format!("{base}/")]).await.unwrap();
    assert!(report.requests >= 10);
    let times: Vec<Instant> = site.hits.lock().unwrap().iter().map(|(_, t)| *t).collect();
    for w in times.windows(2) {
        // A little slack for timer granularity.
        assert!(
            w[1].duration_since(w[0]) >= Duration::from_millis(35),
            "requests {:?} apart",
            w[1].duration_since(w[0])
        );
    }
}

#[tokio::test]
async fn url_loader_gives_typed_errors() {
    let site = Site::default();
    let base = start(site.clone()).await;
    let crawler = Crawler::new(config()).unwrap();
    let ctx = RequestContext::system(TenantId::new("load").unwrap());
    let doc = crawler
        .load_url(&ctx, &format!("{base}/alias.html"))
        .await
        .unwrap();
    assert_eq!(doc.id, format!("{base}/a.html"), "id is the canonical URL");
    assert!(doc.text.contains("heat pumps"));

    let err = |e: wattos_core::Error| (e.kind(), SkipReason::from_error(&e).cloned());
    let e = crawler
        .load_url(&ctx, &format!("{base}/private/secret.html"))
        .await
        .unwrap_err();
    assert_eq!(
        err(e),
        (ErrorKind::Forbidden, Some(SkipReason::RobotsDisallowed))
    );
    let e = crawler
        .load_url(&ctx, &format!("{base}/missing.html"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = crawler
        .load_url(&ctx, &format!("{base}/loop1"))
        .await
        .unwrap_err();
    assert!(matches!(
        SkipReason::from_error(&e),
        Some(SkipReason::RedirectLoop { .. })
    ));
    let e = crawler
        .load_url(&ctx, "ftp://x.invalid/")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = crawler.load_url(&ctx, "not a url").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        Crawler::new(CrawlConfig {
            max_pages: 0,
            ..CrawlConfig::default()
        })
        .is_err()
    );
}

#[tokio::test]
async fn the_default_network_policy_refuses_this_host_by_address_and_by_name() {
    let site = Site::default();
    let base = start(site.clone()).await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    let strict = Crawler::new(CrawlConfig {
        per_host_delay_ms: 0,
        ..CrawlConfig::default()
    })
    .unwrap();
    let ctx = RequestContext::system(TenantId::new("ssrf").unwrap());

    // An IP literal is refused before any request; so is a name that resolves to loopback (the
    // resolver drops the address), robots.txt and sitemap included.
    for seed in [format!("{base}/"), format!("http://localhost:{port}/")] {
        let report = strict
            .crawl(&ctx, std::slice::from_ref(&seed))
            .await
            .unwrap();
        assert!(report.pages.is_empty(), "{seed}: {:?}", report.pages);
        assert!(
            matches!(
                &report.skipped[..],
                [s] if matches!(&s.reason, SkipReason::BlockedAddress { class, .. } if *class == wattos_rag::web::AddressClass::Loopback)
            ),
            "{seed}: {:?}",
            report.skipped
        );
        let e = strict.load_url(&ctx, &seed).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        assert!(matches!(
            SkipReason::from_error(&e),
            Some(SkipReason::BlockedAddress { .. })
        ));
    }
    assert!(
        site.hits.lock().unwrap().is_empty(),
        "nothing may reach the site: {:?}",
        site.hits.lock().unwrap()
    );

    // Allowing loopback lets the same name through the resolver.
    let open = Crawler::new(CrawlConfig {
        allow_loopback: true,
        max_depth: 0,
        sitemaps: false,
        per_host_delay_ms: 0,
        ..CrawlConfig::default()
    })
    .unwrap();
    let report = open
        .crawl(&ctx, &[format!("http://localhost:{port}/")])
        .await
        .unwrap();
    assert_eq!(report.pages.len(), 1, "{:?}", report.skipped);
}
