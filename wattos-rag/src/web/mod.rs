//! Web ingestion (feature `web`): a URL loader and a polite crawler whose pages go through the same
//! [`IndexPipeline`] as uploads.
//!
//! * **Scope:** same host as the seeds (unless turned off), a link-depth limit and a page limit.
//! * **robots.txt:** fetched once per origin and obeyed (including `Crawl-delay`, capped); a
//!   `robots.txt` that answers 4xx allows everything, one that cannot be read (5xx, network) allows
//!   nothing, as the robots exclusion standard (RFC 9309) asks.
//! * **Sitemaps:** `/sitemap.xml` and the sitemaps named in robots.txt (sitemap indexes too) add
//!   their in-scope URLs as seeds (depth 0).
//! * **Politeness:** at most one request per host every `per_host_delay_ms` (or the robots delay).
//! * **Dedupe:** URLs are normalised ([`normalize_url`]); a page whose `<link rel=canonical>` names a
//!   page already crawled is a duplicate; document ids are the canonical URLs.
//! * **Redirects** are followed by hand: every hop is scope- and robots-checked, loops and chains
//!   longer than `max_redirects` are reported.
//! * **Limits:** `Content-Type` must be one of `content_types`; bodies over `max_bytes` are cut off
//!   while streaming (a lying or missing `Content-Length` does not help).
//! * **Network guard:** only public addresses are connected to unless `allow_loopback` /
//!   `allow_private_networks` say otherwise; checked on the resolved address of every request, so
//!   redirects and DNS tricks cannot reach internal services ([`AddressPolicy`]).
//! * **Change detection:** pages become [`Document`]s whose content hash the pipeline compares with
//!   the stored one, so re-crawling unchanged pages embeds and writes nothing.
//!
//! ```no_run
//! use std::sync::Arc;
//! use wattos_core::{RequestContext, TenantId};
//! use wattos_core::test_utils::embed::HashingEmbedder;
//! use wattos_rag::Rag;
//! use wattos_rag::web::{CrawlConfig, Crawler};
//!
//! # async fn run() -> wattos_core::Result<()> {
//! let rag = Rag::in_memory(Arc::new(HashingEmbedder::new(256)))?;
//! let ctx = RequestContext::system(TenantId::new("acme")?);
//! let crawler = Crawler::new(CrawlConfig { max_depth: 2, ..CrawlConfig::default() })?;
//! let report = crawler
//!     .crawl_and_ingest(&ctx, rag.pipeline(), &["https://docs.example.invalid/".into()])
//!     .await?;
//! println!("{} pages, {} indexed", report.crawl.pages.len(), report.ingest.indexed());
//! # Ok(()) }
//! ```

mod address;
mod url_norm;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use scraper::{Html, Selector};
use serde::{Deserialize, Serialize};
use texting_robots::Robot;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use url::Url;
use wattos_core::{Error, ErrorKind, RequestContext, Result};

pub use address::{AddressClass, AddressPolicy, BlockedAddress, classify};
pub use url_norm::normalize_url;

use crate::document::{Document, Format, Source};
use crate::loader::html::{document_base, resolve_link};
use crate::loader::{HtmlLoader, Loader, MarkdownLoader, TextLoader};
use crate::pipeline::{IndexPipeline, IngestReport};

/// Crawl settings. Every field has a default; deserialises from JSON/TOML with missing fields
/// defaulted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrawlConfig {
    /// Link hops from a seed (seeds and sitemap entries are depth 0).
    pub max_depth: u32,
    /// Pages kept per crawl; the crawl stops (report `truncated`) when reached.
    pub max_pages: usize,
    /// Follow only links on the seeds' hosts.
    pub same_domain: bool,
    /// Largest response body, bytes.
    pub max_bytes: usize,
    /// Accepted `Content-Type`s (media type only, lowercase).
    pub content_types: Vec<String>,
    /// Least time between two requests to one host, milliseconds.
    pub per_host_delay_ms: u64,
    /// Cap on a robots.txt `Crawl-delay`, milliseconds.
    pub max_crawl_delay_ms: u64,
    /// Redirect hops followed per URL.
    pub max_redirects: usize,
    /// `User-Agent` header and the robots.txt agent name matched.
    pub user_agent: String,
    /// Obey robots.txt.
    pub respect_robots: bool,
    /// Read `/sitemap.xml` and robots.txt sitemaps.
    pub sitemaps: bool,
    /// Per-request timeout, milliseconds.
    pub timeout_ms: u64,
    /// Requests in flight at once (across hosts; one host is still paced by its delay).
    pub concurrency: usize,
    /// Connect to this host (`127.0.0.0/8`, `::1`). Off by default: see [`AddressPolicy`].
    pub allow_loopback: bool,
    /// Connect to private and link-local networks (RFC 1918, `169.254.0.0/16`, `fc00::/7`, ...).
    /// Off by default: see [`AddressPolicy`].
    pub allow_private_networks: bool,
}

