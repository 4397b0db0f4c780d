//! The mock HTTP server: records requests, applies faults, and answers with a vendor's script.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::sync::Notify;

use super::vendor::{self, Vendor};

/// One request the mock received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method (`POST`).
    pub method: String,
    /// Path without the query (`/v1/chat/completions`).
    pub path: String,
    /// Raw query string, when present (`alt=sse`).
    pub query: Option<String>,
    /// Headers with lowercase names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
    /// The raw body.
    pub raw_body: Bytes,
}

impl RecordedRequest {
    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// A query parameter's value.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

/// A failure to inject into the next request (faults queue up; each request takes one).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status. `body: None` uses the vendor's documented error body for the status.
    Status {
        /// HTTP status.
        status: u16,
        /// Error body (vendor default when `None`).
        body: Option<Value>,
        /// `Retry-After` header value (seconds or HTTP date).
        retry_after: Option<String>,
        /// Further headers (e.g. `retry-after-ms`).
        headers: Vec<(String, String)>,
    },
    /// Wait this long before answering normally.
    Latency(Duration),
    /// Answer normally but wait this long before each streamed frame.
    Drip(Duration),
    /// Stream this many frames, then cut the TCP connection.
    BreakStreamAfter(usize),
    /// Stream this many frames, then end the body cleanly (no end marker, no finish).
    TruncateStreamAfter(usize),
    /// Stream this many frames, then a frame that is not valid JSON, then the rest.
    InvalidFrameAfter(usize),
    /// Stream this many frames, then the vendor's mid-stream error event (overloaded / server error).
    StreamErrorAfter(usize),
    /// Close the connection without answering.
    DropConnection,
}

