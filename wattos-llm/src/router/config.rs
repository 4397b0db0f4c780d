//! A router described by configuration: model groups, aliases, fallbacks, breaker and retry
//! settings and per-deployment knobs, read from TOML ([`RouterConfig`]) and built over any chat or
//! embedding models ([`build_chat_router`], [`build_embedding_router`]), so a program that is not
//! the WattOS server builds the same router from the same file.
//!
//! ```toml
//! strategy = "priority"          # for the implicit one-deployment groups (default: priority)
//! attempt_timeout_ms = 30000     # per upstream attempt
//! max_total_attempts = 4         # upstream calls per request, all rounds and groups together
//! retry_rounds = 2               # rounds over the whole fallback chain
//! breaker_failure_threshold = 5  # consecutive failures that open a deployment's breaker
//! breaker_open_secs = 30         # how long it stays open before a trial call
//!
//! [groups.chat]                  # a model group clients call as "chat" (or its aliases)
//! deployments = ["gpt-4o-mini", "smollm2-135m-instruct"]
//! aliases = ["default"]
//! strategy = "round_robin"
//! fallbacks = ["smollm2-135m-instruct"]
//!
//! [deployments.gpt-4o-mini]      # knobs of one deployment (a provider or local model)
//! weight = 2
//! priority = 0
//! rpm = 600
//! max_concurrent = 32
//! ```
//!
//! Every model handed to the builder is a deployment named after it, and is also served as a group
//! of its own under that name unless a configured group or alias already uses the name. The WattOS
//! server reads this table as `[llm.router]`, with its `[llm.providers]` as the models.
//!
//! ```
//! use std::sync::Arc;
//! use wattos_core::llm::{ChatModel, ChatRequest, Message};
//! use wattos_core::test_utils::chat::ScriptedChatModel;
//! use wattos_core::{RequestContext, TenantId};
//! use wattos_llm::router::config::{RoutedModel, RouterBackends, RouterConfig, build_chat_router};
//!
//! let cfg = RouterConfig::from_toml(r#"
//!     [groups.chat]
//!     deployments = ["primary"]
//!     fallbacks = ["backup"]
//! "#)?;
//! let model = |name: &str, reply: &str| RoutedModel {
//!     name: name.to_owned(),
//!     provider: "scripted".to_owned(),
//!     model: Arc::new(ScriptedChatModel::new().then_text(reply)) as Arc<dyn ChatModel>,
//!     upstream_model: None,
//!     price: None,
//! };
//! let models = [model("primary", "from primary"), model("backup", "from backup")];
//! let (router, served) = build_chat_router(&models, &cfg, &RouterBackends::default(), None)?
//!     .expect("there are chat models");
//! let names: Vec<&str> = served.iter().map(|(n, _)| n.as_str()).collect();
//! assert_eq!(names, ["chat", "primary", "backup"]);
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let ctx = RequestContext::system(TenantId::new("acme")?);
//! let resp = router.chat(&ctx, ChatRequest::new("chat", vec![Message::user("hi")])).await?;
//! assert_eq!(resp.text(), "from primary");
//! # Ok::<_, wattos_core::Error>(()) })?;
//! # Ok::<_, wattos_core::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::ChatModel;
use wattos_core::state::{BudgetStore, WindowStore};
use wattos_core::{Error, Result};

use super::{
    Deployment, EmbeddingRouter, ModelGroup, PolicySource, Price, Router, RouterBuilder,
    RouterSettings, Strategy,
};
use crate::pricing::{ModelPrice, builtin_price};
use crate::registry::{BuildContext, ProviderConfig, ProvidersConfig};
use crate::usage::UsageSink;

/// A router's configuration (the server's `[llm.router]`): model groups, aliases, fallbacks,
/// breaker and retry settings and deployment knobs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Strategy of the implicit one-deployment groups.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Timeout of one upstream attempt, milliseconds.
    #[serde(default)]
    pub attempt_timeout_ms: Option<u64>,
    /// Cap on upstream calls per request.
    #[serde(default)]
    pub max_total_attempts: Option<u32>,
    /// Rounds over the whole fallback chain (1: no retry round).
    #[serde(default)]
    pub retry_rounds: Option<u32>,
    /// Consecutive failures that open a deployment's breaker.
    #[serde(default)]
    pub breaker_failure_threshold: Option<u32>,
    /// Seconds an open breaker waits before it lets a trial call through.
    #[serde(default)]
    pub breaker_open_secs: Option<u64>,
    /// Model groups by name.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
    /// Per-deployment knobs by deployment name.
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentConfig>,
}