impl Default for CrawlConfig {
    fn default() -> Self {
        Self {
            max_depth: 3,
            max_pages: 500,
            same_domain: true,
            max_bytes: 5 * 1024 * 1024,
            content_types: vec![
                "text/html".into(),
                "application/xhtml+xml".into(),
                "text/plain".into(),
                "text/markdown".into(),
            ],
            per_host_delay_ms: 250,
            max_crawl_delay_ms: 10_000,
            max_redirects: 5,
            user_agent: concat!("WattOSBot/", env!("CARGO_PKG_VERSION")).into(),
            respect_robots: true,
            sitemaps: true,
            timeout_ms: 30_000,
            concurrency: 4,
            allow_loopback: false,
            allow_private_networks: false,
        }
    }
}

impl CrawlConfig {
    /// The networks this crawl may reach.
    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy {
            allow_loopback: self.allow_loopback,
            allow_private: self.allow_private_networks,
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// `invalid_input` naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if self.max_pages == 0 {
            return Err(Error::invalid_field("max_pages", "must be at least 1"));
        }
        if self.max_bytes == 0 {
            return Err(Error::invalid_field("max_bytes", "must be at least 1"));
        }
        if self.concurrency == 0 {
            return Err(Error::invalid_field("concurrency", "must be at least 1"));
        }
        if self.timeout_ms == 0 {
            return Err(Error::invalid_field("timeout_ms", "must be at least 1"));
        }
        if self.content_types.is_empty() {
            return Err(Error::invalid_field("content_types", "must not be empty"));
        }
        if self.user_agent.trim().is_empty() || !self.user_agent.is_ascii() {
            return Err(Error::invalid_field(
                "user_agent",
                "must be non-empty ASCII",
            ));
        }
        Ok(())
    }
}

/// Why a URL was not turned into a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// robots.txt disallows it for our agent.
    #[error("disallowed by robots.txt")]
    RobotsDisallowed,
    /// A redirect left the crawl's hosts.
    #[error("redirect to {to} leaves the crawl's hosts")]
    OffDomain {
        /// The redirect target.
        to: String,
    },
    /// A redirect came back to a URL already in its chain.
    #[error("redirect loop back to {to}")]
    RedirectLoop {
        /// The URL seen twice.
        to: String,
    },
    /// More redirect hops than allowed.
    #[error("more than {max} redirects")]
    TooManyRedirects {
        /// The limit.
        max: usize,
    },
    /// A redirect without a usable `Location`.
    #[error("redirect without a valid Location header")]
    BadRedirect,
    /// Non-success HTTP status.
    #[error("HTTP status {status}")]
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// `Content-Type` not accepted.
    #[error("content type {content_type:?} is not accepted")]
    ContentType {
        /// The media type received (empty when none).
        content_type: String,
    },
    /// Body larger than `max_bytes`.
    #[error("body larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The request failed (connect, timeout, reset).
    #[error("fetch failed: {message}")]
    Fetch {
        /// What the HTTP client said.
        message: String,
    },
    /// The page asks not to be indexed (`<meta name=robots content=noindex>`); its links are followed.
    #[error("page is marked noindex")]
    NoIndex,
    /// The page's canonical URL was already crawled.
    #[error("duplicate of {canonical}")]
    Duplicate {
        /// The canonical URL.
        canonical: String,
    },
    /// The body could not be turned into text (empty, binary, bad UTF-8).
    #[error("cannot load: {message}")]
    Load {
        /// The loader's message.
        message: String,
    },
    /// The host is (or resolves only to) an address the crawl may not reach (loopback, private,
    /// link-local, special ranges; see [`AddressPolicy`]).
    #[error("{address} ({class:?}) is not reachable under the crawl's network policy")]
    BlockedAddress {
        /// The refused address.
        address: String,
        /// Its class.
        class: AddressClass,
    },
}

