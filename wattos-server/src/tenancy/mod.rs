//! Tenancy backends: the SQL store (SQLite embedded, Postgres shared) for tenants, configuration,
//! API keys and the hash-chained audit log, and the admin API built on them.

pub mod admin;
mod chain;
mod sql;

pub use chain::{ChainVerifier, GENESIS_HASH, link_hash};
pub use sql::{Backend, SqlStore};
