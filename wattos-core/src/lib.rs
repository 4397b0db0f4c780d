//! # wattos-core
//!
//! The shared foundation of WattOS. Every other crate depends on this one and on nothing above it:
//!
//! * [`Error`] / [`ErrorKind`]: one error model with retry classification and stable codes.
//! * [`RequestContext`]: tenant, principal, request id, trace context and deadline, passed into every
//!   trait call; it cannot exist without a [`TenantId`].
//! * [`config`]: typed configuration from a file plus `WATTOS_*` variables, validated all at once.
//! * [`resilience`]: circuit breaker, retry, timeout and bulkhead, alone or as tower layers.
//! * [`telemetry`]: JSON logs with request and tenant ids, shared metric names.
//! * [`health`]: dependency checks folded into healthy / degraded / unhealthy.
//! * The traits that cross crates: [`llm::ChatModel`], [`embedding::EmbeddingModel`].
//!
//! ```
//! use wattos_core::{RequestContext, TenantId, resilience::{CircuitBreaker, BreakerConfig}};
//!
//! let ctx = RequestContext::system(TenantId::new("acme")?);
//! let breaker = CircuitBreaker::new("upstream", BreakerConfig::default());
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let answer = breaker.call(async { Ok::<_, wattos_core::Error>(42) }).await?;
//! assert_eq!(answer, 42);
//! # Ok::<_, wattos_core::Error>(())
//! # })?;
//! # Ok::<_, wattos_core::Error>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod checkpoint;
pub mod config;
mod context;
pub mod embedding;
pub mod error;
pub mod health;
pub mod llm;
pub mod resilience;
pub mod state;
pub mod telemetry;
pub mod tenancy;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod tool;
pub mod vector_store;

pub use context::{Principal, PrincipalKind, RequestContext, RequestId, TenantId, TraceContext};
pub use error::{BoxError, Error, ErrorKind, Result, UpstreamDetails};
