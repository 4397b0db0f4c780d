//! Deterministic embedders for tests.
