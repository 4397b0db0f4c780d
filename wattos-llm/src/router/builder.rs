//! [`RouterBuilder`]: deployments, groups, settings and backends in; a validated router out.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use wattos_core::resilience::{BreakerConfig, RetryPolicy, SharedClock, system_clock};
use wattos_core::state::{BudgetStore, CacheStore, WindowStore};
use wattos_core::{Error, Result, TenantId};

use super::cache::ResponseCache;
use super::deployment::{Deployment, ModelGroup};
use super::engine::{Engine, Group, RouterSettings};
use super::health::Slot;
use super::policy::TenantPolicy;
use super::tenants::PolicySource;
use crate::state::MemoryState;
use crate::usage::UsageSink;

/// Builds a [`super::Router`] (for `M = dyn ChatModel`) or an [`super::EmbeddingRouter`]
/// (for `M = dyn EmbeddingModel`).
pub struct RouterBuilder<M: ?Sized> {
    pub(crate) name: String,
    deployments: Vec<Deployment<M>>,
    groups: Vec<ModelGroup>,
    settings: RouterSettings,
    breaker: BreakerConfig,
    clock: Option<SharedClock>,
    windows: Option<Arc<dyn WindowStore>>,
    budgets: Option<Arc<dyn BudgetStore>>,
    pub(crate) cache: Option<(Arc<dyn CacheStore>, Duration)>,
    usage: Option<Arc<dyn UsageSink>>,
    policies: HashMap<TenantId, Arc<TenantPolicy>>,
    default_policy: TenantPolicy,
    policy_source: Option<Arc<dyn PolicySource>>,
    default_model: Option<String>,
}

