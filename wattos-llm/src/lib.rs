//! LLM providers and router for WattOS. See the crate README.
