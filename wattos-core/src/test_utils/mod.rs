//! Test doubles for downstream crates' tests (feature `test-utils`).

pub mod chat;
pub mod embed;
pub mod fuzz;
pub mod json;
pub mod skip;