impl<M: ?Sized> std::fmt::Debug for RouterBuilder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("name", &self.name)
            .field("deployments", &self.deployments)
            .field("groups", &self.groups)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<M: ?Sized + Send + Sync + 'static> RouterBuilder<M> {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            deployments: Vec::new(),
            groups: Vec::new(),
            settings: RouterSettings::default(),
            breaker: BreakerConfig::default(),
            clock: None,
            windows: None,
            budgets: None,
            cache: None,
            usage: None,
            policies: HashMap::new(),
            default_policy: TenantPolicy::default(),
            policy_source: None,
            default_model: None,
        }
    }

    /// The model group (name or alias) a request without a model goes to when the caller's tenant
    /// has no default model of its own (default: the first group added).
    pub fn default_model(mut self, name: impl Into<String>) -> Self {
        self.default_model = Some(name.into());
        self
    }

    /// The router's name (its `ChatModel::name`, used in logs).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a deployment.
    pub fn deployment(mut self, deployment: Deployment<M>) -> Self {
        self.deployments.push(deployment);
        self
    }

    /// Adds a model group.
    pub fn group(mut self, group: ModelGroup) -> Self {
        self.groups.push(group);
        self
    }

    /// Replaces all attempt-loop settings.
    pub fn settings(mut self, settings: RouterSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Retry rounds and backoff (see [`RouterSettings::retry`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.settings.retry = retry;
        self
    }

    /// Per-attempt timeout.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.settings.attempt_timeout = timeout;
        self
    }

    /// Cap on upstream calls per request.
    pub fn max_total_attempts(mut self, n: u32) -> Self {
        self.settings.max_total_attempts = n.max(1);
        self
    }

    /// Silence allowed between stream deltas after the first.
    pub fn stream_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.stream_idle_timeout = timeout;
        self
    }

    /// Circuit breaker settings for every deployment.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// The clock for breakers, cooldowns and the default in-memory state (tests use a manual clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// One backend for rate-limit windows and budgets (e.g. `MemoryState` or `RedisState`).
    pub fn state<S: WindowStore + BudgetStore + 'static>(mut self, state: Arc<S>) -> Self {
        self.windows = Some(state.clone());
        self.budgets = Some(state);
        self
    }

    /// The rate-limit backend.
    pub fn windows(mut self, store: Arc<dyn WindowStore>) -> Self {
        self.windows = Some(store);
        self
    }

    /// The budget backend.
    pub fn budgets(mut self, store: Arc<dyn BudgetStore>) -> Self {
        self.budgets = Some(store);
        self
    }

    /// Where usage records go (default: nowhere).
    pub fn usage_sink(mut self, sink: Arc<dyn UsageSink>) -> Self {
        self.usage = Some(sink);
        self
    }

    /// The policy of one tenant.
    pub fn tenant_policy(mut self, tenant: TenantId, policy: TenantPolicy) -> Self {
        self.policies.insert(tenant, Arc::new(policy));
        self
    }

    /// The policy of tenants without their own (default: everything allowed, no limits).
    pub fn default_policy(mut self, policy: TenantPolicy) -> Self {
        self.default_policy = policy;
        self
    }

    /// Where the caller's policy comes from on every call (e.g. [`TenantConfigPolicies`] over
    /// the tenant registry); its answer takes precedence over [`RouterBuilder::tenant_policy`].
    ///
    /// [`TenantConfigPolicies`]: super::TenantConfigPolicies
    pub fn policy_source(mut self, source: Arc<dyn PolicySource>) -> Self {
        self.policy_source = Some(source);
        self
    }

    pub(crate) fn build_engine(self) -> Result<(Engine<M>, Option<ResponseCache>, String)> {
        let invalid = |msg: String| Error::invalid_field("router", msg);
        if self.groups.is_empty() {
            return Err(invalid("at least one model group is required".into()));
        }
        let clock = self.clock.unwrap_or_else(system_clock);
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut slots = Vec::with_capacity(self.deployments.len());
        for d in self.deployments {
            if d.id.is_empty() {
                return Err(invalid("a deployment id is empty".into()));
            }
            if index.insert(d.id.to_string(), slots.len()).is_some() {
                return Err(invalid(format!("deployment id '{}' is used twice", d.id)));
            }
            slots.push(Arc::new(Slot::new(d, &self.breaker, clock.clone())));
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        for (g, group) in self.groups.iter().enumerate() {
            for n in std::iter::once(&group.name).chain(&group.aliases) {
                if names.insert(n.clone(), g).is_some() {
                    return Err(invalid(format!("model name or alias '{n}' is used twice")));
                }
            }
        }
        let lookup_group = |n: &String| {
            names
                .get(n)
                .copied()
                .ok_or_else(|| invalid(format!("fallback group '{n}' does not exist")))
        };
        let mut groups = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            if group.deployments.is_empty() {
                return Err(invalid(format!(
                    "model group '{}' has no deployments",
                    group.name
                )));
            }
            let mut seen = HashSet::new();
            let mut members = Vec::new();
            for id in &group.deployments {
                let s = *index.get(id).ok_or_else(|| {
                    invalid(format!(
                        "model group '{}' names unknown deployment '{id}'",
                        group.name
                    ))
                })?;
                if seen.insert(s) {
                    members.push(s);
                }
            }
            groups.push(Group {
                name: group.name.clone(),
                slots: members,
                strategy: group.strategy.clone(),
                fallbacks: group
                    .fallbacks
                    .iter()
                    .map(lookup_group)
                    .collect::<Result<_>>()?,
                context_fallbacks: group
                    .context_fallbacks
                    .iter()
                    .map(lookup_group)
                    .collect::<Result<_>>()?,
            });
        }
        let default_group = match &self.default_model {
            None => 0,
            Some(n) => *names
                .get(n)
                .ok_or_else(|| invalid(format!("default model '{n}' is not a group or alias")))?,
        };
        let memory = Arc::new(MemoryState::with_clock(clock.clone()));
        let cache = self.cache.map(|(store, ttl)| ResponseCache { store, ttl });
        Ok((
            Engine {
                slots,
                groups,
                names,
                default_group: Some(default_group),
                settings: self.settings,
                windows: self.windows.unwrap_or_else(|| memory.clone()),
                budgets: self.budgets.unwrap_or(memory),
                budget_gauges: Default::default(),
                usage: self.usage,
                policies: RwLock::new(self.policies),
                default_policy: RwLock::new(Arc::new(self.default_policy)),
                policy_source: self.policy_source,
            },
            cache,
            self.name,
        ))
    }
}
