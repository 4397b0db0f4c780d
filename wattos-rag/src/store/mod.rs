//! Vector store backends: [`EmbeddedStore`] (default, persistent, no services) and, behind
//! features, PostgreSQL + pgvector.

mod embedded;
#[cfg(feature = "pgvector")]
mod pgvector;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
#[cfg(feature = "pgvector")]
pub use pgvector::PgVectorStore;
