//! Frames on the wire: Ethernet II (802.1Q / QinQ), IPv4, IPv6 and TCP parsing and building,
//! and the Internet checksum (full and RFC 1624 incremental).
