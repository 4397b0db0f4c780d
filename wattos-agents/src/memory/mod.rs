//! Memory: a token-budget conversation window (short term) and a namespaced, searchable store per
//! tenant and user (long term).
//!
//! Long-term memory ([`MemoryStore`]): [`InMemoryMemoryStore`] and [`SqlMemoryStore`] (SQLite or
//! Postgres) rank semantically through a [`MemoryIndex`] (any embedding model plus any vector store)
//! or by keywords; [`conformance`] checks any implementation. Agents use it through
//! [`MemoryTools`] (`remember` / `recall`), scoped to the run's caller.

pub mod conformance;
mod index;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod store;
mod tools;
mod window;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlMemoryStore;
pub use store::{
    InMemoryMemoryStore, MAX_LIMIT, MAX_PATH_DEPTH, MAX_TEXT_BYTES, MatchKind, Memory, MemoryHit,
    MemoryIndex, MemoryQuery, MemoryStore, Namespace, NewMemory, RESERVED_PREFIX,
};
pub use tools::{MemoryTools, recall_message};
pub use window::{ConversationWindow, TokenCounter, approximate_tokens};
