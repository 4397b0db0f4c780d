//! [`Router`]: a [`ChatModel`] that routes each request to one of its deployments.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use wattos_core::llm::{
    Capabilities, ChatDelta, ChatModel, ChatRequest, ChatResponse, ChatStream, Usage,
    response_to_deltas,
};
use wattos_core::state::CacheStore;
use wattos_core::{Error, RequestContext, Result, TenantId};

use super::builder::RouterBuilder;
use super::cache::ResponseCache;
use super::engine::{Admitted, Engine, Lease};
use super::estimate::estimate_chat;
use super::health::{ProbeOutcome, RouterHealth};
use super::policy::TenantPolicy;
use super::shared::{RouterHealthCheck, spawn_probes};
use crate::usage::{UsageOutcome, UsageRecord};

/// Routes chat requests over deployments grouped into model groups, with fallbacks, circuit
/// breakers, retries, limits, budgets, usage accounting and an optional cache. Cheap to clone.
///
/// ```
/// use std::sync::Arc;
/// use async_trait::async_trait;
/// use wattos_core::llm::*;
/// use wattos_core::{Error, RequestContext, Result, TenantId};
/// use wattos_llm::router::{Deployment, ModelGroup, Router, Strategy};
///
/// struct Fixed(&'static str, bool);
/// #[async_trait]
/// impl ChatModel for Fixed {
///     fn name(&self) -> &str { self.0 }
///     async fn chat(&self, _: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
///         if !self.1 { return Err(Error::upstream(self.0, Some(503), true, "down")); }
///         Ok(ChatResponse { id: "1".into(), model: req.model, content: Some(self.0.into()),
///             tool_calls: vec![], finish_reason: FinishReason::Stop, usage: Usage::default(),
///             cost: None, provider_fields: Default::default() })
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let router = Router::builder()
///     .deployment(Deployment::chat("primary", Fixed("primary", false)))
///     .deployment(Deployment::chat("backup", Fixed("backup", true)))
///     .group(ModelGroup::new("chat").deployments(["primary", "backup"]).strategy(Strategy::Priority))
///     .build()?;
/// let ctx = RequestContext::system(TenantId::new("acme")?);
/// let answer = router.chat(&ctx, ChatRequest::new("chat", vec![Message::user("hi")])).await?;
/// assert_eq!(answer.text(), "backup"); // the primary failed, the backup answered
/// # Ok::<_, Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Router {
    engine: Arc<Engine<dyn ChatModel>>,
    cache: Option<ResponseCache>,
    name: Arc<str>,
    capabilities: Capabilities,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("name", &self.name)
            .field("models", &self.models())
            .finish_non_exhaustive()
    }
}

impl RouterBuilder<dyn ChatModel> {
    /// Caches successful answers in `store` for `ttl` (exact match, tenant-scoped).
    pub fn response_cache(mut self, store: Arc<dyn CacheStore>, ttl: Duration) -> Self {
        self.cache = Some((store, ttl));
        self
    }

    /// Validates the configuration and builds the router.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] for duplicate ids or names, empty groups, unknown
    /// deployments or fallback groups.
    pub fn build(self) -> Result<Router> {
        let (engine, cache, name) = self.build_engine()?;
        let mut capabilities = Capabilities {
            streaming: true,
            tools: true,
            json_schema: true,
            vision: true,
            context_window: None,
            max_output_tokens: None,
        };
        for slot in &engine.slots {
            let c = slot.dep.model.capabilities();
            capabilities.tools &= c.tools;
            capabilities.json_schema &= c.json_schema;
            capabilities.vision &= c.vision;
            let window = slot.dep.context_window.or(c.context_window);
            capabilities.context_window = capabilities.context_window.max(window);
            capabilities.max_output_tokens =
                capabilities.max_output_tokens.max(c.max_output_tokens);
        }
        Ok(Router {
            engine: Arc::new(engine),
            cache,
            name: Arc::from(name),
            capabilities,
        })
    }
}

impl Router {
    /// A builder for a chat router.
    pub fn builder() -> RouterBuilder<dyn ChatModel> {
        RouterBuilder::new("router")
    }

    /// Names of the model groups (what callers may put in `ChatRequest::model`, besides aliases).
    pub fn models(&self) -> Vec<String> {
        self.engine.groups.iter().map(|g| g.name.clone()).collect()
    }

