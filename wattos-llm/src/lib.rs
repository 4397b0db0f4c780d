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
//! * `local` (feature `local`): SmolLM2-135M-Instruct chat (GGUF, requantized at load) and
//!   all-MiniLM-L6-v2 embeddings with candle, from the model cache `scripts/fetch-models.sh` fills.
//! * [`router`]: deployments, model groups, routing strategies, fallbacks, per-deployment circuit
//!   breakers, retries, rate limits, budgets, response cache and usage accounting; a router is itself
//!   a `ChatModel`, so routers nest.
//! * [`state`]: shared state for limits, budgets and caches (in memory; Redis with feature `redis`).
//! * [`usage`]: usage and cost records (in memory; Postgres with feature `postgres`).
//! * [`sse`]: incremental SSE and NDJSON parsers.
//! * [`pricing`]: price table; every response carries its cost when the price is known.
//! * [`tokens`]: token counting (estimate, or exact with the `tokenizer` feature).
//! * `testing` (feature `test-utils`): mock vendor servers and the provider conformance suite.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "remote")]
pub mod http;
#[cfg(feature = "local")]
pub mod local;
pub mod pricing;
pub mod provider;
pub mod registry;
pub mod router;
pub mod sse;
pub mod state;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod tokens;
pub mod usage;
