//! Short-term memory: keep a conversation inside a token budget, optionally summarising what falls out.

use std::sync::Arc;

use wattos_core::RequestContext;
use wattos_core::Result;
use wattos_core::llm::{ChatModel, ChatRequest, Message};

/// Counts the tokens of a message.
pub type TokenCounter = Arc<dyn Fn(&Message) -> usize + Send + Sync>;

/// A rough, tokenizer-free estimate: 4 characters per token plus 4 tokens of per-message overhead.
pub fn approximate_tokens(message: &Message) -> usize {
    let mut chars = message.text().chars().count();
    if let Message::Assistant { tool_calls, .. } = message {
        chars += tool_calls
            .iter()
            .map(|c| c.name.len() + c.arguments.len())
            .sum::<usize>();
    }
    chars.div_ceil(4) + 4
}

/// Keeps the system messages and the most recent messages that fit in `max_tokens`.
///
/// Trimming never leaves a tool result without the assistant message that asked for it (providers
/// reject that), and never drops the latest message.
///
/// ```
/// use wattos_agents::memory::ConversationWindow;
/// use wattos_core::llm::Message;
///
/// let window = ConversationWindow::new(30);
/// let mut history = vec![Message::system("Be brief.")];
/// for i in 0..10 {
///     history.push(Message::user(format!("question number {i} with some words")));
/// }
/// let kept = window.trim(&history);
/// assert_eq!(kept[0], Message::system("Be brief."));
/// assert_eq!(kept.last(), history.last());
/// assert!(kept.len() < history.len());
/// ```
#[derive(Clone)]
pub struct ConversationWindow {
    max_tokens: usize,
    counter: TokenCounter,
}

impl std::fmt::Debug for ConversationWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationWindow")
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl ConversationWindow {
    /// A window of `max_tokens`, counted with [`approximate_tokens`].
    pub fn new(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            counter: Arc::new(approximate_tokens),
        }
    }

    /// Counts tokens with a real tokenizer.
    #[must_use]
    pub fn with_counter(mut self, counter: TokenCounter) -> Self {
        self.counter = counter;
        self
    }

    /// The budget.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokens of `messages`.
    pub fn count(&self, messages: &[Message]) -> usize {
        messages.iter().map(|m| (self.counter)(m)).sum()
    }

    /// Splits `messages` into (dropped, kept): `kept` has the system messages and the newest messages
    /// within budget.
    pub fn split(&self, messages: &[Message]) -> (Vec<Message>, Vec<Message>) {
        let (system, rest): (Vec<&Message>, Vec<&Message>) = messages
            .iter()
            .partition(|m| matches!(m, Message::System { .. }));
        let mut budget = self
            .max_tokens
            .saturating_sub(system.iter().map(|m| (self.counter)(m)).sum());
        let mut first_kept = rest.len();
        for (i, m) in rest.iter().enumerate().rev() {
            let cost = (self.counter)(m);
            if cost > budget && first_kept < rest.len() {
                break;
            }
            budget = budget.saturating_sub(cost);
            first_kept = i;
        }
        // Do not start with tool results whose call was dropped.
        while first_kept < rest.len().saturating_sub(1)
            && matches!(rest[first_kept], Message::Tool { .. })
        {
            first_kept += 1;
        }
        let dropped = rest[..first_kept].iter().map(|m| (*m).clone()).collect();
        let kept = system
            .into_iter()
            .chain(rest[first_kept..].iter().copied())
            .cloned()
            .collect();
        (dropped, kept)
    }

    /// The messages to send: system messages plus the newest that fit.
    pub fn trim(&self, messages: &[Message]) -> Vec<Message> {
        self.split(messages).1
    }

    /// Like [`ConversationWindow::trim`], but what falls out is summarised by `model` into one system
    /// message placed after the original system messages.
    ///
    /// # Errors
    /// The model's errors.
    pub async fn summarize(
        &self,
        ctx: &RequestContext,
        model: &dyn ChatModel,
        model_name: &str,
        messages: &[Message],
    ) -> Result<Vec<Message>> {
        let (dropped, mut kept) = self.split(messages);
        if dropped.is_empty() {
            return Ok(kept);
        }
        let transcript = dropped
            .iter()
            .map(|m| format!("{}: {}", m.role(), m.text()))
            .collect::<Vec<_>>()
            .join("\n");
        let req = ChatRequest::new(
            model_name,
            vec![
                Message::system(
                    "Summarise this conversation in a few sentences, keeping names, facts and decisions.",
                ),
                Message::user(transcript),
            ],
        );
        let summary = model.chat(ctx, req).await?;
        let at = kept
            .iter()
            .take_while(|m| matches!(m, Message::System { .. }))
            .count();
        kept.insert(
            at,
            Message::system(format!(
                "Summary of the earlier conversation: {}",
                summary.text()
            )),
        );
        Ok(kept)
    }
}
