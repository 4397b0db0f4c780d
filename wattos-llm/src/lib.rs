//! LLM providers and router for WattOS. See the crate README.

pub mod router;
pub mod state;
pub mod usage;
