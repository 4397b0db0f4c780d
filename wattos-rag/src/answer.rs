//! Context assembly under a token budget with numbered sources, and cited answers.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wattos_core::llm::{ChatModel, ChatRequest, Message, Usage};
use wattos_core::vector_store::Hit;
use wattos_core::{Error, RequestContext, Result};

use crate::chunk::{ApproxTokenCounter, TokenCounter};
use crate::retrieve::{Retriever, SearchRequest};

/// One numbered source in a context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The number used in citations, from 1.
    pub number: usize,
    /// Chunk id.
    pub chunk_id: String,
    /// Document id.
    pub document_id: String,
    /// Document title, if known.
    pub title: Option<String>,
    /// Document location (path, URL), if known.
    pub location: Option<String>,
    /// Section heading path, if known.
    pub section: Option<String>,
    /// Chunk start offset in the document text, in chars.
    pub start_char: Option<u64>,
    /// Chunk end offset (exclusive), in chars.
    pub end_char: Option<u64>,
    /// Retrieval score.
    pub score: f32,
    /// The chunk text.
    pub text: String,
}

/// The assembled context: prompt text plus the sources it numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// `[1] (title — section)\ntext\n\n[2] ...`.
    pub text: String,
    /// Sources in number order.
    pub sources: Vec<SourceRef>,
    /// Tokens used by `text`.
    pub tokens: usize,
    /// Hits left out (duplicates or over budget).
    pub dropped: usize,
}

/// Packs hits, best first, into a context of at most `budget_tokens`: drops duplicate chunks (same
/// id or same text), skips hits that do not fit and keeps trying smaller ones.
#[derive(Clone)]
pub struct ContextBuilder {
    budget_tokens: usize,
    counter: Arc<dyn TokenCounter>,
}

impl ContextBuilder {
    /// A builder with a budget, counting with [`ApproxTokenCounter`].
    pub fn new(budget_tokens: usize) -> Self {
        Self {
            budget_tokens,
            counter: Arc::new(ApproxTokenCounter),
        }
    }

    /// Counts with the chat model's tokenizer.
    pub fn with_counter(mut self, counter: Arc<dyn TokenCounter>) -> Self {
        self.counter = counter;
        self
    }

    /// Builds the context from hits (any order; sorted by score here).
    pub fn build(&self, hits: &[Hit]) -> Context {
        let mut sorted: Vec<&Hit> = hits.iter().collect();
        sorted.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        let mut seen_ids = HashSet::new();
        let mut seen_text = HashSet::new();
        let mut text = String::new();
        let mut sources = Vec::new();
        let mut tokens = 0;
        let mut dropped = 0;
        for h in sorted {
            if !seen_ids.insert(h.id.as_str()) || !seen_text.insert(h.text.trim()) {
                dropped += 1;
                continue;
            }
            let meta_str = |k: &str| {
                h.metadata
                    .get(k)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            let title = meta_str("title");
            let section = meta_str("section");
            let number = sources.len() + 1;
            let label = match (&title, &section) {
                (Some(t), Some(s)) => format!(" ({t} — {s})"),
                (Some(t), None) => format!(" ({t})"),
                (None, Some(s)) => format!(" ({s})"),
                (None, None) => format!(" ({})", h.document_id),
            };
            let block = format!("[{number}]{label}\n{}\n\n", h.text.trim());
            let cost = self.counter.count(&block);
            if tokens + cost > self.budget_tokens {
                dropped += 1;
                continue;
            }
            tokens += cost;
            text.push_str(&block);
            sources.push(SourceRef {
                number,
                chunk_id: h.id.clone(),
                document_id: h.document_id.clone(),
                title,
                location: meta_str("location"),
                section,
                start_char: h.metadata.get("start_char").and_then(|v| v.as_u64()),
                end_char: h.metadata.get("end_char").and_then(|v| v.as_u64()),
                score: h.score,
                text: h.text.clone(),
            });
        }
        Context {
            text: text.trim_end().to_owned(),
            sources,
            tokens,
            dropped,
        }
    }
}

/// Options for [`answer`].
#[derive(Debug, Clone)]
pub struct AnswerOptions {
    /// Model name sent in the chat request.
    pub model: String,
    /// The retrieval request (its query is replaced by the question).
    pub search: SearchRequest,
    /// Token budget for the sources.
    pub context_tokens: usize,
    /// Maximum answer tokens.
    pub max_tokens: Option<u32>,
    /// Earlier turns of the conversation, sent between the instructions and the question so a
    /// follow-up ("and in winter?") is understood. Only the question is searched. Trim them to the
    /// model's context window first (e.g. with `wattos_agents::memory::ConversationWindow`).
    pub history: Vec<Message>,
}

impl AnswerOptions {
    /// Retrieve 8 chunks (auto mode), 3000 context tokens.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            search: SearchRequest::new("", 8),
            context_tokens: 3000,
            max_tokens: None,
            history: Vec::new(),
        }
    }
}

