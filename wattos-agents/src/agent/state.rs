//! The state of prebuilt agents: a conversation.

use wattos_core::llm::Message;

use crate::state::{Append, Replace, State};

crate::graph_state! {
    /// A conversation plus the name of the agent that spoke last (used by the supervisor).
    #[derive(Debug, PartialEq)]
    pub struct AgentState / AgentStateUpdate {
        /// The conversation, appended to by every node.
        pub messages: Vec<Message> => Append,
        /// The agent in charge (supervisor hand-offs).
        pub active_agent: String => Replace,
    }
}

/// A state that holds a conversation, so the prebuilt tool node and model nodes can work on it.
pub trait MessagesState: State {
    /// The conversation so far.
    fn messages(&self) -> &[Message];
    /// An update appending `messages`.
    fn append_messages(messages: Vec<Message>) -> Self::Update;
}

impl MessagesState for AgentState {
    fn messages(&self) -> &[Message] {
        &self.messages
    }
    fn append_messages(messages: Vec<Message>) -> AgentStateUpdate {
        AgentStateUpdate::default().messages(messages)
    }
}

impl AgentState {
    /// A conversation starting with one user message.
    pub fn user(text: impl Into<String>) -> AgentStateUpdate {
        AgentStateUpdate::default().messages(vec![Message::user(text)])
    }

    /// The text of the last assistant message.
    pub fn last_answer(&self) -> Option<String> {
        self.messages
            .iter()
            .rev()
            .find(|m| matches!(m, Message::Assistant { .. }))
            .map(Message::text)
    }
}
