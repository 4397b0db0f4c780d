//! The checkpointer seam (filled in by the agents work): durable graph state after every step.
