//! Per-tenant policy: which model groups a tenant may use, its rate limits and budgets.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use wattos_core::state::{BudgetLine, StateKey, WindowCharge, usd_to_nanos};
use wattos_core::{RequestContext, TenantId};

/// Requests- and tokens-per-minute limits of one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateLimits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute (estimated at admission, corrected to the actual count afterwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

impl RateLimits {
    /// No limits.
    pub const NONE: Self = Self {
        rpm: None,
        tpm: None,
    };

    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }
}

/// How long a budget lasts before it starts again from zero (UTC calendar periods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    /// Never resets.
    #[default]
    Total,
    /// Resets at 00:00 UTC.
    Daily,
    /// Resets on the first of the month, 00:00 UTC.
    Monthly,
}

impl BudgetPeriod {
    /// The metric label: `total`, `daily` or `monthly`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        }
    }

    /// The key suffix of the period containing `now`, and how long its counter must live.
    pub(crate) fn bucket(self, now: SystemTime) -> (String, Option<Duration>) {
        let days = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or(0);
        match self {
            Self::Total => ("total".to_owned(), None),
            Self::Daily => (format!("d{days}"), Some(Duration::from_secs(2 * 86_400))),
            Self::Monthly => {
                let (y, m) = civil_year_month(days as i64);
                (
                    format!("m{y:04}-{m:02}"),
                    Some(Duration::from_secs(32 * 86_400)),
                )
            }
        }
    }
}

/// Year and month of a day count since 1970-01-01 (Howard Hinnant's civil-from-days).
fn civil_year_month(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32)
}

/// A spending cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// The cap in US dollars.
    pub limit_usd: f64,
    /// When it resets.
    #[serde(default)]
    pub period: BudgetPeriod,
}

impl Budget {
    /// A cap of `limit_usd` per `period`.
    pub fn new(limit_usd: f64, period: BudgetPeriod) -> Self {
        Self { limit_usd, period }
    }
}

/// A cap on the tokens (input plus output) a tenant's calls may use in a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBudget {
    /// The cap in tokens.
    pub limit_tokens: u64,
    /// When it resets.
    #[serde(default)]
    pub period: BudgetPeriod,
}

impl TokenBudget {
    /// A cap of `limit_tokens` per `period`.
    pub fn new(limit_tokens: u64, period: BudgetPeriod) -> Self {
        Self {
            limit_tokens,
            period,
        }
    }

    /// The budget line of `tenant`'s counter for the period containing `now`.
    pub(crate) fn line(&self, tenant: &TenantId, now: SystemTime) -> BudgetLine {
        let (bucket, ttl) = self.period.bucket(now);
        BudgetLine {
            key: token_budget_key(tenant, &bucket),
            limit_nanos: i64::try_from(self.limit_tokens).unwrap_or(i64::MAX),
            ttl,
        }
    }
}

/// What one tenant may do. The default policy allows every model with no limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantPolicy {
    /// Model groups (names or aliases) the tenant may call; `None` allows all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_models: Option<Vec<String>>,
    /// The model group (name or alias) a request without a model goes to; `None`, or a name this
    /// router does not serve, leaves it to the router's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// Limits for the whole tenant.
    #[serde(default)]
    pub limits: RateLimits,
    /// Limits for each principal (user or API key) of the tenant.
    #[serde(default)]
    pub key_limits: RateLimits,
    /// Budget for the whole tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Budget for each principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_budget: Option<Budget>,
    /// Budgets per model group (by canonical group name), for the whole tenant.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub model_budgets: HashMap<String, Budget>,
    /// Tokens the whole tenant may use per period, all models together: each call reserves its
    /// estimate at admission (refused with `budget_exceeded` when it does not fit) and settles to
    /// the actual count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<TokenBudget>,
}

