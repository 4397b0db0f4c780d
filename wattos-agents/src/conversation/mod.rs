//! Conversations: durable chat threads per tenant and user, with messages, model, token and cost
//! totals. Continue one by id with [`Conversations::history`], which trims the stored history to
//! the model's context window with a [`ConversationWindow`].
//!
//! Storage is a [`ConversationStore`]: [`SqlConversationStore`] on SQLite (embedded, feature
//! `sqlite`) or Postgres (shared, feature `postgres`).
//!
//! **Access:** a thread belongs to the tenant and the principal (`subject`) that created it. Another
//! tenant and another user of the same tenant both get `NotFound`, with the same message as for an
//! id that does not exist (existence is revealed to no one but the owner); [`PrincipalKind::System`] principals (retention jobs, embedded use) may
//! act on every thread of their tenant.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use wattos_core::Error;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use wattos_core::PrincipalKind;
use wattos_core::llm::{Message, Usage};
use wattos_core::tenancy::Retention;
use wattos_core::{RequestContext, Result};

use crate::memory::ConversationWindow;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlConversationStore;

/// Longest accepted title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// A thread's header and running totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Id (UUIDv7, time-ordered).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// The principal subject that owns it.
    pub owner: String,
    /// Title.
    pub title: String,
    /// Model of the latest answer (or the one chosen at creation).
    pub model: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Last change, Unix milliseconds.
    pub updated_ms: i64,
    /// Messages stored.
    pub message_count: u64,
    /// Prompt tokens over all answers.
    pub input_tokens: u64,
    /// Generated tokens over all answers.
    pub output_tokens: u64,
    /// Cost over all answers, USD.
    pub cost_usd: f64,
    /// Free-form metadata (collection, agent, client).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// What to create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewConversation {
    /// Title (default: "New conversation").
    pub title: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// One message to append, with what producing it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    /// The message.
    pub message: Message,
    /// The model that wrote it (assistant turns).
    pub model: Option<String>,
    /// Tokens of the call that produced it.
    pub usage: Option<Usage>,
    /// Cost of that call, USD.
    pub cost_usd: f64,
    /// The request that produced it.
    pub request_id: Option<String>,
}

impl NewMessage {
    /// A message with no usage attached (user turns).
    pub fn plain(message: Message) -> Self {
        Self {
            message,
            model: None,
            usage: None,
            cost_usd: 0.0,
            request_id: None,
        }
    }

    /// An answer with its model, usage and cost.
    pub fn answer(message: Message, model: impl Into<String>, usage: Usage, cost_usd: f64) -> Self {
        Self {
            message,
            model: Some(model.into()),
            usage: Some(usage),
            cost_usd,
            request_id: None,
        }
    }

    /// Links the message to a request id.
    #[must_use]
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Position in the thread, from 0.
    pub seq: u64,
    /// The message.
    pub message: Message,
    /// Model that wrote it.
    pub model: Option<String>,
    /// Prompt tokens of the call that produced it.
    pub input_tokens: u64,
    /// Generated tokens of that call.
    pub output_tokens: u64,
    /// Cost of that call, USD.
    pub cost_usd: f64,
    /// Request id.
    pub request_id: Option<String>,
    /// Unix milliseconds.
    pub created_ms: i64,
}

/// A thread with all its messages (the export format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationExport {
    /// Header and totals.
    pub conversation: Conversation,
    /// Messages in order.
    pub messages: Vec<StoredMessage>,
}

/// Listing options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListOptions {
    /// Most threads returned (1..=200).
    pub limit: u32,
    /// Only threads updated before this time (Unix ms): the cursor for the next page.
    pub before_ms: Option<i64>,
}

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            limit: 50,
            before_ms: None,
        }
    }
}

