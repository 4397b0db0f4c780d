//! A prebuilt ReAct agent: the model thinks, calls tools, reads their results, until it answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wattos_core::Result;
use wattos_core::llm::{ChatModel, ChatRequest, Message, ToolChoice};
use wattos_core::tool::Tool;

use super::model::call_model;
use super::state::{AgentState, AgentStateUpdate};
use super::tool_node::{ToolNode, pending_tool_calls};
use crate::graph::{
    CompileOptions, CompiledGraph, END, NodeContext, NodeOutput, START, StateGraph,
};
use crate::memory::ConversationWindow;

/// Named tools to pick from (for roles).
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: HashMap<String, Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.tools.keys()).finish()
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool (replacing one of the same name).
    #[must_use]
    pub fn with(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.insert(tool.name().to_owned(), tool);
        self
    }

    /// All tools.
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.tools.values().cloned().collect()
    }
}

/// Builds a ReAct agent graph over [`AgentState`]: `agent` (the model) and `tools` (a [`ToolNode`]) in a
/// loop that ends when the model answers without tool calls.
///
/// ```
/// use std::sync::Arc;
/// use wattos_agents::agent::{AgentState, ReactAgent};
/// use wattos_agents::{CompileOptions, RunConfig};
/// use wattos_core::test_utils::chat::ScriptedChatModel;
/// use wattos_core::tool::{FnTool, ToolError};
/// use wattos_core::{RequestContext, TenantId};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Add { a: i64, b: i64 }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let model = ScriptedChatModel::new()
///     .then_tool_call("add", r#"{"a": 2, "b": 3}"#)
///     .then_text("2 + 3 = 5");
/// let add = FnTool::new("add", "Adds.", |_ctx: RequestContext, x: Add| async move { Ok::<_, ToolError>(x.a + x.b) });
/// let agent = ReactAgent::new(Arc::new(model), "scripted")
///     .with_prompt("You are a calculator.")
///     .with_tool(Arc::new(add))
///     .compile(CompileOptions::new())?;
/// let ctx = RequestContext::system(TenantId::new("acme")?);
/// let out = agent.invoke(&ctx, &RunConfig::default(), AgentState::user("2+3?")).await?;
/// assert_eq!(out.state.last_answer().as_deref(), Some("2 + 3 = 5"));
/// assert_eq!(out.state.messages[2].text(), "5"); // the tool result
/// # Ok::<_, wattos_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct ReactAgent {
    model: Arc<dyn ChatModel>,
    model_name: String,
    prompt: Option<String>,
    tools: Vec<Arc<dyn Tool>>,
    allowed: Option<Vec<String>>,
    tool_timeout: Duration,
    window: Option<ConversationWindow>,
    max_tokens: Option<u32>,
    first_tool_choice: Option<ToolChoice>,
    tool_choice: Option<ToolChoice>,
}

