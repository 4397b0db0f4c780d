//! Test support (feature `test-utils`): mock vendor servers and the provider conformance suite.
//!
//! [`MockServer`] imitates one vendor API on `127.0.0.1:<random port>` with axum: it replays the
//! vendor's documented JSON and streaming formats, records every request for assertions, and injects
//! [`Fault`]s (error statuses with `Retry-After`, latency, slow drip streaming, a stream cut
//! mid-way, connection drops). The router and users' own tests can reuse it.
//!
//! ```no_run
//! # async fn demo() {
//! use wattos_llm::testing::{Fault, MockServer};
//! let server = MockServer::openai().await;
//! server.push_fault(Fault::rate_limited("2"));
//! // ... point a provider at server.base_url(), call it, then:
//! let req = server.last_request().unwrap();
//! assert_eq!(req.path, "/v1/chat/completions");
//! # }
//! ```

pub mod conformance;
mod server;
mod vendor;

pub use server::{Fault, MockReply, MockServer, RecordedRequest};
pub use vendor::{Vendor, context_length_error, error_body};
