//! `cargo fuzz run loaders`: see `wattos_rag::fuzz::loaders` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wattos_rag::fuzz::loaders(data));
