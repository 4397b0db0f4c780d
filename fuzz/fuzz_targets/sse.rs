//! `cargo fuzz run sse`: see `wattos_llm::fuzz::sse` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wattos_llm::fuzz::sse(data));
