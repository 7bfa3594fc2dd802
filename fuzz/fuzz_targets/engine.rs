//! cargo-fuzz target `engine`: see `mailguard_fuzz::harness::engine`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mailguard_fuzz::harness::engine(data);
});
