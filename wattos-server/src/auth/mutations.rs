//! Every state-changing request leaves an audit record, enforced once in [`super::AuthLayer`].
//!
//! A request is state-changing when its method is POST, PUT, PATCH or DELETE, unless its route is
//! one of the [`QUERY_ROUTES`] (POSTs that only compute an answer: chat, embeddings, search). After
//! a successful (2xx) state-changing request the layer appends a record, unless the handler wrote
//! one itself (admin and memory routes record richer events: the layer sees that through a
//! task-local flag that [`super::Auth::audit`] sets). A new route is therefore audited by default.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::Method;
use wattos_core::tenancy::actions;

tokio::task_local! {
    /// Set while a request runs behind the authentication layer; `true` once the request wrote
    /// an audit record of its own.
    static AUDITED: Arc<AtomicBool>;
}

/// POST routes that change no state: they invoke a model or read, so they are not audited as
/// mutations (their use is accounted in usage records and traces).
pub const QUERY_ROUTES: &[&str] = &[
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/rag/collections/{collection}/search",
    "/v1/rag/collections/{collection}/answer",
    "/v1/memories/search",
];

/// Whether a request with `method` to `route` (the matched route template) changes state.
pub fn is_mutation(method: &Method, route: &str) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && !QUERY_ROUTES.contains(&route)
}

/// The audit action of a successful state-changing request: the well-known actions where one
/// exists (`rag.ingested`, `rag.deleted`, `agent.approval`), else `<area>.<verb>` from the route's
/// first segment after `/v1/` and the method (`agents.created`, `jobs.deleted`, ...).
pub fn mutation_action(method: &Method, route: &str) -> String {
    let known = match (method.as_str(), route) {
        (
            "POST",
            "/v1/rag/collections/{collection}/documents" | "/v1/rag/collections/{collection}/files",
        ) => Some(actions::RAG_INGESTED),
        (
            "DELETE",
            "/v1/rag/collections/{collection}"
            | "/v1/rag/collections/{collection}/documents/{document_id}",
        ) => Some(actions::RAG_DELETED),
        ("POST", "/v1/agents/runs/{run_id}/resume") => Some(actions::AGENT_APPROVAL),
        _ => None,
    };
    if let Some(a) = known {
        return a.to_owned();
    }
    let area = route
        .trim_start_matches('/')
        .split('/')
        .find(|s| !s.is_empty() && *s != "v1")
        .unwrap_or("api");
    let verb = match *method {
        Method::POST => "created",
        Method::DELETE => "deleted",
        _ => "updated",
    };
    format!("{area}.{verb}")
}

/// Runs `fut` with a fresh "audited" flag; returns its output and whether it wrote a record.
pub(crate) async fn tracked<F: std::future::Future>(fut: F) -> (F::Output, bool) {
    let flag = Arc::new(AtomicBool::new(false));
    let out = AUDITED.scope(flag.clone(), fut).await;
    (out, flag.load(Ordering::Relaxed))
}

/// Marks the current request as audited (no-op outside [`tracked`]).
pub(crate) fn mark_audited() {
    let _ = AUDITED.try_with(|f| f.store(true, Ordering::Relaxed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_queries() {
        assert!(!is_mutation(&Method::POST, "/v1/chat/completions"));
        assert!(!is_mutation(&Method::GET, "/v1/rag/collections"));
        assert!(is_mutation(&Method::POST, "/v1/rag/collections"));
        assert_eq!(
            mutation_action(&Method::POST, "/v1/rag/collections/{collection}/files"),
            "rag.ingested"
        );
        assert_eq!(
            mutation_action(&Method::DELETE, "/v1/rag/collections/{collection}"),
            "rag.deleted"
        );
        assert_eq!(
            mutation_action(&Method::POST, "/v1/agents/runs/{run_id}/resume"),
            "agent.approval"
        );
        assert_eq!(
            mutation_action(&Method::POST, "/v1/agents/graphs/{graph}/runs"),
            "agents.created"
        );
        assert_eq!(
            mutation_action(&Method::PATCH, "/v1/conversations/{id}"),
            "conversations.updated"
        );
    }
}
