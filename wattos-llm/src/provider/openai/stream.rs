//! OpenAI streaming: `data: {chat.completion.chunk}` events ending with `data: [DONE]`.

use serde::Deserialize;
use wattos_core::llm::{ChatDelta, FinishReason, ToolCallDelta, Usage};
use wattos_core::{Error, Result};

use super::codec::{WireUsage, finish_reason};
use super::error::{WireError, map_stream_error};
use crate::provider::stream::{Decoder, Flow, Frame};

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<ChunkDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ChunkToolCall>,
}

#[derive(Deserialize)]
struct ChunkToolCall {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<ChunkFunction>,
}

#[derive(Deserialize)]
struct ChunkFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Decodes OpenAI chunks. Finish and usage are held back until `[DONE]` (usage arrives in its own
/// chunk after the finish reason when `stream_options.include_usage` is set).
pub(crate) struct OpenAiDecoder {
    provider: &'static str,
    model: String,
    started: bool,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    saw_tool_call: bool,
}

impl OpenAiDecoder {
    pub(crate) fn new(provider: &'static str, model: String) -> Self {
        Self {
            provider,
            model,
            started: false,
            finish: None,
            usage: None,
            saw_tool_call: false,
        }
    }

    fn end(&mut self, out: &mut Vec<ChatDelta>) -> Result<()> {
        let reason = self.finish.take().ok_or_else(|| {
            Error::upstream(
                self.provider,
                None,
                true,
                "stream ended before the model finished (no finish_reason)",
            )
        })?;
        if let Some(u) = self.usage.take() {
            out.push(ChatDelta::Usage(u));
        }
        out.push(ChatDelta::Finish { reason });
        Ok(())
    }
}

impl Decoder for OpenAiDecoder {
    fn frame(&mut self, frame: Frame<'_>, out: &mut Vec<ChatDelta>) -> Result<Flow> {
        let Frame::Sse(ev) = frame else {
            return Ok(Flow::Continue);
        };
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.end(out)?;
            return Ok(Flow::Done);
        }
        if ev.event.as_deref() == Some("error") {
            let wire = super::error::parse(data.as_bytes());
            return Err(map_stream_error(self.provider, &wire));
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            Error::upstream(
                self.provider,
                None,
                true,
                format!("invalid stream chunk: {e}"),
            )
        })?;
        if let Some(err) = chunk.error {
            return Err(map_stream_error(self.provider, &err));
        }
        if !self.started {
            self.started = true;
            out.push(ChatDelta::Start {
                id: chunk.id.unwrap_or_default(),
                model: chunk
                    .model
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| self.model.clone()),
            });
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push(ChatDelta::Text { text });
                }
                for tc in delta.tool_calls {
                    self.saw_tool_call = true;
                    let (name, arguments) = match tc.function {
                        Some(f) => (f.name, f.arguments.unwrap_or_default()),
                        None => (None, String::new()),
                    };
                    out.push(ChatDelta::ToolCall(ToolCallDelta {
                        index: tc.index,
                        id: tc.id,
                        name,
                        arguments,
                    }));
                }
            }
            if let Some(r) = choice.finish_reason {
                self.finish = Some(finish_reason(&r));
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u.normalize());
        }
        Ok(Flow::Continue)
    }

    fn eof(&mut self, out: &mut Vec<ChatDelta>) -> Result<()> {
        // Some compatible servers omit `[DONE]`; a finish reason is still required.
        self.end(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::stream::{Framing, decode_bytes};

    const DOC_STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn decodes_documented_stream_at_any_split() {
        let whole = decode_bytes(
            "openai",
            vec![DOC_STREAM.into()],
            Framing::sse(),
            OpenAiDecoder::new("openai", "m".into()),
        );
        let whole: Vec<_> = whole.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[1], ChatDelta::Text { text: "Hi".into() });
        assert!(matches!(
            whole[3],
            ChatDelta::Finish {
                reason: FinishReason::Stop
            }
        ));
        for split in 1..DOC_STREAM.len() {
            let (a, b) = DOC_STREAM.as_bytes().split_at(split);
            let got: Vec<_> = decode_bytes(
                "openai",
                vec![
                    bytes::Bytes::copy_from_slice(a),
                    bytes::Bytes::copy_from_slice(b),
                ],
                Framing::sse(),
                OpenAiDecoder::new("openai", "m".into()),
            )
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn truncated_stream_ends_with_error() {
        let cut = &DOC_STREAM[..DOC_STREAM.find("\"stop\"").unwrap_or(0)];
        let items = decode_bytes(
            "openai",
            vec![bytes::Bytes::copy_from_slice(cut.as_bytes())],
            Framing::sse(),
            OpenAiDecoder::new("openai", "m".into()),
        );
        assert!(items.last().unwrap().is_err());
    }
}
