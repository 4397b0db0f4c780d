//! Web crawl jobs: `POST /v1/rag/collections/{collection}/crawl` queues a crawl from seed URLs;
//! a worker crawls ([`wattos_rag::web::Crawler`]: robots.txt, sitemaps, same-domain and depth
//! limits, per-host pacing, canonical-URL dedupe, size and content-type limits, network policy)
//! and ingests the pages through the same [`super::IngestionService`] as uploads, so unchanged
//! pages (same content hash) are neither embedded nor written again.
//!
//! What a crawl may reach and how hard it may push is the operator's (`crawl.*`); a request only
//! picks seeds and narrows depth and page count within the operator's caps.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wattos_core::config::ConfigReader;
use wattos_core::{Error, RequestContext, Result};
use wattos_rag::web::{CrawlConfig, CrawlReport, CrawledPage, Crawler};

use super::{IngestDocument, IngestionService, MAX_DOCUMENTS_PER_JOB};
use crate::rag::types::TextFormat;

/// The job kind of a web crawl.
pub const CRAWL_JOB_KIND: &str = "rag.crawl";

/// Most seed URLs per crawl.
pub const MAX_SEEDS: usize = 100;

/// Operator settings of crawl jobs (`crawl.*`). Defaults are those of [`CrawlConfig`]: no
/// loopback or private-network targets, robots.txt obeyed, 250 ms between requests to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrawlSettings {
    /// `crawl.max_depth`: deepest link depth a request may ask for (default 3).
    pub max_depth: u32,
    /// `crawl.max_pages`: most pages a request may ask for (default 500).
    pub max_pages: usize,
    /// `crawl.same_domain`: follow links only on the seeds' hosts (default true).
    pub same_domain: bool,
    /// `crawl.max_bytes`: largest page body (default 5 MiB).
    pub max_bytes: usize,
    /// `crawl.per_host_delay_ms`: least time between two requests to one host (default 250).
    pub per_host_delay_ms: u64,
    /// `crawl.timeout_ms`: per-request timeout (default 30 000).
    pub timeout_ms: u64,
    /// `crawl.concurrency`: requests in flight per crawl (default 4).
    pub concurrency: usize,
    /// `crawl.user_agent`: `User-Agent` and robots.txt agent name.
    pub user_agent: String,
    /// `crawl.respect_robots`: obey robots.txt (default true).
    pub respect_robots: bool,
    /// `crawl.allow_loopback`: let crawls reach this host (default false).
    pub allow_loopback: bool,
    /// `crawl.allow_private_networks`: let crawls reach private and link-local networks (default
    /// false).
    pub allow_private_networks: bool,
}

impl CrawlSettings {
    /// Reads the settings, recording problems in `r`.
    pub fn read(r: &mut ConfigReader) -> Self {
        let d = CrawlConfig::default();
        let s = Self {
            max_depth: r.or("crawl.max_depth", d.max_depth),
            max_pages: r.or("crawl.max_pages", d.max_pages),
            same_domain: r.or("crawl.same_domain", d.same_domain),
            max_bytes: r.or("crawl.max_bytes", d.max_bytes),
            per_host_delay_ms: r.or("crawl.per_host_delay_ms", d.per_host_delay_ms),
            timeout_ms: r.or("crawl.timeout_ms", d.timeout_ms),
            concurrency: r.or("crawl.concurrency", d.concurrency),
            user_agent: r.or("crawl.user_agent", d.user_agent),
            respect_robots: r.or("crawl.respect_robots", d.respect_robots),
            allow_loopback: r.or("crawl.allow_loopback", false),
            allow_private_networks: r.or("crawl.allow_private_networks", false),
        };
        if let Err(e) = s.config(None, None).validate() {
            let field = e.field().unwrap_or("crawl").to_owned();
            r.problem(&format!("crawl.{field}"), e.message().to_owned());
        }
        s
    }

