//! Deployments (one upstream model behind one provider client) and model groups (what callers name).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::{ChatModel, Cost, Usage};
use wattos_core::state::usd_to_nanos;

use super::strategy::{RoutingStrategy, Strategy};

/// Prices in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Price {
    /// Uncached input tokens.
    pub input_per_mtok: f64,
    /// Cached input tokens (providers bill them cheaper).
    #[serde(default)]
    pub cached_input_per_mtok: f64,
    /// Output tokens.
    pub output_per_mtok: f64,
}

impl Price {
    /// A price of `input` and `output` dollars per million tokens; cached input at the input price.
    pub fn per_mtok(input: f64, output: f64) -> Self {
        Self {
            input_per_mtok: input,
            cached_input_per_mtok: input,
            output_per_mtok: output,
        }
    }

    /// What `usage` costs at this price.
    pub fn cost(&self, usage: &Usage) -> Cost {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        Cost {
            input_usd: uncached as f64 * self.input_per_mtok / 1e6,
            cached_input_usd: cached as f64 * self.cached_input_per_mtok / 1e6,
            output_usd: usage.output_tokens as f64 * self.output_per_mtok / 1e6,
        }
    }

    /// What `usage` costs, in nano-dollars rounded up.
    pub fn cost_nanos(&self, usage: &Usage) -> i64 {
        usd_to_nanos(self.cost(usage).total_usd())
    }

    /// Whether any part is priced.
    pub fn is_priced(&self) -> bool {
        self.input_per_mtok > 0.0 || self.output_per_mtok > 0.0 || self.cached_input_per_mtok > 0.0
    }
}

/// Limits of one deployment, shared by all tenants (the upstream account's quota).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeploymentLimits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (estimated input plus output) per minute.
    pub tpm: Option<u64>,
    /// Calls in flight at once (bulkhead); a full deployment is skipped, not queued.
    pub max_concurrent: Option<usize>,
}

/// One upstream model: a provider client (`model`) plus routing metadata.
///
/// `M` is `dyn ChatModel` for chat routers and `dyn EmbeddingModel` for embedding routers.
pub struct Deployment<M: ?Sized> {
    pub(crate) id: Arc<str>,
    pub(crate) model: Arc<M>,
    pub(crate) upstream_model: Option<String>,
    pub(crate) weight: u32,
    pub(crate) priority: u32,
    pub(crate) limits: DeploymentLimits,
    pub(crate) price: Price,
    pub(crate) context_window: Option<u32>,
    pub(crate) timeout: Option<Duration>,
}

impl<M: ?Sized> std::fmt::Debug for Deployment<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("id", &self.id)
            .field("upstream_model", &self.upstream_model)
            .field("weight", &self.weight)
            .field("priority", &self.priority)
            .field("limits", &self.limits)
            .field("price", &self.price)
            .field("context_window", &self.context_window)
            .finish()
    }
}

/// A chat deployment.
pub type ChatDeployment = Deployment<dyn ChatModel>;
/// An embedding deployment.
pub type EmbeddingDeployment = Deployment<dyn EmbeddingModel>;

impl Deployment<dyn ChatModel> {
    /// A chat deployment named `id` (unique within the router) served by `model`.
    pub fn chat(id: impl Into<Arc<str>>, model: impl ChatModel + 'static) -> Self {
        Self::from_arc(id, Arc::new(model))
    }
}

impl Deployment<dyn EmbeddingModel> {
    /// An embedding deployment named `id` served by `model`.
    pub fn embedding(id: impl Into<Arc<str>>, model: impl EmbeddingModel + 'static) -> Self {
        Self::from_arc(id, Arc::new(model))
    }
}