/// Durable conversation storage, scoped by the caller's tenant and principal (see the module docs).
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Creates a thread owned by the caller.
    ///
    /// # Errors
    /// Invalid title; storage failures (`Unavailable`).
    async fn create(&self, ctx: &RequestContext, new: NewConversation) -> Result<Conversation>;

    /// One thread.
    ///
    /// # Errors
    /// `NotFound` (no such thread in the tenant, or another user's).
    async fn get(&self, ctx: &RequestContext, id: &str) -> Result<Conversation>;

    /// The caller's threads, most recently updated first.
    ///
    /// # Errors
    /// Storage failures.
    async fn list(&self, ctx: &RequestContext, opts: ListOptions) -> Result<Vec<Conversation>>;

    /// Sets the title.
    ///
    /// # Errors
    /// As [`ConversationStore::get`]; invalid title.
    async fn rename(&self, ctx: &RequestContext, id: &str, title: &str) -> Result<Conversation>;

    /// Deletes the thread and its messages.
    ///
    /// # Errors
    /// As [`ConversationStore::get`].
    async fn delete(&self, ctx: &RequestContext, id: &str) -> Result<()>;

    /// Appends messages atomically and adds their usage and cost to the totals; the latest model
    /// named becomes the thread's model.
    ///
    /// # Errors
    /// As [`ConversationStore::get`]; an empty batch is `InvalidInput`.
    async fn append(
        &self,
        ctx: &RequestContext,
        id: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Conversation>;

    /// All messages of a thread, in order.
    ///
    /// # Errors
    /// As [`ConversationStore::get`].
    async fn messages(&self, ctx: &RequestContext, id: &str) -> Result<Vec<StoredMessage>>;

    /// Deletes the tenant's threads last updated before `cutoff_ms` (every owner). Needs a
    /// [`PrincipalKind::System`] principal.
    ///
    /// # Errors
    /// `Forbidden` for other principals; storage failures.
    async fn purge_before(&self, ctx: &RequestContext, cutoff_ms: i64) -> Result<u64>;
}

/// Validates and normalises a title.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn check_title(title: &str) -> Result<String> {
    let t = title.trim();
    if t.is_empty() {
        return Err(Error::invalid_field("title", "must not be empty"));
    }
    if t.chars().count() > MAX_TITLE_CHARS {
        return Err(Error::invalid_field(
            "title",
            format!("longer than {MAX_TITLE_CHARS} characters"),
        ));
    }
    Ok(t.to_owned())
}

/// The error for a thread `id` the caller cannot see: the same whether it does not exist or belongs
/// to someone else, so neither its existence nor its owner leaks.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn missing(id: &str) -> Error {
    Error::not_found(format!("conversation {:?}", wattos_core::error::quote(id)))
}

/// Whether the caller may act on thread `id` owned by `owner` (tenant already matched); another
/// user's thread is [`missing`], exactly like one that does not exist.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn check_owner(ctx: &RequestContext, owner: &str, id: &str) -> Result<()> {
    let p = ctx.principal();
    if p.kind == PrincipalKind::System || p.subject == owner {
        Ok(())
    } else {
        Err(missing(id))
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The conversation service: a store plus history trimming and retention.
#[derive(Clone)]
pub struct Conversations {
    store: Arc<dyn ConversationStore>,
}

impl std::fmt::Debug for Conversations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversations").finish_non_exhaustive()
    }
}

impl Conversations {
    /// A service over `store`.
    pub fn new(store: Arc<dyn ConversationStore>) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ConversationStore> {
        &self.store
    }

    /// The thread's messages trimmed by `window` (system messages and the newest turns that fit);
    /// append the new user turn before sending. Use [`window_for_model`] for a model's window.
    ///
    /// # Errors
    /// As [`ConversationStore::messages`].
    pub async fn history(
        &self,
        ctx: &RequestContext,
        id: &str,
        window: &ConversationWindow,
    ) -> Result<Vec<Message>> {
        let all: Vec<Message> = self
            .store
            .messages(ctx, id)
            .await?
            .into_iter()
            .map(|m| m.message)
            .collect();
        Ok(window.trim(&all))
    }

    /// The thread with every message.
    ///
    /// # Errors
    /// As [`ConversationStore::get`].
    pub async fn export(&self, ctx: &RequestContext, id: &str) -> Result<ConversationExport> {
        let conversation = self.store.get(ctx, id).await?;
        let messages = self.store.messages(ctx, id).await?;
        Ok(ConversationExport {
            conversation,
            messages,
        })
    }

    /// Applies the tenant's retention (`data_days`) now; returns the threads deleted.
    ///
    /// # Errors
    /// As [`ConversationStore::purge_before`].
    pub async fn apply_retention(
        &self,
        ctx: &RequestContext,
        retention: &Retention,
    ) -> Result<u64> {
        let Some(days) = retention.data_days else {
            return Ok(0);
        };
        let cutoff = now_ms().saturating_sub(i64::from(days) * 86_400_000);
        self.store.purge_before(ctx, cutoff).await
    }
}

/// A window for a model with `context_window` tokens, keeping `reserve_output` tokens free for
/// the answer (at least 1/8 of the window when `reserve_output` is 0).
pub fn window_for_model(context_window: usize, reserve_output: usize) -> ConversationWindow {
    let reserve = if reserve_output == 0 {
        context_window / 8
    } else {
        reserve_output
    };
    ConversationWindow::new(context_window.saturating_sub(reserve).max(1))
}