    /// The crawler configuration for a request asking for `max_depth` / `max_pages` (the
    /// operator's caps when absent).
    pub fn config(&self, max_depth: Option<u32>, max_pages: Option<usize>) -> CrawlConfig {
        CrawlConfig {
            max_depth: max_depth.unwrap_or(self.max_depth),
            max_pages: max_pages.unwrap_or(self.max_pages),
            same_domain: self.same_domain,
            max_bytes: self.max_bytes,
            per_host_delay_ms: self.per_host_delay_ms,
            timeout_ms: self.timeout_ms,
            concurrency: self.concurrency,
            user_agent: self.user_agent.clone(),
            respect_robots: self.respect_robots,
            allow_loopback: self.allow_loopback,
            allow_private_networks: self.allow_private_networks,
            ..CrawlConfig::default()
        }
    }
}

impl Default for CrawlSettings {
    fn default() -> Self {
        Self::read(&mut ConfigReader::new(None, Vec::new()))
    }
}

/// Body of `POST /v1/rag/collections/{collection}/crawl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrawlRequest {
    /// Start URLs (`http`/`https`, 1 to 100). Their hosts' `/sitemap.xml` is read too.
    pub seeds: Vec<String>,
    /// Link hops to follow from a seed (at most the server's `crawl.max_depth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u32>,
    /// Pages to keep (at least 1, at most the server's `crawl.max_pages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pages: Option<usize>,
}

impl CrawlRequest {
    /// Checks the request against the operator's caps.
    ///
    /// # Errors
    /// `invalid_input` naming the field.
    pub fn validate(&self, settings: &CrawlSettings) -> Result<()> {
        if self.seeds.is_empty() || self.seeds.len() > MAX_SEEDS {
            return Err(Error::invalid_field(
                "seeds",
                format!("must hold 1 to {MAX_SEEDS} URLs"),
            ));
        }
        for (i, seed) in self.seeds.iter().enumerate() {
            match url::Url::parse(seed) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
                Ok(_) => {
                    return Err(Error::invalid_field(
                        format!("seeds[{i}]"),
                        "must be an http or https URL with a host",
                    ));
                }
                Err(e) => {
                    return Err(Error::invalid_field(
                        format!("seeds[{i}]"),
                        format!("not a URL: {e}"),
                    ));
                }
            }
        }
        if let Some(d) = self.max_depth
            && d > settings.max_depth
        {
            return Err(Error::invalid_field(
                "max_depth",
                format!("at most {} on this server", settings.max_depth),
            ));
        }
        if let Some(p) = self.max_pages
            && (p == 0 || p > settings.max_pages)
        {
            return Err(Error::invalid_field(
                "max_pages",
                format!("must be 1 to {} on this server", settings.max_pages),
            ));
        }
        Ok(())
    }
}

/// The payload of a `rag.crawl` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlPayload {
    /// Target collection.
    pub collection: String,
    /// The request.
    pub request: CrawlRequest,
    /// The submitting request's id: every submission is its own crawl (a re-crawl is wanted),
    /// while a redelivered job keeps its id.
    pub submitted_by: String,
}

