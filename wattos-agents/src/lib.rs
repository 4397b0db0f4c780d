//! # wattos-agents
//!
//! Durable agent graphs for WattOS: typed state graphs with reducers, parallel branches, subgraphs and
//! cycles; a superstep executor that checkpoints after every step (in memory, SQLite or Postgres) and
//! streams events; human-in-the-loop interrupts resumable in any process; tools, a ReAct agent, role
//! agents and a supervisor; conversation memory.
//!
//! Every node, tool and memory call receives the caller's [`wattos_core::RequestContext`]; checkpoints
//! and memories are keyed by its tenant.

pub mod agent;
pub mod checkpoint;
pub mod conversation;
mod error;
pub mod graph;
pub mod memory;
pub mod registry;
mod state;

pub use error::GraphError;
pub use graph::{
    CheckpointInfo, Command, CompileOptions, CompiledGraph, Durability, END, Event, EventStream,
    Interrupt, InterruptKind, Node, NodeContext, NodeEvent, NodeOutput, Route, Routes, RunConfig,
    RunOutcome, RunStatus, START, StateGraph, StateSnapshot, Subgraph,
};
pub use registry::{GraphRegistry, JsonEvent, JsonEventStream, JsonGraph, JsonOutcome};
pub use state::{Append, JsonValue, Max, Merge, Reducer, Replace, State, Sum};

#[doc(hidden)]
pub use serde as __serde;
