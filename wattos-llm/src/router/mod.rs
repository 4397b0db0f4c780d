//! The router: a [`ChatModel`](wattos_core::llm::ChatModel) (and an
//! [`EmbeddingModel`](wattos_core::embedding::EmbeddingModel)) that spreads requests over
//! *deployments* grouped into *model groups*.
//!
//! For each request the router
//! 1. resolves `ChatRequest::model` (a group name or alias) and checks the calling tenant's
//!    allow-list, from its [`PolicySource`] when one is set (asked on every call, so every caller
//!    of the router is held to the tenant's policy), else from the policy set on the router;
//! 2. applies the tenant's and principal's RPM/TPM limits (all-or-nothing, in the shared
//!    [`WindowStore`](wattos_core::state::WindowStore));
//! 3. serves from the optional response cache;
//! 4. asks the group's [`RoutingStrategy`] for an eligible deployment (breaker not open, not cooling
//!    down after a 429, context window fits, deployment limits and bulkhead allow), reserves the
//!    estimated cost against the tenant, key and model budgets, and calls it under a per-attempt
//!    timeout capped by the request deadline;
//! 5. on a retryable failure tries the next deployment, then the group's fallback groups; on
//!    `ContextLengthExceeded` jumps to the larger-context groups; non-retryable errors (bad input,
//!    auth) are returned at once. When the whole chain failed it waits (backoff with jitter, at
//!    least the Retry-After) and runs another round, up to `retry.max_attempts` rounds and
//!    `max_total_attempts` upstream calls;
//! 6. settles the budget with the actual cost, corrects token counters, feeds the breaker, the
//!    latency EWMA and passive health, records metrics and a [`UsageRecord`](crate::usage::UsageRecord).
//!
//! Streams may fall back until their first delta; after it, a failure is passed through as an error
//! item. See `docs/router.md` for every strategy.

mod builder;
mod cache;
mod chat;
pub mod config;
mod deployment;
mod embed;
mod engine;
mod estimate;
mod health;
mod policy;
mod shared;
mod strategy;
mod tenants;

pub use builder::RouterBuilder;
pub use chat::Router;
pub use deployment::{
    ChatDeployment, Deployment, DeploymentLimits, EmbeddingDeployment, ModelGroup, Price,
};
pub use embed::EmbeddingRouter;
pub use engine::{ROUTER_FALLBACKS, RouterSettings};
pub use health::{DeploymentHealth, ProbeOutcome, RouterHealth};
pub use policy::{
    Budget, BudgetPeriod, RateLimits, TenantPolicy, TokenBudget, tenant_budget_key,
    tenant_token_budget_key,
};
pub use shared::RouterHealthCheck;
pub use strategy::{
    Candidate, LeastInFlight, LowestCost, LowestLatency, PriorityOrder, RoundRobin,
    RoutingStrategy, Strategy, WeightedRandom,
};
pub use tenants::{PolicySource, TenantConfigPolicies, UNLIMITED_MONTHLY_USD, policy_for_config};
