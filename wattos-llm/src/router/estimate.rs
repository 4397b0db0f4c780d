//! Cheap token estimates for admission (limits, budgets, context-window checks). They err on the high
//! side: about four bytes per token plus per-message overhead, and `max_tokens` (or a default) for
//! the output.

use wattos_core::llm::{ChatRequest, ContentPart, Message};

use super::engine::Estimate;

/// Tokens assumed for one image part.
const IMAGE_TOKENS: usize = 765;

pub(crate) fn estimate_chat(req: &ChatRequest, default_output_tokens: u32) -> Estimate {
    let mut bytes = 0usize;
    let mut extra_tokens = 3usize;
    for m in &req.messages {
        extra_tokens += 4;
        match m {
            Message::System { content } | Message::Tool { content, .. } => bytes += content.len(),
            Message::User { content, .. } => {
                for p in content {
                    match p {
                        ContentPart::Text { text } => bytes += text.len(),
                        ContentPart::Image { .. } => extra_tokens += IMAGE_TOKENS,
                    }
                }
            }
            Message::Assistant {
                content,
                tool_calls,
            } => {
                bytes += content.as_ref().map_or(0, String::len);
                for c in tool_calls {
                    bytes += c.name.len() + c.arguments.len() + c.id.len();
                }
            }
        }
    }
    for t in &req.tools {
        bytes += t.name.len() + t.description.len() + t.parameters.to_string().len();
    }
    Estimate {
        input_tokens: (bytes.div_ceil(4) + extra_tokens) as u64,
        output_tokens: u64::from(req.max_tokens.unwrap_or(default_output_tokens)),
    }
}

pub(crate) fn estimate_embedding(inputs: &[String]) -> Estimate {
    let bytes: usize = inputs.iter().map(String::len).sum();
    Estimate {
        input_tokens: (bytes.div_ceil(4) + inputs.len()) as u64,
        output_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_with_input_and_use_max_tokens() {
        let small = estimate_chat(&ChatRequest::new("m", vec![Message::user("hi")]), 100);
        let big = estimate_chat(
            &ChatRequest::new("m", vec![Message::user("x".repeat(4000))]).with_max_tokens(7),
            100,
        );
        assert_eq!(small.output_tokens, 100);
        assert_eq!(big.output_tokens, 7);
        assert!(big.input_tokens >= 1000);
        assert!(small.input_tokens < 20);
    }
}