/// A cited answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The answer text with only valid `[n]` citations left.
    pub text: String,
    /// Sources the answer cites, in number order.
    pub cited: Vec<SourceRef>,
    /// Every source given to the model.
    pub sources: Vec<SourceRef>,
    /// Citation numbers the model used that point at no source; removed from `text`.
    pub invalid_citations: Vec<usize>,
    /// Chat usage.
    pub usage: Usage,
}

const SYSTEM_PROMPT: &str = "Answer the question using only the numbered sources. Cite every claim with the source number in square brackets, like [1] or [2][3]. If the sources do not contain the answer, say that you do not know.";

/// Retrieves, prompts `chat` with numbered sources, and returns the answer with its sources.
/// Citations to numbers that were not given are removed from the text and listed in
/// [`Answer::invalid_citations`].
///
/// # Errors
/// Invalid question; retrieval and chat failures.
pub async fn answer(
    ctx: &RequestContext,
    retriever: &Retriever,
    chat: &dyn ChatModel,
    question: &str,
    opts: &AnswerOptions,
) -> Result<Answer> {
    if question.trim().is_empty() {
        return Err(Error::invalid_field("question", "must not be empty"));
    }
    let mut search = opts.search.clone();
    search.query = question.to_owned();
    let hits = retriever.search(ctx, &search).await?;
    let context = ContextBuilder::new(opts.context_tokens).build(&hits);
    let req = answer_request(question, &context, opts);
    let resp = chat.chat(ctx, req).await?;
    Ok(finish_answer(resp.text(), context, resp.usage))
}

/// The chat request [`answer`] sends: the citation instructions, the numbered sources of `context`
/// and the question, with [`AnswerOptions::history`] between the instructions and the question
/// (for callers that stream the answer themselves).
pub fn answer_request(question: &str, context: &Context, opts: &AnswerOptions) -> ChatRequest {
    let user = if context.sources.is_empty() {
        format!("Sources: none found.\n\nQuestion: {question}")
    } else {
        format!("Sources:\n\n{}\n\nQuestion: {question}", context.text)
    };
    let mut messages = Vec::with_capacity(opts.history.len() + 2);
    messages.push(Message::system(SYSTEM_PROMPT));
    messages.extend(
        opts.history
            .iter()
            .filter(|m| !matches!(m, Message::System { .. }))
            .cloned(),
    );
    messages.push(Message::user(user));
    let mut req = ChatRequest::new(opts.model.clone(), messages).with_temperature(0.0);
    req.max_tokens = opts.max_tokens;
    req
}

/// Turns the model's `text` for `context` into an [`Answer`]: citations to sources that were not
/// given are removed and listed.
pub fn finish_answer(text: &str, context: Context, usage: Usage) -> Answer {
    let (text, used, invalid) = check_citations(text, context.sources.len());
    let cited = context
        .sources
        .iter()
        .filter(|s| used.contains(&s.number))
        .cloned()
        .collect();
    if !invalid.is_empty() {
        tracing::warn!(
            ?invalid,
            "answer cited sources that were not retrieved; removed"
        );
    }
    Answer {
        text,
        cited,
        sources: context.sources,
        invalid_citations: invalid,
        usage,
    }
}

