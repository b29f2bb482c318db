#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| distrisocks_fuzz::jwt(data));
