//! Durable agent graphs for WattOS.
