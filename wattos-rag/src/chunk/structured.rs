//! Structure-aware chunking: Markdown sections, then paragraphs, sentences and words.

use std::sync::Arc;

use unicode_segmentation::UnicodeSegmentation;
use wattos_core::{Error, Result};

use super::merge::{Piece, pack};
use super::token::word_pieces;
use super::{ApproxTokenCounter, Chunker, TokenCounter, chunks_from_ranges};
use crate::document::{Chunk, Document};

/// Never crosses a Markdown heading; packs whole paragraphs, falling back to sentences and words
/// only for paragraphs larger than `max_tokens`. Each chunk's `section` metadata is the heading path
/// (`"Guide > Setup"`). Plain text without headings is one section.
#[derive(Clone)]
pub struct StructuredChunker {
    max_tokens: usize,
    overlap: usize,
    counter: Arc<dyn TokenCounter>,
}

impl std::fmt::Debug for StructuredChunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StructuredChunker")
            .field("max_tokens", &self.max_tokens)
            .field("overlap", &self.overlap)
            .finish()
    }
}

impl StructuredChunker {
    /// Chunks of at most `max_tokens` (approximate counter), no overlap.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] when `max_tokens` is 0.
    pub fn new(max_tokens: usize) -> Result<Self> {
        if max_tokens == 0 {
            return Err(Error::invalid_field("max_tokens", "must be > 0"));
        }
        Ok(Self {
            max_tokens,
            overlap: 0,
            counter: Arc::new(ApproxTokenCounter),
        })
    }

    /// Repeats up to `overlap` tokens of whole pieces between neighbouring chunks of one section.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] when `overlap >= max_tokens`.
    pub fn with_overlap(mut self, overlap: usize) -> Result<Self> {
        if overlap >= self.max_tokens {
            return Err(Error::invalid_field("overlap", "must be < max_tokens"));
        }
        self.overlap = overlap;
        Ok(self)
    }

    /// Uses `counter` (e.g. the embedding model's tokenizer).
    pub fn with_counter(mut self, counter: Arc<dyn TokenCounter>) -> Self {
        self.counter = counter;
        self
    }

    fn pieces(&self, text: &str, start: usize, end: usize) -> Vec<Piece> {
        let mut out = Vec::new();
        for (ps, pe) in paragraphs(&text[start..end]) {
            let (ps, pe) = (start + ps, start + pe);
            let para = &text[ps..pe];
            let tokens = self.counter.count(para).max(1);
            if tokens <= self.max_tokens {
                out.push(Piece {
                    start: ps,
                    end: pe,
                    tokens,
                });
                continue;
            }
            for (off, sentence) in para.split_sentence_bound_indices() {
                if sentence.trim().is_empty() {
                    continue;
                }
                let s = ps + off;
                let t = self.counter.count(sentence).max(1);
                if t <= self.max_tokens {
                    out.push(Piece {
                        start: s,
                        end: s + sentence.len(),
                        tokens: t,
                    });
                } else {
                    out.extend(word_pieces(sentence, s, self.counter.as_ref()));
                }
            }
        }
        out
    }
}

impl Chunker for StructuredChunker {
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>> {
        let text = &doc.text;
        let mut ranges = Vec::new();
        for section in sections(text) {
            let pieces = self.pieces(text, section.start, section.end);
            for (s, e) in pack(&pieces, self.max_tokens, self.overlap) {
                let e = s + text[s..e].trim_end().len();
                ranges.push((s, e, section.path.clone()));
            }
        }
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

struct Section {
    start: usize,
    end: usize,
    path: Option<String>,
}

/// ATX heading level and title of a line, outside code fences.
fn heading(line: &str) -> Option<(usize, &str)> {
    let t = line
        .strip_prefix("   ")
        .or_else(|| line.strip_prefix("  "))
        .or_else(|| line.strip_prefix(' '))
        .unwrap_or(line);
    let level = t.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some((level, rest.trim().trim_end_matches('#').trim()))
}

fn sections(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut current_start = 0;
    let mut current_path: Option<String> = None;
    let mut in_fence = false;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        } else if !in_fence
            && let Some((level, title)) = heading(line.trim_end_matches(['\n', '\r']))
        {
            if pos > current_start {
                out.push(Section {
                    start: current_start,
                    end: pos,
                    path: current_path.clone(),
                });
            }
            while stack.last().is_some_and(|(l, _)| *l >= level) {
                stack.pop();
            }
            stack.push((level, title.to_owned()));
            current_path = Some(
                stack
                    .iter()
                    .map(|(_, t)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(" > "),
            );
            current_start = pos;
        }
        pos += line.len();
    }
    if pos > current_start {
        out.push(Section {
            start: current_start,
            end: pos,
            path: current_path,
        });
    }
    out
}

/// Paragraph byte ranges (split on blank lines; code fences stay whole).
fn paragraphs(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut in_fence = false;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        }
        if trimmed.is_empty() && !in_fence {
            if let Some(s) = start.take() {
                out.push((s, pos));
            }
        } else if start.is_none() {
            start = Some(pos);
        }
        pos += line.len();
    }
    if let Some(s) = start {
        out.push((s, pos));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD: &str = "# Guide\n\nIntro paragraph here.\n\n## Setup\n\nInstall it. Then run it.\n\n```\n# not a heading\n\ncode\n```\n\n## Use\n\nCall the API.\n";

    #[test]
    fn splits_at_headings_and_records_section_path() {
        let doc = Document::text("d", MD);
        let chunks = StructuredChunker::new(100).unwrap().chunk(&doc).unwrap();
        let sections: Vec<_> = chunks
            .iter()
            .map(|c| c.metadata["section"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sections, ["Guide", "Guide > Setup", "Guide > Use"]);
        assert!(
            chunks[1].text.contains("# not a heading"),
            "code fence stays in its section"
        );
        for c in &chunks {
            let slice: String = MD
                .chars()
                .skip(c.start_char)
                .take(c.end_char - c.start_char)
                .collect();
            assert_eq!(slice, c.text);
        }
    }

    #[test]
    fn long_paragraphs_fall_back_to_sentences_then_words() {
        let para = "Erster Satz hier. Zweiter Satz folgt. Dritter Satz endet.";
        let doc = Document::text("d", para);
        let chunks = StructuredChunker::new(5).unwrap().chunk(&doc).unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].text, "Erster Satz hier.");
        let words = StructuredChunker::new(2)
            .unwrap()
            .chunk(&Document::text("d", "a b c d e"))
            .unwrap();
        assert_eq!(words.len(), 3);
    }

    #[test]
    fn paragraphs_are_packed_together_when_they_fit() {
        let doc = Document::text("d", "one.\n\ntwo.\n\nthree.");
        let chunks = StructuredChunker::new(100).unwrap().chunk(&doc).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "one.\n\ntwo.\n\nthree.");
        assert!(StructuredChunker::new(0).is_err());
        assert!(StructuredChunker::new(4).unwrap().with_overlap(4).is_err());
    }

    #[test]
    fn overlap_repeats_sentences() {
        let doc = Document::text("d", "A one. B two. C three. D four.");
        let chunks = StructuredChunker::new(6)
            .unwrap()
            .with_overlap(3)
            .unwrap()
            .chunk(&doc)
            .unwrap();
        assert!(chunks.len() >= 2);
        assert!(chunks[1].text.starts_with("B two."), "{:?}", chunks);
    }
}
