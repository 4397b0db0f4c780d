//! Prebuilt agents: a tool node, a ReAct agent, role agents and a supervisor, all over
//! [`AgentState`] and any [`wattos_core::llm::ChatModel`].

mod model;
mod react;
mod state;
mod supervisor;
mod tool_node;

pub use model::call_model;
pub use react::{ReactAgent, ToolRegistry};
pub use state::{AgentState, AgentStateUpdate, MessagesState};
pub use supervisor::{AgentRole, Supervisor};
pub use tool_node::{ToolNode, pending_tool_calls};
