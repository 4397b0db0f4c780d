//! Role-based agents and a supervisor that hands the conversation from one to another.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use wattos_core::Result;
use wattos_core::llm::{ChatModel, ChatRequest, Message, ToolDefinition};

use super::model::call_model;
use super::react::{ReactAgent, ToolRegistry};
use super::state::{AgentState, AgentStateUpdate};
use crate::graph::{
    CompileOptions, CompiledGraph, END, NodeContext, NodeOutput, Route, START, StateGraph, Subgraph,
};

/// A role: a name, what it is for, its own prompt, and the tools it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRole {
    /// Unique name (also the graph node name).
    pub name: String,
    /// What the role does, for the supervisor.
    pub description: String,
    /// The role's system prompt.
    pub prompt: String,
    /// Names of the tools it may call.
    pub tools: Vec<String>,
}

impl AgentRole {
    /// A role without tools.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        prompt: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            prompt: prompt.into(),
            tools: Vec::new(),
        }
    }

    /// Allows a tool.
    #[must_use]
    pub fn with_tool(mut self, name: impl Into<String>) -> Self {
        self.tools.push(name.into());
        self
    }

    /// The role as a ReAct agent over `model`, seeing only its allowed tools from `registry` (a call to
    /// any other tool is answered with an error result).
    pub fn agent(
        &self,
        model: Arc<dyn ChatModel>,
        model_name: &str,
        registry: &ToolRegistry,
    ) -> ReactAgent {
        ReactAgent::new(model, model_name)
            .with_prompt(self.prompt.clone())
            .with_tools(registry.tools())
            .allowing(self.tools.clone())
    }
}

const SUPERVISOR: &str = "supervisor";

fn transfer_tool(role: &AgentRole) -> ToolDefinition {
    ToolDefinition {
        name: format!("transfer_to_{}", role.name),
        description: format!(
            "Hand the conversation to `{}`: {}",
            role.name, role.description
        ),
        parameters: json!({"type": "object", "properties": {}}),
        strict: None,
    }
}

/// A supervisor that routes a conversation between role agents.
///
/// The supervisor model sees one `transfer_to_<role>` tool per role. Calling one hands the conversation
/// to that role's agent (a subgraph, so its own tool calls and interrupts are checkpointed and resumable);
/// when the agent finishes, control returns to the supervisor. Answering without a transfer ends the run.
pub struct Supervisor {
    model: Arc<dyn ChatModel>,
    model_name: String,
    prompt: String,
    agents: Vec<(AgentRole, CompiledGraph<AgentState>)>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("model", &self.model_name)
            .field(
                "agents",
                &self.agents.iter().map(|(r, _)| &r.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor over `model` with a default prompt.
    pub fn new(model: Arc<dyn ChatModel>, model_name: impl Into<String>) -> Self {
        Self {
            model,
            model_name: model_name.into(),
            prompt: "You are a supervisor. Hand the conversation to the best agent with a transfer tool, \
                     or answer the user directly when the work is done."
                .into(),
            agents: Vec::new(),
        }
    }

    /// Replaces the supervisor's prompt.
    #[must_use]
    pub fn with_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = prompt.into();
        self
    }

    /// Adds an agent for `role` (any compiled graph over [`AgentState`], usually
    /// `role.agent(..).compile(..)`).
    #[must_use]
    pub fn with_agent(mut self, role: AgentRole, graph: CompiledGraph<AgentState>) -> Self {
        self.agents.push((role, graph));
        self
    }

    /// Compiles the supervisor graph.
    ///
    /// # Errors
    /// Validation errors (duplicate role names, a role named `supervisor`, no agents).
    pub fn compile(self, options: CompileOptions) -> Result<CompiledGraph<AgentState>> {
        let names: Vec<String> = self.agents.iter().map(|(r, _)| r.name.clone()).collect();
        let tools: Vec<ToolDefinition> =
            self.agents.iter().map(|(r, _)| transfer_tool(r)).collect();
        let known: Arc<HashSet<String>> = Arc::new(names.iter().cloned().collect());
        let model = self.model.clone();
        let model_name = self.model_name.clone();
        let roster = self
            .agents
            .iter()
            .map(|(r, _)| format!("- {}: {}", r.name, r.description))
            .collect::<Vec<_>>()
            .join("\n");
        let prompt = format!("{}\n\nAgents:\n{roster}", self.prompt);
        let mut graph = StateGraph::<AgentState>::new()
            .add_node(
                SUPERVISOR,
                move |state: Arc<AgentState>, ctx: NodeContext| {
                    let (model, model_name, prompt, tools, known) = (
                        model.clone(),
                        model_name.clone(),
                        prompt.clone(),
                        tools.clone(),
                        known.clone(),
                    );
                    async move {
                        let mut messages = vec![Message::system(prompt)];
                        messages.extend(state.messages.iter().cloned());
                        let mut req = ChatRequest::new(model_name, messages);
                        req.tools = tools;
                        let resp = call_model(&ctx, &*model, req).await?;
                        let Some(call) = resp.tool_calls.first().cloned() else {
                            return Ok(NodeOutput::update(
                                AgentStateUpdate::default()
                                    .messages(vec![resp.to_message()])
                                    .active_agent(SUPERVISOR.into()),
                            )
                            .goto(Route::End));
                        };
                        let asked = Message::Assistant {
                            content: resp.content.clone(),
                            tool_calls: vec![call.clone()],
                        };
                        let target = call.name.strip_prefix("transfer_to_").unwrap_or("");
                        if !known.contains(target) {
                            let answer = Message::Tool {
                                tool_call_id: call.id,
                                content: format!("Error: no agent for tool `{}`", call.name),
                                is_error: true,
                            };
                            return Ok(NodeOutput::update(
                                AgentStateUpdate::default().messages(vec![asked, answer]),
                            )
                            .goto(SUPERVISOR));
                        }
                        let answer =
                            Message::tool_result(call.id, format!("Transferred to {target}."));
                        Ok(NodeOutput::update(
                            AgentStateUpdate::default()
                                .messages(vec![asked, answer])
                                .active_agent(target.to_owned()),
                        )
                        .goto(target))
                    }
                },
            )
            .add_edge(START, SUPERVISOR)
            .add_destinations(
                SUPERVISOR,
                names.iter().map(String::as_str).chain([END, SUPERVISOR]),
            );
        for (role, agent) in self.agents {
            let name = role.name.clone();
            let sub = Subgraph::new(
                agent,
                |s: &AgentState| AgentState {
                    messages: s.messages.clone(),
                    active_agent: s.active_agent.clone(),
                },
                |outer: &AgentState, inner: AgentState| {
                    AgentStateUpdate::default().messages(
                        inner
                            .messages
                            .get(outer.messages.len()..)
                            .unwrap_or_default()
                            .to_vec(),
                    )
                },
            );
            graph = graph
                .add_node_impl(name.clone(), sub)
                .add_edge(name, SUPERVISOR);
        }
        graph.compile(options)
    }
}