impl<M: ?Sized> Deployment<M> {
    /// A deployment around a shared model handle (e.g. `Arc<dyn ChatModel>`, or another router).
    pub fn from_arc(id: impl Into<Arc<str>>, model: Arc<M>) -> Self {
        Self {
            id: id.into(),
            model,
            upstream_model: None,
            weight: 1,
            priority: 0,
            limits: DeploymentLimits::default(),
            price: Price::default(),
            context_window: None,
            timeout: None,
        }
    }

    /// The model name sent upstream (default: the caller's requested name is kept as is).
    pub fn upstream_model(mut self, name: impl Into<String>) -> Self {
        self.upstream_model = Some(name.into());
        self
    }

    /// Weight for the weighted-random strategy (default 1; 0 means "only when nothing else is left").
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Priority for the priority strategy: lower goes first (default 0).
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// All limits at once.
    pub fn limits(mut self, limits: DeploymentLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Requests-per-minute limit.
    pub fn rpm(mut self, rpm: u64) -> Self {
        self.limits.rpm = Some(rpm);
        self
    }

    /// Tokens-per-minute limit.
    pub fn tpm(mut self, tpm: u64) -> Self {
        self.limits.tpm = Some(tpm);
        self
    }

    /// Concurrency limit (bulkhead).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.limits.max_concurrent = Some(n);
        self
    }

    /// Price per million tokens.
    pub fn price(mut self, price: Price) -> Self {
        self.price = price;
        self
    }

    /// Context window in tokens; requests estimated larger skip this deployment.
    pub fn context_window(mut self, tokens: u32) -> Self {
        self.context_window = Some(tokens);
        self
    }

    /// Per-attempt timeout for this deployment (overrides the router's).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The deployment id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// What callers name in `ChatRequest::model`: a set of interchangeable deployments plus where to go
/// when all of them fail.
#[derive(Debug, Clone)]
pub struct ModelGroup {
    pub(crate) name: String,
    pub(crate) aliases: Vec<String>,
    pub(crate) deployments: Vec<String>,
    pub(crate) strategy: Arc<dyn RoutingStrategy>,
    pub(crate) fallbacks: Vec<String>,
    pub(crate) context_fallbacks: Vec<String>,
}

impl ModelGroup {
    /// A group called `name` with the priority strategy and no deployments yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            aliases: Vec::new(),
            deployments: Vec::new(),
            strategy: Strategy::Priority.build(),
            fallbacks: Vec::new(),
            context_fallbacks: Vec::new(),
        }
    }

    /// Adds an alias callers may use instead of the name.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// Adds a deployment by id.
    pub fn deployment(mut self, id: impl Into<String>) -> Self {
        self.deployments.push(id.into());
        self
    }

    /// Adds deployments by id.
    pub fn deployments<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.deployments.extend(ids.into_iter().map(Into::into));
        self
    }

    /// Uses one of the built-in strategies.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy.build();
        self
    }

    /// Uses a custom strategy.
    pub fn custom_strategy(mut self, strategy: Arc<dyn RoutingStrategy>) -> Self {
        self.strategy = strategy;
        self
    }

    /// Groups to try, in order, after every deployment of this one failed with a retryable error.
    pub fn fallbacks<I: IntoIterator<Item = S>, S: Into<String>>(mut self, groups: I) -> Self {
        self.fallbacks.extend(groups.into_iter().map(Into::into));
        self
    }

    /// Larger-context groups to try when the request does not fit this group's context window.
    pub fn context_fallbacks<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        groups: I,
    ) -> Self {
        self.context_fallbacks
            .extend(groups.into_iter().map(Into::into));
        self
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_uses_cached_rate() {
        let p = Price {
            input_per_mtok: 2.0,
            cached_input_per_mtok: 1.0,
            output_per_mtok: 10.0,
        };
        let u = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cached_input_tokens: 500_000,
        };
        let c = p.cost(&u);
        assert!((c.total_usd() - (1.0 + 0.5 + 1.0)).abs() < 1e-9);
        assert_eq!(p.cost_nanos(&u), 2_500_000_000);
    }
}
