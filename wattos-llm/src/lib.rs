//! # wattos-llm
//!
//! LLM providers behind [`wattos_core::llm::ChatModel`] and [`wattos_core::embedding::EmbeddingModel`],
//! so that switching between OpenAI, Azure OpenAI, Anthropic, Gemini, Ollama, any OpenAI-compatible
//! server and a local model is a configuration change ([`registry`]).
//!
//! * [`provider`]: one module per vendor, each behind a cargo feature (`openai`, `azure`, `anthropic`,
//!   `gemini`, `ollama`); each speaks the vendor's wire format and maps its errors to
//!   [`wattos_core::ErrorKind`]s (auth, not found, invalid input, context length, rate limits with
//!   `Retry-After`, overload, timeouts, connection failures).
//! * [`sse`]: incremental SSE and NDJSON parsers.
//! * [`pricing`]: price table; every response carries its cost when the price is known.
//! * [`tokens`]: token counting (estimate, or exact with the `tokenizer` feature).
//! * `testing` (feature `test-utils`): mock vendor servers and the provider conformance suite.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "remote")]
pub mod http;
pub mod pricing;
pub mod provider;
pub mod registry;
pub mod sse;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod tokens;
