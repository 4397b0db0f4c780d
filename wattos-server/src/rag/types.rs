//! Wire types of the RAG API (documented in the OpenAPI spec).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/rag/collections`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// Name, unique per tenant: `^[a-z0-9][a-z0-9_-]{0,63}$`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$", example = "handbook")]
    pub name: String,
    /// Free text, at most 1024 characters.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
}

/// A collection.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Collection {
    /// The name.
    pub id: String,
    /// Always `collection`.
    pub object: &'static str,
    /// Free text.
    pub description: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Documents indexed.
    pub document_count: i64,
    /// Chunks indexed.
    pub chunk_count: i64,
}

/// A list of collections.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CollectionList {
    /// Always `list`.
    pub object: &'static str,
    /// The collections, by name.
    pub data: Vec<Collection>,
}

/// The answer to a delete.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Deleted {
    /// What was deleted.
    pub id: String,
    /// `collection` or `document`.
    pub object: &'static str,
    /// Always true.
    pub deleted: bool,
    /// Chunks removed from the indexes.
    pub chunks_removed: u64,
}

/// Format of a document given as JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TextFormat {
    /// Plain text.
    Text,
    /// Markdown (headings become sections).
    Markdown,
    /// HTML (converted to text, headings kept).
    Html,
}

impl TextFormat {
    /// The wire name (`text`, `markdown`, `html`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Markdown => "markdown",
            Self::Html => "html",
        }
    }
}

impl From<TextFormat> for wattos_rag::document::Format {
    fn from(f: TextFormat) -> Self {
        match f {
            TextFormat::Text => Self::Text,
            TextFormat::Markdown => Self::Markdown,
            TextFormat::Html => Self::Html,
        }
    }
}

/// One document of a JSON ingest.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    /// Id, unique in the collection (re-ingesting an id replaces the document): 1..=512 characters,
    /// no control characters.
    #[schema(min_length = 1, max_length = 512, example = "solar.md")]
    pub id: String,
    /// The content.
    pub text: String,
    /// Title (the loader may find one in the content).
    #[serde(default)]
    pub title: Option<String>,
    /// Where it came from (path or URL), returned in citations.
    #[serde(default)]
    pub location: Option<String>,
    /// Format; guessed from `location` or `id` (`.md`, `.html`, ...) when absent, else text.
    #[serde(default)]
    pub format: Option<TextFormat>,
    /// Metadata copied onto every chunk and usable in search filters: string, number or boolean
    /// values; keys `^[A-Za-z0-9_.-]{1,128}$` and not one of the reserved keys (`title`, `location`,
    /// `section`, `start_char`, `end_char`, `chunk_index`, `content_hash`, `document_id`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /v1/rag/collections/{collection}/documents`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// 1..=256 documents.
    #[schema(min_items = 1, max_items = 256)]
    pub documents: Vec<DocumentInput>,
}

/// What happened to one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IngestStatus {
    /// New or changed, indexed.
    Indexed,
    /// Same content already indexed; nothing written.
    Unchanged,
    /// Not indexed: see `error`.
    Failed,
}

/// Why a document failed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestError {
    /// Stable error code (`invalid_input`, `unavailable`, ...).
    pub code: &'static str,
    /// What went wrong, naming the document.
    pub message: String,
    /// For load failures: `empty`, `binary`, `invalid_utf8`, `too_large`, `broken_pdf`,
    /// `unsupported_format`.
    pub failure: Option<&'static str>,
}

/// The result for one document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestResult {
    /// The document id.
    pub document_id: String,
    /// What happened.
    pub status: IngestStatus,
    /// Chunks written (0 unless indexed).
    pub chunks: usize,
    /// Why it failed.
    pub error: Option<IngestError>,
}

/// The answer to an ingest: one result per document, in request order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestResponse {
    /// Always `ingest.result`.
    pub object: &'static str,
    /// The collection.
    pub collection: String,
    /// Documents indexed.
    pub indexed: usize,
    /// Documents unchanged.
    pub unchanged: usize,
    /// Documents failed.
    pub failed: usize,
    /// Per-document results.
    pub results: Vec<IngestResult>,
}

/// A document of a collection.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentInfo {
    /// The id.
    pub id: String,
    /// Always `document`.
    pub object: &'static str,
    /// Title.
    pub title: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Format loaded as (`text`, `markdown`, `html`, `pdf`).
    pub format: String,
    /// SHA-256 of the indexed content.
    pub content_hash: String,
    /// Chunks indexed.
    pub chunks: i64,
    /// Source size in bytes.
    pub bytes: i64,
    /// Metadata given at ingest.
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// Unix ms of the first ingest.
    pub created_at_ms: i64,
    /// Unix ms of the last change.
    pub updated_at_ms: i64,
}

/// A page of documents.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentList {
    /// Always `list`.
    pub object: &'static str,
    /// Documents by id.
    pub data: Vec<DocumentInfo>,
    /// Whether more follow (pass the last id as `after`).
    pub has_more: bool,
}

/// Query of `GET .../documents`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListDocumentsQuery {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Return documents with ids after this one.
    pub after: Option<String>,
}

/// First-stage retrieval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchModeName {
    /// BM25 and vectors fused with reciprocal rank fusion (k = 60).
    #[default]
    Hybrid,
    /// BM25 and vectors, each list's scores min-max normalised and averaged (dense weight 0.5).
    /// Keeps how far apart the scores are, which rank fusion drops: on the shipped rust-errors
    /// evaluation set it scores nDCG@10 0.880 against RRF's 0.850.
    HybridWeighted,
    /// Vectors only.
    Dense,
    /// BM25 only.
    Keyword,
}

