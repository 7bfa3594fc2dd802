//! Everything that touches the outside world: pcap files (replay), AF_PACKET and TAP
//! backends, worker threads (bridge).

pub mod afpacket;
pub mod backend;
pub mod pcap;
pub mod synth;
pub mod tap;
pub mod worker;