impl SkipReason {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::RobotsDisallowed | Self::OffDomain { .. } | Self::BlockedAddress { .. } => {
                ErrorKind::Forbidden
            }
            Self::HttpStatus { status: 404 | 410 } => ErrorKind::NotFound,
            Self::HttpStatus { status } if *status >= 500 => ErrorKind::Upstream,
            Self::Fetch { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::InvalidInput,
        }
    }

    /// The skip reason inside an error from [`Crawler::load_url`], if it is one.
    pub fn from_error(err: &Error) -> Option<&SkipReason> {
        std::error::Error::source(err).and_then(|s| s.downcast_ref::<SkipReason>())
    }

    fn into_error(self, url: &str) -> Error {
        Error::new(self.kind(), format!("{url}: {self}")).with_source(self)
    }
}

/// A URL that was not ingested, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedUrl {
    /// The URL as queued (normalised).
    pub url: String,
    /// Why.
    pub reason: SkipReason,
}

/// One crawled page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrawledPage {
    /// Canonical URL: the document id and location.
    pub url: String,
    /// The URL answered (after redirects).
    pub fetched_url: String,
    /// Link hops from a seed.
    pub depth: u32,
    /// The loaded document (HTML as text with headings and Markdown links).
    pub document: Document,
}

/// What a crawl found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CrawlReport {
    /// Pages to ingest, in crawl order.
    pub pages: Vec<CrawledPage>,
    /// URLs not ingested.
    pub skipped: Vec<SkippedUrl>,
    /// HTTP requests made (pages, redirects, robots.txt, sitemaps).
    pub requests: usize,
    /// The page limit stopped the crawl.
    pub truncated: bool,
}

/// A crawl plus its ingestion.
#[derive(Debug)]
pub struct CrawlIngestReport {
    /// The crawl.
    pub crawl: CrawlReport,
    /// The pipeline's report for the crawled pages.
    pub ingest: IngestReport,
}

enum Robots {
    AllowAll,
    DisallowAll,
    Rules(Box<Robot>),
    /// The origin may not be connected to at all (network policy).
    Blocked(SkipReason),
}

impl Robots {
    fn allowed(&self, url: &Url) -> bool {
        match self {
            Self::AllowAll => true,
            Self::DisallowAll | Self::Blocked(_) => false,
            Self::Rules(r) => r.allowed(url.as_str()),
        }
    }
    fn delay(&self) -> Option<Duration> {
        match self {
            Self::Rules(r) => r
                .delay
                .filter(|d| d.is_finite() && *d > 0.0)
                .map(|d| Duration::from_secs_f32(d.min(3600.0))),
            _ => None,
        }
    }
    fn sitemaps(&self) -> &[String] {
        match self {
            Self::Rules(r) => &r.sitemaps,
            _ => &[],
        }
    }
}

/// State of one crawl: robots per origin, next free request slot per host.
#[derive(Default)]
struct Run {
    robots: Mutex<HashMap<String, Arc<OnceCell<Arc<Robots>>>>>,
    slots: Mutex<HashMap<String, Instant>>,
    requests: std::sync::atomic::AtomicUsize,
}

struct Fetched {
    final_url: Url,
    media_type: String,
    body: Vec<u8>,
}

struct ParsedPage {
    links: Vec<Url>,
    canonical: Option<Url>,
    noindex: bool,
    nofollow: bool,
}

/// Fetches and crawls web pages. Cheap to clone; one [`reqwest::Client`] (connection pool) inside.
#[derive(Debug, Clone)]
pub struct Crawler {
    client: reqwest::Client,
    cfg: Arc<CrawlConfig>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn media_type(v: Option<&reqwest::header::HeaderValue>) -> String {
    v.and_then(|v| v.to_str().ok())
        .and_then(|s| s.split(';').next())
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The IP address of an IP-literal host (DNS names are checked by the resolver instead).
fn host_ip(url: &Url) -> Option<std::net::IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(v4.into()),
        url::Host::Ipv6(v6) => Some(v6.into()),
        url::Host::Domain(_) => None,
    }
}