/// Removes `[n]` citations with `n` outside `1..=sources` (also inside `[1, 7]` lists). Returns the
/// cleaned text, the valid numbers used, and the invalid numbers found.
pub fn check_citations(text: &str, sources: usize) -> (String, Vec<usize>, Vec<usize>) {
    let mut out = String::with_capacity(text.len());
    let mut used = Vec::new();
    let mut invalid = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let inner = &after[..close];
        let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
        let numbers: Option<Vec<usize>> = parts.iter().map(|p| p.parse::<usize>().ok()).collect();
        match numbers {
            Some(nums) if !nums.is_empty() => {
                let valid: Vec<usize> = nums
                    .iter()
                    .copied()
                    .filter(|n| (1..=sources).contains(n))
                    .collect();
                for n in &nums {
                    if (1..=sources).contains(n) {
                        if !used.contains(n) {
                            used.push(*n);
                        }
                    } else if !invalid.contains(n) {
                        invalid.push(*n);
                    }
                }
                if !valid.is_empty() {
                    out.push('[');
                    out.push_str(
                        &valid
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                    );
                    out.push(']');
                } else if out.ends_with(' ')
                    && after[close + 1..].starts_with(['.', ',', ';', ':', ' ', '\n'])
                {
                    out.pop();
                }
            }
            _ => {
                out.push('[');
                out.push_str(inner);
                out.push(']');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    used.sort_unstable();
    invalid.sort_unstable();
    (out, used, invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hit(id: &str, score: f32, text: &str) -> Hit {
        let mut h = Hit {
            id: id.into(),
            document_id: id.split('#').next().unwrap_or(id).into(),
            score,
            text: text.into(),
            metadata: Default::default(),
        };
        h.metadata.insert("title".into(), json!("T"));
        h.metadata.insert("start_char".into(), json!(5));
        h
    }

    #[test]
    fn history_goes_between_instructions_and_question() {
        let ctx = ContextBuilder::new(100).build(&[hit("a#0", 0.5, "heat pumps")]);
        let mut opts = AnswerOptions::new("m");
        opts.history = vec![
            Message::system("ignored: the answer prompt has its own instructions"),
            Message::user("What is a heat pump?"),
            Message::assistant("A device that moves heat [1]."),
        ];
        let req = answer_request("And in winter?", &ctx, &opts);
        let roles: Vec<&str> = req.messages.iter().map(Message::role).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(req.messages[0].text(), SYSTEM_PROMPT);
        assert!(req.messages[3].text().ends_with("Question: And in winter?"));
        assert!(req.messages[3].text().contains("heat pumps"));
    }

    #[test]
    fn context_dedupes_orders_and_respects_budget() {
        let hits = vec![
            hit("a#0", 0.5, "alpha beta"),
            hit("b#0", 0.9, "gamma"),
            hit("c#0", 0.7, "gamma"),
            hit("d#0", 0.1, &"long ".repeat(200)),
        ];
        let ctx = ContextBuilder::new(30).build(&hits);
        assert_eq!(
            ctx.sources
                .iter()
                .map(|s| s.chunk_id.as_str())
                .collect::<Vec<_>>(),
            ["b#0", "a#0"]
        );
        assert_eq!(ctx.sources[0].number, 1);
        assert_eq!(ctx.sources[0].start_char, Some(5));
        assert!(ctx.text.starts_with("[1] (T)\ngamma"));
        assert_eq!(ctx.dropped, 2);
        assert!(ctx.tokens <= 30);
    }

    #[test]
    fn invalid_citations_are_removed_and_reported() {
        let (t, used, bad) = check_citations(
            "Paris is big [1]. It has a tower [4]. Both [2, 9]. See [note].",
            2,
        );
        assert_eq!(t, "Paris is big [1]. It has a tower. Both [2]. See [note].");
        assert_eq!(used, [1, 2]);
        assert_eq!(bad, [4, 9]);
        assert_eq!(check_citations("no cites", 3).0, "no cites");
        assert_eq!(check_citations("open [1", 3).0, "open [1");
    }
}
