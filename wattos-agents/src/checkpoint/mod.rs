//! [`Checkpointer`](wattos_core::checkpoint::Checkpointer) implementations: in memory, SQLite, Postgres.

mod memory;

pub use memory::InMemoryCheckpointer;
