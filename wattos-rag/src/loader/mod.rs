//! Loaders turn raw bytes into a [`Document`]: plain text, Markdown, HTML (headings kept as `#` lines)
//! and PDF (feature `pdf`, pure Rust).
//!
//! Every failure is a typed [`LoadError`] naming the document, wrapped in a
//! [`wattos_core::ErrorKind::InvalidInput`] error (recover it with [`LoadError::from_error`]).

pub(crate) mod html;
#[cfg(feature = "pdf")]
mod pdf;
mod text;

use std::fmt;

use async_trait::async_trait;
use wattos_core::{Error, RequestContext, Result};

use crate::document::{Document, Format, Source};

pub use html::HtmlLoader;
#[cfg(feature = "pdf")]
pub use pdf::PdfLoader;
pub use text::{MarkdownLoader, TextLoader};

/// Default largest accepted source: 20 MiB.
pub const DEFAULT_MAX_BYTES: usize = 20 * 1024 * 1024;

/// Turns a [`Source`] into a [`Document`].
#[async_trait]
pub trait Loader: Send + Sync {
    /// Loads one source.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] carrying a [`LoadError`].
    async fn load(&self, ctx: &RequestContext, source: Source) -> Result<Document>;
}

/// Why a document could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadFailure {
    /// No bytes, or only whitespace after extraction.
    Empty,
    /// The bytes look binary (NUL bytes or mostly control characters).
    Binary,
    /// Not valid UTF-8; `valid_up_to` is the byte offset of the first bad sequence.
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        valid_up_to: usize,
    },
    /// Larger than the loader's limit.
    TooLarge {
        /// Source size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The PDF could not be parsed.
    BrokenPdf {
        /// Parser message.
        reason: String,
    },
    /// No loader for this format (or its feature is off).
    UnsupportedFormat {
        /// What was asked for.
        format: String,
    },
}

/// A failed load: which document and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The document's id.
    pub document_id: String,
    /// What went wrong.
    pub failure: LoadFailure,
}

impl LoadError {
    /// Builds the error and wraps it into an invalid-input [`Error`].
    pub fn into_error(self) -> Error {
        Error::invalid_field("document", self.to_string()).with_source(self)
    }

    /// The [`LoadError`] inside an error produced by a loader, if any.
    pub fn from_error(err: &Error) -> Option<&LoadError> {
        std::error::Error::source(err).and_then(|s| s.downcast_ref::<LoadError>())
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.document_id;
        match &self.failure {
            LoadFailure::Empty => write!(f, "document {id:?} is empty"),
            LoadFailure::Binary => write!(f, "document {id:?} looks binary"),
            LoadFailure::InvalidUtf8 { valid_up_to } => {
                write!(f, "document {id:?} is not valid UTF-8 (byte {valid_up_to})")
            }
            LoadFailure::TooLarge { size, max } => {
                write!(
                    f,
                    "document {id:?} has {size} bytes, more than the {max} allowed"
                )
            }
            LoadFailure::BrokenPdf { reason } => {
                write!(f, "document {id:?} is not a readable PDF: {reason}")
            }
            LoadFailure::UnsupportedFormat { format } => {
                write!(f, "document {id:?}: no loader for format {format}")
            }
        }
    }
}

impl std::error::Error for LoadError {}

pub(crate) fn fail(id: &str, failure: LoadFailure) -> Error {
    LoadError {
        document_id: id.to_owned(),
        failure,
    }
    .into_error()
}

/// Shared checks: size, emptiness, binary content, UTF-8. Returns the text.
pub(crate) fn decode_text(source: &Source, max_bytes: usize) -> Result<String> {
    check_size(source, max_bytes)?;
    let bytes = source
        .bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(&source.bytes);
    if bytes.contains(&0) {
        return Err(fail(&source.id, LoadFailure::Binary));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        fail(
            &source.id,
            LoadFailure::InvalidUtf8 {
                valid_up_to: e.valid_up_to(),
            },
        )
    })?;
    let control = text
        .chars()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c'))
        .count();
    if control * 10 > text.chars().count().max(1) {
        return Err(fail(&source.id, LoadFailure::Binary));
    }
    let text = text.replace("\r\n", "\n");
    non_empty(&source.id, text)
}

