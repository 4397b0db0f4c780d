//! Plain text and Markdown.

use async_trait::async_trait;
use wattos_core::{RequestContext, Result};

use super::{DEFAULT_MAX_BYTES, Loader, decode_text, document};
use crate::document::{Document, Format, Source};

/// Loads UTF-8 text as is (BOM stripped, CRLF normalised).
#[derive(Debug, Clone)]
pub struct TextLoader {
    max_bytes: usize,
}

impl TextLoader {
    /// A loader accepting up to `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl Default for TextLoader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

#[async_trait]
impl Loader for TextLoader {
    async fn load(&self, _ctx: &RequestContext, source: Source) -> Result<Document> {
        let text = decode_text(&source, self.max_bytes)?;
        Ok(document(source, Format::Text, text, None))
    }
}

/// Loads Markdown, keeping its syntax (the structure-aware chunker reads the headings); the title is
/// the first ATX heading.
#[derive(Debug, Clone)]
pub struct MarkdownLoader {
    max_bytes: usize,
}

impl MarkdownLoader {
    /// A loader accepting up to `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl Default for MarkdownLoader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

#[async_trait]
impl Loader for MarkdownLoader {
    async fn load(&self, _ctx: &RequestContext, source: Source) -> Result<Document> {
        let text = decode_text(&source, self.max_bytes)?;
        let title = text.lines().find_map(|l| {
            let t = l.trim_start();
            let hashes = t.chars().take_while(|c| *c == '#').count();
            (1..=6)
                .contains(&hashes)
                .then(|| t[hashes..].trim())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        });
        Ok(document(source, Format::Markdown, text, title))
    }
}
