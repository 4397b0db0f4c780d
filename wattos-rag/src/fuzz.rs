//! Fuzz harnesses for the chunkers and loaders, shared by the cargo-fuzz targets in `fuzz/` and the
//! corpus replay test (`tests/fuzz_corpus.rs`), so every input a fuzzer kept runs in the normal test
//! suite too. Each function panics only when it finds a bug.
#![doc(hidden)]

use wattos_core::{ErrorKind, RequestContext, TenantId};

use crate::chunk::{Chunker, StructuredChunker, TokenChunker};
use crate::document::{Document, Format, Source};
use crate::loader::{AutoLoader, Loader};

/// Checks every chunk against the document it came from: in order, non-blank, its char offsets
/// inside the text and its text exactly the chars they cover.
fn check_chunks(doc: &Document, chunker: &dyn Chunker) {
    let chars: Vec<char> = doc.text.chars().collect();
    match chunker.chunk(doc) {
        Ok(chunks) => {
            assert!(!chunks.is_empty());
            let mut last_start = 0;
            for (i, c) in chunks.iter().enumerate() {
                assert_eq!(c.index, i);
                assert!(!c.text.trim().is_empty());
                assert!(
                    c.start_char <= c.end_char && c.end_char <= chars.len(),
                    "{c:?}"
                );
                assert!(c.start_char >= last_start, "chunks out of order");
                last_start = c.start_char;
                let covered: String = chars[c.start_char..c.end_char].iter().collect();
                assert_eq!(covered, c.text);
            }
        }
        // A document with no text is refused with a typed error, never anything else.
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(
                doc.text.trim().is_empty(),
                "refused a document with text: {e}"
            );
        }
    }
}

/// The chunkers on arbitrary text: the first two bytes pick the token budget and overlap.
pub fn chunkers(data: &[u8]) {
    let (max, overlap, text) = match data {
        [a, b, rest @ ..] => (usize::from(*a % 64) + 1, usize::from(*b % 64), rest),
        _ => (8, 2, data),
    };
    let doc = Document::text("fuzz", String::from_utf8_lossy(text).into_owned());
    if let Ok(c) = StructuredChunker::new(max) {
        check_chunks(&doc, &c);
    }
    match TokenChunker::new(max, overlap) {
        Ok(c) => check_chunks(&doc, &c),
        Err(e) => assert!(overlap >= max, "{e}"),
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
}

/// The loaders on arbitrary bytes in every format: a document or a typed `invalid_input` error
/// naming it, never a panic; a loaded document's text is not blank.
pub fn loaders(data: &[u8]) {
    let (format, bytes) = match data.split_first() {
        Some((f, rest)) => (*f, rest),
        None => (0, data),
    };
    let format = match format % 4 {
        0 => Format::Text,
        1 => Format::Markdown,
        2 => Format::Html,
        _ => Format::Pdf,
    };
    let mut source = Source::new("fuzz-doc", bytes.to_vec());
    source.format = Some(format);
    let ctx = RequestContext::system(TenantId::new("fuzz").expect("a valid tenant id"));
    let result = RUNTIME.with(|rt| rt.block_on(AutoLoader::new(1 << 20).load(&ctx, source)));
    match result {
        Ok(doc) => assert!(!doc.text.trim().is_empty(), "{format:?} loaded blank text"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{format:?}: {e}");
            assert!(e.message().contains("fuzz-doc"), "{e}");
        }
    }
}
