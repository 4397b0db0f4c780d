//! `cargo fuzz run jwt`: see `wattos_server::fuzz::jwt` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wattos_server::fuzz::jwt(data));
