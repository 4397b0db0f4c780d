//! The tool node: runs the tool calls of the last assistant message in parallel.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use wattos_core::llm::{Message, ToolCall, ToolDefinition};
use wattos_core::tool::{Tool, ToolError};
use wattos_core::{ErrorKind, Result};

use super::state::MessagesState;
use crate::graph::{Command, Node, NodeContext, NodeEvent, NodeOutput};

/// A decided call: the tool and its final arguments, or why it will not run.
type Plan = std::result::Result<(Arc<dyn Tool>, Value), ToolError>;

/// Runs every tool call of the last assistant message, in parallel, each under a time limit, and appends
/// one tool message per call (in call order). Failures (unknown tool, invalid arguments, timeouts,
/// tool errors, rejections) become error results the model can read and correct; they never fail the
/// run.
///
/// Calls to tools whose [`Tool::approval_request`] asks for it interrupt the run first (one approval at a
/// time, in call order): [`Command::Approve`] runs the call, [`Command::Edit`] runs it with the given
/// arguments, [`Command::Reject`] reports the reason to the model instead. So do calls to tools the
/// run lists in [`RunConfig::with_approval_required`](crate::RunConfig::with_approval_required) (a
/// platform's per-tenant list), whatever the tool says.
pub struct ToolNode<S> {
    tools: Arc<HashMap<String, Arc<dyn Tool>>>,
    allowed: Option<Arc<HashSet<String>>>,
    timeout: Duration,
    _state: PhantomData<fn() -> S>,
}

impl<S> Clone for ToolNode<S> {
    fn clone(&self) -> Self {
        Self {
            tools: self.tools.clone(),
            allowed: self.allowed.clone(),
            timeout: self.timeout,
            _state: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for ToolNode<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolNode")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<S: MessagesState> ToolNode<S> {
    /// A node over `tools` with a 30 s default time limit per call.
    pub fn new(tools: impl IntoIterator<Item = Arc<dyn Tool>>) -> Self {
        Self {
            tools: Arc::new(
                tools
                    .into_iter()
                    .map(|t| (t.name().to_owned(), t))
                    .collect(),
            ),
            allowed: None,
            timeout: Duration::from_secs(30),
            _state: PhantomData,
        }
    }

    /// Time limit for tools that set none themselves.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Only these tools may be called (a role's allowance); others are reported as unknown.
    #[must_use]
    pub fn allowing<I: IntoIterator<Item = T>, T: Into<String>>(mut self, names: I) -> Self {
        self.allowed = Some(Arc::new(names.into_iter().map(Into::into).collect()));
        self
    }

    /// Definitions of the tools the model may call.
    pub fn definitions(&self) -> Vec<ToolDefinition> {
        let mut defs: Vec<_> = self
            .tools
            .values()
            .filter(|t| self.allowed.as_ref().is_none_or(|a| a.contains(t.name())))
            .map(|t| t.definition())
            .collect();
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        defs
    }

    fn lookup(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        if self.allowed.as_ref().is_some_and(|a| !a.contains(name)) {
            return None;
        }
        self.tools.get(name)
    }

    /// Runs the calls and returns one tool message per call, in order.
    ///
    /// # Errors
    /// Only an interrupt (approval needed); tool failures are results.
    pub async fn run_calls(&self, ctx: &NodeContext, calls: &[ToolCall]) -> Result<Vec<Message>> {
        // Decide every call first, in order: parse, look up, ask approvals (deterministic interrupts).
        let mut plans: Vec<Plan> = Vec::new();
        for call in calls {
            let plan = match self.lookup(&call.name) {
                None => Err(ToolError::UnknownTool(call.name.clone())),
                Some(tool) => match call.parse_arguments() {
                    Err(e) => Err(ToolError::InvalidArguments(e.message().to_owned())),
                    Ok(args) => match tool.approval_request(&args).or_else(|| {
                        ctx.approval_required(&call.name).then(|| {
                            serde_json::json!({"reason": "this run requires approval for every call of this tool"})
                        })
                    }) {
                        None => Ok((tool.clone(), args)),
                        Some(request) => {
                            let ask = serde_json::json!({
                                "type": "tool_approval",
                                "tool": call.name,
                                "call_id": call.id,
                                "args": args,
                                "request": request,
                            });
                            match ctx.interrupt(ask)? {
                                Command::Approve => Ok((tool.clone(), args)),
                                Command::Edit(new_args) => Ok((tool.clone(), new_args)),
                                Command::Reject(reason) => Err(ToolError::Rejected(reason)),
                            }
                        }
                    },
                },
            };
            plans.push(plan);
        }
        let runs = calls.iter().zip(plans).map(|(call, plan)| async move {
            ctx.emit(NodeEvent::ToolStart {
                call_id: call.id.clone(),
                tool: call.name.clone(),
                args: call.parse_arguments().unwrap_or(Value::Null),
            });
            let result = match plan {
                Err(e) => Err(e),
                Ok((tool, args)) => {
                    let limit = tool.timeout().unwrap_or(self.timeout);
                    let limit = ctx
                        .request()
                        .remaining()
                        .map_or(limit, |left| left.min(limit));
                    match tokio::time::timeout(limit, tool.invoke(ctx.request(), args)).await {
                        Ok(r) => r,
                        Err(_) => Err(ToolError::Timeout(limit)),
                    }
                }
            };
            let (content, is_error) = match result {
                Ok(Value::String(s)) => (s, false),
                Ok(v) => (v.to_string(), false),
                Err(e) => (e.to_model_text(), true),
            };
            ctx.emit(NodeEvent::ToolEnd {
                call_id: call.id.clone(),
                tool: call.name.clone(),
                result: content.clone(),
                is_error,
            });
            Message::Tool {
                tool_call_id: call.id.clone(),
                content,
                is_error,
            }
        });
        Ok(futures::future::join_all(runs).await)
    }
}

/// The tool calls of the last message, when it is an assistant message with calls.
pub fn pending_tool_calls(messages: &[Message]) -> &[ToolCall] {
    match messages.last() {
        Some(Message::Assistant { tool_calls, .. }) => tool_calls,
        _ => &[],
    }
}

impl<S: MessagesState> Node<S> for ToolNode<S> {
    fn run(&self, state: Arc<S>, ctx: NodeContext) -> BoxFuture<'static, Result<NodeOutput<S>>> {
        let this = self.clone();
        Box::pin(async move {
            let calls = pending_tool_calls(state.messages()).to_vec();
            if calls.is_empty() {
                return Err(wattos_core::Error::new(
                    ErrorKind::InvalidInput,
                    "tool node ran but the last message has no tool calls",
                ));
            }
            let results = this.run_calls(&ctx, &calls).await?;
            Ok(NodeOutput::update(S::append_messages(results)))
        })
    }
}
