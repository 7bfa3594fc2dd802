//! TCP stream machinery: per-direction reassembly, output log, offset maps, and the
//! translation of sequence, acknowledgement, SACK and window fields.
//!
//! Offsets inside are 64-bit and unwrapped, counted from the first data byte of a direction
//! (the byte after the SYN); sequence numbers (u32) appear only at the wire
//! ([`SeqSpace`]).
//!
//! - [`Reassembler`]: in-order delivery with a bounded out-of-order buffer. Nothing is
//!   delivered ahead of a gap; where segments overlap, the bytes accepted first win.
//! - [`OutputLog`]: the bytes emitted to a receiver, kept until the receiver acknowledges
//!   them, so that retransmissions are served from it and every output position carries one
//!   value for the life of the connection.
//! - [`EditMap`]: the map between sender (input) offsets and receiver (output) offsets built
//!   from the policy's ops; any number of edits may be in flight.

mod editmap;
mod log;
mod reasm;
mod seq;

pub use editmap::EditMap;
pub use log::{OutputLog, RingPool};
pub use reasm::{ReasmError, ReasmLimits, Reassembler};
pub use seq::SeqSpace;
