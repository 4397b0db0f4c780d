//! Ollama NDJSON streaming: one `/api/chat` object per line, the last with `"done": true`.

use wattos_core::llm::ChatDelta;
use wattos_core::{Error, Result};

use super::codec::ChatLine;
use super::error::map_stream_error;
use crate::provider::common::generated_id;
use crate::provider::stream::{Decoder, Flow, Frame};

pub(crate) struct OllamaDecoder {
    provider: &'static str,
    model: String,
    started: bool,
    calls: usize,
}

impl OllamaDecoder {
    pub(crate) fn new(provider: &'static str, model: String) -> Self {
        Self {
            provider,
            model,
            started: false,
            calls: 0,
        }
    }
}

impl Decoder for OllamaDecoder {
    fn frame(&mut self, frame: Frame<'_>, out: &mut Vec<ChatDelta>) -> Result<Flow> {
        let Frame::Line(line) = frame else {
            return Ok(Flow::Continue);
        };
        let mut l: ChatLine = serde_json::from_slice(line).map_err(|e| {
            Error::upstream(
                self.provider,
                None,
                true,
                format!("invalid stream line: {e}"),
            )
        })?;
        if let Some(e) = l.error.take() {
            return Err(map_stream_error(self.provider, e));
        }
        if !self.started {
            self.started = true;
            out.push(ChatDelta::Start {
                id: generated_id("ollama-"),
                model: l.model.clone().unwrap_or_else(|| self.model.clone()),
            });
        }
        l.deltas(&mut self.calls, out);
        if l.done {
            out.push(ChatDelta::Usage(l.usage()));
            out.push(ChatDelta::Finish {
                reason: l.finish_reason(self.calls > 0),
            });
            return Ok(Flow::Done);
        }
        Ok(Flow::Continue)
    }

    fn eof(&mut self, _out: &mut Vec<ChatDelta>) -> Result<()> {
        Err(Error::upstream(
            self.provider,
            None,
            true,
            "stream ended before the line with \"done\": true",
        ))
    }
}