/// One `[groups.<name>]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Deployment names (providers or local models).
    pub deployments: Vec<String>,
    /// Other names clients may use for the group.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// How a deployment is picked.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Groups tried after every deployment of this one failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Larger-context groups tried when a request does not fit.
    #[serde(default)]
    pub context_fallbacks: Vec<String>,
}

/// One `[deployments.<name>]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Weight for `weighted_random`.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Priority for `priority` (lower first).
    #[serde(default)]
    pub priority: Option<u32>,
    /// Requests per minute the deployment accepts (all tenants together).
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens per minute the deployment accepts.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Calls in flight at once.
    #[serde(default)]
    pub max_concurrent: Option<usize>,
    /// Context window in tokens.
    #[serde(default)]
    pub context_window: Option<u32>,
    /// Per-attempt timeout, milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl RouterConfig {
    /// Parses a router table (the server's `[llm.router]`).
    ///
    /// # Errors
    /// `invalid_input` naming the problem.
    pub fn from_table(table: toml::Table) -> Result<Self> {
        let text = toml::to_string(&table).unwrap_or_default();
        Self::from_toml(&text)
    }

    /// Parses the text of a `[router]` table (groups, aliases, fallbacks, deployment knobs).
    ///
    /// # Errors
    /// `invalid_input` naming the problem (unknown keys are errors, so typos fail at start).
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text)
            .map_err(|e| Error::invalid_field("router", format!("invalid router config: {e}")))
    }
}

/// One chat or embedding model to put behind the router.
pub struct RoutedModel<M: ?Sized> {
    /// Deployment name (the provider's name in `[llm.providers]`, or the local model's name).
    pub name: String,
    /// Provider kind (`openai`, `wattos`, ...), recorded with usage.
    pub provider: String,
    /// The model.
    pub model: Arc<M>,
    /// The model name sent upstream, when it differs from the group name.
    pub upstream_model: Option<String>,
    /// Price per million tokens (for budget reservations); unpriced models reserve nothing.
    pub price: Option<ModelPrice>,
}

impl<M: ?Sized> std::fmt::Debug for RoutedModel<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedModel")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("upstream_model", &self.upstream_model)
            .finish()
    }
}

/// The shared backends of the routers: rate-limit windows and budgets (memory or Redis) and the
/// usage sinks (chat and embedding calls are told apart in the usage records).
#[derive(Clone, Default)]
pub struct RouterBackends {
    /// Rate-limit windows (default: in memory, per router).
    pub windows: Option<Arc<dyn WindowStore>>,
    /// Budgets (default: in memory, shared by the routers built from these backends).
    pub budgets: Option<Arc<dyn BudgetStore>>,
    /// Where chat usage goes.
    pub chat_usage: Option<Arc<dyn UsageSink>>,
    /// Where embedding usage goes.
    pub embedding_usage: Option<Arc<dyn UsageSink>>,
    /// Where every router finds the calling tenant's policy (allow-list, budget) on each call:
    /// the tenant registry's configuration when authentication is on.
    pub policies: Option<Arc<dyn PolicySource>>,
}

impl std::fmt::Debug for RouterBackends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterBackends").finish_non_exhaustive()
    }
}

/// The model a provider calls and its price: the configured `model` and `price`, else the
/// built-in price of that model.
pub fn provider_model_and_price(cfg: &ProviderConfig) -> (Option<String>, Option<ModelPrice>) {
    let (model, price) = match cfg {
        ProviderConfig::Openai(s) | ProviderConfig::OpenaiCompatible(s) => {
            (s.model.clone(), s.price)
        }
        ProviderConfig::Azure(s) => (s.model.clone(), s.price),
        ProviderConfig::Anthropic(s) => (s.model.clone(), s.price),
        ProviderConfig::Gemini(s) => (s.model.clone(), s.price),
        ProviderConfig::Ollama(s) => (s.model.clone(), s.price),
    };
    let price = price.or_else(|| model.as_deref().and_then(builtin_price));
    (model, price)
}

/// The embedding model a provider is configured with (`embedding_model`), if any.
pub fn provider_embedding_model(cfg: &ProviderConfig) -> Option<String> {
    match cfg {
        ProviderConfig::Openai(s) | ProviderConfig::OpenaiCompatible(s) => {
            s.embedding_model.clone()
        }
        ProviderConfig::Azure(s) => s.embedding_model.clone(),
        ProviderConfig::Gemini(s) => s.embedding_model.clone(),
        ProviderConfig::Ollama(s) => s.embedding_model.clone(),
        ProviderConfig::Anthropic(_) => None,
    }
}

/// Chat and embedding deployments, as [`provider_deployments`] builds them.
pub type Deployments = (
    Vec<RoutedModel<dyn ChatModel>>,
    Vec<RoutedModel<dyn EmbeddingModel>>,
);