fn parse_url(s: &str) -> Result<Url> {
    let u = Url::parse(s.trim())
        .map_err(|e| Error::invalid_field("url", format!("{s:?} is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(Error::invalid_field(
            "url",
            format!("{s:?} is not an http(s) URL with a host"),
        ));
    }
    Ok(normalize_url(&u))
}

impl Crawler {
    /// A crawler with `cfg`.
    ///
    /// # Errors
    /// Invalid settings; the HTTP client cannot be built.
    pub fn new(cfg: CrawlConfig) -> Result<Self> {
        cfg.validate()?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(address::PolicyResolver::shared(cfg.address_policy()))
            .user_agent(cfg.user_agent.clone())
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .build()
            .map_err(|e| Error::internal(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            client,
            cfg: Arc::new(cfg),
        })
    }

    /// The settings.
    pub fn config(&self) -> &CrawlConfig {
        &self.cfg
    }

    /// The URL loader: fetches one URL (robots, redirects, size and type limits apply) and loads it
    /// as a [`Document`] whose id and location are its canonical URL.
    ///
    /// # Errors
    /// `invalid_input` for a bad URL; otherwise the [`SkipReason`] as the error's source
    /// ([`SkipReason::from_error`]): robots/off-domain -> `Forbidden`, 404 -> `NotFound`, 5xx ->
    /// `Upstream`, network -> `Unavailable`, limits -> `InvalidInput`.
    pub async fn load_url(&self, ctx: &RequestContext, url: &str) -> Result<Document> {
        let url = parse_url(url)?;
        let run = Run::default();
        let scope: HashSet<String> = url.host_str().into_iter().map(str::to_owned).collect();
        let fetched = self
            .fetch(&run, &scope, &url)
            .await
            .map_err(|r| r.into_error(url.as_str()))?;
        let page = self.parse(&fetched, &scope);
        let canonical = page
            .canonical
            .unwrap_or_else(|| normalize_url(&fetched.final_url));
        self.load(ctx, &fetched, &canonical)
            .await
            .map_err(|r| r.into_error(url.as_str()))
    }

    /// Crawls from `seeds` (absolute http(s) URLs).
    ///
    /// # Errors
    /// `invalid_input` for a bad seed. Per-URL problems are reported in [`CrawlReport::skipped`].
    pub async fn crawl(&self, ctx: &RequestContext, seeds: &[String]) -> Result<CrawlReport> {
        if seeds.is_empty() {
            return Err(Error::invalid_field("seeds", "at least one URL is needed"));
        }
        let seeds = seeds
            .iter()
            .map(|s| parse_url(s))
            .collect::<Result<Vec<_>>>()?;
        let scope: HashSet<String> = seeds
            .iter()
            .filter_map(|u| u.host_str().map(str::to_owned))
            .collect();
        let run = Run::default();
        let mut report = CrawlReport::default();
        let mut seen: HashSet<String> = HashSet::new();
        let mut frontier: Vec<(Url, u32)> = Vec::new();
        for s in &seeds {
            if seen.insert(s.to_string()) {
                frontier.push((s.clone(), 0));
            }
        }
        if self.cfg.sitemaps {
            for u in self.sitemap_urls(&run, &scope, &seeds).await {
                if seen.insert(u.to_string()) {
                    frontier.push((u, 0));
                }
            }
        }
        let mut canonicals: HashSet<String> = HashSet::new();
        'crawl: while !frontier.is_empty() {
            let level = std::mem::take(&mut frontier);
            let results: Vec<(Url, u32, std::result::Result<Fetched, SkipReason>)> =
                futures::stream::iter(level)
                    .map(|(u, d)| {
                        let (run, scope) = (&run, &scope);
                        async move {
                            let r = self.fetch(run, scope, &u).await;
                            (u, d, r)
                        }
                    })
                    .buffered(self.cfg.concurrency)
                    .collect()
                    .await;
            for (url, depth, r) in results {
                let fetched = match r {
                    Ok(f) => f,
                    Err(reason) => {
                        report.skipped.push(SkippedUrl {
                            url: url.to_string(),
                            reason,
                        });
                        continue;
                    }
                };
                let final_url = normalize_url(&fetched.final_url);
                seen.insert(final_url.to_string());
                let page = self.parse(&fetched, &scope);
                if !page.nofollow && depth < self.cfg.max_depth {
                    for l in &page.links {
                        if self.in_scope(&scope, l) && seen.insert(l.to_string()) {
                            frontier.push((l.clone(), depth + 1));
                        }
                    }
                }
                let canonical = page.canonical.clone().unwrap_or(final_url.clone());
                if !canonicals.insert(canonical.to_string()) {
                    report.skipped.push(SkippedUrl {
                        url: url.to_string(),
                        reason: SkipReason::Duplicate {
                            canonical: canonical.to_string(),
                        },
                    });
                    continue;
                }
                seen.insert(canonical.to_string());
                if page.noindex {
                    report.skipped.push(SkippedUrl {
                        url: url.to_string(),
                        reason: SkipReason::NoIndex,
                    });
                    continue;
                }
                match self.load(ctx, &fetched, &canonical).await {
                    Ok(document) => report.pages.push(CrawledPage {
                        url: canonical.to_string(),
                        fetched_url: final_url.to_string(),
                        depth,
                        document,
                    }),
                    Err(reason) => report.skipped.push(SkippedUrl {
                        url: url.to_string(),
                        reason,
                    }),
                }
                if report.pages.len() >= self.cfg.max_pages {
                    report.truncated = !frontier.is_empty();
                    break 'crawl;
                }
            }
        }
        report.requests = run.requests.load(std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("wattos_rag_crawl_pages_total").increment(report.pages.len() as u64);
        metrics::counter!("wattos_rag_crawl_skipped_total").increment(report.skipped.len() as u64);
        Ok(report)
    }

