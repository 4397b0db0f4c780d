//! Incremental parsers for streamed LLM responses: Server-Sent Events ([`SseParser`]) and
//! newline-delimited JSON ([`NdjsonParser`]).
//!
//! Both accept bytes in chunks split anywhere (inside a line, inside a `\r\n` pair, inside a UTF-8
//! sequence) and hand out complete frames only. They never allocate per byte: lines are found with
//! `memchr` and the buffer is compacted only when more than half of it has been consumed.
//!
//! ```
//! use wattos_llm::sse::SseParser;
//!
//! let mut p = SseParser::new();
//! p.feed(b"event: ping\r\ndata: {\"a\":");
//! assert!(p.next_event().unwrap().is_none()); // incomplete
//! p.feed(b"1}\r\n\r\n: a comment\n\ndata: x\ndata: y\n\n");
//! let ev = p.next_event().unwrap().unwrap();
//! assert_eq!(ev.event.as_deref(), Some("ping"));
//! assert_eq!(ev.data, "{\"a\":1}");
//! assert_eq!(p.next_event().unwrap().unwrap().data, "x\ny");
//! assert!(p.next_event().unwrap().is_none());
//! ```

use std::fmt;

/// Longest line either parser buffers before giving up (protects memory against a broken upstream).
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Why a stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A line grew past [`MAX_LINE_BYTES`] without a line break.
    LineTooLong,
    /// A field or line was not valid UTF-8.
    InvalidUtf8,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong => write!(f, "stream line longer than {MAX_LINE_BYTES} bytes"),
            Self::InvalidUtf8 => f.write_str("stream frame is not valid UTF-8"),
        }
    }
}

impl std::error::Error for FrameError {}

/// One dispatched Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when present (`None` means the default `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, when present.
    pub id: Option<String>,
    /// The `retry:` field in milliseconds, when present and numeric.
    pub retry: Option<u64>,
}

/// A byte buffer with a read cursor, shared by both parsers.
#[derive(Debug, Default)]
struct LineBuffer {
    buf: Vec<u8>,
    pos: usize,
}

/// A line found in the buffer: its content range and whether it ended on a lone `\r` at the very
/// end of the buffered data (the next chunk may start with the matching `\n`).
enum Line {
    Complete(usize, usize),
    Incomplete,
}

