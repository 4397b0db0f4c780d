//! The attempt loop shared by the chat and embedding routers: admission (allow-list, tenant and key
//! limits), candidate selection, per-attempt guards (breaker, bulkhead, budget, deployment limits),
//! timeouts, failover, retry rounds, and accounting when an attempt ends.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use wattos_core::llm::{Cost, Usage};
use wattos_core::resilience::{BreakerPermit, BreakerState, RetryPolicy};
use wattos_core::state::{
    Admission, BudgetStore, Reservation, StateKey, WindowCharge, WindowStore, nanos_to_usd,
};
use wattos_core::telemetry::names;
use wattos_core::{Error, ErrorKind, RequestContext, Result, TenantId};

use super::health::{InFlight, Slot};
use super::policy::TenantPolicy;
use super::strategy::{Candidate, RoutingStrategy};
use crate::usage::{UsageOutcome, UsageRecord, UsageSink};

/// Counter: router fallbacks from one model group to another, by `from` and `to` group.
pub const ROUTER_FALLBACKS: &str = "llm_router_fallbacks_total";

const MINUTE: Duration = Duration::from_secs(60);

/// Knobs of the attempt loop.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterSettings {
    /// Rounds over the whole fallback chain (`max_attempts`) and the backoff between rounds
    /// (exponential, jittered, at least the largest Retry-After seen, never past the deadline).
    pub retry: RetryPolicy,
    /// Timeout of one upstream attempt (for streams: until the first delta). A deployment's own
    /// timeout overrides it; the request deadline always caps it.
    pub attempt_timeout: Duration,
    /// Hard cap on upstream calls per request, across all rounds and groups (no retry storms).
    pub max_total_attempts: u32,
    /// Longest silence allowed between two stream deltas after the first; `None` waits forever.
    pub stream_idle_timeout: Option<Duration>,
    /// Output tokens assumed for estimates when a request sets no `max_tokens`.
    pub default_output_tokens: u32,
    /// Longest cooldown an upstream Retry-After can impose on a deployment.
    pub max_cooldown: Duration,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            retry: RetryPolicy {
                max_attempts: 2,
                base_delay: Duration::from_millis(250),
                max_delay: Duration::from_secs(10),
                ..RetryPolicy::default()
            },
            attempt_timeout: Duration::from_secs(60),
            max_total_attempts: 8,
            stream_idle_timeout: Some(Duration::from_secs(60)),
            default_output_tokens: 512,
            max_cooldown: Duration::from_secs(60),
        }
    }
}

pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) slots: Vec<usize>,
    pub(crate) strategy: Arc<dyn RoutingStrategy>,
    pub(crate) fallbacks: Vec<usize>,
    pub(crate) context_fallbacks: Vec<usize>,
}

/// Token estimate of one request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Estimate {
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
}

impl Estimate {
    pub(crate) fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: 0,
        }
    }
}

/// A request that passed request-level admission.
pub(crate) struct Admitted {
    pub(crate) policy: Arc<TenantPolicy>,
    pub(crate) group: usize,
    pub(crate) est: Estimate,
    /// Request-level TPM counters charged with the estimate.
    pub(crate) tpm_keys: Vec<StateKey>,
    /// The tenant's token budget counter, reserved with the estimate.
    pub(crate) token_budget_key: Option<StateKey>,
    pub(crate) started: Instant,
}

pub(crate) struct Engine<M: ?Sized> {
    pub(crate) slots: Vec<Arc<Slot<M>>>,
    pub(crate) groups: Vec<Group>,
    pub(crate) names: HashMap<String, usize>,
    pub(crate) default_group: Option<usize>,
    pub(crate) settings: RouterSettings,
    pub(crate) windows: Arc<dyn WindowStore>,
    pub(crate) budgets: Arc<dyn BudgetStore>,
    pub(crate) budget_gauges: super::policy::BudgetGauges,
    pub(crate) usage: Option<Arc<dyn UsageSink>>,
    pub(crate) policies: RwLock<HashMap<TenantId, Arc<TenantPolicy>>>,
    pub(crate) default_policy: RwLock<Arc<TenantPolicy>>,
    /// Asked for the caller's policy on every call, ahead of `policies`.
    pub(crate) policy_source: Option<Arc<dyn super::tenants::PolicySource>>,
}

