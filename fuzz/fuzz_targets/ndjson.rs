//! `cargo fuzz run ndjson`: see `wattos_llm::fuzz::ndjson` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wattos_llm::fuzz::ndjson(data));
