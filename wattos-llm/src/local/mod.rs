//! Local models on the CPU with candle (cargo feature `local`).
//!
//! - [`MiniLmEmbedder`]: all-MiniLM-L6-v2 sentence embeddings (384 dimensions), matching
//!   sentence-transformers to 1e-4.
//! - [`SmolLm`]: SmolLM2-135M-Instruct chat from a GGUF file, requantized at load for fast decoding,
//!   with the model's own chat template, sampling controls, stop sequences, native token streaming and
//!   prompt-based tool calling.
//!
//! Both load from the WattOS model cache that `scripts/fetch-models.sh` fills (never from the
//! network at run time); [`default_models_dir`] resolves its location.
//!
//! ```no_run
//! use wattos_llm::local::{MiniLmEmbedder, SmolLm, SmolLmOptions, default_models_dir};
//!
//! # fn run() -> Result<(), wattos_llm::local::LoadError> {
//! let dir = default_models_dir();
//! let embedder = MiniLmEmbedder::from_models_dir(&dir)?;
//! let chat = SmolLm::from_models_dir(&dir, SmolLmOptions::default())?;
//! # Ok(()) }
//! ```

mod chat_template;
mod constrain;
mod error;
#[cfg(feature = "fastembed")]
mod fastembed;
mod generate;
mod gguf_tokenizer;
mod grammar;
#[cfg(feature = "hub")]
mod hub;
mod llama;
mod minilm;
mod prompt;
mod queue;
mod smollm;
mod stop;
mod tool_calls;

use std::path::PathBuf;

pub use error::LoadError;
#[cfg(feature = "fastembed")]
pub use fastembed::FastEmbedder;
#[cfg(feature = "hub")]
pub use hub::{HubCache, ModelRef};
pub use minilm::{MINILM_CACHE_SUBDIR, MINILM_FILES, MINILM_MAX_TOKENS, MiniLmEmbedder};
pub use queue::{DEFAULT_MAX_QUEUE, QueueTicket, WaitQueue};
pub use smollm::{SMOLLM_CACHE_FILE, SmolLm, SmolLmOptions, WeightFormat};
pub use tool_calls::{parse_tool_calls, render_tool_prompt};

/// The model cache folder: `$WATTOS_MODELS__DIR`, else `$XDG_CACHE_HOME/wattos/models`, else
/// `~/.cache/wattos/models` (the same rule as `scripts/fetch-models.sh`).
pub fn default_models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WATTOS_MODELS__DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("wattos").join("models")
}
