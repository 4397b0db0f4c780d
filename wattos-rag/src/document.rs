//! Documents and chunks: what loaders produce and chunkers cut.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Raw input handed to a [`crate::loader::Loader`]: bytes plus what we know about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Stable document id chosen by the caller (path, URL, database key).
    pub id: String,
    /// Human-readable title, if known (loaders may find a better one).
    pub title: Option<String>,
    /// Where it came from (path or URL), for citations.
    pub location: Option<String>,
    /// The content.
    pub bytes: Vec<u8>,
    /// What the bytes are; `None` lets [`crate::loader::AutoLoader`] guess from `location`/`id`.
    pub format: Option<Format>,
}

impl Source {
    /// A source with the given id and bytes.
    pub fn new(id: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            id: id.into(),
            title: None,
            location: None,
            bytes: bytes.into(),
            format: None,
        }
    }

    /// Sets the title.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the location.
    pub fn with_location(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }

    /// Sets the format.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }
}

/// Formats the built-in loaders understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// UTF-8 plain text.
    Text,
    /// CommonMark / GitHub Markdown.
    Markdown,
    /// HTML.
    Html,
    /// PDF (feature `pdf`).
    Pdf,
}

impl Format {
    /// Guesses the format from a file name or URL path; `None` when the extension is unknown.
    pub fn from_path(path: &str) -> Option<Self> {
        let ext = path.rsplit('.').next()?.to_ascii_lowercase();
        match ext.as_str() {
            "txt" | "text" => Some(Self::Text),
            "md" | "markdown" => Some(Self::Markdown),
            "html" | "htm" | "xhtml" => Some(Self::Html),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }
}

/// A loaded document: normalised text plus metadata. Markdown keeps its syntax; HTML becomes
/// Markdown-style text (`#` headings); PDF becomes its text layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Stable id.
    pub id: String,
    /// Title (first heading, HTML `<title>`, or the source's).
    pub title: Option<String>,
    /// Where it came from.
    pub location: Option<String>,
    /// Original format.
    pub format: Format,
    /// The text chunkers cut.
    pub text: String,
    /// Free-form metadata, copied onto every chunk.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl Document {
    /// A plain-text document.
    pub fn text(id: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: None,
            location: None,
            format: Format::Text,
            text: text.into(),
            metadata: Map::new(),
        }
    }

    /// Sets the title.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Adds a metadata entry.
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// SHA-256 of everything that affects indexing (text, title, location, metadata), hex.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.text.as_bytes());
        h.update([0]);
        h.update(self.title.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(self.location.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(Value::Object(self.metadata.clone()).to_string().as_bytes());
        hex::encode(h.finalize())
    }
}

/// A piece of a document, with its position in the document text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// `"{document_id}#{index}"`.
    pub id: String,
    /// Owning document.
    pub document_id: String,
    /// Position among the document's chunks, from 0.
    pub index: usize,
    /// The text (a slice of the document text).
    pub text: String,
    /// Start offset in the document text, in chars.
    pub start_char: usize,
    /// End offset (exclusive), in chars.
    pub end_char: usize,
    /// Metadata: the document's plus chunk-level entries such as `section` and transformer output.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl Chunk {
    /// The chunk id for `document_id` and `index`.
    pub fn make_id(document_id: &str, index: usize) -> String {
        format!("{document_id}#{index}")
    }
}

/// SHA-256 of `text`, hex: the embedding cache key.
pub fn text_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
