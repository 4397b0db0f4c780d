//! The server's built-in graphs: `assistant` (a ReAct agent that can search the caller's RAG
//! collections) and `approval` (drafts a reply, then waits for a human before publishing it).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use wattos_agents::agent::{AgentState, ReactAgent, call_model};
use wattos_agents::{CompileOptions, END, NodeContext, NodeOutput, Replace, START, StateGraph};
use wattos_core::llm::{ChatModel, ChatRequest, Message};
use wattos_core::tool::{Tool, ToolError};
use wattos_core::{Error, RequestContext, Result};
use wattos_rag::retrieve::SearchRequest;

use super::service::AgentsService;
use crate::rag::RagService;

/// Name of the built-in ReAct agent.
pub const ASSISTANT: &str = "assistant";
/// Name of the built-in human-approval graph.
pub const APPROVAL: &str = "approval";

/// Searches the caller's RAG collections (one, or all of them).
pub struct SearchDocuments {
    rag: RagService,
}

impl SearchDocuments {
    /// A tool over `rag`.
    pub fn new(rag: RagService) -> Self {
        Self { rag }
    }
}

#[async_trait]
impl Tool for SearchDocuments {
    fn name(&self) -> &str {
        "search_documents"
    }
    fn description(&self) -> &str {
        "Searches the user's documents and returns the most relevant passages."
    }
    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for."},
                "collection": {"type": "string", "description": "Collection to search (default: all)."}
            },
            "required": ["query"]
        })
    }
    async fn invoke(&self, ctx: &RequestContext, args: Value) -> Result<Value, ToolError> {
        let query = args
            .get("query")
            .and_then(Value::as_str)
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| {
                ToolError::InvalidArguments("`query` must be a non-empty string".into())
            })?
            .to_owned();
        let collections: Vec<String> = match args.get("collection").and_then(Value::as_str) {
            Some(c) => {
                // Only the caller's own collections exist for it.
                match self.rag.registry().get_collection(ctx.tenant(), c).await {
                    Ok(Some(_)) => vec![c.to_owned()],
                    Ok(None) => {
                        return Err(ToolError::InvalidArguments(format!(
                            "no collection named {c:?}"
                        )));
                    }
                    Err(e) => return Err(ToolError::Failed(e)),
                }
            }
            None => self
                .rag
                .registry()
                .list_collections(ctx.tenant())
                .await
                .map_err(ToolError::Failed)?
                .into_iter()
                .take(10)
                .map(|c| c.name)
                .collect(),
        };
        let mut hits = Vec::new();
        for c in collections {
            let rag = self
                .rag
                .rag(ctx.tenant(), &c)
                .await
                .map_err(ToolError::Failed)?;
            let found = rag
                .search(ctx, &SearchRequest::new(query.clone(), 3))
                .await
                .map_err(ToolError::Failed)?;
            hits.extend(found.into_iter().map(|h| (c.clone(), h)));
        }
        hits.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
        hits.truncate(5);
        Ok(Value::Array(
            hits.into_iter()
                .map(
                    |(c, h)| json!({"collection": c, "document_id": h.document_id, "text": h.text}),
                )
                .collect(),
        ))
    }
}

wattos_agents::graph_state! {
    /// State of the `approval` graph.
    #[derive(Debug, PartialEq)]
    pub struct ApprovalState / ApprovalUpdate {
        /// What the user asked for.
        pub request: String => Replace,
        /// The drafted reply (a human may replace it when resuming with `edit`).
        pub draft: String => Replace,
        /// Whether the reply was published (after approval).
        pub published: bool => Replace,
        /// The published reply.
        pub reply: String => Replace,
    }
}

/// Registers the built-in graphs on `agents` for chat model `model` (served as `model_name`);
/// `assistant` gets the document search tool when `rag` is on.
///
/// # Errors
/// Graph validation errors.
pub fn register(
    agents: &AgentsService,
    model: Arc<dyn ChatModel>,
    model_name: &str,
    rag: Option<RagService>,
) -> Result<()> {
    let mut assistant = ReactAgent::new(model.clone(), model_name)
        .with_prompt(
            "You are a helpful assistant. Use the search_documents tool when the question is about \
             the user's documents, and answer briefly.",
        )
        .with_max_tokens(192);
    if let Some(rag) = rag {
        assistant = assistant.with_tool(Arc::new(SearchDocuments::new(rag)));
    }
    let assistant =
        assistant.compile(CompileOptions::new().with_checkpointer(agents.checkpointer()))?;
    agents.register(
        ASSISTANT,
        "A ReAct assistant on the default chat model; it can search the caller's RAG collections. \
         Input: {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}]}",
        serde_json::to_value(AgentState::user(
            "What do my documents say about solar panels?",
        ))
        .unwrap_or(Value::Null),
        assistant,
    )?;

    let model_name = model_name.to_owned();
    let approval = StateGraph::<ApprovalState>::new()
        .add_node(
            "draft",
            move |state: Arc<ApprovalState>, ctx: NodeContext| {
                let model = model.clone();
                let model_name = model_name.clone();
                async move {
                    if state.request.trim().is_empty() {
                        return Err(Error::invalid_field("input.request", "must not be empty"));
                    }
                    let mut req = ChatRequest::new(
                        model_name,
                        vec![
                            Message::system("Write a short, polite reply to the user's request."),
                            Message::user(state.request.clone()),
                        ],
                    );
                    req.max_tokens = Some(96);
                    let resp = call_model(&ctx, &*model, req).await?;
                    Ok(NodeOutput::update(
                        ApprovalUpdate::default().draft(resp.text().to_owned()),
                    ))
                }
            },
        )
        .add_node(
            "publish",
            |state: Arc<ApprovalState>, _ctx: NodeContext| async move {
                Ok(NodeOutput::update(
                    ApprovalUpdate::default()
                        .published(true)
                        .reply(state.draft.clone()),
                ))
            },
        )
        .add_edge(START, "draft")
        .add_edge("draft", "publish")
        .add_edge("publish", END)
        .compile(
            CompileOptions::new()
                .with_checkpointer(agents.checkpointer())
                .interrupt_before(["publish"]),
        )?;
    agents.register(
        APPROVAL,
        "Drafts a reply with the default chat model, then stops for a human before `publish`: \
         resume with approve, edit ({\"draft\": \"...\"}) or reject. Input: {\"request\": \"...\"}",
        json!({"request": "Please refund order 1234."}),
        approval,
    )?;
    Ok(())
}
