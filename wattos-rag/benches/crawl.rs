//! Crawl + ingest throughput against a local site (axum on 127.0.0.1): 300 linked HTML pages, a
//! sitemap and robots.txt; politeness delay off (one local host), 8 requests in flight.
//!
//! ```text
//! cargo bench -p wattos-rag --features web --bench crawl
//! ```
//!
//! Prints pages/s for the first crawl (fetch, parse, load, chunk, embed, index) and for a
//! re-crawl of the unchanged site (fetch and parse only: nothing is embedded). The embedder is the
//! deterministic hashing embedder, so the figures measure the crawler and pipeline, not a model.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::{RequestContext, TenantId};
use wattos_rag::RagBuilder;
use wattos_rag::keyword::{KeywordIndex, Language};
use wattos_rag::web::{CrawlConfig, Crawler};

const PAGES: usize = 300;

fn page(i: usize) -> String {
    let mut body = format!("<h1>Page {i}</h1>");
    for s in 0..3 {
        body.push_str(&format!(
            "<h2>Section {s}</h2><p>Page {i} section {s} covers grid storage, heat pumps and \
             tariffs. Prices and demand vary by season, and batteries smooth the evening peak.</p>"
        ));
    }
    for j in 1..=4 {
        body.push_str(&format!(
            "<a href=\"/p/{}\">next {j}</a> ",
            (i * 4 + j) % PAGES
        ));
    }
    format!("<html><head><title>Page {i}</title></head><body>{body}</body></html>")
}

async fn serve_page(Path(i): Path<usize>) -> Response {
    if i >= PAGES {
        return StatusCode::NOT_FOUND.into_response();
    }
    ([(header::CONTENT_TYPE, "text/html")], page(i)).into_response()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/", get(|| async { axum::response::Redirect::to("/p/0") }))
            .route("/p/{i}", get(serve_page))
            .route(
                "/robots.txt",
                get(|| async { "User-agent: *\nDisallow: /private/\n" }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let rag = RagBuilder::new(HashingEmbedder::shared(384))
            .keyword_index(KeywordIndex::in_memory(Language::English))
            .build()
            .unwrap();
        let ctx = RequestContext::system(TenantId::new("bench").unwrap());
        let crawler = Crawler::new(CrawlConfig {
            max_depth: 20,
            max_pages: PAGES,
            per_host_delay_ms: 0,
            concurrency: 8,
            // The bench site is on this host.
            allow_loopback: true,
            ..CrawlConfig::default()
        })
        .unwrap();
        let seeds = [format!("http://{addr}/")];
        for run in ["first crawl", "re-crawl (unchanged)"] {
            let t = Instant::now();
            let r = crawler
                .crawl_and_ingest(&ctx, rag.pipeline(), &seeds)
                .await
                .unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(r.crawl.pages.len(), PAGES);
            println!(
                "[crawl] {run}: {} pages ({} indexed, {} unchanged, {} chunks, {} requests) in {secs:.3}s: {:.0} pages/s",
                r.crawl.pages.len(),
                r.ingest.indexed(),
                r.ingest.unchanged(),
                r.ingest.chunks(),
                r.crawl.requests,
                r.crawl.pages.len() as f64 / secs
            );
        }
    });
}
