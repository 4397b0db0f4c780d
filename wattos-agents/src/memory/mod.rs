//! Memory: a token-budget conversation window (short term) and a per-tenant, per-user store (long term).

mod store;
mod window;

pub use store::{InMemoryMemoryStore, Memory, MemoryHit, MemoryStore};
pub use window::{ConversationWindow, TokenCounter, approximate_tokens};