    /// Health of every deployment.
    pub fn health(&self) -> RouterHealth {
        self.engine.health()
    }

    /// A health check to register with the server's `HealthRegistry`.
    pub fn health_check(&self) -> RouterHealthCheck {
        RouterHealthCheck {
            name: format!("llm_router:{}", self.name),
            source: self.engine.clone(),
        }
    }

    /// The canonical model group a request naming `model` would go to for `ctx`'s caller: a name or
    /// alias, or for an empty name the tenant's default model, else the router's default. Checked
    /// against the caller's allow-list, so the answer is a model the caller may use.
    ///
    /// # Errors
    /// `not_found` for a name the router does not serve; `forbidden` when the caller's tenant may
    /// not use the model; the policy source's error.
    pub async fn resolve_model(&self, ctx: &RequestContext, model: &str) -> Result<String> {
        let (group, _) = self.engine.resolve_for(ctx, model).await?;
        Ok(self.engine.groups[group].name.clone())
    }

    /// Replaces one tenant's policy at run time.
    pub fn set_tenant_policy(&self, tenant: TenantId, policy: TenantPolicy) {
        self.engine.set_policy(tenant, policy);
    }

    /// Replaces the policy of tenants without their own.
    pub fn set_default_policy(&self, policy: TenantPolicy) {
        self.engine.set_default_policy(policy);
    }

    /// Sends a one-token probe to every deployment whose breaker admits a call. Probes cost a little
    /// money, run under the `wattos-probe` tenant, and are not written to the usage sink.
    pub async fn probe(&self) -> Vec<(String, ProbeOutcome)> {
        self.engine.probe_all().await
    }

    /// Probes every `interval` in the background until the router is dropped.
    pub fn spawn_active_probes(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        spawn_probes(Arc::downgrade(&self.engine), interval)
    }

    async fn admit(&self, ctx: &RequestContext, req: &ChatRequest) -> Result<Admitted> {
        req.validate()?;
        let est = estimate_chat(req, self.engine.settings.default_output_tokens);
        self.engine.admit(ctx, &req.model, est).await
    }

    async fn cached(
        &self,
        ctx: &RequestContext,
        adm: &Admitted,
        req: &ChatRequest,
        streamed: bool,
    ) -> (Option<ChatResponse>, Option<wattos_core::state::StateKey>) {
        let Some(cache) = &self.cache else {
            return (None, None);
        };
        let group = &self.engine.groups[adm.group].name;
        let Some(key) = ResponseCache::key(ctx.tenant(), group, req) else {
            return (None, None);
        };
        let hit = cache.get(&key).await;
        if let Some(resp) = &hit {
            self.engine.refund_request(adm).await;
            if let Some(sink) = &self.engine.usage {
                let record = UsageRecord {
                    at: SystemTime::now(),
                    tenant: ctx.tenant().clone(),
                    principal: ctx.principal().subject.clone(),
                    request_id: ctx.request_id().to_string(),
                    model_group: group.clone(),
                    deployment: String::new(),
                    upstream_model: resp.model.clone(),
                    usage: Usage::default(),
                    cost_nanos: 0,
                    latency: adm.started.elapsed(),
                    outcome: UsageOutcome::CacheHit,
                    attempt: 0,
                    streamed,
                };
                if let Err(e) = sink.record(record).await {
                    tracing::warn!(error = %e, "usage sink rejected a record");
                }
            }
        }
        (hit, Some(key))
    }
}

fn upstream_request(req: &ChatRequest, upstream_model: Option<&String>) -> ChatRequest {
    let mut r = req.clone();
    if let Some(m) = upstream_model {
        r.model.clone_from(m);
    }
    r
}