pub(crate) fn check_size(source: &Source, max_bytes: usize) -> Result<()> {
    if source.bytes.len() > max_bytes {
        return Err(fail(
            &source.id,
            LoadFailure::TooLarge {
                size: source.bytes.len(),
                max: max_bytes,
            },
        ));
    }
    if source.bytes.is_empty() {
        return Err(fail(&source.id, LoadFailure::Empty));
    }
    Ok(())
}

pub(crate) fn non_empty(id: &str, text: String) -> Result<String> {
    if text.trim().is_empty() {
        Err(fail(id, LoadFailure::Empty))
    } else {
        Ok(text)
    }
}

pub(crate) fn document(
    source: Source,
    format: Format,
    text: String,
    title: Option<String>,
) -> Document {
    Document {
        id: source.id,
        title: source.title.or(title),
        location: source.location,
        format,
        text,
        metadata: Default::default(),
    }
}

/// Picks a loader by [`Source::format`], else by the extension of `location` or `id`; unknown
/// extensions load as plain text.
#[derive(Debug, Clone)]
pub struct AutoLoader {
    max_bytes: usize,
}

impl AutoLoader {
    /// A loader accepting up to `max_bytes` per source.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl Default for AutoLoader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

#[async_trait]
impl Loader for AutoLoader {
    async fn load(&self, ctx: &RequestContext, source: Source) -> Result<Document> {
        let format = source
            .format
            .or_else(|| source.location.as_deref().and_then(Format::from_path))
            .or_else(|| Format::from_path(&source.id))
            .unwrap_or(Format::Text);
        match format {
            Format::Text => TextLoader::new(self.max_bytes).load(ctx, source).await,
            Format::Markdown => MarkdownLoader::new(self.max_bytes).load(ctx, source).await,
            Format::Html => HtmlLoader::new(self.max_bytes).load(ctx, source).await,
            #[cfg(feature = "pdf")]
            Format::Pdf => PdfLoader::new(self.max_bytes).load(ctx, source).await,
            #[cfg(not(feature = "pdf"))]
            Format::Pdf => Err(fail(
                &source.id,
                LoadFailure::UnsupportedFormat {
                    format: "pdf (enable feature `pdf`)".into(),
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattos_core::{ErrorKind, TenantId};

    fn ctx() -> RequestContext {
        RequestContext::system(TenantId::new("t").unwrap())
    }

    async fn failure(source: Source) -> LoadFailure {
        let err = AutoLoader::new(64).load(&ctx(), source).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("doc-x"), "{err}");
        LoadError::from_error(&err).unwrap().failure.clone()
    }

    #[tokio::test]
    async fn bad_inputs_give_typed_errors_naming_the_document() {
        assert_eq!(failure(Source::new("doc-x", "")).await, LoadFailure::Empty);
        assert_eq!(
            failure(Source::new("doc-x", "  \n\t ")).await,
            LoadFailure::Empty
        );
        assert_eq!(
            failure(Source::new("doc-x", b"ab\0cd".to_vec())).await,
            LoadFailure::Binary
        );
        assert_eq!(
            failure(Source::new("doc-x", b"\x01\x02\x03\x04abc".to_vec())).await,
            LoadFailure::Binary
        );
        assert_eq!(
            failure(Source::new("doc-x", b"ok \xff\xfe".to_vec())).await,
            LoadFailure::InvalidUtf8 { valid_up_to: 3 }
        );
        assert_eq!(
            failure(Source::new("doc-x", vec![b'a'; 65])).await,
            LoadFailure::TooLarge { size: 65, max: 64 }
        );
        assert_eq!(
            failure(Source::new("doc-x.html", "<html><script>x</script></html>")).await,
            LoadFailure::Empty
        );
    }

    #[tokio::test]
    async fn auto_loader_picks_by_extension_and_strips_bom() {
        let d = AutoLoader::default()
            .load(&ctx(), Source::new("a.md", "\u{feff}# Title\r\nbody"))
            .await
            .unwrap();
        assert_eq!(d.format, Format::Markdown);
        assert_eq!(d.title.as_deref(), Some("Title"));
        assert_eq!(d.text, "# Title\nbody");
    }
}