impl LineBuffer {
    fn feed(&mut self, chunk: &[u8]) {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Finds the next line terminated by `\n`, `\r\n` or `\r`. With `at_eof`, a trailing `\r` ends
    /// the line; otherwise it waits for the next chunk.
    fn next_line(&mut self, cr_is_terminator: bool, at_eof: bool) -> Result<Line, FrameError> {
        let rest = &self.buf[self.pos..];
        let found = if cr_is_terminator {
            memchr::memchr2(b'\n', b'\r', rest)
        } else {
            memchr::memchr(b'\n', rest)
        };
        match found {
            Some(i) => {
                let start = self.pos;
                let end = start + i;
                let mut next = end + 1;
                if rest[i] == b'\r' {
                    match rest.get(i + 1) {
                        Some(b'\n') => next += 1,
                        Some(_) => {}
                        None if at_eof => {}
                        None => return Ok(Line::Incomplete),
                    }
                }
                self.pos = next;
                Ok(Line::Complete(start, end))
            }
            None if rest.len() > MAX_LINE_BYTES => Err(FrameError::LineTooLong),
            None => Ok(Line::Incomplete),
        }
    }
}

/// Incremental Server-Sent Events parser (WHATWG event-stream rules).
///
/// Feed bytes with [`SseParser::feed`], then drain [`SseParser::next_event`] until it returns
/// `Ok(None)`. At end of input call [`SseParser::finish`]: per the specification an event not
/// terminated by a blank line is discarded, but its presence is reported so callers can treat it as
/// a truncated stream.
#[derive(Debug, Default)]
pub struct SseParser {
    lines: LineBuffer,
    event: Option<String>,
    data: Vec<u8>,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
    started: bool,
    bom_checked: bool,
}

impl SseParser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk of the byte stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.lines.feed(chunk);
    }

    /// The next complete event, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`FrameError`] when a line is too long or a field is not UTF-8.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, FrameError> {
        self.next_event_inner(false)
    }

    fn next_event_inner(&mut self, at_eof: bool) -> Result<Option<SseEvent>, FrameError> {
        if !self.bom_checked {
            let pending = self.lines.pending();
            if pending.len() < 3 && !at_eof && b"\xEF\xBB\xBF".starts_with(pending) {
                return Ok(None);
            }
            if pending.starts_with(b"\xEF\xBB\xBF") {
                self.lines.pos += 3;
            }
            self.bom_checked = true;
        }
        loop {
            let (start, end) = match self.lines.next_line(true, at_eof)? {
                Line::Complete(s, e) => (s, e),
                Line::Incomplete => return Ok(None),
            };
            if start == end {
                if let Some(ev) = self.dispatch()? {
                    return Ok(Some(ev));
                }
                continue;
            }
            self.started = true;
            self.field(start, end)?;
        }
    }

    fn field(&mut self, start: usize, end: usize) -> Result<(), FrameError> {
        let line = &self.lines.buf[start..end];
        if line[0] == b':' {
            return Ok(()); // comment
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(utf8(value)?.to_owned()),
            b"id" if memchr::memchr(0, value).is_none() => {
                self.id = Some(utf8(value)?.to_owned());
            }
            b"retry" => {
                if let Ok(ms) = utf8(value)?.parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {} // unknown fields are ignored
        }
        Ok(())
    }

    fn dispatch(&mut self) -> Result<Option<SseEvent>, FrameError> {
        let event = self.event.take();
        let retry = self.retry.take();
        self.started = false;
        if !self.has_data {
            // Per spec an event without data is not dispatched; the id still updates.
            self.data.clear();
            return Ok(None);
        }
        self.has_data = false;
        let data = String::from_utf8(std::mem::take(&mut self.data))
            .map_err(|_| FrameError::InvalidUtf8)?;
        Ok(Some(SseEvent {
            event,
            data,
            id: self.id.clone(),
            retry,
        }))
    }

    /// Ends the input: returns events completed by a trailing line break and reports whether an
    /// unterminated event (fields with no closing blank line) was left over.
    ///
    /// # Errors
    /// As for [`SseParser::next_event`].
    pub fn finish(&mut self) -> Result<(Vec<SseEvent>, bool), FrameError> {
        let mut out = Vec::new();
        while let Some(ev) = self.next_event_inner(true)? {
            out.push(ev);
        }
        let leftover = !self.lines.pending().is_empty() || self.started;
        Ok((out, leftover))
    }
}

fn utf8(b: &[u8]) -> Result<&str, FrameError> {
    std::str::from_utf8(b).map_err(|_| FrameError::InvalidUtf8)
}

/// Incremental newline-delimited JSON parser (Ollama's streaming format).
///
/// ```
/// use wattos_llm::sse::NdjsonParser;
/// let mut p = NdjsonParser::new();
/// p.feed(b"{\"a\":1}\n{\"a\"");
/// assert_eq!(p.next_line().unwrap(), Some(&b"{\"a\":1}"[..]));
/// assert_eq!(p.next_line().unwrap(), None);
/// p.feed(b":2}\r\n\n");
/// assert_eq!(p.next_line().unwrap(), Some(&b"{\"a\":2}"[..]));
/// assert_eq!(p.next_line().unwrap(), None); // blank lines are skipped
/// ```
#[derive(Debug, Default)]
pub struct NdjsonParser {
    lines: LineBuffer,
}

