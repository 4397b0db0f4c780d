//! Serving with graceful shutdown: stop accepting, fail readiness, drain in-flight requests and
//! streams for up to `server.shutdown_grace`, then exit.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::app::app;
use crate::state::AppState;

/// Serves `state` on `listener` until `shutdown` resolves, then drains for at most the configured
/// grace period.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = app(state.clone());
    serve_router(listener, state, router, shutdown).await
}

/// Like [`serve`] with a prebuilt router (e.g. from [`crate::app_with_routes`]).
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve_router(
    listener: TcpListener,
    state: AppState,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = state.config().server.shutdown_grace;
    let begun = Arc::new(Notify::new());
    let begun_tx = begun.clone();
    let drain_state = state.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        drain_state.start_draining();
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutdown requested; draining"
        );
        begun_tx.notify_one();
    });
    tokio::select! {
        result = server => {
            tracing::info!("all connections drained");
            result
        }
        _ = async { begun.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("grace period over; closing remaining connections");
            Ok(())
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
