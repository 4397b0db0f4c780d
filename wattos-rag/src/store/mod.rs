//! Vector store backends: [`EmbeddedStore`] (default, persistent, no services) and, behind
//! features, PostgreSQL + pgvector and Qdrant.

mod embedded;
#[cfg(feature = "pgvector")]
mod pg_fulltext;
#[cfg(feature = "pgvector")]
mod pgvector;
#[cfg(feature = "qdrant")]
mod qdrant;

pub use embedded::{EmbeddedOptions, EmbeddedStore, SearchPolicy, SearchStats};
#[cfg(feature = "pgvector")]
pub use pg_fulltext::PgFullText;
#[cfg(feature = "pgvector")]
pub use pgvector::PgVectorStore;
#[cfg(feature = "qdrant")]
pub use qdrant::QdrantStore;