impl CrawlPayload {
    /// The job's idempotency key.
    pub fn content_hash(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// Runs a crawl job: crawl with the operator's settings narrowed by the request, then ingest the
/// pages in batches through `service`. Returns the job result: what was crawled and skipped, and
/// the ingestion reports.
///
/// # Errors
/// `invalid_input` for a bad payload; the crawler's and the service's errors.
pub async fn run_crawl(
    ctx: &RequestContext,
    settings: &CrawlSettings,
    service: &dyn IngestionService,
    payload: CrawlPayload,
) -> Result<Value> {
    payload.request.validate(settings)?;
    let cfg = settings.config(payload.request.max_depth, payload.request.max_pages);
    let crawler = Crawler::new(cfg)?;
    let started = std::time::Instant::now();
    let report = crawler.crawl(ctx, &payload.request.seeds).await?;
    let crawl_seconds = started.elapsed().as_secs_f64();
    let documents: Vec<IngestDocument> = report.pages.iter().map(page_document).collect();
    let mut ingest = Vec::new();
    for batch in documents.chunks(MAX_DOCUMENTS_PER_JOB) {
        ingest.push(
            service
                .ingest(ctx, &payload.collection, batch.to_vec())
                .await?,
        );
    }
    Ok(json!({
        "crawl": crawl_summary(&report, crawl_seconds),
        "ingest": ingest,
    }))
}

/// A crawled page as a document: id and location are its canonical URL (a SHA-256 of it when the
/// URL is longer than an id may be); the text is the loader's Markdown-style text.
fn page_document(page: &CrawledPage) -> IngestDocument {
    let id = if page.url.len() <= 256 {
        page.url.clone()
    } else {
        format!(
            "url-sha256:{}",
            hex::encode(Sha256::digest(page.url.as_bytes()))
        )
    };
    let mut metadata = serde_json::Map::new();
    metadata.insert("crawl_depth".into(), json!(page.depth));
    IngestDocument {
        id,
        text: page.document.text.clone(),
        title: page.document.title.clone(),
        location: Some(page.url.clone()),
        format: Some(TextFormat::Markdown),
        metadata: Some(metadata),
    }
}

/// What was crawled; each skipped URL is `{url, reason, ...details}`.
fn crawl_summary(report: &CrawlReport, seconds: f64) -> Value {
    let skipped: Vec<Value> = report
        .skipped
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(&s.reason).unwrap_or_else(|_| json!({}));
            if let Some(o) = v.as_object_mut() {
                o.insert("url".into(), json!(s.url));
            }
            v
        })
        .collect();
    json!({
        "pages": report.pages.iter().map(|p| &p.url).collect::<Vec<_>>(),
        "skipped": skipped,
        "requests": report.requests,
        "truncated": report.truncated,
        "seconds": seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(seeds: &[&str]) -> CrawlRequest {
        CrawlRequest {
            seeds: seeds.iter().map(|s| (*s).to_owned()).collect(),
            max_depth: None,
            max_pages: None,
        }
    }

    #[test]
    fn requests_stay_within_the_operators_caps() {
        let s = CrawlSettings::default();
        assert!(req(&["https://example.org/docs/"]).validate(&s).is_ok());
        let field = |r: CrawlRequest| r.validate(&s).unwrap_err().field().map(str::to_owned);
        assert_eq!(field(req(&[])), Some("seeds".into()));
        assert_eq!(field(req(&["ftp://example.org/"])), Some("seeds[0]".into()));
        assert_eq!(
            field(req(&["https://example.org/", "not a url"])),
            Some("seeds[1]".into())
        );
        let mut deep = req(&["https://example.org/"]);
        deep.max_depth = Some(s.max_depth + 1);
        assert_eq!(field(deep), Some("max_depth".into()));
        let mut none = req(&["https://example.org/"]);
        none.max_pages = Some(0);
        assert_eq!(field(none), Some("max_pages".into()));
    }

    #[test]
    fn operator_settings_keep_the_network_policy() {
        let s = CrawlSettings::default();
        let cfg = s.config(Some(1), Some(10));
        assert!(!cfg.allow_loopback && !cfg.allow_private_networks);
        assert_eq!((cfg.max_depth, cfg.max_pages), (1, 10));
    }

    #[test]
    fn every_submission_is_its_own_job_but_a_redelivery_is_not() {
        let p = |by: &str| CrawlPayload {
            collection: "docs".into(),
            request: req(&["https://example.org/"]),
            submitted_by: by.into(),
        };
        assert_eq!(p("r1").content_hash(), p("r1").content_hash());
        assert_ne!(p("r1").content_hash(), p("r2").content_hash());
    }
}
