//! Fixed token windows with overlap.

use std::sync::Arc;

use wattos_core::{Error, Result};

use super::merge::{Piece, pack};
use super::{ApproxTokenCounter, Chunker, TokenCounter, chunks_from_ranges};
use crate::document::{Chunk, Document};

/// Windows of at most `max_tokens` whole words with `overlap` tokens repeated between neighbours.
#[derive(Clone)]
pub struct TokenChunker {
    max_tokens: usize,
    overlap: usize,
    counter: Arc<dyn TokenCounter>,
}

impl std::fmt::Debug for TokenChunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenChunker")
            .field("max_tokens", &self.max_tokens)
            .field("overlap", &self.overlap)
            .finish()
    }
}

impl TokenChunker {
    /// Windows of `max_tokens` with `overlap`, counted by [`ApproxTokenCounter`].
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] when `max_tokens` is 0 or `overlap >= max_tokens`.
    pub fn new(max_tokens: usize, overlap: usize) -> Result<Self> {
        if max_tokens == 0 || overlap >= max_tokens {
            return Err(Error::invalid_field(
                "overlap",
                "need max_tokens > 0 and overlap < max_tokens",
            ));
        }
        Ok(Self {
            max_tokens,
            overlap,
            counter: Arc::new(ApproxTokenCounter),
        })
    }

    /// Uses `counter` (e.g. the embedding model's tokenizer).
    pub fn with_counter(mut self, counter: Arc<dyn TokenCounter>) -> Self {
        self.counter = counter;
        self
    }
}

/// Whitespace-delimited words as pieces (each includes its trailing whitespace).
pub(crate) fn word_pieces(text: &str, base: usize, counter: &dyn TokenCounter) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut start: Option<usize> = None;
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space || start.is_none() {
            if let Some(s) = start {
                pieces.push(Piece {
                    start: base + s,
                    end: base + i,
                    tokens: counter.count(&text[s..i]).max(1),
                });
            }
            start = Some(i);
            in_space = false;
        }
    }
    if let Some(s) = start {
        pieces.push(Piece {
            start: base + s,
            end: base + text.len(),
            tokens: counter.count(&text[s..]).max(1),
        });
    }
    pieces
}

impl Chunker for TokenChunker {
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>> {
        let pieces = word_pieces(&doc.text, 0, self.counter.as_ref());
        let ranges = pack(&pieces, self.max_tokens, self.overlap)
            .into_iter()
            .map(|(s, e)| {
                let e = s + doc.text[s..e].trim_end().len();
                (s, e, None)
            });
        let chunks = chunks_from_ranges(doc, ranges);
        if chunks.is_empty() {
            return Err(Error::invalid_field(
                "document",
                format!("document {:?} has no text to chunk", doc.id),
            ));
        }
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_overlap_and_offsets_are_exact() {
        let text = "één twee drie vier fünf sechs sieben acht neun zehn";
        let doc = Document::text("d", text);
        let chunks = TokenChunker::new(4, 1).unwrap().chunk(&doc).unwrap();
        assert_eq!(chunks[0].text, "één twee drie vier");
        assert_eq!(chunks[1].text, "vier fünf sechs sieben");
        for c in &chunks {
            let slice: String = text
                .chars()
                .skip(c.start_char)
                .take(c.end_char - c.start_char)
                .collect();
            assert_eq!(slice, c.text);
        }
        assert_eq!(chunks.last().unwrap().end_char, text.chars().count());
        assert_eq!(chunks[1].id, "d#1");
    }

    #[test]
    fn rejects_bad_settings_and_empty_text() {
        assert!(TokenChunker::new(0, 0).is_err());
        assert!(TokenChunker::new(4, 4).is_err());
        assert!(
            TokenChunker::new(4, 0)
                .unwrap()
                .chunk(&Document::text("d", "  "))
                .is_err()
        );
    }

    #[test]
    fn single_short_text_is_one_chunk() {
        let c = TokenChunker::new(50, 5)
            .unwrap()
            .chunk(&Document::text("d", "  hi there "))
            .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "hi there");
        assert_eq!(c[0].start_char, 2);
    }
}
