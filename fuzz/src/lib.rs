//! Fuzz targets for mailguard. The target bodies live in [`harness`], shared with
//! `tests/fuzz_regressions.rs` (which replays saved inputs on the stable toolchain); the
//! engine target drives the in-process lab of the evasion suite ([`lab`]).

#[path = "../../tests/common/evasion.rs"]
pub mod lab;

pub mod harness;
