//! Graphs: build ([`StateGraph`]), validate, run ([`CompiledGraph`]).

mod builder;
mod compiled;
mod executor;
mod node;
mod subgraph;

pub use builder::{CompileOptions, Durability, StateGraph};
pub use compiled::{
    CheckpointInfo, CompiledGraph, Event, EventStream, RunConfig, RunOutcome, RunStatus,
    StateSnapshot,
};
pub use node::{
    Command, END, Interrupt, InterruptKind, Node, NodeContext, NodeEvent, NodeOutput, Route,
    Routes, START,
};
pub use subgraph::Subgraph;
