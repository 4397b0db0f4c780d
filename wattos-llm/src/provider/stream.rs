//! Turns a streaming HTTP body into a [`ChatStream`]: bytes -> frames (SSE or NDJSON) -> vendor
//! decoder -> [`ChatDelta`]s. Any failure (transport, framing, vendor error event, end of input
//! before the vendor's end marker) becomes one `Err` item, after which the stream ends.

// Shared by all remote providers; a build with only some of them leaves parts unused.
#![cfg_attr(not(feature = "remote-all"), allow(dead_code))]

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;
use wattos_core::llm::{ChatDelta, ChatStream};
use wattos_core::{Error, Result};

use crate::sse::{FrameError, NdjsonParser, SseEvent, SseParser};

/// One frame handed to a decoder.
pub(crate) enum Frame<'a> {
    /// A Server-Sent Event.
    Sse(SseEvent),
    /// One NDJSON line.
    Line(&'a [u8]),
}

/// What a decoder says after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading.
    Continue,
    /// The vendor's end marker arrived; ignore whatever follows.
    Done,
}

/// A vendor's stream decoder.
pub(crate) trait Decoder: Send + 'static {
    /// Decodes one frame, pushing deltas to `out`.
    fn frame(&mut self, frame: Frame<'_>, out: &mut Vec<ChatDelta>) -> Result<Flow>;
    /// The body ended without [`Flow::Done`]: push the trailing deltas when the answer is complete,
    /// or fail when it was cut off.
    fn eof(&mut self, out: &mut Vec<ChatDelta>) -> Result<()>;
}

/// Which framing the body uses.
pub(crate) enum Framing {
    Sse(SseParser),
    Ndjson(NdjsonParser),
}

impl Framing {
    pub(crate) fn sse() -> Self {
        Self::Sse(SseParser::new())
    }
    #[cfg_attr(not(feature = "ollama"), allow(dead_code))]
    pub(crate) fn ndjson() -> Self {
        Self::Ndjson(NdjsonParser::new())
    }
}

struct Driver<D> {
    provider: &'static str,
    framing: Framing,
    decoder: D,
    queue: VecDeque<Result<ChatDelta>>,
    scratch: Vec<ChatDelta>,
    done: bool,
}

fn frame_error(provider: &'static str, e: FrameError) -> Error {
    Error::upstream(provider, None, true, format!("invalid stream frame: {e}")).with_source(e)
}

impl<D: Decoder> Driver<D> {
    fn run(&mut self, step: impl FnOnce(&mut Self) -> Result<()>) {
        if let Err(e) = step(self) {
            self.flush();
            self.queue.push_back(Err(e));
            self.done = true;
        } else {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.queue.extend(self.scratch.drain(..).map(Ok));
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<()> {
        let provider = self.provider;
        match &mut self.framing {
            Framing::Sse(p) => {
                p.feed(chunk);
                while let Some(ev) = p.next_event().map_err(|e| frame_error(provider, e))? {
                    if self.decoder.frame(Frame::Sse(ev), &mut self.scratch)? == Flow::Done {
                        self.done = true;
                        return Ok(());
                    }
                }
            }
            Framing::Ndjson(p) => {
                p.feed(chunk);
                while let Some(line) = p.next_line().map_err(|e| frame_error(provider, e))? {
                    if self.decoder.frame(Frame::Line(line), &mut self.scratch)? == Flow::Done {
                        self.done = true;
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    fn eof(&mut self) -> Result<()> {
        self.done = true;
        let provider = self.provider;
        match &mut self.framing {
            Framing::Sse(p) => {
                let (events, leftover) = p.finish().map_err(|e| frame_error(provider, e))?;
                for ev in events {
                    if self.decoder.frame(Frame::Sse(ev), &mut self.scratch)? == Flow::Done {
                        return Ok(());
                    }
                }
                if leftover {
                    return Err(Error::upstream(
                        provider,
                        None,
                        true,
                        "stream ended in the middle of an event",
                    ));
                }
            }
            Framing::Ndjson(p) => {
                if let Some(line) = p.finish()
                    && self.decoder.frame(Frame::Line(line), &mut self.scratch)? == Flow::Done
                {
                    return Ok(());
                }
            }
        }
        self.decoder.eof(&mut self.scratch)
    }
}

/// Drives `decoder` over `resp`'s body. `timeout` is reported when the body read times out.
pub(crate) fn decode(
    provider: &'static str,
    resp: reqwest::Response,
    framing: Framing,
    decoder: impl Decoder,
    timeout: Duration,
) -> ChatStream {
    let body = resp.bytes_stream().boxed();
    let driver = Driver {
        provider,
        framing,
        decoder,
        queue: VecDeque::new(),
        scratch: Vec::new(),
        done: false,
    };
    futures::stream::unfold((body, driver), move |(mut body, mut d)| async move {
        loop {
            if let Some(item) = d.queue.pop_front() {
                return Some((item, (body, d)));
            }
            if d.done {
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => d.run(|d| d.feed(&chunk)),
                Some(Err(e)) => {
                    d.queue
                        .push_back(Err(crate::http::transport_error(provider, e, timeout)));
                    d.done = true;
                }
                None => d.run(Driver::eof),
            }
        }
    })
    .boxed()
}

/// Decodes an in-memory body (used by tests and benches of the decoders).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn decode_bytes(
    provider: &'static str,
    chunks: Vec<bytes::Bytes>,
    framing: Framing,
    decoder: impl Decoder,
) -> Vec<Result<ChatDelta>> {
    let mut d = Driver {
        provider,
        framing,
        decoder,
        queue: VecDeque::new(),
        scratch: Vec::new(),
        done: false,
    };
    for c in chunks {
        if d.done {
            break;
        }
        d.run(|d| d.feed(&c));
    }
    if !d.done {
        d.run(Driver::eof);
    }
    d.queue.into_iter().collect()
}