#[async_trait]
impl ChatModel for Router {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    async fn chat(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        let adm = self.admit(ctx, &req).await?;
        let (hit, cache_key) = self.cached(ctx, &adm, &req, false).await;
        if let Some(resp) = hit {
            return Ok(resp);
        }
        let (mut resp, lease) = self
            .engine
            .run(ctx, adm, false, |slot| {
                let r = upstream_request(&req, slot.dep.upstream_model.as_ref());
                let model = slot.dep.model.clone();
                let ctx = ctx.clone();
                Box::pin(async move { model.chat(&ctx, r).await })
            })
            .await?;
        let cost = lease.succeed(resp.usage, resp.cost).await;
        if resp.cost.is_none() {
            resp.cost = cost;
        }
        if let (Some(cache), Some(key)) = (&self.cache, cache_key) {
            cache.put(&key, &resp).await;
        }
        Ok(resp)
    }

    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        let adm = self.admit(ctx, &req).await?;
        if let (Some(resp), _) = self.cached(ctx, &adm, &req, true).await {
            return Ok(
                futures::stream::iter(response_to_deltas(&resp).into_iter().map(Ok)).boxed(),
            );
        }
        let ((first, rest), lease) = self
            .engine
            .run(ctx, adm, true, |slot| {
                let r = upstream_request(&req, slot.dep.upstream_model.as_ref());
                let model = slot.dep.model.clone();
                let ctx = ctx.clone();
                let label = slot.label.clone();
                Box::pin(async move {
                    // Fall back is possible until the first content delta: metadata-only deltas
                    // (`Start`) are held back until content arrives.
                    let mut stream = model.chat_stream(&ctx, r).await?;
                    let mut held = VecDeque::new();
                    loop {
                        match stream.next().await {
                            Some(Ok(d)) => {
                                let content = !matches!(d, ChatDelta::Start { .. });
                                held.push_back(d);
                                if content {
                                    return Ok((held, stream));
                                }
                            }
                            Some(Err(e)) => return Err(e),
                            None => {
                                return Err(Error::upstream(
                                    label,
                                    None,
                                    true,
                                    "stream ended before its first delta",
                                ));
                            }
                        }
                    }
                })
            })
            .await?;
        let label = lease.slot().map(|s| s.label.clone()).unwrap_or_default();
        let state = StreamState {
            first,
            rest,
            lease: Some(lease),
            usage: None,
            finished: false,
            done: false,
            idle: self.engine.settings.stream_idle_timeout,
            label,
        };
        Ok(futures::stream::unfold(state, StreamState::step).boxed())
    }
}

/// A routed stream after its first delta: errors pass through as items (no fallback once output
/// has started); the lease is closed when the stream ends, breaks, or is dropped.
struct StreamState {
    first: VecDeque<ChatDelta>,
    rest: ChatStream,
    lease: Option<Lease<dyn ChatModel>>,
    usage: Option<Usage>,
    finished: bool,
    done: bool,
    idle: Option<Duration>,
    label: String,
}

impl Drop for StreamState {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let usage = self.usage;
            handle.spawn(lease.cancel(usage));
        }
    }
}

impl StreamState {
    fn observe(&mut self, d: &ChatDelta) {
        match d {
            ChatDelta::Usage(u) => self.usage = Some(*u),
            ChatDelta::Finish { .. } => self.finished = true,
            _ => {}
        }
    }

    async fn step(mut self) -> Option<(Result<ChatDelta>, Self)> {
        if self.done {
            return None;
        }
        if let Some(d) = self.first.pop_front() {
            self.observe(&d);
            return Some((Ok(d), self));
        }
        let next = match self.idle {
            Some(t) => match tokio::time::timeout(t, self.rest.next()).await {
                Ok(n) => n,
                Err(_) => Some(Err(Error::timeout(
                    format!("stream from deployment '{}' (idle)", self.label),
                    t,
                ))),
            },
            None => self.rest.next().await,
        };
        match next {
            Some(Ok(d)) => {
                self.observe(&d);
                Some((Ok(d), self))
            }
            Some(Err(e)) => {
                self.done = true;
                if let Some(lease) = self.lease.take() {
                    lease.fail_after_output(&e, self.usage).await;
                }
                Some((Err(e), self))
            }
            None => {
                self.done = true;
                if !self.finished {
                    let e = Error::upstream(
                        self.label.clone(),
                        None,
                        true,
                        "stream ended before the model finished",
                    );
                    if let Some(lease) = self.lease.take() {
                        lease.fail_after_output(&e, self.usage).await;
                    }
                    return Some((Err(e), self));
                }
                if let Some(lease) = self.lease.take() {
                    lease.succeed(self.usage.unwrap_or_default(), None).await;
                }
                None
            }
        }
    }
}
