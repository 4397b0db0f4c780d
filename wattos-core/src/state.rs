//! Shared-state seams for rate limits, budgets and caches.
//!
//! The router (and anything else that must count across requests or processes) talks to three small,
//! object-safe traits:
//!
//! * [`WindowStore`]: sliding-window counters for requests-per-minute and tokens-per-minute limits. A
//!   [`WindowStore::try_acquire`] over several windows is all-or-nothing, so a request that passes the
//!   tenant limit but fails the key limit consumes neither.
//! * [`BudgetStore`]: spend in integer nano-dollars with *reserve then settle*: an estimate is reserved
//!   atomically before the call (rejected if it would cross any limit) and corrected by the difference
//!   to the actual cost afterwards. Concurrent callers therefore never overspend by more than their
//!   estimation error, unlike check-then-record schemes.
//! * [`CacheStore`]: bytes with a time to live.
//!
//! Every key is a [`StateKey`]: either scoped to a tenant ([`StateKey::tenant`]) or explicitly shared
//! ([`StateKey::shared`], e.g. the limit of an upstream deployment that all tenants use). Backends
//! (in memory, Redis) live in `wattos-llm`; they must be exact across all their clients.
//!
//! ```
//! use wattos_core::state::{StateKey, usd_to_nanos};
//! use wattos_core::TenantId;
//!
//! let k = StateKey::tenant(&TenantId::new("acme")?, "rpm", &["key:k1"]);
//! assert_eq!(k.as_str(), "t:acme:rpm:key%3Ak1");
//! assert_eq!(usd_to_nanos(0.000_001_5), 1_500);
//! # Ok::<_, wattos_core::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::context::TenantId;
use crate::error::Result;

/// Nano-dollars per US dollar. Money is counted in integers so sums never drift.
pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// Converts dollars to nano-dollars, rounding up (an estimate must never come out low).
pub fn usd_to_nanos(usd: f64) -> i64 {
    if !usd.is_finite() || usd <= 0.0 {
        return 0;
    }
    let n = (usd * NANOS_PER_USD as f64).ceil();
    if n >= i64::MAX as f64 {
        i64::MAX
    } else {
        n as i64
    }
}

/// Converts nano-dollars to dollars.
pub fn nanos_to_usd(nanos: i64) -> f64 {
    nanos as f64 / NANOS_PER_USD as f64
}

fn escape_into(out: &mut String, part: &str) {
    for c in part.chars() {
        match c {
            ':' => out.push_str("%3A"),
            '%' => out.push_str("%25"),
            c if c.is_whitespace() || c.is_control() => {
                out.push_str(&format!("%{:02X}", u32::from(c) & 0xff))
            }
            c => out.push(c),
        }
    }
}

/// A key in a shared-state backend. Its parts are escaped so that no two distinct keys collide and no
/// part can reach into another tenant's namespace.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey(Arc<str>);

impl StateKey {
    fn build(prefix: &str, scope: &str, parts: &[&str]) -> Self {
        let mut s = String::with_capacity(32);
        s.push_str(prefix);
        escape_into(&mut s, scope);
        for p in parts {
            s.push(':');
            escape_into(&mut s, p);
        }
        Self(Arc::from(s))
    }

    /// A key owned by `tenant`: `t:<tenant>:<scope>:<part>...`.
    pub fn tenant(tenant: &TenantId, scope: &str, parts: &[&str]) -> Self {
        let mut prefix = String::with_capacity(tenant.as_str().len() + 3);
        prefix.push_str("t:");
        prefix.push_str(tenant.as_str());
        prefix.push(':');
        Self::build(&prefix, scope, parts)
    }

    /// A key shared by all tenants (for example an upstream deployment's own rate limit):
    /// `g:<scope>:<part>...`.
    pub fn shared(scope: &str, parts: &[&str]) -> Self {
        Self::build("g:", scope, parts)
    }

    /// The rendered key (backends may add their own prefix).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateKey({})", self.0)
    }
}

/// One sliding-window charge: add `amount` to `key` if the sum over the last `window` stays within
/// `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCharge {
    /// The counter.
    pub key: StateKey,
    /// Most units admitted per window.
    pub limit: u64,
    /// Window length (e.g. one minute for RPM/TPM).
    pub window: Duration,
    /// Units this request takes (1 for RPM, estimated tokens for TPM).
    pub amount: u64,
}

/// The outcome of [`WindowStore::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Every charge was applied.
    Admitted,
    /// Nothing was applied: the charge at `index` would exceed its limit.
    Rejected {
        /// Index of the first failing charge.
        index: usize,
        /// When enough of that window will have expired to admit a request of this size (a hint).
        retry_after: Duration,
    },
}

/// Sliding-window counters (rate limits). Implementations must apply a multi-charge acquisition
/// atomically: all charges or none.
#[async_trait]
pub trait WindowStore: Send + Sync {
    /// Applies every charge if each stays within its limit; otherwise applies none.
    ///
    /// # Errors
    /// Backend failures ([`crate::ErrorKind::Unavailable`]).
    async fn try_acquire(&self, charges: &[WindowCharge]) -> Result<Admission>;

