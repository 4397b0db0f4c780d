//! Shared-state backends for the router: implementations of [`wattos_core::state`]'s
//! [`WindowStore`](wattos_core::state::WindowStore), [`BudgetStore`](wattos_core::state::BudgetStore)
//! and [`CacheStore`](wattos_core::state::CacheStore).
//!
//! * [`MemoryState`] (default): exact within one process, no dependencies.
//! * `RedisState` (feature `redis`): Lua scripts, atomic and exact across every process sharing the
//!   Redis server.

mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_pool;

#[cfg(feature = "redis")]
pub use self::redis::RedisState;
pub use memory::MemoryState;
#[cfg(feature = "redis")]
pub use redis_pool::RedisPool;
