//! Fuzz harnesses for the stream parsers, shared by the cargo-fuzz targets in `fuzz/` and the
//! corpus replay test (`tests/fuzz_corpus.rs`), so every input a fuzzer kept runs in the normal
//! test suite too. Each function panics only when it finds a bug.
#![doc(hidden)]

use crate::sse::{FrameError, NdjsonParser, SseEvent, SseParser};

/// Splits `data` into chunks: the first byte picks the chunk length (1..=256), the rest is the
/// stream. Chunking must not change what a parser sees.
fn split(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((n, rest)) => (usize::from(*n) + 1, rest),
        None => (1, data),
    }
}

fn sse_run<'a>(
    chunks: impl Iterator<Item = &'a [u8]>,
) -> (Vec<SseEvent>, Result<bool, FrameError>) {
    let mut p = SseParser::new();
    let mut events = Vec::new();
    for chunk in chunks {
        p.feed(chunk);
        loop {
            match p.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => return (events, Err(e)),
            }
        }
    }
    match p.finish() {
        Ok((rest, leftover)) => {
            events.extend(rest);
            (events, Ok(leftover))
        }
        Err(e) => (events, Err(e)),
    }
}

/// The SSE parser: never panics, and the events (and any framing error) do not depend on how the
/// bytes were chunked.
pub fn sse(data: &[u8]) {
    let (n, stream) = split(data);
    let whole = sse_run(std::iter::once(stream));
    let chunked = sse_run(stream.chunks(n));
    assert_eq!(whole, chunked, "chunks of {n} bytes changed the parse");
    for e in &whole.0 {
        // Dispatched events never carry the field separators they were parsed from.
        assert!(!e.event.as_deref().unwrap_or_default().contains('\n'));
    }
}

fn ndjson_run<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut p = NdjsonParser::new();
    let mut lines = Vec::new();
    for chunk in chunks {
        p.feed(chunk);
        while let Some(line) = p.next_line()? {
            lines.push(line.to_vec());
        }
    }
    if let Some(last) = p.finish() {
        lines.push(last.to_vec());
    }
    Ok(lines)
}

/// The NDJSON parser: never panics, chunking does not change the lines, and no line it returns is
/// blank or holds a line break.
pub fn ndjson(data: &[u8]) {
    let (n, stream) = split(data);
    let whole = ndjson_run(std::iter::once(stream));
    let chunked = ndjson_run(stream.chunks(n));
    assert_eq!(whole, chunked, "chunks of {n} bytes changed the parse");
    if let Ok(lines) = whole {
        for l in lines {
            assert!(!l.is_empty() && !l.contains(&b'\n'), "{l:?}");
        }
    }
}