/// Why candidates were skipped without an upstream call.
#[derive(Default)]
struct Skips {
    rate_limited: Option<Duration>,
    context: bool,
    local: Option<Error>,
    /// Deployments passed over because their breaker is open (each counted once per call).
    open_breakers: Vec<String>,
}

impl<M: ?Sized + Send + Sync + 'static> Engine<M> {
    pub(crate) fn policy(&self, tenant: &TenantId) -> Arc<TenantPolicy> {
        let map = self.policies.read().unwrap_or_else(|p| p.into_inner());
        match map.get(tenant) {
            Some(p) => p.clone(),
            None => self
                .default_policy
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// The group serving `model` for a caller with `policy`: a name or alias, or for an empty
    /// name the tenant's default model (when this router serves it), else the router's default.
    pub(crate) fn resolve(&self, policy: &TenantPolicy, model: &str) -> Result<usize> {
        if let Some(&g) = self.names.get(model) {
            return Ok(g);
        }
        if model.is_empty() {
            let tenant_default = policy
                .default_model
                .as_deref()
                .and_then(|d| self.names.get(d).copied());
            if let Some(g) = tenant_default.or(self.default_group) {
                return Ok(g);
            }
        }
        Err(Error::not_found(format!("model '{model}' is not configured")).with_field("model"))
    }

    /// The caller's policy: the policy source's answer, else the tenant's policy set on the
    /// router, else the default policy.
    pub(crate) async fn caller_policy(&self, ctx: &RequestContext) -> Result<Arc<TenantPolicy>> {
        if let Some(source) = &self.policy_source
            && let Some(p) = source.policy(ctx).await?
        {
            return Ok(p);
        }
        Ok(self.policy(ctx.tenant()))
    }

    /// The group a call with `model` would use, checked against the caller's allow-list.
    pub(crate) async fn resolve_for(
        &self,
        ctx: &RequestContext,
        model: &str,
    ) -> Result<(usize, Arc<TenantPolicy>)> {
        let policy = self.caller_policy(ctx).await?;
        let group = self.resolve(&policy, model)?;
        if !self.allowed(&policy, group) {
            return Err(Error::forbidden(format!(
                "tenant '{}' may not use model '{}'",
                ctx.tenant(),
                self.groups[group].name
            )));
        }
        Ok((group, policy))
    }

    fn allowed(&self, policy: &TenantPolicy, group: usize) -> bool {
        match &policy.allowed_models {
            None => true,
            Some(list) => list
                .iter()
                .any(|m| self.names.get(m.as_str()) == Some(&group)),
        }
    }

    /// Request-level admission: model exists and is allowed; tenant and key limits.
    pub(crate) async fn admit(
        &self,
        ctx: &RequestContext,
        model: &str,
        est: Estimate,
    ) -> Result<Admitted> {
        let started = Instant::now();
        ctx.check_deadline()?;
        let (group, policy) = self.resolve_for(ctx, model).await?;
        let est_tokens = i64::try_from(est.total()).unwrap_or(i64::MAX);
        let token_budget_key = match &policy.token_budget {
            None => None,
            Some(b) => {
                let line = b.line(ctx.tenant(), SystemTime::now());
                match self
                    .budgets
                    .reserve(std::slice::from_ref(&line), est_tokens)
                    .await?
                {
                    Reservation::Reserved => Some(line.key),
                    Reservation::Exceeded {
                        committed_nanos, ..
                    } => {
                        return Err(Error::budget_exceeded(format!(
                            "{} token budget of {} tokens exhausted: {} used, this call needs about {}",
                            b.period.label(),
                            b.limit_tokens,
                            committed_nanos.max(0),
                            est_tokens
                        )));
                    }
                }
            }
        };
        let mut charges = Vec::new();
        policy.window_charges(ctx, est.total(), &mut charges);
        if !charges.is_empty() {
            let only: Vec<WindowCharge> = charges.iter().map(|(c, _)| c.clone()).collect();
            let admission = match self.windows.try_acquire(&only).await {
                Ok(a) => a,
                Err(e) => {
                    self.release_tokens(token_budget_key.as_ref(), est_tokens)
                        .await;
                    return Err(e);
                }
            };
            match admission {
                Admission::Admitted => {}
                Admission::Rejected { index, retry_after } => {
                    self.release_tokens(token_budget_key.as_ref(), est_tokens)
                        .await;
                    let (charge, label) = &charges[index];
                    metrics::counter!(names::RATE_LIMITED_TOTAL, "scope" => *label).increment(1);
                    return Err(Error::rate_limited(format!(
                        "{label} limit of {} reached ({})",
                        charge.limit, charge.key
                    ))
                    .with_retry_after(retry_after.max(Duration::from_millis(1))));
                }
            }
        }
        let tpm_keys = charges
            .into_iter()
            .filter(|(_, label)| label.ends_with("tpm"))
            .map(|(c, _)| c.key)
            .collect();
        Ok(Admitted {
            policy,
            group,
            est,
            tpm_keys,
            token_budget_key,
            started,
        })
    }

    /// Gives `tokens` back to the token budget counter `key`.
    async fn release_tokens(&self, key: Option<&StateKey>, tokens: i64) {
        if let Some(k) = key
            && let Err(e) = self.budgets.settle(std::slice::from_ref(k), -tokens).await
        {
            tracing::warn!(error = %e, "could not release a token budget reservation");
        }
    }

    /// Gives back the request-level token estimate of a request that produced nothing.
    pub(crate) async fn refund_request(&self, adm: &Admitted) {
        let est = i64::try_from(adm.est.total()).unwrap_or(i64::MAX);
        for k in &adm.tpm_keys {
            if let Err(e) = self.windows.adjust(k, MINUTE, -est).await {
                tracing::warn!(error = %e, "could not refund token estimate");
            }
        }
        self.release_tokens(adm.token_budget_key.as_ref(), est)
            .await;
    }

    fn eligible(&self, slot: &Slot<M>, est: &Estimate, skips: &mut Skips) -> bool {
        if let Some(window) = slot.dep.context_window
            && est.total() > u64::from(window)
        {
            skips.context = true;
            return false;
        }
        if let Some(left) = slot.cooldown_remaining() {
            skips.rate_limited = Some(skips.rate_limited.map_or(left, |d| d.min(left)));
            return false;
        }
        if slot.breaker.state() == BreakerState::Open {
            // The call is refused by the open breaker without asking it for a permit: count the
            // rejection here (once per call and deployment), like `CircuitBreaker::try_acquire`.
            if !skips.open_breakers.contains(&slot.label) {
                skips.open_breakers.push(slot.label.clone());
                metrics::counter!(names::BREAKER_REJECTIONS, "breaker" => slot.breaker.name().to_owned())
                    .increment(1);
            }
            if skips.local.is_none() {
                // At most the breaker's open period; its half-open probe may close it sooner.
                skips.local = Some(
                    Error::unavailable(format!(
                        "circuit breaker of deployment '{}' is open",
                        slot.label
                    ))
                    .with_retry_after(slot.breaker.config().reset_timeout),
                );
            }
            return false;
        }
        true
    }

    /// Runs attempts until one succeeds, a non-retryable error occurs, or the chain, the rounds, the
    /// attempt cap or the deadline is exhausted.
    pub(crate) async fn run<T, F>(
        self: &Arc<Self>,
        ctx: &RequestContext,
        adm: Admitted,
        streamed: bool,
        mut call: F,
    ) -> Result<(T, Lease<M>)>
    where
        F: FnMut(&Arc<Slot<M>>) -> BoxFuture<'static, Result<T>>,
    {
        let mut adm = Some(adm);
        let result = self.attempts(ctx, &mut adm, streamed, &mut call).await;
        if result.is_err()
            && let Some(a) = adm.as_ref()
        {
            self.refund_request(a).await;
        }
        result
    }

    async fn attempts<T, F>(
        self: &Arc<Self>,
        ctx: &RequestContext,
        adm_slot: &mut Option<Admitted>,
        streamed: bool,
        call: &mut F,
    ) -> Result<(T, Lease<M>)>
    where
        F: FnMut(&Arc<Slot<M>>) -> BoxFuture<'static, Result<T>>,
    {
        let Some(adm) = adm_slot.as_ref() else {
            return Err(Error::internal("request admitted twice"));
        };
        let est = adm.est;
        let mut rng = fastrand::Rng::new();
        let mut attempts: u32 = 0;
        let mut last_err: Option<Error> = None;
        let mut skips = Skips::default();
        let rounds = self.settings.retry.max_attempts.max(1);
        let has_budgets = adm.policy.has_budgets();

        'rounds: for round in 1..=rounds {
            let mut chain: Vec<usize> = vec![adm.group];
            let mut visited: Vec<usize> = vec![adm.group];
            let mut cursor = 0;
            let mut prev_group: Option<usize> = None;
            while cursor < chain.len() {
                let g = chain[cursor];
                cursor += 1;
                if !self.allowed(&adm.policy, g) {
                    continue;
                }
                let group = &self.groups[g];
                if let Some(p) = prev_group {
                    metrics::counter!(ROUTER_FALLBACKS,
                        "from" => self.groups[p].name.clone(), "to" => group.name.clone())
                    .increment(1);
                }
                prev_group = Some(g);
                let mut tried: Vec<usize> = Vec::with_capacity(group.slots.len());
                let mut context_exceeded = false;
                loop {
                    if let Err(e) = ctx.check_deadline() {
                        last_err = Some(e);
                        break 'rounds;
                    }
                    let mut ids: Vec<usize> = Vec::with_capacity(group.slots.len());
                    let mut cands: Vec<Candidate<'_>> = Vec::with_capacity(group.slots.len());
                    for &s in &group.slots {
                        if tried.contains(&s) {
                            continue;
                        }
                        let slot = &self.slots[s];
                        if !self.eligible(slot, &est, &mut skips) {
                            continue;
                        }
                        ids.push(s);
                        cands.push(Candidate {
                            id: &slot.label,
                            weight: slot.dep.weight,
                            priority: slot.dep.priority,
                            in_flight: slot.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                            latency: slot.latency(),
                            estimated_cost_nanos: slot.dep.price.cost_nanos(&est.usage()),
                        });
                    }
                    if ids.is_empty() {
                        break;
                    }
                    if attempts >= self.settings.max_total_attempts {
                        break 'rounds;
                    }
                    let pick = group.strategy.pick(&cands, &mut rng).min(ids.len() - 1);
                    let s = ids[pick];
                    drop(cands);
                    tried.push(s);
                    let slot = &self.slots[s];

                    // Local guards: none of these call upstream.
                    let permit = match slot.breaker.try_acquire() {
                        Ok(p) => p,
                        Err(e) => {
                            skips.local = Some(e);
                            continue;
                        }
                    };
                    let Some(in_flight) = InFlight::try_new(slot) else {
                        metrics::counter!(names::BULKHEAD_REJECTIONS, "bulkhead" => slot.label.clone())
                            .increment(1);
                        skips.local = Some(
                            Error::unavailable(format!(
                                "deployment '{}' is at its concurrency limit",
                                slot.label
                            ))
                            .with_retry_after(Duration::from_millis(100)),
                        );
                        continue;
                    };
                    let reserved_nanos = if has_budgets {
                        slot.dep.price.cost_nanos(&est.usage())
                    } else {
                        0
                    };
                    let budget_lines = if has_budgets {
                        let scoped = adm.policy.budget_lines(ctx, &group.name, SystemTime::now());
                        let lines: Vec<_> = scoped.iter().map(|l| l.line.clone()).collect();
                        match self.budgets.reserve(&lines, reserved_nanos).await? {
                            Reservation::Reserved => scoped,
                            Reservation::Exceeded {
                                index,
                                committed_nanos,
                            } => {
                                self.budget_gauges.record(&scoped[index], committed_nanos);
                                return Err(Error::budget_exceeded(format!(
                                    "budget {} exhausted: {:.6} of {:.6} USD committed, this call needs about {:.6}",
                                    lines[index].key,
                                    nanos_to_usd(committed_nanos),
                                    nanos_to_usd(lines[index].limit_nanos),
                                    nanos_to_usd(reserved_nanos)
                                )));
                            }
                        }
                    } else {
                        Vec::new()
                    };
                    let budget_keys: Vec<StateKey> =
                        budget_lines.iter().map(|l| l.line.key.clone()).collect();
                    let limits = slot.dep.limits;
                    if limits.rpm.is_some() || limits.tpm.is_some() {
                        let mut charges = Vec::with_capacity(2);
                        if let Some(limit) = limits.rpm {
                            charges.push(WindowCharge {
                                key: slot.rpm_key.clone(),
                                limit,
                                window: MINUTE,
                                amount: 1,
                            });
                        }
                        if let Some(limit) = limits.tpm {
                            charges.push(WindowCharge {
                                key: slot.tpm_key.clone(),
                                limit,
                                window: MINUTE,
                                amount: est.total(),
                            });
                        }
                        let admission = self.windows.try_acquire(&charges).await;
                        let rejected = match admission {
                            Ok(Admission::Admitted) => None,
                            Ok(Admission::Rejected { retry_after, .. }) => Some(Ok(retry_after)),
                            Err(e) => Some(Err(e)),
                        };
                        if let Some(r) = rejected {
                            if !budget_keys.is_empty() {
                                let _ = self.budgets.settle(&budget_keys, -reserved_nanos).await;
                            }
                            let ra = r?;
                            metrics::counter!(names::RATE_LIMITED_TOTAL, "scope" => "deployment")
                                .increment(1);
                            skips.rate_limited = Some(skips.rate_limited.map_or(ra, |d| d.min(ra)));
                            continue;
                        }
                    }

                    attempts += 1;
                    if attempts > 1 {
                        metrics::counter!(names::RETRIES, "deployment" => slot.label.clone())
                            .increment(1);
                    }
                    let mut lease = Lease {
                        inner: Some(LeaseInner {
                            engine: self.clone(),
                            slot: slot.clone(),
                            permit: Some(permit),
                            _in_flight: in_flight,
                            budget_keys,
                            budget_lines,
                            reserved_nanos,
                            est,
                            request_tpm_keys: Vec::new(),
                            token_budget_key: None,
                            group: group.name.clone(),
                            tenant: ctx.tenant().clone(),
                            principal: ctx.principal().subject.clone(),
                            request_id: ctx.request_id().to_string(),
                            attempt: attempts,
                            streamed,
                            at: SystemTime::now(),
                            started: Instant::now(),
                            request_started: adm.started,
                        }),
                    };
                    let mut timeout = slot.dep.timeout.unwrap_or(self.settings.attempt_timeout);
                    if let Some(left) = ctx.remaining() {
                        timeout = timeout.min(left);
                    }
                    let outcome = match tokio::time::timeout(timeout, call(slot)).await {
                        Ok(r) => r,
                        Err(_) => Err(Error::timeout(
                            format!("deployment '{}'", slot.label),
                            timeout,
                        )),
                    };
                    match outcome {
                        Ok(value) => {
                            if let (Some(a), Some(inner)) = (adm_slot.take(), lease.inner.as_mut())
                            {
                                inner.request_tpm_keys = a.tpm_keys;
                                inner.token_budget_key = a.token_budget_key;
                            }
                            return Ok((value, lease));
                        }
                        Err(e) => {
                            lease.fail(&e, None).await;
                            if e.kind() == ErrorKind::ContextLengthExceeded {
                                context_exceeded = true;
                                last_err = Some(e);
                                break;
                            }
                            if !e.is_retryable() {
                                return Err(e);
                            }
                            if e.kind() == ErrorKind::RateLimited
                                && let Some(ra) = e.retry_after()
                            {
                                slot.cool_down(ra.min(self.settings.max_cooldown));
                            }
                            last_err = Some(e);
                        }
                    }
                }
                // Leaving this group: a context problem goes to the larger-context groups, anything
                // else to the ordinary fallbacks.
                let next = if context_exceeded || (skips.context && tried.is_empty()) {
                    &group.context_fallbacks
                } else {
                    &group.fallbacks
                };
                if context_exceeded {
                    chain.truncate(cursor);
                }
                for &f in next {
                    if !visited.contains(&f) {
                        visited.push(f);
                        chain.push(f);
                    }
                }
            }
            if round == rounds {
                break;
            }
            let Some(err) = last_err.as_ref() else {
                break; // nothing was attempted: waiting will not change a local verdict
            };
            // A busy deployment that shed the call already said when to come back; waiting for it
            // here would only hold the caller's slot.
            if err.kind() == ErrorKind::ContextLengthExceeded || err.is_load_shed() {
                break;
            }
            let Some(delay) = self
                .settings
                .retry
                .next_delay(round, err, ctx.deadline(), &mut rng)
            else {
                break;
            };
            tokio::time::sleep(delay).await;
        }
        Err(self.final_error(adm_slot.as_ref(), last_err, skips))
    }

    fn final_error(&self, adm: Option<&Admitted>, last: Option<Error>, skips: Skips) -> Error {
        if let Some(e) = last {
            return e;
        }
        let model = adm
            .map(|a| self.groups[a.group].name.as_str())
            .unwrap_or("?");
        if let Some(ra) = skips.rate_limited {
            return Error::rate_limited(format!(
                "every deployment of model '{model}' is at its rate limit or cooling down"
            ))
            .with_retry_after(ra.max(Duration::from_millis(1)));
        }
        if let Some(e) = skips.local {
            return e;
        }
        if skips.context {
            return Error::context_length_exceeded(format!(
                "the request does not fit the context window of any deployment of model '{model}'"
            ));
        }
        Error::unavailable(format!("no deployment of model '{model}' is available"))
    }
}

