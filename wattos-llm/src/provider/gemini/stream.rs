//! Gemini `streamGenerateContent?alt=sse`: every event is a partial `GenerateContentResponse`; the
//! stream simply ends after the chunk with a `finishReason`.

use wattos_core::llm::{ChatDelta, FinishReason, Usage};
use wattos_core::{Error, Result};

use super::codec::{GenerateResponse, chunk_deltas, finish_reason};
use super::error::map_stream_error;
use crate::provider::stream::{Decoder, Flow, Frame};

pub(crate) struct GeminiDecoder {
    provider: &'static str,
    model: String,
    started: bool,
    calls: usize,
    usage: Option<Usage>,
    finish: Option<String>,
    blocked: bool,
}

impl GeminiDecoder {
    pub(crate) fn new(provider: &'static str, model: String) -> Self {
        Self {
            provider,
            model,
            started: false,
            calls: 0,
            usage: None,
            finish: None,
            blocked: false,
        }
    }
}

impl Decoder for GeminiDecoder {
    fn frame(&mut self, frame: Frame<'_>, out: &mut Vec<ChatDelta>) -> Result<Flow> {
        let Frame::Sse(ev) = frame else {
            return Ok(Flow::Continue);
        };
        let chunk: GenerateResponse = serde_json::from_str(&ev.data).map_err(|e| {
            Error::upstream(
                self.provider,
                None,
                true,
                format!("invalid stream chunk: {e}"),
            )
        })?;
        if let Some(err) = chunk.error {
            return Err(map_stream_error(self.provider, err));
        }
        if !self.started {
            self.started = true;
            out.push(ChatDelta::Start {
                id: chunk.response_id.clone().unwrap_or_default(),
                model: chunk
                    .model_version
                    .clone()
                    .unwrap_or_else(|| self.model.clone()),
            });
        }
        let o = chunk_deltas(&chunk, &mut self.calls, out);
        if let Some(u) = chunk.usage_metadata {
            self.usage = Some(u.normalize());
        }
        if o.finish.is_some() {
            self.finish = o.finish;
        }
        self.blocked |= o.blocked;
        Ok(Flow::Continue)
    }

    fn eof(&mut self, out: &mut Vec<ChatDelta>) -> Result<()> {
        let reason = match (&self.finish, self.blocked) {
            (Some(f), _) => finish_reason(f, self.calls > 0),
            (None, true) => FinishReason::ContentFilter,
            (None, false) => {
                return Err(Error::upstream(
                    self.provider,
                    None,
                    true,
                    "stream ended before a finishReason",
                ));
            }
        };
        if let Some(u) = self.usage.take() {
            out.push(ChatDelta::Usage(u));
        }
        out.push(ChatDelta::Finish { reason });
        Ok(())
    }
}