/// The deployments of `providers`: every provider is a chat deployment named after it (calling
/// its `model`, or its own name when it has none, at its price); a provider with an
/// `embedding_model` is also an embedding deployment named after that model.
///
/// # Errors
/// `invalid_input` naming `providers.<name>` for a provider that cannot be built (missing key,
/// kind not compiled in).
pub fn provider_deployments(
    providers: &ProvidersConfig,
    build: &BuildContext,
) -> Result<Deployments> {
    fn named(name: &str) -> impl Fn(Error) -> Error + '_ {
        move |e| Error::invalid_field(format!("providers.{name}"), e.message().to_owned())
    }
    let mut chat = Vec::new();
    let mut embedding = Vec::new();
    for (name, cfg) in &providers.providers {
        let model = crate::registry::build_chat_model_with(cfg, build).map_err(named(name))?;
        let (upstream, price) = provider_model_and_price(cfg);
        chat.push(RoutedModel {
            name: name.clone(),
            provider: cfg.kind().to_owned(),
            model,
            upstream_model: Some(upstream.unwrap_or_else(|| name.clone())),
            price,
        });
    }
    for (name, cfg) in &providers.providers {
        let Some(served) = provider_embedding_model(cfg) else {
            continue;
        };
        let model = crate::registry::build_embedding_model_with(cfg, build).map_err(named(name))?;
        embedding.push(RoutedModel {
            price: builtin_price(&served),
            name: served,
            provider: cfg.kind().to_owned(),
            model,
            upstream_model: None,
        });
    }
    Ok((chat, embedding))
}

fn price_of(p: Option<ModelPrice>) -> Price {
    p.map(|p| Price {
        input_per_mtok: p.input,
        cached_input_per_mtok: p.cached_input.unwrap_or(p.input),
        output_per_mtok: p.output,
    })
    .unwrap_or_default()
}

fn deployment<M: ?Sized>(m: &RoutedModel<M>, cfg: Option<&DeploymentConfig>) -> Deployment<M> {
    let mut d = Deployment::from_arc(m.name.clone(), m.model.clone()).price(price_of(m.price));
    if let Some(up) = &m.upstream_model {
        d = d.upstream_model(up.clone());
    }
    if let Some(c) = cfg {
        if let Some(w) = c.weight {
            d = d.weight(w);
        }
        if let Some(p) = c.priority {
            d = d.priority(p);
        }
        if let Some(r) = c.rpm {
            d = d.rpm(r);
        }
        if let Some(t) = c.tpm {
            d = d.tpm(t);
        }
        if let Some(n) = c.max_concurrent {
            d = d.max_concurrent(n);
        }
        if let Some(w) = c.context_window {
            d = d.context_window(w);
        }
        if let Some(t) = c.timeout_ms {
            d = d.timeout(Duration::from_millis(t));
        }
    }
    d
}

/// The names a built chat router serves: `(name, owned_by)` for every group and alias.
pub type ServedNames = Vec<(String, String)>;

/// Builds the chat router over `models` as `cfg` says. `None` when there are no chat models.
/// Requests that name no model go to the caller's tenant default ([`super::TenantPolicy`]), else
/// to `preferred_default` when it is served, else to the first group (configured groups first,
/// by name, then the models in order).
///
/// # Errors
/// `invalid_input` for groups naming unknown deployments, duplicate names, unknown fallbacks.
pub fn build_chat_router(
    models: &[RoutedModel<dyn ChatModel>],
    cfg: &RouterConfig,
    backends: &RouterBackends,
    preferred_default: Option<&str>,
) -> Result<Option<(Arc<Router>, ServedNames)>> {
    if models.is_empty() {
        if !cfg.groups.is_empty() {
            return Err(Error::invalid_field(
                "router.groups",
                "groups are configured but no chat model is available",
            ));
        }
        return Ok(None);
    }
    for name in cfg.deployments.keys() {
        if !models.iter().any(|m| &m.name == name) {
            return Err(Error::invalid_field(
                format!("router.deployments.{name}"),
                "no provider or local model has this name",
            ));
        }
    }
    let provider_of: HashMap<&str, &str> = models
        .iter()
        .map(|m| (m.name.as_str(), m.provider.as_str()))
        .collect();
    let mut b = Router::builder().name("router");
    for m in models {
        b = b.deployment(deployment(m, cfg.deployments.get(&m.name)));
    }
    let mut taken: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut served = Vec::new();
    for (name, g) in &cfg.groups {
        let owned_by = g
            .deployments
            .first()
            .and_then(|d| provider_of.get(d.as_str()))
            .copied()
            .unwrap_or("wattos");
        let mut group = ModelGroup::new(name.clone())
            .deployments(g.deployments.iter().cloned())
            .strategy(g.strategy.or(cfg.strategy).unwrap_or_default())
            .fallbacks(g.fallbacks.iter().cloned())
            .context_fallbacks(g.context_fallbacks.iter().cloned());
        taken.insert(name);
        served.push((name.clone(), owned_by.to_owned()));
        for a in &g.aliases {
            group = group.alias(a.clone());
            taken.insert(a);
            served.push((a.clone(), owned_by.to_owned()));
        }
        b = b.group(group);
    }
    for m in models {
        if !taken.contains(m.name.as_str()) {
            b = b.group(
                ModelGroup::new(m.name.clone())
                    .deployment(m.name.clone())
                    .strategy(cfg.strategy.unwrap_or_default()),
            );
            served.push((m.name.clone(), m.provider.clone()));
        }
    }
    // Requests without a model of tenants without a default model go to `preferred_default` when
    // it is served, else to the first group.
    if let Some(d) = preferred_default.filter(|d| served.iter().any(|(n, _)| n == d)) {
        b = b.default_model(d);
    }
    b = configure(b, cfg, backends, backends.chat_usage.clone());
    let router = b
        .build()
        .map_err(|e| Error::invalid_field("router", e.message().to_owned()))?;
    Ok(Some((Arc::new(router), served)))
}