/// `POST .../search`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// The query text.
    #[schema(min_length = 1)]
    pub query: String,
    /// Results wanted, 1..=100 (default: the tenant's `rag.default_top_k`, at most 100; 5 without
    /// authentication).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub top_k: Option<usize>,
    /// Retrieval mode (default `hybrid`).
    #[serde(default)]
    pub mode: Option<SearchModeName>,
    /// Metadata filter: `{"eq": {"key", "value"}}`, `{"in": {"key", "values"}}`, `{"and": [..]}`,
    /// `{"or": [..]}`, `{"not": {..}}`; key `document_id` addresses the document id.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// Result diversity, 0..=1 (default 0: none). Above 0 the first stage fetches more candidates
    /// and maximal marginal relevance picks `top_k` of them, trading relevance (taken from the
    /// first stage's scores) for variety: `lambda = 1 - diversity`. Near-duplicate chunks then
    /// give way to different ones.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub diversity: Option<f32>,
}

/// One search result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchHit {
    /// Chunk id (`{document_id}#{index}`).
    pub chunk_id: String,
    /// Document id.
    pub document_id: String,
    /// Score (higher is better; scale depends on the mode; with `diversity` the MMR order as
    /// `(n - rank) / n`).
    pub score: f32,
    /// The chunk text.
    pub text: String,
    /// Chunk metadata (document metadata plus `title`, `section`, offsets, ...).
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// Search results, best first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResponse {
    /// Always `list`.
    pub object: &'static str,
    /// The hits.
    pub data: Vec<SearchHit>,
}

/// `POST .../answer`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// The question.
    #[schema(min_length = 1)]
    pub question: String,
    /// Chat model (a name from `GET /v1/models`); default: the tenant's `default_model`, else the
    /// server's default chat model.
    #[serde(default)]
    pub model: Option<String>,
    /// Chunks retrieved, 1..=50 (default: the tenant's `rag.default_top_k`, at most 50; 5 without
    /// authentication).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 50)]
    pub top_k: Option<usize>,
    /// Retrieval mode (default `hybrid`).
    #[serde(default)]
    pub mode: Option<SearchModeName>,
    /// Metadata filter (as for search).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// Token budget of the sources, 64..=16000 (default 1500).
    #[serde(default)]
    #[schema(minimum = 64, maximum = 16000)]
    pub context_tokens: Option<usize>,
    /// Maximum answer tokens, 1..=4096 (default 256).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4096)]
    pub max_tokens: Option<u32>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Continue this conversation (`/v1/conversations`): its earlier turns (trimmed to the model's
    /// context window) go before the question, and the question and the answer are appended to
    /// it once the answer is complete. The response carries `x-wattos-conversation-id`.
    #[serde(default)]
    pub conversation_id: Option<String>,
}

/// A numbered source given to the model.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceRef {
    /// The number used in citations, from 1.
    pub number: usize,
    /// Chunk id.
    pub chunk_id: String,
    /// Document id.
    pub document_id: String,
    /// Document title.
    pub title: Option<String>,
    /// Document location.
    pub location: Option<String>,
    /// Section heading path.
    pub section: Option<String>,
    /// Chunk start in the document text, in chars.
    pub start_char: Option<u64>,
    /// Chunk end (exclusive), in chars.
    pub end_char: Option<u64>,
    /// Retrieval score.
    pub score: f32,
    /// The chunk text.
    pub text: String,
}

impl From<wattos_rag::answer::SourceRef> for SourceRef {
    fn from(s: wattos_rag::answer::SourceRef) -> Self {
        Self {
            number: s.number,
            chunk_id: s.chunk_id,
            document_id: s.document_id,
            title: s.title,
            location: s.location,
            section: s.section,
            start_char: s.start_char,
            end_char: s.end_char,
            score: s.score,
            text: s.text,
        }
    }
}

/// Token usage of the answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AnswerUsage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Answer tokens.
    pub output_tokens: u64,
}

/// A cited answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AnswerResponse {
    /// Always `rag.answer`.
    pub object: &'static str,
    /// The chat model used.
    pub model: String,
    /// The answer, with only valid `[n]` citations left.
    pub answer: String,
    /// The sources the answer cites.
    pub citations: Vec<SourceRef>,
    /// Every source given to the model.
    pub sources: Vec<SourceRef>,
    /// Citation numbers that pointed at no source (removed from `answer`).
    pub invalid_citations: Vec<usize>,
    /// Token usage.
    pub usage: AnswerUsage,
}

/// Multipart form of `POST .../files` (for the OpenAPI document).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct FileUpload {
    /// One or more files; the file name is the document id and gives the format (`.txt`, `.md`,
    /// `.html`, `.pdf`; others load as text).
    #[schema(value_type = Vec<String>)]
    pub file: Vec<Vec<u8>>,
    /// JSON object of metadata applied to every file.
    pub metadata: Option<String>,
}

/// One server-sent event of a streamed response: a named event with JSON text as data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SseEvent {
    /// The event name (`sources`, `delta`, `done`, `error`; for runs `run`, `update`, `node`,
    /// `values`, `checkpoint`, `done`, `error`).
    pub event: String,
    /// The event's JSON payload, as text.
    pub data: String,
}
