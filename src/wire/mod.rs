//! Frames on the wire: Ethernet II (802.1Q / QinQ), IPv4, IPv6 and TCP parsing and building,
//! and the Internet checksum (full and RFC 1624 incremental).
//!
//! Parsing reads the common case (a whole TCP segment over IPv4, or IPv6 without extension
//! headers, behind at most two VLAN tags) by hand, and goes through etherparse's zero-copy
//! slices ([`etherparse::SlicedPacket`]) for everything else; both give the same answer
//! wherever the hand-written path answers ([`classify_sliced`] is the reference). What
//! the engine needs afterwards (offsets of the IP and TCP headers, addresses, ports, sequence
//! fields, options) is copied into a small [`TcpFrame`] so that the frame can be mutated in
//! place or rebuilt without parsing again.
//!
//! Choices where the spec is silent:
//! - Frames the engine builds itself (rewritten segments, ACKs, resets) carry the link header
//!   (MACs and VLAN tags) and the basic IP header of a frame seen in the same direction, but
//!   no IPv4 options and no IPv6 extension headers.
//! - TCP options are parsed by hand (bounded loop, every length checked); an option list that
//!   is malformed is ignored, not an error, as endpoints do.

mod checksum;
mod frame;

pub use checksum::{
    checksum_fold, ipv4_header_checksum, ones_sum, tcp_checksum, update_checksum_u16,
    update_checksum_u32,
};
pub use frame::{
    build_tcp_frame, classify, classify_sliced, set_tcp_ack, set_tcp_seq, set_tcp_window,
    strip_payload, verify_checksums, Classified, IpFragment, SackBlocks, Segment, TcpFlags,
    TcpFrame, TcpOptions, Template, TemplateIp,
};