/// Builds one embedding router per embedding model (embedding requests name their model; each
/// router serves one group).
///
/// # Errors
/// `invalid_input` when a router cannot be built.
pub fn build_embedding_router(
    model: &RoutedModel<dyn EmbeddingModel>,
    cfg: &RouterConfig,
    backends: &RouterBackends,
) -> Result<Arc<EmbeddingRouter>> {
    let b = EmbeddingRouter::builder()
        .name(model.name.clone())
        .deployment(deployment(model, cfg.deployments.get(&model.name)))
        .group(ModelGroup::new(model.name.clone()).deployment(model.name.clone()));
    let b = configure(b, cfg, backends, backends.embedding_usage.clone());
    Ok(Arc::new(b.build().map_err(|e| {
        Error::invalid_field("router", e.message().to_owned())
    })?))
}

fn configure<M: ?Sized + Send + Sync + 'static>(
    mut b: RouterBuilder<M>,
    cfg: &RouterConfig,
    backends: &RouterBackends,
    usage: Option<Arc<dyn UsageSink>>,
) -> RouterBuilder<M> {
    if let Some(t) = cfg.attempt_timeout_ms {
        b = b.attempt_timeout(Duration::from_millis(t));
    }
    if let Some(n) = cfg.max_total_attempts {
        b = b.max_total_attempts(n);
    }
    if let Some(n) = cfg.retry_rounds {
        let mut settings = RouterSettings::default();
        settings.retry.max_attempts = n.max(1);
        if let Some(t) = cfg.attempt_timeout_ms {
            settings.attempt_timeout = Duration::from_millis(t);
        }
        if let Some(m) = cfg.max_total_attempts {
            settings.max_total_attempts = m.max(1);
        }
        b = b.settings(settings);
    }
    if cfg.breaker_failure_threshold.is_some() || cfg.breaker_open_secs.is_some() {
        let mut breaker = wattos_core::resilience::BreakerConfig::default();
        if let Some(n) = cfg.breaker_failure_threshold {
            breaker.failure_threshold = n.max(1);
        }
        if let Some(s) = cfg.breaker_open_secs {
            breaker.reset_timeout = Duration::from_secs(s);
        }
        b = b.breaker(breaker);
    }
    if let Some(w) = &backends.windows {
        b = b.windows(w.clone());
    }
    if let Some(s) = &backends.budgets {
        b = b.budgets(s.clone());
    }
    if let Some(u) = usage {
        b = b.usage_sink(u);
    }
    if let Some(p) = &backends.policies {
        b = b.policy_source(p.clone());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_config_parses_groups_and_rejects_typos() {
        let t: toml::Table = toml::from_str(
            "strategy = \"round_robin\"\n[groups.chat]\ndeployments = [\"a\", \"b\"]\naliases = [\"default\"]\nfallbacks = [\"c\"]\n[deployments.a]\nweight = 3\n",
        )
        .unwrap();
        let c = RouterConfig::from_table(t).unwrap();
        assert_eq!(c.strategy, Some(Strategy::RoundRobin));
        assert_eq!(c.groups["chat"].deployments, ["a", "b"]);
        assert_eq!(c.deployments["a"].weight, Some(3));
        let t: toml::Table = toml::from_str("[groups.chat]\ndeployment = [\"a\"]\n").unwrap();
        let e = RouterConfig::from_table(t).unwrap_err();
        assert!(e.message().contains("deployment"), "{e}");
    }
}