impl Fault {
    /// A status with the vendor's default body.
    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            body: None,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// A status with a given body.
    pub fn status_with_body(status: u16, body: Value) -> Self {
        Self::Status {
            status,
            body: Some(body),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// A 429 with `Retry-After: <value>`.
    pub fn rate_limited(retry_after: impl Into<String>) -> Self {
        Self::Status {
            status: 429,
            body: None,
            retry_after: Some(retry_after.into()),
            headers: Vec::new(),
        }
    }
}

/// A scripted answer that replaces the vendor's default behaviour for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum MockReply {
    /// A JSON answer.
    Json {
        /// HTTP status.
        status: u16,
        /// Body.
        body: Value,
    },
    /// A streamed answer: each frame is written as one chunk, exactly as given.
    Stream {
        /// `text/event-stream` or `application/x-ndjson`.
        content_type: String,
        /// Raw frames (`"data: {...}\n\n"` or `"{...}\n"`).
        frames: Vec<String>,
    },
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) vendor: Vendor,
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<VecDeque<Fault>>,
    replies: Mutex<VecDeque<MockReply>>,
    api_key: Mutex<Option<String>>,
    pub(crate) embedding_dims: Mutex<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A mock vendor API on `127.0.0.1:<random port>`. It replays the vendor's documented JSON and
/// streaming formats, records every request, and injects faults on demand. Dropping it stops it.
///
/// Default behaviour (no scripted reply queued): a request whose last message is a tool result gets
/// a text answer quoting the result; a request with tools gets one call per tool (arguments built
/// from each tool's schema); a request for JSON output gets a JSON object matching the schema's
/// properties; anything else gets `Echo: <last user text>`.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Killer = Arc<Notify>;

impl MockServer {
    /// Starts a mock of `vendor`.
    ///
    /// # Panics
    /// When no local port can be bound (a broken test environment).
    pub async fn start(vendor: Vendor) -> Self {
        let shared = Arc::new(Shared {
            vendor,
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            replies: Mutex::new(VecDeque::new()),
            api_key: Mutex::new(None),
            embedding_dims: Mutex::new(8),
        });
        #[allow(clippy::expect_used)]
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        #[allow(clippy::expect_used)]
        let addr = listener.local_addr().expect("local addr");
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let killer: Killer = Arc::new(Notify::new());
                let app = router.clone().layer(axum::Extension(killer.clone()));
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
                    tokio::select! {
                        _ = conn => {}
                        _ = killer.notified() => {} // dropping `conn` closes the socket
                    }
                });
            }
        });
        Self { addr, shared, task }
    }

    /// Mock of OpenAI.
    pub async fn openai() -> Self {
        Self::start(Vendor::OpenAi).await
    }
    /// Mock of Azure OpenAI.
    pub async fn azure() -> Self {
        Self::start(Vendor::Azure).await
    }
    /// Mock of Anthropic.
    pub async fn anthropic() -> Self {
        Self::start(Vendor::Anthropic).await
    }
    /// Mock of Gemini.
    pub async fn gemini() -> Self {
        Self::start(Vendor::Gemini).await
    }
    /// Mock of Ollama.
    pub async fn ollama() -> Self {
        Self::start(Vendor::Ollama).await
    }

    /// The vendor this server imitates.
    pub fn vendor(&self) -> Vendor {
        self.shared.vendor
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL a provider should be configured with (includes `/v1` or `/v1beta` where the
    /// vendor's base URL has it).
    pub fn base_url(&self) -> String {
        match self.shared.vendor {
            Vendor::OpenAi => format!("{}/v1", self.url()),
            Vendor::Gemini => format!("{}/v1beta", self.url()),
            Vendor::Azure | Vendor::Anthropic | Vendor::Ollama => self.url(),
        }
    }

    /// Requires this API key (in the vendor's auth header); wrong or missing keys get a 401.
    pub fn require_api_key(&self, key: impl Into<String>) {
        *lock(&self.shared.api_key) = Some(key.into());
    }

    /// Vector size of embeddings when the request does not ask for one (default 8).
    pub fn set_embedding_dimensions(&self, dims: usize) {
        *lock(&self.shared.embedding_dims) = dims;
    }

    /// Queues a fault for the next request that has none yet.
    pub fn push_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push_back(fault);
    }

    /// Queues a scripted reply.
    pub fn push_reply(&self, reply: MockReply) {
        lock(&self.shared.replies).push_back(reply);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.requests).last().cloned()
    }

    /// Forgets recorded requests, queued faults and replies.
    pub fn reset(&self) {
        lock(&self.shared.requests).clear();
        lock(&self.shared.faults).clear();
        lock(&self.shared.replies).clear();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    axum::Extension(killer): axum::Extension<Killer>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let raw_body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|e: &mut String| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers,
        body: serde_json::from_slice(&raw_body).unwrap_or(Value::Null),
        raw_body,
    };
    lock(&shared.requests).push(recorded.clone());
    let fault = lock(&shared.faults).pop_front();
    let vendor = shared.vendor;
    let mut drip = None;
    let mut stream_fault = None;
    match fault {
        Some(Fault::Status {
            status,
            body,
            retry_after,
            headers,
        }) => {
            let body = body.unwrap_or_else(|| vendor::error_body(vendor, status));
            let mut resp = json_response(status, &body);
            if let Some(ra) = retry_after
                && let Ok(v) = HeaderValue::from_str(&ra)
            {
                resp.headers_mut().insert("retry-after", v);
            }
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (
                    axum::http::HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(&v),
                ) {
                    resp.headers_mut().insert(k, v);
                }
            }
            return resp;
        }
        Some(Fault::DropConnection) => {
            killer.notify_one();
            std::future::pending::<()>().await;
        }
        Some(Fault::Latency(d)) => tokio::time::sleep(d).await,
        Some(Fault::Drip(d)) => drip = Some(d),
        Some(other) => stream_fault = Some(other),
        None => {}
    }
    let expected_key = lock(&shared.api_key).clone();
    if let Some(key) = expected_key
        && !vendor::auth_ok(vendor, &recorded, &key)
    {
        return json_response(401, &vendor::error_body(vendor, 401));
    }
    let reply = match lock(&shared.replies).pop_front() {
        Some(r) => r,
        None => {
            let dims = *lock(&shared.embedding_dims);
            vendor::default_reply(vendor, &recorded, dims)
        }
    };
    match reply {
        MockReply::Json { status, body } => json_response(status, &body),
        MockReply::Stream {
            content_type,
            frames,
        } => stream_response(vendor, &content_type, frames, drip, stream_fault, killer),
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn stream_response(
    vendor: Vendor,
    content_type: &str,
    mut frames: Vec<String>,
    drip: Option<Duration>,
    fault: Option<Fault>,
    killer: Killer,
) -> Response {
    let mut break_after = None;
    match fault {
        Some(Fault::TruncateStreamAfter(n)) => frames.truncate(n),
        Some(Fault::InvalidFrameAfter(n)) => {
            let bad = if vendor == Vendor::Ollama {
                "{\"model\": \"m\", \"message\": {\n".to_owned()
            } else {
                "data: {\"not\": valid json\n\n".to_owned()
            };
            frames.insert(n.min(frames.len()), bad);
        }
        Some(Fault::StreamErrorAfter(n)) => {
            frames.truncate(n);
            frames.push(vendor::stream_error_frame(vendor));
        }
        Some(Fault::BreakStreamAfter(n)) => break_after = Some(n),
        _ => {}
    }
    let stream = futures::stream::unfold((frames.into_iter(), 0usize), move |(mut it, n)| {
        let killer = killer.clone();
        async move {
            if break_after.is_some_and(|b| n >= b) {
                // Let the frames already written reach the client, then cut the connection.
                tokio::time::sleep(Duration::from_millis(20)).await;
                killer.notify_one();
                std::future::pending::<()>().await;
            }
            let frame = it.next()?;
            if let Some(d) = drip {
                tokio::time::sleep(d).await;
            }
            Some((Ok::<_, Infallible>(Bytes::from(frame)), (it, n + 1)))
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}