pub(crate) struct LeaseInner<M: ?Sized> {
    engine: Arc<Engine<M>>,
    pub(crate) slot: Arc<Slot<M>>,
    permit: Option<BreakerPermit>,
    _in_flight: InFlight<M>,
    budget_keys: Vec<StateKey>,
    /// The same budgets with their gauge labels (utilization is published after settling).
    budget_lines: Vec<super::policy::ScopedBudgetLine>,
    reserved_nanos: i64,
    est: Estimate,
    request_tpm_keys: Vec<StateKey>,
    /// The tenant's token budget counter (on the attempt that answered), settled to the actual
    /// token count.
    token_budget_key: Option<StateKey>,
    group: String,
    tenant: TenantId,
    principal: String,
    request_id: String,
    attempt: u32,
    streamed: bool,
    at: SystemTime,
    started: Instant,
    request_started: Instant,
}

/// Everything one attempt holds (breaker permit, in-flight slot, budget reservation, token estimate)
/// until it is closed with the outcome. Dropping an open lease closes it as cancelled.
pub(crate) struct Lease<M: ?Sized + Send + Sync + 'static> {
    inner: Option<LeaseInner<M>>,
}

/// How the breaker should read an outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    Failure,
    Neutral,
}

impl<M: ?Sized + Send + Sync + 'static> Lease<M> {
    pub(crate) fn slot(&self) -> Option<&Arc<Slot<M>>> {
        self.inner.as_ref().map(|i| &i.slot)
    }

    /// The attempt answered. Returns the cost (the provider's when given, else from the price).
    pub(crate) async fn succeed(
        mut self,
        usage: Usage,
        provider_cost: Option<Cost>,
    ) -> Option<Cost> {
        let inner = self.inner.take()?;
        let cost = provider_cost.or_else(|| {
            inner
                .slot
                .dep
                .price
                .is_priced()
                .then(|| inner.slot.dep.price.cost(&usage))
        });
        let nanos = cost
            .map(|c| wattos_core::state::usd_to_nanos(c.total_usd()))
            .unwrap_or(0);
        inner
            .close(
                UsageOutcome::Success,
                usage,
                Some(nanos),
                Verdict::Success,
                None,
            )
            .await;
        cost
    }

    /// The attempt failed. `usage` is what was consumed before the failure, when known; without it
    /// a failure before any output is charged nothing and a failure after output keeps the estimate.
    pub(crate) async fn fail(mut self, err: &Error, usage: Option<Usage>) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let verdict = if err.is_dependency_failure() {
            Verdict::Failure
        } else {
            Verdict::Neutral
        };
        let nanos = usage.map(|u| inner.slot.dep.price.cost_nanos(&u));
        inner
            .close(
                UsageOutcome::Error(err.code().to_owned()),
                usage.unwrap_or_default(),
                nanos.or(Some(0)),
                verdict,
                Some(err),
            )
            .await;
    }

    /// A stream broke after its first delta: the upstream has probably billed, so the reservation is
    /// kept unless the usage is known.
    pub(crate) async fn fail_after_output(mut self, err: &Error, usage: Option<Usage>) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let verdict = if err.is_dependency_failure() {
            Verdict::Failure
        } else {
            Verdict::Neutral
        };
        let nanos = usage.map(|u| inner.slot.dep.price.cost_nanos(&u));
        inner
            .close(
                UsageOutcome::Error(err.code().to_owned()),
                usage.unwrap_or_default(),
                nanos,
                verdict,
                Some(err),
            )
            .await;
    }

    /// The consumer dropped a stream before it finished.
    pub(crate) async fn cancel(mut self, usage: Option<Usage>) {
        if let Some(inner) = self.inner.take() {
            let nanos = usage.map(|u| inner.slot.dep.price.cost_nanos(&u));
            inner
                .close(
                    UsageOutcome::Cancelled,
                    usage.unwrap_or_default(),
                    nanos,
                    Verdict::Neutral,
                    None,
                )
                .await;
        }
    }
}

