//! cargo-fuzz target `frame`: see `mailguard_fuzz::harness::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mailguard_fuzz::harness::frame(data);
});