    /// Crawls from `seeds` and ingests the pages through `pipeline` (the same path as uploads):
    /// unchanged pages (same content hash) are neither embedded nor written.
    ///
    /// # Errors
    /// As [`Crawler::crawl`] and [`IndexPipeline::ingest_documents`].
    pub async fn crawl_and_ingest(
        &self,
        ctx: &RequestContext,
        pipeline: &IndexPipeline,
        seeds: &[String],
    ) -> Result<CrawlIngestReport> {
        let crawl = self.crawl(ctx, seeds).await?;
        let docs = crawl.pages.iter().map(|p| p.document.clone()).collect();
        let ingest = pipeline.ingest_documents(ctx, docs).await?;
        Ok(CrawlIngestReport { crawl, ingest })
    }

    fn in_scope(&self, scope: &HashSet<String>, url: &Url) -> bool {
        matches!(url.scheme(), "http" | "https")
            && (!self.cfg.same_domain || url.host_str().is_some_and(|h| scope.contains(h)))
    }

    async fn robots(&self, run: &Run, url: &Url) -> Arc<Robots> {
        let origin = url.origin().ascii_serialization();
        let cell = lock(&run.robots).entry(origin.clone()).or_default().clone();
        cell.get_or_init(|| async {
            let Ok(robots_url) = Url::parse(&origin).and_then(|o| o.join("/robots.txt")) else {
                return Arc::new(Robots::AllowAll);
            };
            self.wait_turn(run, &robots_url, None).await;
            let rules = match self.get_limited(&robots_url, 512 * 1024).await {
                Ok((status, _, body)) if status.is_success() => {
                    match Robot::new(&self.cfg.user_agent, &body) {
                        Ok(r) => Robots::Rules(Box::new(r)),
                        Err(_) => Robots::AllowAll,
                    }
                }
                Ok((status, _, _)) if status.is_client_error() || status.is_redirection() => {
                    Robots::AllowAll
                }
                Err(blocked @ SkipReason::BlockedAddress { .. }) => Robots::Blocked(blocked),
                _ => Robots::DisallowAll,
            };
            Arc::new(rules)
        })
        .await
        .clone()
    }

    /// Whether robots.txt lets us fetch `url`; a network-policy refusal of its origin is reported
    /// as such rather than as a robots.txt disallow.
    async fn allowed(&self, run: &Run, url: &Url) -> std::result::Result<(), SkipReason> {
        if !self.cfg.respect_robots {
            return Ok(());
        }
        match &*self.robots(run, url).await {
            Robots::Blocked(reason) => Err(reason.clone()),
            r if r.allowed(url) => Ok(()),
            _ => Err(SkipReason::RobotsDisallowed),
        }
    }

