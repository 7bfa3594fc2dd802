//! mailguard: a userspace, packet-level, inline SMTP filter re-implementing the Cisco PIX/ASA
//! Mailguard feature as a transparent bump in the wire.
//!
//! Layers, bottom up:
//! - [`wire`]: parsing and building Ethernet / VLAN / IPv4 / IPv6 / TCP frames, checksums.
//! - [`smtp`]: the Mailguard policy, a pure stream transducer (bytes in, edit ops out).
//! - [`tcp`]: per-direction reassembly, output log, offset maps, ACK/SACK/window translation.
//! - [`engine`]: the sans-IO filter: `handle_frame(now, side, frame)` and timers.
//! - [`io`]: pcap files, AF_PACKET and TAP backends, worker threads.

pub mod cli;
pub mod engine;
pub mod io;
pub mod smtp;
pub mod tcp;
pub mod wire;
