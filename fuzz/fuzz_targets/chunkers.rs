//! `cargo fuzz run chunkers`: see `wattos_rag::fuzz::chunkers` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wattos_rag::fuzz::chunkers(data));