impl std::fmt::Debug for ReactAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactAgent")
            .field("model", &self.model_name)
            .field(
                "tools",
                &self
                    .tools
                    .iter()
                    .map(|t| t.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ReactAgent {
    /// An agent over `model`, sending `model_name` in requests.
    pub fn new(model: Arc<dyn ChatModel>, model_name: impl Into<String>) -> Self {
        Self {
            model,
            model_name: model_name.into(),
            prompt: None,
            tools: Vec::new(),
            allowed: None,
            tool_timeout: Duration::from_secs(30),
            window: None,
            max_tokens: None,
            first_tool_choice: None,
            tool_choice: None,
        }
    }

    /// The system prompt.
    #[must_use]
    pub fn with_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }

    /// Adds a tool.
    #[must_use]
    pub fn with_tool(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.push(tool);
        self
    }

    /// Adds tools.
    #[must_use]
    pub fn with_tools(mut self, tools: impl IntoIterator<Item = Arc<dyn Tool>>) -> Self {
        self.tools.extend(tools);
        self
    }

    /// Restricts the tools the model sees and may call to these names.
    #[must_use]
    pub fn allowing<I: IntoIterator<Item = T>, T: Into<String>>(mut self, names: I) -> Self {
        self.allowed = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Default time limit per tool call.
    #[must_use]
    pub fn with_tool_timeout(mut self, timeout: Duration) -> Self {
        self.tool_timeout = timeout;
        self
    }

    /// Sends only the newest messages that fit this window to the model (the state keeps them all).
    #[must_use]
    pub fn with_window(mut self, window: ConversationWindow) -> Self {
        self.window = Some(window);
        self
    }

    /// Maximum output tokens per model call.
    #[must_use]
    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Tool choice for the model's first call after each user message, for example
    /// [`ToolChoice::Required`] to make the model use a tool before it answers (small local models
    /// otherwise tend to answer from memory). Later calls use [`ReactAgent::with_tool_choice`].
    #[must_use]
    pub fn with_first_tool_choice(mut self, choice: ToolChoice) -> Self {
        self.first_tool_choice = Some(choice);
        self
    }

    /// Tool choice for every model call (the first one after a user message excepted when
    /// [`ReactAgent::with_first_tool_choice`] is set). Unset: the model's default (it decides).
    #[must_use]
    pub fn with_tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// The tool choice for a call over `messages`.
    fn choice_for(&self, messages: &[Message]) -> Option<ToolChoice> {
        let first_turn = !messages
            .iter()
            .rev()
            .take_while(|m| !matches!(m, Message::User { .. }))
            .any(|m| matches!(m, Message::Tool { .. }));
        match (&self.first_tool_choice, first_turn) {
            (Some(first), true) => Some(first.clone()),
            _ => self.tool_choice.clone(),
        }
    }

    /// The agent as a graph, to extend before compiling.
    pub fn graph(self) -> StateGraph<AgentState> {
        let mut tool_node =
            ToolNode::<AgentState>::new(self.tools.clone()).with_timeout(self.tool_timeout);
        if let Some(allowed) = &self.allowed {
            tool_node = tool_node.allowing(allowed.clone());
        }
        let definitions = tool_node.definitions();
        let has_tools = !definitions.is_empty();
        let agent = Arc::new(self);
        let graph = StateGraph::<AgentState>::new()
            .add_node("agent", move |state: Arc<AgentState>, ctx: NodeContext| {
                let agent = agent.clone();
                let definitions = definitions.clone();
                async move {
                    let messages = match &agent.window {
                        Some(w) => w.trim(&state.messages),
                        None => state.messages.clone(),
                    };
                    let mut all = Vec::with_capacity(messages.len() + 1);
                    if let Some(p) = &agent.prompt {
                        all.push(Message::system(p.clone()));
                    }
                    all.extend(messages);
                    let mut req = ChatRequest::new(agent.model_name.clone(), all);
                    if !definitions.is_empty() {
                        req.tool_choice = agent.choice_for(&state.messages);
                    }
                    req.tools = definitions;
                    req.max_tokens = agent.max_tokens;
                    let resp = call_model(&ctx, &*agent.model, req).await?;
                    Ok(NodeOutput::update(
                        AgentStateUpdate::default().messages(vec![resp.to_message()]),
                    ))
                }
            })
            .add_edge(START, "agent");
        if has_tools {
            graph
                .add_node_impl("tools", tool_node)
                .add_conditional_edges(
                    "agent",
                    |s: &AgentState| {
                        if pending_tool_calls(&s.messages).is_empty() {
                            END
                        } else {
                            "tools"
                        }
                    },
                    ["tools", END],
                )
                .add_edge("tools", "agent")
        } else {
            graph.add_edge("agent", END)
        }
    }

    /// Compiles the agent graph.
    ///
    /// # Errors
    /// Graph validation errors (for example a breakpoint on an unknown node).
    pub fn compile(self, options: CompileOptions) -> Result<CompiledGraph<AgentState>> {
        self.graph().compile(options)
    }
}