impl NdjsonParser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk of the byte stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.lines.feed(chunk);
    }

    /// The next non-blank line without its terminator (`\n` or `\r\n`), `Ok(None)` when more bytes
    /// are needed.
    ///
    /// # Errors
    /// [`FrameError::LineTooLong`].
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, FrameError> {
        loop {
            match self.lines.next_line(false, false)? {
                Line::Incomplete => return Ok(None),
                Line::Complete(start, end) => {
                    let line = trim_ascii(&self.lines.buf[start..end]);
                    if line.is_empty() {
                        continue;
                    }
                    let (s, e) = subrange(&self.lines.buf[start..end], line);
                    return Ok(Some(&self.lines.buf[start + s..start + e]));
                }
            }
        }
    }

    /// Ends the input and returns a last line that had no terminator, if any.
    pub fn finish(&mut self) -> Option<&[u8]> {
        let rest = trim_ascii(self.lines.pending());
        if rest.is_empty() {
            return None;
        }
        let (s, e) = subrange(self.lines.pending(), rest);
        let start = self.lines.pos;
        self.lines.pos = self.lines.buf.len();
        Some(&self.lines.buf[start + s..start + e])
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// The offsets of `inner` (a subslice) within `outer`.
fn subrange(outer: &[u8], inner: &[u8]) -> (usize, usize) {
    let s = inner.as_ptr() as usize - outer.as_ptr() as usize;
    (s, s + inner.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_events(input: &[u8], chunk: usize) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            p.feed(c);
            while let Some(ev) = p.next_event().unwrap() {
                out.push(ev);
            }
        }
        out.extend(p.finish().unwrap().0);
        out
    }

    const SAMPLE: &[u8] = b"\xEF\xBB\xBF: hi\r\nevent: message_start\r\ndata: {\"x\":\"\xC3\xA9\"}\r\n\r\nid: 7\rdata:a\rdata: b\r\rretry: 300\ndata\n\ndata: [DONE]\n\n";

    #[test]
    fn every_chunking_gives_the_same_events() {
        let whole = all_events(SAMPLE, SAMPLE.len());
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[0].event.as_deref(), Some("message_start"));
        assert_eq!(whole[0].data, "{\"x\":\"é\"}");
        assert_eq!(whole[1].data, "a\nb");
        assert_eq!(whole[1].id.as_deref(), Some("7"));
        assert_eq!(whole[2].data, "");
        assert_eq!(whole[2].retry, Some(300));
        assert_eq!(whole[3].data, "[DONE]");
        for size in 1..SAMPLE.len() {
            assert_eq!(all_events(SAMPLE, size), whole, "chunk size {size}");
        }
    }

    #[test]
    fn unterminated_event_is_reported() {
        let mut p = SseParser::new();
        p.feed(b"data: {\"partial\":");
        assert!(p.next_event().unwrap().is_none());
        let (events, leftover) = p.finish().unwrap();
        assert!(events.is_empty());
        assert!(leftover);
        let mut p = SseParser::new();
        p.feed(b"data: ok\n\n");
        assert_eq!(p.next_event().unwrap().unwrap().data, "ok");
        assert!(!p.finish().unwrap().1);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut p = SseParser::new();
        p.feed(b"data: \xFF\xFE\n\n");
        assert_eq!(p.next_event(), Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn ndjson_any_chunking() {
        let input = b"{\"a\":1}\r\n\n  {\"a\":2}\n{\"a\":3}";
        for size in 1..input.len() {
            let mut p = NdjsonParser::new();
            let mut lines = Vec::new();
            for c in input.chunks(size) {
                p.feed(c);
                while let Some(l) = p.next_line().unwrap() {
                    lines.push(l.to_vec());
                }
            }
            if let Some(l) = p.finish() {
                lines.push(l.to_vec());
            }
            assert_eq!(
                lines,
                vec![
                    b"{\"a\":1}".to_vec(),
                    b"{\"a\":2}".to_vec(),
                    b"{\"a\":3}".to_vec()
                ],
                "chunk size {size}"
            );
        }
    }
}
