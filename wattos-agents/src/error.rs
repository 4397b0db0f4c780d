//! Typed graph errors. They travel inside a [`wattos_core::Error`] (as its source), so every API returns
//! the platform's one error type; [`GraphError::find`] gets the typed cause back.

use wattos_core::{Error, ErrorKind};

/// What went wrong in building or running a graph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The graph failed validation; every problem is listed.
    #[error("invalid graph: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A run took more supersteps than allowed (a cycle that does not end).
    #[error(
        "step limit of {limit} reached without finishing (the graph's limit, RunConfig::with_step_limit, or a ceiling such as the tenant's agents.max_steps)"
    )]
    StepLimit {
        /// The limit.
        limit: u32,
    },
    /// A node or router chose a target it did not declare.
    #[error("node `{node}` routed to `{target}`, which is not one of its declared targets")]
    UndeclaredRoute {
        /// The routing node.
        node: String,
        /// The chosen target.
        target: String,
    },
    /// Persistence (resume, history, interrupts) was used on a graph compiled without a checkpointer or
    /// a run without a thread id.
    #[error("this needs a checkpointer and a thread id")]
    NoCheckpointer,
    /// `resume` found no checkpoint for the thread.
    #[error("thread `{0}` has no checkpoint to resume")]
    NothingToResume(String),
    /// Stored data could not be read back.
    #[error("corrupt checkpoint data: {0}")]
    Corrupt(String),
}

impl GraphError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) | Self::NoCheckpointer => ErrorKind::InvalidInput,
            Self::StepLimit { .. } => ErrorKind::BudgetExceeded,
            Self::UndeclaredRoute { .. } | Self::Corrupt(_) => ErrorKind::Internal,
            Self::NothingToResume(_) => ErrorKind::NotFound,
        }
    }

    /// The typed graph error inside `err`, if it is one.
    pub fn find(err: &Error) -> Option<&GraphError> {
        std::error::Error::source(err).and_then(|s| s.downcast_ref::<GraphError>())
    }
}

impl From<GraphError> for Error {
    fn from(e: GraphError) -> Self {
        Error::new(e.kind(), e.to_string()).with_source(e)
    }
}
