//! Calling a chat model from a node, streaming its tokens into the run's event stream.

use futures::StreamExt;
use wattos_core::Result;
use wattos_core::llm::{ChatDelta, ChatModel, ChatRequest, ChatResponse, StreamAccumulator};

use crate::graph::{NodeContext, NodeEvent};

/// Sends `req` to `model` with the node's request context. When the run is streamed, the answer is
/// streamed and every text fragment is emitted as a [`NodeEvent::Token`].
///
/// # Errors
/// The model's errors.
pub async fn call_model(
    ctx: &NodeContext,
    model: &dyn ChatModel,
    req: ChatRequest,
) -> Result<ChatResponse> {
    if !ctx.is_streaming() {
        return model.chat(ctx.request(), req).await;
    }
    let mut stream = model.chat_stream(ctx.request(), req.clone()).await?;
    let mut acc = StreamAccumulator::new(req.model.clone());
    while let Some(delta) = stream.next().await {
        let delta = delta?;
        if let ChatDelta::Text { text } = &delta {
            ctx.emit(NodeEvent::Token { text: text.clone() });
        }
        acc.push(delta);
    }
    acc.finish()
}
