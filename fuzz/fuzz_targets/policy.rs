//! cargo-fuzz target `policy`: see `mailguard_fuzz::harness::policy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mailguard_fuzz::harness::policy(data);
});
