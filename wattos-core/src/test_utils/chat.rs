//! Scripted chat models for deterministic tests.
