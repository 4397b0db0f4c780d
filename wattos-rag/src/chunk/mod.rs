//! Chunkers cut a [`Document`] into [`Chunk`]s that fit a token budget, keeping char offsets into the
//! document text.
//!
//! * [`TokenChunker`]: fixed windows of tokens with overlap.
//! * [`StructuredChunker`]: Markdown sections (headings), then paragraphs, then sentences, then words;
//!   each chunk records its heading path in the `section` metadata entry.
//!
//! Token counts come from a [`TokenCounter`]; [`ApproxTokenCounter`] needs no model, and any
//! tokenizer can be plugged in.

mod merge;
mod structured;
mod token;

use std::sync::Arc;

use wattos_core::Result;

use crate::document::{Chunk, Document};

pub use structured::StructuredChunker;
pub use token::TokenChunker;

/// Cuts a document into chunks.
pub trait Chunker: Send + Sync {
    /// The chunks of `doc`, in order, with ids `"{doc.id}#{index}"`.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] when the document cannot be cut (e.g. no text).
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>>;
}

impl<T: Chunker + ?Sized> Chunker for Arc<T> {
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>> {
        (**self).chunk(doc)
    }
}

/// Counts tokens the way the embedding or chat model will.
pub trait TokenCounter: Send + Sync {
    /// Tokens in `text`.
    fn count(&self, text: &str) -> usize;
}

impl<F: Fn(&str) -> usize + Send + Sync> TokenCounter for F {
    fn count(&self, text: &str) -> usize {
        self(text)
    }
}

/// A model-free estimate close to WordPiece/BPE counts for English and German prose: each word
/// counts one token per started 6 characters, each punctuation mark one token.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproxTokenCounter;

impl TokenCounter for ApproxTokenCounter {
    fn count(&self, text: &str) -> usize {
        let mut tokens = 0;
        let mut word = 0usize;
        for c in text.chars() {
            if c.is_alphanumeric() {
                word += 1;
            } else {
                tokens += word.div_ceil(6);
                word = 0;
                if !c.is_whitespace() {
                    tokens += 1;
                }
            }
        }
        tokens + word.div_ceil(6)
    }
}

/// Builds chunks from byte ranges of `doc.text`, computing char offsets and copying metadata.
pub(crate) fn chunks_from_ranges(
    doc: &Document,
    ranges: impl IntoIterator<Item = (usize, usize, Option<String>)>,
) -> Vec<Chunk> {
    let text = &doc.text;
    let mut out = Vec::new();
    // Byte -> char offset, computed incrementally (ranges are ascending by start).
    let mut last_byte = 0usize;
    let mut last_char = 0usize;
    let mut char_at = |byte: usize| -> usize {
        if byte >= last_byte {
            last_char += text[last_byte..byte].chars().count();
        } else {
            last_char -= text[byte..last_byte].chars().count();
        }
        last_byte = byte;
        last_char
    };
    for (start, end, section) in ranges {
        let slice = &text[start..end];
        if slice.trim().is_empty() {
            continue;
        }
        let start_char = char_at(start);
        let end_char = start_char + slice.chars().count();
        let index = out.len();
        let mut metadata = doc.metadata.clone();
        if let Some(s) = section {
            metadata.insert("section".into(), s.into());
        }
        out.push(Chunk {
            id: Chunk::make_id(&doc.id, index),
            document_id: doc.id.clone(),
            index,
            text: slice.to_owned(),
            start_char,
            end_char,
            metadata,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approx_counter() {
        assert_eq!(ApproxTokenCounter.count(""), 0);
        assert_eq!(ApproxTokenCounter.count("hello world."), 3);
        assert_eq!(ApproxTokenCounter.count("Donaudampfschifffahrt"), 4);
    }
}
