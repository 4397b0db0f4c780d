//! Measuring helpers shared by the benches (and by the stand-alone `ann-compare` crate, which
//! includes this file by path).
// Each bench uses the part it needs.
#![allow(dead_code)]

use std::time::Duration;

/// Resident set size of this process in bytes (Linux `/proc/self/statm`; 0 where unreadable).
pub(crate) fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// The `p` quantile (0..=1, nearest rank) of sorted, non-empty durations.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
