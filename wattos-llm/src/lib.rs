//! LLM providers and router for WattOS. See the crate README.
#[cfg(feature = "local")]
pub mod local;
