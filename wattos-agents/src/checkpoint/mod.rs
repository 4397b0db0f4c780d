//! [`Checkpointer`](wattos_core::checkpoint::Checkpointer) implementations: in memory, SQLite
//! (feature `sqlite`), Postgres (feature `postgres`).
//!
//! [`conformance`] runs the same behavioural checks against any implementation.

pub mod conformance;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::InMemoryCheckpointer;
#[cfg(feature = "postgres")]
pub use postgres::PostgresCheckpointer;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteCheckpointer, SqliteOptions, SqliteSynchronous};
