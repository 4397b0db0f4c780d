//! Remote providers, one module per vendor, each behind its own cargo feature.
//!
//! Every provider implements [`wattos_core::llm::ChatModel`] (and
//! [`wattos_core::embedding::EmbeddingModel`] where the vendor has embeddings), speaks the vendor's
//! documented wire format, and maps the vendor's errors into [`wattos_core::Error`] kinds so that
//! retries, breakers and routers can act on them.

mod common;
#[cfg(feature = "remote")]
mod stream;

pub use common::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpSettings, ProviderOptions};

#[cfg(feature = "anthropic")]
pub mod anthropic;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "gemini")]
pub mod gemini;
#[cfg(feature = "ollama")]
pub mod ollama;
#[cfg(feature = "openai")]
pub mod openai;

/// Vector sizes of OpenAI's embedding models (and a few common open models served by compatible
/// servers), used when the configuration does not say.
pub fn openai_known_dimensions(model: &str) -> Option<usize> {
    Some(match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => 1536,
        "text-embedding-3-large" => 3072,
        "nomic-embed-text" | "nomic-ai/nomic-embed-text-v1.5" => 768,
        "all-minilm" | "sentence-transformers/all-MiniLM-L6-v2" => 384,
        "BAAI/bge-small-en-v1.5" => 384,
        "BAAI/bge-base-en-v1.5" => 768,
        "BAAI/bge-large-en-v1.5" | "mxbai-embed-large" => 1024,
        _ => return None,
    })
}