impl<M: ?Sized + Send + Sync + 'static> Drop for Lease<M> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                inner
                    .close(
                        UsageOutcome::Cancelled,
                        Usage::default(),
                        None,
                        Verdict::Neutral,
                        None,
                    )
                    .await;
            });
        }
    }
}

impl<M: ?Sized + Send + Sync + 'static> LeaseInner<M> {
    /// `actual_nanos`: the cost to settle the reservation to; `None` keeps the reservation as is.
    async fn close(
        mut self,
        outcome: UsageOutcome,
        usage: Usage,
        actual_nanos: Option<i64>,
        verdict: Verdict,
        err: Option<&Error>,
    ) {
        let latency = self.started.elapsed();
        if let Some(permit) = self.permit.take() {
            match verdict {
                Verdict::Success => permit.success(),
                Verdict::Failure => permit.failure(),
                Verdict::Neutral => drop(permit),
            }
        }
        match verdict {
            Verdict::Success => {
                self.slot.observe_latency(latency);
                self.slot.record_outcome(true, None);
            }
            Verdict::Failure => self.slot.record_outcome(false, err),
            Verdict::Neutral => {}
        }
        let engine = &self.engine;
        if let Some(actual) = actual_nanos
            && !self.budget_keys.is_empty()
            && actual != self.reserved_nanos
            && let Err(e) = engine
                .budgets
                .settle(&self.budget_keys, actual - self.reserved_nanos)
                .await
        {
            tracing::warn!(error = %e, "could not settle budget reservation");
        }
        for line in &self.budget_lines {
            if let Ok(committed) = engine.budgets.committed(&line.line.key).await {
                engine.budget_gauges.record(line, committed);
            }
        }
        // Replace token estimates by actual counts (a failure without usage gives the estimate back).
        let est_total = i64::try_from(self.est.total()).unwrap_or(i64::MAX);
        let actual_tokens = match (&outcome, usage.total_tokens()) {
            (UsageOutcome::Success, n) => i64::try_from(n).unwrap_or(i64::MAX),
            (_, 0) if actual_nanos == Some(0) => 0,
            (_, 0) => est_total,
            (_, n) => i64::try_from(n).unwrap_or(i64::MAX),
        };
        let delta = actual_tokens - est_total;
        if delta != 0 {
            if self.slot.dep.limits.tpm.is_some() {
                let _ = engine
                    .windows
                    .adjust(&self.slot.tpm_key, MINUTE, delta)
                    .await;
            }
            for k in &self.request_tpm_keys {
                let _ = engine.windows.adjust(k, MINUTE, delta).await;
            }
            if let Some(k) = &self.token_budget_key
                && let Err(e) = engine.budgets.settle(std::slice::from_ref(k), delta).await
            {
                tracing::warn!(error = %e, "could not settle the token budget");
            }
        }
        let cost_nanos = actual_nanos.unwrap_or(self.reserved_nanos);
        let label = outcome.label().to_owned();
        metrics::counter!(names::LLM_CALLS_TOTAL,
            "deployment" => self.slot.label.clone(), "model" => self.group.clone(), "outcome" => label)
        .increment(1);
        metrics::histogram!(names::LLM_CALL_DURATION_MS,
            "deployment" => self.slot.label.clone(), "model" => self.group.clone())
        .record(latency.as_secs_f64() * 1e3);
        if usage.total_tokens() > 0 {
            for (direction, n) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cached", usage.cached_input_tokens),
            ] {
                if n > 0 {
                    metrics::counter!(names::LLM_TOKENS_TOTAL,
                        "deployment" => self.slot.label.clone(), "model" => self.group.clone(),
                        "direction" => direction)
                    .increment(n);
                }
            }
        }
        if cost_nanos > 0 {
            metrics::gauge!(names::LLM_COST_USD,
                "deployment" => self.slot.label.clone(), "model" => self.group.clone())
            .increment(nanos_to_usd(cost_nanos));
        }
        if outcome == UsageOutcome::Success {
            let overhead = self.request_started.elapsed().saturating_sub(latency);
            metrics::histogram!(names::GATEWAY_OVERHEAD_US).record(overhead.as_secs_f64() * 1e6);
        }
        if let Some(sink) = &engine.usage {
            let record = UsageRecord {
                at: self.at,
                tenant: self.tenant.clone(),
                principal: std::mem::take(&mut self.principal),
                request_id: std::mem::take(&mut self.request_id),
                model_group: std::mem::take(&mut self.group),
                deployment: self.slot.label.clone(),
                upstream_model: self.slot.dep.upstream_model.clone().unwrap_or_default(),
                usage,
                cost_nanos,
                latency,
                outcome,
                attempt: self.attempt,
                streamed: self.streamed,
            };
            if let Err(e) = sink.record(record).await {
                tracing::warn!(error = %e, "usage sink rejected a record");
            }
        }
    }
}
