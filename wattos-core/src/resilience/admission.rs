//! Admission for work that outlives its request (detached agent runs, background jobs): a global
//! cap and a per-tenant cap on how much runs at once. A permit is taken before the work is
//! recorded or started and travels with the work, so a client that hangs up never lets work
//! escape the limit; a full limit refuses at once, with a `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::context::TenantId;
use crate::error::{Error, Result};

/// Limits of an [`Admission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Work running at once, all tenants together.
    pub global: usize,
    /// Work running at once per tenant.
    pub per_tenant: usize,
    /// The `Retry-After` given with a refusal.
    pub retry_after: Duration,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            global: 256,
            per_tenant: 16,
            retry_after: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    tenants: HashMap<TenantId, usize>,
}

/// Counts running work against global and per-tenant limits. Clones share the counts.
///
/// ```
/// use wattos_core::resilience::{Admission, AdmissionLimits};
/// use wattos_core::{ErrorKind, TenantId};
/// let a = Admission::new("agent runs", AdmissionLimits { global: 3, per_tenant: 1, ..Default::default() });
/// let acme = TenantId::new("acme").unwrap();
/// let held = a.try_admit(&acme).unwrap();
/// // The tenant's one slot is taken: 429 rate_limited with a Retry-After.
/// assert_eq!(a.try_admit(&acme).unwrap_err().kind(), ErrorKind::RateLimited);
/// drop(held);
/// assert!(a.try_admit(&acme).is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct Admission {
    what: Arc<str>,
    limits: AdmissionLimits,
    counts: Arc<Mutex<Counts>>,
}

/// A unit of admitted work; its slot is given back on drop.
#[derive(Debug)]
pub struct AdmissionPermit {
    tenant: TenantId,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for AdmissionPermit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.tenants.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.tenants.remove(&self.tenant);
            }
        }
    }
}

impl Admission {
    /// An admission for `what` (named in refusals, e.g. "agent runs").
    pub fn new(what: impl Into<Arc<str>>, limits: AdmissionLimits) -> Self {
        Self {
            what: what.into(),
            limits,
            counts: Arc::default(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// Work running now: all tenants, and `tenant`'s.
    pub fn running(&self, tenant: &TenantId) -> (usize, usize) {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        (c.total, c.tenants.get(tenant).copied().unwrap_or(0))
    }

    /// Admits one unit of `tenant`'s work, or refuses at once.
    ///
    /// # Errors
    /// `rate_limited` (429) when the tenant is at its limit, `unavailable` (503) when the server
    /// is; both with [`AdmissionLimits::retry_after`].
    pub fn try_admit(&self, tenant: &TenantId) -> Result<AdmissionPermit> {
        self.try_admit_within(tenant, self.limits.per_tenant)
    }

    /// As [`Admission::try_admit`], with `per_tenant` as this tenant's limit instead of
    /// [`AdmissionLimits::per_tenant`] (for limits that are part of each tenant's configuration).
    ///
    /// # Errors
    /// As [`Admission::try_admit`].
    pub fn try_admit_within(
        &self,
        tenant: &TenantId,
        per_tenant: usize,
    ) -> Result<AdmissionPermit> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mine = c.tenants.get(tenant).copied().unwrap_or(0);
        if mine >= per_tenant {
            return Err(Error::rate_limited(format!(
                "the tenant already has {mine} {} running (limit {per_tenant})",
                self.what
            ))
            .with_retry_after(self.limits.retry_after));
        }
        if c.total >= self.limits.global {
            return Err(Error::unavailable(format!(
                "the server is running its limit of {} {}",
                self.limits.global, self.what
            ))
            .with_retry_after(self.limits.retry_after));
        }
        c.total += 1;
        *c.tenants.entry(tenant.clone()).or_default() += 1;
        Ok(AdmissionPermit {
            tenant: tenant.clone(),
            counts: self.counts.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn global_and_tenant_limits_with_retry_after() {
        let a = Admission::new(
            "runs",
            AdmissionLimits {
                global: 2,
                per_tenant: 1,
                retry_after: Duration::from_secs(2),
            },
        );
        let t1 = TenantId::new("t1").unwrap();
        let t2 = TenantId::new("t2").unwrap();
        let t3 = TenantId::new("t3").unwrap();
        let p1 = a.try_admit(&t1).unwrap();
        let e = a.try_admit(&t1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        let p2 = a.try_admit(&t2).unwrap();
        let e = a.try_admit(&t3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(a.running(&t1), (2, 1));
        drop(p1);
        assert_eq!(a.running(&t1), (1, 0));
        let _p3 = a.try_admit(&t3).unwrap();
        drop(p2);
        assert_eq!(a.running(&t2), (1, 0));
    }

    #[test]
    fn a_per_call_tenant_limit_and_a_poisoned_lock() {
        let a = Admission::new(
            "requests",
            AdmissionLimits {
                global: usize::MAX,
                per_tenant: usize::MAX,
                retry_after: Duration::from_secs(1),
            },
        );
        let t = TenantId::new("t").unwrap();
        let held = a.try_admit_within(&t, 1).unwrap();
        let e = a.try_admit_within(&t, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert!(e.message().contains("limit 1"), "{e}");
        drop(held);
        // A panic while the lock is held does not change what the counts say.
        let counts = a.counts.clone();
        let _ = std::thread::spawn(move || {
            let _guard = counts.lock();
            panic!("poison");
        })
        .join();
        let _p = a.try_admit_within(&t, 1).unwrap();
        assert!(a.try_admit_within(&t, 1).is_err());
    }
}
