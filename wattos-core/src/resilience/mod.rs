//! Resilience primitives, usable on their own and as tower layers: [`CircuitBreaker`],
//! [`RetryPolicy`], [`with_timeout`] and [`Bulkhead`]. All fail with typed [`crate::Error`]s.

mod admission;
mod breaker;
mod bulkhead;
mod clock;
mod retry;
mod timeout;

pub use admission::{Admission, AdmissionLimits, AdmissionPermit};
pub use breaker::{
    BreakerConfig, BreakerPermit, BreakerState, CircuitBreaker, CircuitBreakerLayer,
    CircuitBreakerService,
};
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadLayer, BulkheadPermit, BulkheadService};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, system_clock};
pub use retry::{Jitter, RetryLayer, RetryPolicy, RetryService};
pub use timeout::{TimeoutLayer, TimeoutService, with_timeout};