    /// Waits until `url`'s host may be asked again and books the next slot.
    async fn wait_turn(&self, run: &Run, url: &Url, robots_delay: Option<Duration>) {
        let mut delay = Duration::from_millis(self.cfg.per_host_delay_ms);
        if let Some(d) = robots_delay {
            delay = delay.max(d.min(Duration::from_millis(self.cfg.max_crawl_delay_ms)));
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        let at = {
            let mut slots = lock(&run.slots);
            let now = Instant::now();
            let at = slots.get(&host).copied().unwrap_or(now).max(now);
            slots.insert(host, at + delay);
            at
        };
        tokio::time::sleep_until(at).await;
        run.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// GET with a body limit; `Err` carries the skip reason.
    async fn get_limited(
        &self,
        url: &Url,
        max: usize,
    ) -> std::result::Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>), SkipReason>
    {
        if let Some(ip) = host_ip(url) {
            let policy = self.cfg.address_policy();
            if !policy.allows(ip) {
                return Err(SkipReason::BlockedAddress {
                    address: ip.to_string(),
                    class: classify(ip),
                });
            }
        }
        let fetch_err = |e: reqwest::Error| match address::blocked_in(&e) {
            Some(b) => SkipReason::BlockedAddress {
                address: b.address.to_string(),
                class: b.class,
            },
            None => SkipReason::Fetch {
                message: e.without_url().to_string(),
            },
        };
        let mut resp = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(fetch_err)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if status.is_redirection() || !status.is_success() {
            return Ok((status, headers, Vec::new()));
        }
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(SkipReason::TooLarge { max });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(fetch_err)? {
            if body.len() + chunk.len() > max {
                return Err(SkipReason::TooLarge { max });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    /// Fetches `url`, following redirects by hand.
    async fn fetch(
        &self,
        run: &Run,
        scope: &HashSet<String>,
        url: &Url,
    ) -> std::result::Result<Fetched, SkipReason> {
        let mut chain: Vec<String> = vec![url.to_string()];
        let mut current = url.clone();
        loop {
            self.allowed(run, &current).await?;
            let robots_delay = if self.cfg.respect_robots {
                self.robots(run, &current).await.delay()
            } else {
                None
            };
            self.wait_turn(run, &current, robots_delay).await;
            let (status, headers, body) = self.get_limited(&current, self.cfg.max_bytes).await?;
            if status.is_redirection() {
                let next = headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| current.join(l).ok())
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .map(|u| normalize_url(&u))
                    .ok_or(SkipReason::BadRedirect)?;
                if chain.iter().any(|c| c == next.as_str()) {
                    return Err(SkipReason::RedirectLoop {
                        to: next.to_string(),
                    });
                }
                if chain.len() > self.cfg.max_redirects {
                    return Err(SkipReason::TooManyRedirects {
                        max: self.cfg.max_redirects,
                    });
                }
                if !self.in_scope(scope, &next) {
                    return Err(SkipReason::OffDomain {
                        to: next.to_string(),
                    });
                }
                chain.push(next.to_string());
                current = next;
                continue;
            }
            if !status.is_success() {
                return Err(SkipReason::HttpStatus {
                    status: status.as_u16(),
                });
            }
            let media_type = media_type(headers.get(CONTENT_TYPE));
            if !self.cfg.content_types.contains(&media_type) {
                return Err(SkipReason::ContentType {
                    content_type: media_type,
                });
            }
            return Ok(Fetched {
                final_url: current,
                media_type,
                body,
            });
        }
    }

    fn is_html(f: &Fetched) -> bool {
        matches!(f.media_type.as_str(), "text/html" | "application/xhtml+xml")
    }

    /// Links, canonical URL and robots meta of an HTML page.
    fn parse(&self, f: &Fetched, scope: &HashSet<String>) -> ParsedPage {
        let mut page = ParsedPage {
            links: Vec::new(),
            canonical: None,
            noindex: false,
            nofollow: false,
        };
        if !Self::is_html(f) {
            return page;
        }
        let html = Html::parse_document(&String::from_utf8_lossy(&f.body));
        let base = document_base(&html, Some(&f.final_url));
        let sel = |s: &str| Selector::parse(s).ok();
        if let Some(s) = sel("a[href]") {
            for a in html.select(&s) {
                if let Some(u) = a
                    .value()
                    .attr("href")
                    .and_then(|h| resolve_link(base.as_ref(), h))
                {
                    page.links.push(normalize_url(&u));
                }
            }
        }
        if let Some(s) = sel("link[rel][href]") {
            page.canonical = html
                .select(&s)
                .find(|l| {
                    l.value().attr("rel").is_some_and(|r| {
                        r.split_whitespace()
                            .any(|t| t.eq_ignore_ascii_case("canonical"))
                    })
                })
                .and_then(|l| l.value().attr("href"))
                .and_then(|h| resolve_link(base.as_ref(), h))
                .map(|u| normalize_url(&u))
                .filter(|u| self.in_scope(scope, u));
        }
        if let Some(s) = sel("meta[name][content]") {
            for m in html.select(&s) {
                let name = m.value().attr("name").unwrap_or_default();
                if name.eq_ignore_ascii_case("robots")
                    || name.eq_ignore_ascii_case(&self.cfg.user_agent)
                {
                    let content = m
                        .value()
                        .attr("content")
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    for d in content.split(',').map(str::trim) {
                        page.noindex |= d == "noindex" || d == "none";
                        page.nofollow |= d == "nofollow" || d == "none";
                    }
                }
            }
        }
        page
    }

    async fn load(
        &self,
        ctx: &RequestContext,
        f: &Fetched,
        canonical: &Url,
    ) -> std::result::Result<Document, SkipReason> {
        let (format, loader): (Format, Box<dyn Loader>) = match f.media_type.as_str() {
            "text/html" | "application/xhtml+xml" => (
                Format::Html,
                Box::new(HtmlLoader::new(self.cfg.max_bytes).with_links(true)),
            ),
            "text/markdown" => (
                Format::Markdown,
                Box::new(MarkdownLoader::new(self.cfg.max_bytes)),
            ),
            _ => (Format::Text, Box::new(TextLoader::new(self.cfg.max_bytes))),
        };
        let source = Source::new(canonical.as_str(), f.body.clone())
            .with_location(canonical.as_str())
            .with_format(format);
        let mut doc = loader
            .load(ctx, source)
            .await
            .map_err(|e| SkipReason::Load {
                message: e.message().to_owned(),
            })?;
        doc.metadata.insert("source".into(), "web".into());
        Ok(doc)
    }

    /// In-scope page URLs listed by the seeds' sitemaps (robots.txt `Sitemap:` lines plus
    /// `/sitemap.xml`), following sitemap indexes up to 16 files per crawl.
    async fn sitemap_urls(&self, run: &Run, scope: &HashSet<String>, seeds: &[Url]) -> Vec<Url> {
        let mut queue: Vec<Url> = Vec::new();
        let mut origins = HashSet::new();
        for s in seeds {
            if !origins.insert(s.origin().ascii_serialization()) {
                continue;
            }
            if self.cfg.respect_robots {
                for sm in self.robots(run, s).await.sitemaps() {
                    if let Ok(u) = Url::parse(sm) {
                        queue.push(u);
                    }
                }
            }
            if let Ok(u) = s.join("/sitemap.xml") {
                queue.push(u);
            }
        }
        let mut done = HashSet::new();
        let mut out = Vec::new();
        while let Some(sm) = queue.pop() {
            if done.len() >= 16 || !self.in_scope(scope, &sm) || !done.insert(sm.to_string()) {
                continue;
            }
            if self.allowed(run, &sm).await.is_err() {
                continue;
            }
            self.wait_turn(run, &sm, None).await;
            let Ok((status, _, body)) = self.get_limited(&sm, self.cfg.max_bytes).await else {
                continue;
            };
            if !status.is_success() {
                continue;
            }
            let text = String::from_utf8_lossy(&body);
            let Ok(xml) = roxmltree::Document::parse(&text) else {
                tracing::debug!(sitemap = %sm, "sitemap is not valid XML");
                continue;
            };
            for loc in xml.descendants().filter(|n| n.tag_name().name() == "loc") {
                let Some(u) = loc.text().and_then(|t| Url::parse(t.trim()).ok()) else {
                    continue;
                };
                let parent = loc.parent_element().map(|p| p.tag_name().name());
                if parent == Some("sitemap") {
                    queue.push(u);
                } else {
                    let u = normalize_url(&u);
                    if self.in_scope(scope, &u) {
                        out.push(u);
                    }
                }
            }
        }
        out
    }
}
