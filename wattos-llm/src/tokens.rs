//! Token counting: [`TokenCounter`] with an [`EstimateCounter`] that needs nothing and, behind the
//! `tokenizer` feature, an exact `TokenizerCounter` built from a Hugging Face `tokenizer.json`.
//!
//! Providers report exact usage after a call; counters are for *before* a call: checking a prompt
//! against a context window, trimming history, or pre-charging a budget.
//!
//! ```
//! use wattos_core::llm::Message;
//! use wattos_llm::tokens::{EstimateCounter, TokenCounter};
//!
//! let c = EstimateCounter::default();
//! assert_eq!(c.count("abcdefgh"), 2);            // 8 chars / 4
//! assert_eq!(c.count("abcdefghi"), 3);           // rounded up
//! assert_eq!(c.count(""), 0);
//! let n = c.count_messages(&[Message::system("Be brief."), Message::user("Hi")]);
//! assert!(n > c.count("Be brief.") + c.count("Hi")); // per-message framing is included
//! ```

use wattos_core::llm::{ContentPart, Message};

/// Counts tokens of text and of whole conversations.
pub trait TokenCounter: Send + Sync {
    /// Tokens in `text`.
    fn count(&self, text: &str) -> usize;

    /// Tokens a conversation takes in a chat prompt: each message's text plus a per-message framing
    /// overhead (role markers), plus the tokens that prime the reply. The framing follows OpenAI's
    /// published accounting (3 tokens per message, 3 for the reply); other vendors are close.
    fn count_messages(&self, messages: &[Message]) -> usize {
        const PER_MESSAGE: usize = 3;
        const REPLY_PRIMING: usize = 3;
        let mut total = REPLY_PRIMING;
        for m in messages {
            total += PER_MESSAGE;
            match m {
                Message::User { content, name } => {
                    for part in content {
                        total += match part {
                            ContentPart::Text { text } => self.count(text),
                            // A low-detail image costs a fixed 85 tokens at OpenAI.
                            ContentPart::Image { .. } => 85,
                        };
                    }
                    total += name.as_deref().map_or(0, |n| self.count(n) + 1);
                }
                Message::Assistant {
                    content,
                    tool_calls,
                } => {
                    total += content.as_deref().map_or(0, |c| self.count(c));
                    for call in tool_calls {
                        total += self.count(&call.name) + self.count(&call.arguments) + 3;
                    }
                }
                Message::System { content } | Message::Tool { content, .. } => {
                    total += self.count(content);
                }
            }
        }
        total
    }
}

impl<T: TokenCounter + ?Sized> TokenCounter for std::sync::Arc<T> {
    fn count(&self, text: &str) -> usize {
        (**self).count(text)
    }
}

/// Estimates tokens as `ceil(chars / chars_per_token)` (default 4 characters per token, the usual
/// figure for English with GPT-style BPE vocabularies). Counts Unicode scalar values, not bytes, so
/// non-Latin text is not over-counted by its UTF-8 length. Expect about ±20% on English prose and
/// undercounts on code or CJK text; use the exact counter when a tokenizer file is available.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimateCounter {
    chars_per_token: f32,
}

impl EstimateCounter {
    /// An estimator with a custom ratio (clamped to at least 0.5).
    pub fn new(chars_per_token: f32) -> Self {
        Self {
            chars_per_token: if chars_per_token.is_finite() {
                chars_per_token.max(0.5)
            } else {
                4.0
            },
        }
    }
}

impl Default for EstimateCounter {
    fn default() -> Self {
        Self::new(4.0)
    }
}

impl TokenCounter for EstimateCounter {
    fn count(&self, text: &str) -> usize {
        let chars = text.chars().count();
        (chars as f32 / self.chars_per_token).ceil() as usize
    }
}

#[cfg(feature = "tokenizer")]
pub use exact::TokenizerCounter;

#[cfg(feature = "tokenizer")]
mod exact {
    use std::path::Path;

    use wattos_core::{Error, Result};

    use super::TokenCounter;

    /// Exact counts from a Hugging Face tokenizer (`tokenizer.json`), without special tokens.
    pub struct TokenizerCounter {
        tokenizer: tokenizers::Tokenizer,
    }

    impl std::fmt::Debug for TokenizerCounter {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TokenizerCounter").finish_non_exhaustive()
        }
    }

    impl TokenizerCounter {
        /// Loads `tokenizer.json` from `path`.
        ///
        /// # Errors
        /// [`wattos_core::ErrorKind::InvalidInput`] when the file is missing or not a tokenizer.
        pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
            let path = path.as_ref();
            let tokenizer = tokenizers::Tokenizer::from_file(path).map_err(|e| {
                Error::invalid_field("tokenizer", format!("cannot load {}: {e}", path.display()))
            })?;
            Ok(Self { tokenizer })
        }

        /// Parses a tokenizer from its JSON text.
        ///
        /// # Errors
        /// [`wattos_core::ErrorKind::InvalidInput`] when the JSON is not a tokenizer.
        pub fn from_json(json: &str) -> Result<Self> {
            let tokenizer: tokenizers::Tokenizer = json.parse().map_err(|e| {
                Error::invalid_field("tokenizer", format!("invalid tokenizer.json: {e}"))
            })?;
            Ok(Self { tokenizer })
        }
    }

    impl TokenCounter for TokenizerCounter {
        fn count(&self, text: &str) -> usize {
            match self.tokenizer.encode_fast(text, false) {
                Ok(enc) => enc.len(),
                // Tokenizers only fail on misconfiguration; fall back to the estimate rather than 0.
                Err(_) => super::EstimateCounter::default().count(text),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const WORD_LEVEL: &str = r#"{
          "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
          "normalizer": {"type": "Lowercase"},
          "pre_tokenizer": {"type": "Whitespace"},
          "post_processor": null, "decoder": null,
          "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "world": 2, "!": 3},
                    "unk_token": "[UNK]"}
        }"#;

        #[test]
        fn counts_exactly() {
            let c = TokenizerCounter::from_json(WORD_LEVEL).unwrap();
            assert_eq!(c.count("Hello world!"), 3);
            assert_eq!(c.count("hello unknownword"), 2);
            assert!(TokenizerCounter::from_json("{}").is_err());
            assert!(TokenizerCounter::from_file("/nonexistent/tokenizer.json").is_err());
        }
    }
}