    /// Adds `delta` (possibly negative) to the current window of `key` without a limit check, e.g. to
    /// replace a token estimate by the actual count.
    ///
    /// # Errors
    /// Backend failures.
    async fn adjust(&self, key: &StateKey, window: Duration, delta: i64) -> Result<()>;

    /// The sum over the last `window` for `key`.
    ///
    /// # Errors
    /// Backend failures.
    async fn current(&self, key: &StateKey, window: Duration) -> Result<i64>;
}

/// One budget a reservation must fit: `key`'s committed spend plus the reservation must stay at or
/// below `limit_nanos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLine {
    /// The budget counter (usually includes the period, e.g. `...:2026-11`).
    pub key: StateKey,
    /// The limit in nano-dollars.
    pub limit_nanos: i64,
    /// Expire the counter this long after it is created (the period length); `None` keeps it.
    pub ttl: Option<Duration>,
}

/// The outcome of [`BudgetStore::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The amount was added to every line.
    Reserved,
    /// Nothing was added: line `index` would go over its limit.
    Exceeded {
        /// Index of the first failing line.
        index: usize,
        /// That line's committed spend (settled spend plus open reservations), nano-dollars.
        committed_nanos: i64,
    },
}

/// Spend counters with atomic reserve-then-settle.
#[async_trait]
pub trait BudgetStore: Send + Sync {
    /// Adds `amount_nanos` to every line if each stays within its limit; otherwise adds nothing.
    ///
    /// # Errors
    /// Backend failures.
    async fn reserve(&self, lines: &[BudgetLine], amount_nanos: i64) -> Result<Reservation>;

    /// Adds `delta_nanos` (actual minus reserved; negative to release) to every key, unconditionally.
    ///
    /// # Errors
    /// Backend failures.
    async fn settle(&self, keys: &[StateKey], delta_nanos: i64) -> Result<()>;

    /// The committed spend of `key` (settled spend plus open reservations).
    ///
    /// # Errors
    /// Backend failures.
    async fn committed(&self, key: &StateKey) -> Result<i64>;
}

/// Bytes with a time to live.
#[async_trait]
pub trait CacheStore: Send + Sync {
    /// The value at `key`, unless missing or expired.
    ///
    /// # Errors
    /// Backend failures.
    async fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>>;

    /// Stores `value` at `key` for `ttl`.
    ///
    /// # Errors
    /// Backend failures.
    async fn put(&self, key: &StateKey, value: Vec<u8>, ttl: Duration) -> Result<()>;
}

macro_rules! forward_arc {
    ($tr:ident { $( async fn $m:ident(&self $(, $a:ident : $t:ty)*) -> $r:ty; )* }) => {
        #[async_trait]
        impl<T: $tr + ?Sized> $tr for Arc<T> {
            $( async fn $m(&self $(, $a: $t)*) -> $r { (**self).$m($($a),*).await } )*
        }
    };
}

forward_arc!(WindowStore {
    async fn try_acquire(&self, charges: &[WindowCharge]) -> Result<Admission>;
    async fn adjust(&self, key: &StateKey, window: Duration, delta: i64) -> Result<()>;
    async fn current(&self, key: &StateKey, window: Duration) -> Result<i64>;
});

forward_arc!(BudgetStore {
    async fn reserve(&self, lines: &[BudgetLine], amount_nanos: i64) -> Result<Reservation>;
    async fn settle(&self, keys: &[StateKey], delta_nanos: i64) -> Result<()>;
    async fn committed(&self, key: &StateKey) -> Result<i64>;
});

forward_arc!(CacheStore {
    async fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>>;
    async fn put(&self, key: &StateKey, value: Vec<u8>, ttl: Duration) -> Result<()>;
});

/// Compile-time check that the traits stay object safe.
#[allow(dead_code)]
fn _object_safe(_: &dyn WindowStore, _: &dyn BudgetStore, _: &dyn CacheStore) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_escaped_and_tenant_scoped() {
        let a = TenantId::new("a").unwrap();
        let k1 = StateKey::tenant(&a, "rpm", &["x:y"]);
        let k2 = StateKey::tenant(&a, "rpm", &["x", "y"]);
        assert_ne!(k1, k2);
        assert_eq!(k2.as_str(), "t:a:rpm:x:y");
        assert_eq!(StateKey::shared("dep", &["100%"]).as_str(), "g:dep:100%25");
        let b = TenantId::new("b").unwrap();
        assert_ne!(
            StateKey::tenant(&a, "s", &["k"]),
            StateKey::tenant(&b, "s", &["k"])
        );
    }

    #[test]
    fn money_rounds_up() {
        assert_eq!(usd_to_nanos(1.0), NANOS_PER_USD);
        assert_eq!(usd_to_nanos(-1.0), 0);
        assert_eq!(usd_to_nanos(f64::NAN), 0);
        assert_eq!(usd_to_nanos(1e-10), 1);
        assert!((nanos_to_usd(2_500_000_000) - 2.5).abs() < 1e-12);
    }
}