impl TenantPolicy {
    /// Allows only these model groups.
    pub fn allow_models<I: IntoIterator<Item = S>, S: Into<String>>(mut self, models: I) -> Self {
        self.allowed_models = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// Sends requests without a model to `model`.
    pub fn with_default_model(mut self, model: impl Into<String>) -> Self {
        self.default_model = Some(model.into());
        self
    }

    /// Sets tenant-wide rate limits.
    pub fn with_limits(mut self, limits: RateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets per-principal rate limits.
    pub fn with_key_limits(mut self, limits: RateLimits) -> Self {
        self.key_limits = limits;
        self
    }

    /// Sets the tenant budget.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sets the per-principal budget.
    pub fn with_key_budget(mut self, budget: Budget) -> Self {
        self.key_budget = Some(budget);
        self
    }

    /// Sets the tenant's token budget.
    pub fn with_token_budget(mut self, budget: TokenBudget) -> Self {
        self.token_budget = Some(budget);
        self
    }

    /// Sets a budget for one model group.
    pub fn with_model_budget(mut self, group: impl Into<String>, budget: Budget) -> Self {
        self.model_budgets.insert(group.into(), budget);
        self
    }

    pub(crate) fn has_budgets(&self) -> bool {
        self.budget.is_some() || self.key_budget.is_some() || !self.model_budgets.is_empty()
    }

    /// Request-level window charges (tenant and principal), each with its scope label
    /// (`tenant_rpm`, `tenant_tpm`, `key_rpm`, `key_tpm`).
    pub(crate) fn window_charges(
        &self,
        ctx: &RequestContext,
        est_tokens: u64,
        out: &mut Vec<(WindowCharge, &'static str)>,
    ) {
        const MINUTE: Duration = Duration::from_secs(60);
        let tenant = ctx.tenant();
        let key = ctx.principal().subject.as_str();
        let mut push = |label: &'static str, parts: &[&str], limit: Option<u64>, amount: u64| {
            if let Some(limit) = limit {
                let scope = if label.ends_with("tpm") { "tpm" } else { "rpm" };
                out.push((
                    WindowCharge {
                        key: StateKey::tenant(tenant, scope, parts),
                        limit,
                        window: MINUTE,
                        amount,
                    },
                    label,
                ));
            }
        };
        push("tenant_rpm", &[], self.limits.rpm, 1);
        push("tenant_tpm", &[], self.limits.tpm, est_tokens);
        push("key_rpm", &["key", key], self.key_limits.rpm, 1);
        push("key_tpm", &["key", key], self.key_limits.tpm, est_tokens);
    }

    /// Budget lines for a call to `group`, with the labels of their utilization gauge.
    pub(crate) fn budget_lines(
        &self,
        ctx: &RequestContext,
        group: &str,
        now: SystemTime,
    ) -> Vec<ScopedBudgetLine> {
        let tenant = ctx.tenant();
        let key = ctx.principal().subject.as_str();
        let mut lines = Vec::new();
        let mut push = |budget: Option<&Budget>, parts: &[&str], scope: &'static str| {
            if let Some(b) = budget {
                let (bucket, ttl) = b.period.bucket(now);
                let mut all: Vec<&str> = parts.to_vec();
                all.push(&bucket);
                lines.push(ScopedBudgetLine {
                    line: BudgetLine {
                        key: StateKey::tenant(tenant, "budget", &all),
                        limit_nanos: usd_to_nanos(b.limit_usd),
                        ttl,
                    },
                    scope,
                    period: b.period,
                    bucket,
                });
            }
        };
        push(self.budget.as_ref(), &["tenant"], "tenant");
        push(self.key_budget.as_ref(), &["key", key], "key");
        push(self.model_budgets.get(group), &["model", group], "model");
        lines
    }
}

/// A budget line plus what its utilization gauge needs.
#[derive(Debug, Clone)]
pub(crate) struct ScopedBudgetLine {
    /// The line reserved against.
    pub(crate) line: BudgetLine,
    /// `tenant`, `key` or `model`.
    pub(crate) scope: &'static str,
    /// The budget's period.
    pub(crate) period: BudgetPeriod,
    /// The period bucket the line counts in (`m2026-11`, ...).
    pub(crate) bucket: String,
}

impl ScopedBudgetLine {
    /// `committed_nanos` as a share of the limit (1 for a zero limit).
    pub(crate) fn utilization(&self, committed_nanos: i64) -> f64 {
        if self.line.limit_nanos > 0 {
            committed_nanos.max(0) as f64 / self.line.limit_nanos as f64
        } else {
            1.0
        }
    }
}

/// The `llm_budget_utilization_ratio` gauge: per budget scope kind (`tenant`, `key`, `model`) and
/// period, the highest utilization among the budgets this process has charged in their current
/// period. No label names a tenant (the metrics policy): an alert says that some tenant's budget is
/// nearly spent, and the admin API / console say whose. Utilization is read from the budget store,
/// so with a shared store every instance reports the deployment-wide values of the budgets it
/// touches; Prometheus' `max` over instances covers them all.
#[derive(Debug, Default)]
pub(crate) struct BudgetGauges {
    seen: std::sync::Mutex<HashMap<StateKey, SeenBudget>>,
}

#[derive(Debug)]
struct SeenBudget {
    scope: &'static str,
    period: BudgetPeriod,
    bucket: String,
    ratio: f64,
}

impl BudgetGauges {
    /// Records `line`'s committed spend and republishes the gauge of its scope and period.
    pub(crate) fn record(&self, line: &ScopedBudgetLine, committed_nanos: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(
            line.line.key.clone(),
            SeenBudget {
                scope: line.scope,
                period: line.period,
                bucket: line.bucket.clone(),
                ratio: line.utilization(committed_nanos),
            },
        );
        // Budgets of a finished period no longer count.
        let (current, _) = line.period.bucket(SystemTime::now());
        seen.retain(|_, s| s.period != line.period || s.bucket == current);
        let max = seen
            .values()
            .filter(|s| s.scope == line.scope && s.period == line.period)
            .map(|s| s.ratio)
            .fold(0.0, f64::max);
        metrics::gauge!(
            wattos_core::telemetry::names::BUDGET_UTILIZATION_RATIO,
            "scope" => line.scope,
            "period" => line.period.label(),
        )
        .set(max);
    }
}

/// The key of `tenant`'s token budget counter in period `bucket` (`m2026-11`, ...).
fn token_budget_key(tenant: &TenantId, bucket: &str) -> StateKey {
    StateKey::tenant(tenant, "budget", &["tokens", bucket])
}

/// The key of `tenant`'s token budget counter in the current period (to read the tokens used).
pub fn tenant_token_budget_key(tenant: &TenantId, period: BudgetPeriod) -> StateKey {
    let (bucket, _) = period.bucket(SystemTime::now());
    token_budget_key(tenant, &bucket)
}

/// The budget key of `tenant`'s tenant-wide budget in the current period (to read spend).
pub fn tenant_budget_key(tenant: &TenantId, period: BudgetPeriod) -> StateKey {
    let (bucket, _) = period.bucket(SystemTime::now());
    StateKey::tenant(tenant, "budget", &["tenant", &bucket])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_months() {
        assert_eq!(civil_year_month(0), (1970, 1));
        assert_eq!(civil_year_month(31), (1970, 2));
        // 2024-02-29 is day 19782
        assert_eq!(civil_year_month(19_782), (2024, 2));
        assert_eq!(civil_year_month(19_783), (2024, 3));
    }

    #[test]
    fn charges_are_tenant_scoped() {
        let ctx = RequestContext::system(TenantId::new("acme").unwrap());
        let p = TenantPolicy::default()
            .with_limits(RateLimits {
                rpm: Some(10),
                tpm: Some(1000),
            })
            .with_key_limits(RateLimits {
                rpm: Some(5),
                tpm: None,
            });
        let mut v = Vec::new();
        p.window_charges(&ctx, 42, &mut v);
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|(c, _)| c.key.as_str().starts_with("t:acme:")));
        assert_eq!(v[1].0.amount, 42);
        assert_eq!(v[1].1, "tenant_tpm");
    }
}
