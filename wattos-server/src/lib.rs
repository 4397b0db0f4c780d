//! # wattos-server
//!
//! The reference HTTP server: it wraps the WattOS crates so a team can run WattOS as a service.
//! Use it as a binary (`wattos-server`) or embed its router in your own axum app:
//!
//! ```no_run
//! use wattos_core::config::Config;
//! use wattos_server::{AppState, app};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load(None)?;
//! let router = app(AppState::new(config));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router).await?;
//! # Ok(()) }
//! ```
//!
//! Operational endpoints: `/health/liveness`, `/health/readiness`, `/health`, `/metrics`.

pub mod agents;
pub mod apis;
mod app;
pub mod appdb;
pub mod auth;
pub mod bootstrap;
pub mod checks;
pub mod console;
pub mod conversations;
pub mod dbpool;
pub mod error;
pub mod events;
#[doc(hidden)]
pub mod fuzz;
pub mod gateway;
pub mod jobs;
pub mod memories;
pub mod middleware;
pub mod otel;
pub mod rag;
pub mod rejections;
pub mod routes;
mod serve;
pub mod settings;
mod state;
pub mod telemetry;
pub mod tenancy;
pub mod usage;

pub use app::{app, app_with_routes};
pub use serve::{serve, serve_router, shutdown_signal};
pub use state::AppState;
