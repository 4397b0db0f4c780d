//! Retrieval-augmented generation for WattOS.
