//! Shared-state backends (filled in by the router work): atomic counters and windows for rate limits
//! and budgets, in memory or in Redis.
