//! Synthetic TCP sessions: the Ethernet frames a real SMTP exchange would put on the wire.
//!
//! A [`Conversation`] is a TCP connection ([`FlowSpec`]: endpoints, MSS, window scale, ISNs,
//! optional 802.1Q tag) plus a script of [`Action`]s: the handshake, [`Step`]s of
//! application bytes in one direction, and the FIN teardown. Each call to
//! [`Conversation::next_flight`] produces the next flight of frames with capture timestamps;
//! a [`Scheduler`] interleaves many conversations into one time-ordered capture and streams
//! it to a [`FrameSink`] (a pcap file through [`PcapSink`]). [`write_bulk`] builds the large
//! benchmark captures of issue 6 on top of that.
//!
//! Model and choices where the brief is silent:
//! - The capture point sits between client and server (where the filter would be). Each
//!   endpoint is a one-way delay away ([`Timing`]); a reply shows up in the capture after the
//!   round trip to its sender plus that sender's think time.
//! - Data is segmented at the receiver's MSS (or one byte per segment for [`Pace::Typed`]),
//!   sent in bursts of at most [`BURST_SEGMENTS`] segments, the next burst clocked by the
//!   receiver's ACKs. Receivers ACK every second segment, immediately on anything out of order
//!   (with SACK blocks), and otherwise piggyback the ACK on their reply or send it after the
//!   40 ms delayed-ACK timer.
//! - [`Impairments`] act on data segments only (never on SYN or FIN): a *lost* segment is lost
//!   before the capture point, so it never appears; the sender retransmits it (fast retransmit
//!   after three duplicate ACKs, otherwise after an RTO of at least 200 ms), sometimes with a
//!   different segmentation (split, or coalesced over bytes the receiver already has: the bytes
//!   are always the same). Retransmissions are never lost again, so every session completes.
//!   A *duplicate* is the same segment captured twice; *reordering* swaps two neighbours.
//! - Sequence numbers are 64-bit stream offsets inside, wrapped to u32 only on the wire, so an
//!   ISN near 2^32 wraps correctly.
//! - Checksums come from `crate::wire` (the engine's own RFC 1071 code). Its frame builder
//!   ([`crate::wire::build_tcp_frame`]) is not used: it copies link and IP fields from a
//!   [`crate::wire::Template`] taken off a captured frame, while frames here are built from a
//!   [`FlowSpec`] with fields of their own (VLAN tag, flow label, TTL), and the committed
//!   `pcaps/*.pcap` must stay byte-identical.
//! - Everything is a pure function of the script and the seeds: no wall clock, no hashing
//!   with random state, so the same inputs give the same bytes.

use crate::smtp::Dir;
use crate::wire::{ipv4_header_checksum, tcp_checksum, TcpFlags};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Maximum number of data segments a sender puts in flight before waiting for an ACK.
pub const BURST_SEGMENTS: usize = 16;

/// Largest payload put in one segment, whatever the MSS (keeps IP lengths in range).
const MAX_SEGMENT: usize = 65_000;

const NS_PER_US: u64 = 1_000;
const NS_PER_MS: u64 = 1_000_000;
const DELAYED_ACK_NS: u64 = 40 * NS_PER_MS;
const MIN_RTO_NS: u64 = 200 * NS_PER_MS;

const FIN: u8 = TcpFlags::FIN;
const SYN: u8 = TcpFlags::SYN;
const PSH: u8 = TcpFlags::PSH;
const ACK: u8 = TcpFlags::ACK;

/// A small deterministic pseudo-random generator (splitmix64): seeds in, same numbers out on
/// every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6A09_E667_F3BC_C908)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi` (`lo` if the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + self.next_u64() % (span + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// A value that is log-uniformly spread over `lo..=hi` (delays: many short, some long).
    pub fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo || lo == 0 {
            return self.range(lo, hi);
        }
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((l + unit * (h - l)).exp() as u64).clamp(lo, hi)
    }
}

/// One end of a TCP connection as it appears on the wire.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Source MAC of its frames (a router's MAC for a remote client).
    pub mac: [u8; 6],
    /// Its address. Both endpoints of a flow should be of the same family; an IPv4 address
    /// paired with an IPv6 one is written as IPv4-mapped IPv6.
    pub ip: IpAddr,
    /// Its TCP port.
    pub port: u16,
    /// The MSS it announces (the peer segments at this size).
    pub mss: u16,
    /// The window scale shift it announces.
    pub wscale: u8,
    /// Its (unscaled) window field after the handshake; the SYN carries 64240.
    pub window: u16,
    /// IPv4 TTL / IPv6 hop limit as seen at the capture point.
    pub ttl: u8,
    /// Its initial sequence number.
    pub isn: u32,
}

/// A TCP connection's endpoints and link details.
#[derive(Clone, Debug)]
pub struct FlowSpec {
    /// The side that sends the SYN.
    pub client: Endpoint,
    /// The side that listens.
    pub server: Endpoint,
    /// 802.1Q VLAN id carried by every frame, if any.
    pub vlan: Option<u16>,
}

/// Propagation delays between the capture point and each endpoint, one way.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Capture point to client, one way, nanoseconds.
    pub client_delay_ns: u64,
    /// Capture point to server, one way, nanoseconds.
    pub server_delay_ns: u64,
}

/// Per-data-segment probabilities of trouble on the path (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Impairments {
    /// Lost before the capture point, retransmitted later.
    pub loss: f64,
    /// Captured after its successor.
    pub reorder: f64,
    /// Captured twice.
    pub duplicate: f64,
}

/// How a step's bytes are cut into segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// At the receiver's MSS, back to back (a program writing).
    Stream,
    /// One byte per segment at typing speed, each ACKed on its own (telnet, character mode).
    Typed,
    /// Segments of at most this many bytes (never more than the MSS).
    Chunked(usize),
}

/// Bytes one side sends without waiting for the other: one or more application writes.
///
/// Each write starts a new segment (so pipelined commands written separately travel in
/// separate segments, and commands written together share one); a write longer than a segment
/// is cut according to [`Pace`].
#[derive(Clone, Debug)]
pub struct Step {
    /// Who sends.
    pub dir: Dir,
    /// All bytes of the step, writes concatenated.
    pub data: Vec<u8>,
    /// End offsets (exclusive) of each write within `data`, increasing, last = `data.len()`.
    pub write_ends: Vec<usize>,
    /// Segmentation.
    pub pace: Pace,
    /// Time the sender takes before starting, once it has received what came before; `None`
    /// picks a typical value (a server's processing time, a client program's reaction).
    pub think_ns: Option<u64>,
}

impl Step {
    /// One write from `dir`.
    pub fn new(dir: Dir, data: impl Into<Vec<u8>>) -> Step {
        let data = data.into();
        let end = data.len();
        Step {
            dir,
            data,
            write_ends: vec![end],
            pace: Pace::Stream,
            think_ns: None,
        }
    }

    /// One write from the client.
    pub fn client(data: impl Into<Vec<u8>>) -> Step {
        Step::new(Dir::ClientToServer, data)
    }

    /// One write from the server.
    pub fn server(data: impl Into<Vec<u8>>) -> Step {
        Step::new(Dir::ServerToClient, data)
    }

    /// Several writes from `dir` sent back to back without waiting for replies (pipelining).
    pub fn pipelined<B: AsRef<[u8]>>(dir: Dir, writes: &[B]) -> Step {
        let mut step = Step::new(dir, Vec::new());
        step.write_ends.clear();
        for w in writes {
            step.data.extend_from_slice(w.as_ref());
            step.write_ends.push(step.data.len());
        }
        step
    }

    /// The same step with another segmentation.
    pub fn paced(mut self, pace: Pace) -> Step {
        self.pace = pace;
        self
    }

    /// The same step with an explicit think time.
    pub fn think(mut self, ns: u64) -> Step {
        self.think_ns = Some(ns);
        self
    }
}

/// One element of a conversation's script.
#[derive(Clone, Debug)]
pub enum Action {
    /// SYN (MSS, SACK-permitted, window scale), SYN/ACK, ACK.
    Connect,
    /// A SYN answered by a SYN/ACK that is never acknowledged (a half-open connection).
    HalfOpen,
    /// Application bytes.
    Send(Step),
    /// FIN from this side first, then the other side's FIN, each acknowledged.
    Close(Dir),
    /// A point where [`write_bulk`]'s concurrent phase parks the conversation (no frames).
    Pause,
}

/// A captured frame: capture time and the Ethernet frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The frame, from the Ethernet header on.
    pub data: Vec<u8>,
}

/// Where generated frames go.
pub trait FrameSink {
    /// Takes one frame. Frames arrive in non-decreasing timestamp order.
    fn frame(&mut self, ts_ns: u64, data: &[u8]) -> io::Result<()>;
}

impl FrameSink for Vec<Frame> {
    fn frame(&mut self, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        self.push(Frame {
            ts_ns,
            data: data.to_vec(),
        });
        Ok(())
    }
}

/// A [`FrameSink`] writing a classic pcap (Ethernet, microsecond timestamps), with counters.
pub struct PcapSink<W: Write> {
    writer: pcap_file::pcap::PcapWriter<W>,
    /// Frames written so far.
    pub frames: u64,
    /// Frame bytes written so far (without pcap record headers).
    pub bytes: u64,
}

impl<W: Write> PcapSink<W> {
    /// Writes the pcap file header to `w`.
    pub fn new(w: W) -> io::Result<PcapSink<W>> {
        let writer = pcap_file::pcap::PcapWriter::new(w).map_err(pcap_err)?;
        Ok(PcapSink {
            writer,
            frames: 0,
            bytes: 0,
        })
    }

    /// Gives back the underlying writer (flush it yourself).
    pub fn into_inner(self) -> W {
        self.writer.into_writer()
    }
}

fn pcap_err(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl<W: Write> FrameSink for PcapSink<W> {
    fn frame(&mut self, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        let len = u32::try_from(data.len()).map_err(|_| io::Error::other("frame too long"))?;
        let ts = std::time::Duration::from_nanos(ts_ns);
        let packet = pcap_file::pcap::PcapPacket::new(ts, len, data);
        self.writer.write_packet(&packet).map_err(pcap_err)?;
        self.frames += 1;
        self.bytes += u64::from(len);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Frame building.

/// Header fields of one TCP segment.
struct Segment<'a> {
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    options: &'a [u8],
    payload: &'a [u8],
}

fn ipv6_of(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// Writes a whole Ethernet frame for `seg` from `src` to `dst` into `out` (cleared first).
fn build_frame(
    out: &mut Vec<u8>,
    src: &Endpoint,
    dst: &Endpoint,
    vlan: Option<u16>,
    ip_id: u16,
    seg: &Segment<'_>,
) {
    out.clear();
    out.extend_from_slice(&dst.mac);
    out.extend_from_slice(&src.mac);
    if let Some(vid) = vlan {
        out.extend_from_slice(&0x8100u16.to_be_bytes());
        out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    let opt_len = seg.options.len() & !3;
    let options = seg.options.get(..opt_len).unwrap_or(&[]);
    let tcp_len = 20 + opt_len + seg.payload.len();
    // The addresses as written in the IP header: the TCP checksum's pseudo-header.
    let (pseudo_src, pseudo_dst) = match (src.ip, dst.ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = (20 + tcp_len) as u16;
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = src.ttl;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let csum = ipv4_header_checksum(&ip);
            ip[10..12].copy_from_slice(&csum.to_be_bytes());
            out.extend_from_slice(&ip);
            (IpAddr::V4(s), IpAddr::V4(d))
        }
        (s, d) => {
            let (s, d) = (ipv6_of(s), ipv6_of(d));
            out.extend_from_slice(&0x86DDu16.to_be_bytes());
            let flow_label = u32::from(src.port ^ dst.port.rotate_left(4)) & 0x000f_ffff;
            out.extend_from_slice(&(0x6000_0000u32 | flow_label).to_be_bytes());
            out.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            out.push(6);
            out.push(src.ttl);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            (IpAddr::V6(s), IpAddr::V6(d))
        }
    };
    let tcp_start = out.len();
    out.extend_from_slice(&src.port.to_be_bytes());
    out.extend_from_slice(&dst.port.to_be_bytes());
    out.extend_from_slice(&seg.seq.to_be_bytes());
    out.extend_from_slice(&seg.ack.to_be_bytes());
    out.push((((20 + opt_len) / 4) as u8) << 4);
    out.push(seg.flags);
    out.extend_from_slice(&seg.window.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    out.extend_from_slice(options);
    out.extend_from_slice(seg.payload);
    let csum = tcp_checksum(pseudo_src, pseudo_dst, out.get(tcp_start..).unwrap_or(&[]));
    if let Some(field) = out.get_mut(tcp_start + 16..tcp_start + 18) {
        field.copy_from_slice(&csum.to_be_bytes());
    }
}

/// SYN options, in the order Windows and Linux (without timestamps) send them:
/// MSS, NOP, window scale, NOP, NOP, SACK-permitted.
fn syn_options(ep: &Endpoint) -> [u8; 12] {
    let m = ep.mss.to_be_bytes();
    [2, 4, m[0], m[1], 1, 3, 3, ep.wscale, 1, 1, 4, 2]
}

/// NOP, NOP, SACK with up to three blocks (the caller gives them newest first).
fn sack_options(blocks: &[(u32, u32)], out: &mut Vec<u8>) {
    out.clear();
    let blocks = blocks.get(..blocks.len().min(3)).unwrap_or(&[]);
    if blocks.is_empty() {
        return;
    }
    out.extend_from_slice(&[1, 1, 5, (2 + 8 * blocks.len()) as u8]);
    for (l, r) in blocks {
        out.extend_from_slice(&l.to_be_bytes());
        out.extend_from_slice(&r.to_be_bytes());
    }
}

// ---------------------------------------------------------------------------------------
// One TCP connection.

/// Per-side sequence state.
#[derive(Clone, Debug, Default)]
struct SideState {
    /// Stream bytes sent (and, flights being complete, received by the peer).
    sent: u64,
    fin: bool,
    ip_id: u16,
}

/// A TCP connection being written out: sequence numbers, delays, impairments, clock.
#[derive(Clone, Debug)]
pub struct TcpSession {
    flow: FlowSpec,
    timing: Timing,
    impair: Impairments,
    rng: Rng,
    /// Time of the last frame produced.
    now: u64,
    client: SideState,
    server: SideState,
    /// Who sent the last data or control segment.
    last_sender: Option<Dir>,
    /// A receiver's delayed ACK not yet sent: who owes it and when its timer fires.
    pending_ack: Option<(Dir, u64)>,
}

/// A data segment of a burst: stream offset, length, PSH.
#[derive(Clone, Copy, Debug)]
struct DataSeg {
    off: u64,
    len: usize,
    push: bool,
}

impl TcpSession {
    /// A connection that starts at `start_ns` (capture time of its first frame).
    pub fn new(
        flow: FlowSpec,
        timing: Timing,
        impair: Impairments,
        seed: u64,
        start_ns: u64,
    ) -> TcpSession {
        let mut rng = Rng::new(seed);
        // IPv4 identification counters start anywhere, as real stacks' do.
        let client = SideState {
            ip_id: rng.next_u64() as u16,
            ..SideState::default()
        };
        let server = SideState {
            ip_id: rng.next_u64() as u16,
            ..SideState::default()
        };
        TcpSession {
            flow,
            timing,
            impair,
            rng,
            now: start_ns,
            client,
            server,
            last_sender: None,
            pending_ack: None,
        }
    }

    /// Capture time of the last frame produced (or the start time).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Moves the clock forward (never back).
    pub fn advance_to(&mut self, ts_ns: u64) {
        self.now = self.now.max(ts_ns);
    }

    fn endpoint(&self, d: Dir) -> &Endpoint {
        match d {
            Dir::ClientToServer => &self.flow.client,
            Dir::ServerToClient => &self.flow.server,
        }
    }

    fn side(&self, d: Dir) -> &SideState {
        match d {
            Dir::ClientToServer => &self.client,
            Dir::ServerToClient => &self.server,
        }
    }

    fn side_mut(&mut self, d: Dir) -> &mut SideState {
        match d {
            Dir::ClientToServer => &mut self.client,
            Dir::ServerToClient => &mut self.server,
        }
    }

    fn delay(&self, d: Dir) -> u64 {
        match d {
            Dir::ClientToServer => self.timing.client_delay_ns,
            Dir::ServerToClient => self.timing.server_delay_ns,
        }
    }

    /// The wire sequence number of stream offset `off` sent by `d`.
    fn seq(&self, d: Dir, off: u64) -> u32 {
        self.endpoint(d)
            .isn
            .wrapping_add(1)
            .wrapping_add(off as u32)
    }

    /// The ACK `d` sends when it has `rcv` bytes of the peer's stream.
    fn ack_for(&self, d: Dir, rcv: u64) -> u32 {
        let peer = d.reverse();
        let fin = u32::from(self.side(peer).fin && rcv >= self.side(peer).sent);
        self.seq(peer, rcv).wrapping_add(fin)
    }

    /// The ACK `d` sends having received everything its peer sent.
    fn full_ack(&self, d: Dir) -> u32 {
        self.ack_for(d, self.side(d.reverse()).sent)
    }

    /// Writes one segment from `from` into `out` at `ts`.
    fn emit(&mut self, out: &mut Vec<Frame>, ts: u64, from: Dir, seg: &Segment<'_>) {
        let id = self.side(from).ip_id;
        self.side_mut(from).ip_id = id.wrapping_add(1);
        let (src, dst) = match from {
            Dir::ClientToServer => (&self.flow.client, &self.flow.server),
            Dir::ServerToClient => (&self.flow.server, &self.flow.client),
        };
        let mut data = Vec::with_capacity(78 + seg.options.len() + seg.payload.len());
        build_frame(&mut data, src, dst, self.flow.vlan, id, seg);
        out.push(Frame { ts_ns: ts, data });
    }

    /// A pure ACK (with SACK blocks if given) from `from` acknowledging `rcv` bytes.
    fn emit_ack(
        &mut self,
        out: &mut Vec<Frame>,
        ts: u64,
        from: Dir,
        rcv: u64,
        sack: &[(u64, u64)],
    ) {
        let peer = from.reverse();
        let blocks: Vec<(u32, u32)> = sack
            .iter()
            .map(|&(l, r)| (self.seq(peer, l), self.seq(peer, r)))
            .collect();
        let mut opts = Vec::new();
        sack_options(&blocks, &mut opts);
        let seg = Segment {
            flags: ACK,
            seq: self
                .seq(from, self.side(from).sent)
                .wrapping_add(u32::from(self.side(from).fin)),
            ack: self.ack_for(from, rcv),
            window: self.endpoint(from).window,
            options: &opts,
            payload: &[],
        };
        self.emit(out, ts, from, &seg);
    }

    /// When `dir` starts acting, after thinking `think` ns; settles a pending delayed ACK.
    fn begin(&mut self, dir: Dir, think: u64, out: &mut Vec<Frame>) -> u64 {
        let lead = if self.last_sender == Some(dir) {
            think
        } else {
            2 * self.delay(dir) + think
        };
        let start = self.now + lead.max(NS_PER_US);
        if let Some((owner, due)) = self.pending_ack.take() {
            if owner != dir || due < start {
                let rcv = self.side(owner.reverse()).sent;
                let ts = due.min(start.saturating_sub(NS_PER_US)).max(self.now);
                self.emit_ack(out, ts, owner, rcv, &[]);
            }
        }
        self.last_sender = Some(dir);
        start
    }

    /// Sends the delayed ACK still owed, when its timer fires: a parked connection is idle,
    /// not silent, and its receiver acknowledges what it got within the delayed-ACK time
    /// whatever its application does next. False if no ACK is owed.
    fn settle_delayed_ack(&mut self, out: &mut Vec<Frame>) -> bool {
        let Some((owner, due)) = self.pending_ack.take() else {
            return false;
        };
        let rcv = self.side(owner.reverse()).sent;
        let ts = due.max(self.now);
        self.emit_ack(out, ts, owner, rcv, &[]);
        self.now = ts;
        true
    }

    /// SYN, SYN/ACK, ACK.
    pub fn connect(&mut self, out: &mut Vec<Frame>) {
        let t0 = self.now;
        let t1 = self.syn_synack(out, t0);
        let t2 = t1 + 2 * self.timing.client_delay_ns + self.rng.range(10, 60) * NS_PER_US;
        let seg = Segment {
            flags: ACK,
            seq: self.seq(Dir::ClientToServer, 0),
            ack: self.full_ack(Dir::ClientToServer),
            window: self.flow.client.window,
            options: &[],
            payload: &[],
        };
        self.emit(out, t2, Dir::ClientToServer, &seg);
        self.now = t2;
        self.last_sender = Some(Dir::ClientToServer);
    }

    /// A SYN that is answered but never completed.
    pub fn half_open(&mut self, out: &mut Vec<Frame>) {
        let t0 = self.now;
        self.now = self.syn_synack(out, t0);
        self.last_sender = Some(Dir::ServerToClient);
    }

    fn syn_synack(&mut self, out: &mut Vec<Frame>, t0: u64) -> u64 {
        let c = syn_options(&self.flow.client);
        let syn = Segment {
            flags: SYN,
            seq: self.flow.client.isn,
            ack: 0,
            window: 64240,
            options: &c,
            payload: &[],
        };
        self.emit(out, t0, Dir::ClientToServer, &syn);
        let t1 = t0 + 2 * self.timing.server_delay_ns + self.rng.range(15, 80) * NS_PER_US;
        let s = syn_options(&self.flow.server);
        let synack = Segment {
            flags: SYN | ACK,
            seq: self.flow.server.isn,
            ack: self.flow.client.isn.wrapping_add(1),
            window: 64240,
            options: &s,
            payload: &[],
        };
        self.emit(out, t1, Dir::ServerToClient, &synack);
        t1
    }

    /// Cuts `step` into segments: every write starts a segment, pieces at most `mss` long.
    fn segments(&self, step: &Step, base: u64) -> Vec<DataSeg> {
        // An IPv4 packet must stay below 64 KiB whatever MSS a caller configures.
        let mss = usize::from(self.endpoint(step.dir.reverse()).mss).clamp(1, MAX_SEGMENT);
        let piece = match step.pace {
            Pace::Stream => mss,
            Pace::Typed => 1,
            Pace::Chunked(n) => n.clamp(1, mss),
        };
        let mut segs = Vec::new();
        let mut start = 0usize;
        for &end in &step.write_ends {
            let end = end.min(step.data.len());
            while start < end {
                let len = piece.min(end - start);
                segs.push(DataSeg {
                    off: base + start as u64,
                    len,
                    push: start + len == end,
                });
                start += len;
            }
        }
        segs
    }

    /// Sends `step` completely (all bursts, losses repaired). Used by tests and simple callers;
    /// [`Conversation`] sends a burst at a time instead.
    pub fn send(&mut self, step: &Step, out: &mut Vec<Frame>) {
        let mut next = 0;
        while let Some(n) = self.send_burst(step, next, out) {
            next = n;
        }
    }

    /// Sends the burst of `step` starting at segment `first`; returns the index of the next
    /// segment to send, or `None` when the step is complete.
    fn send_burst(&mut self, step: &Step, first: usize, out: &mut Vec<Frame>) -> Option<usize> {
        let from = step.dir;
        // Offsets are relative to where the step starts in the stream; `sent` only advances
        // once a burst is complete, so the step's base is `sent` minus what it already sent.
        let segs_all = self.segments(step, 0);
        let already: u64 = segs_all
            .get(..first)
            .unwrap_or(&[])
            .iter()
            .map(|s| s.len as u64)
            .sum();
        let base = self.side(from).sent - already;
        let segs: Vec<DataSeg> = segs_all
            .iter()
            .skip(first)
            .take(BURST_SEGMENTS)
            .map(|s| DataSeg {
                off: s.off + base,
                ..*s
            })
            .collect();
        if segs.is_empty() {
            return None;
        }
        let think = if first == 0 {
            step.think_ns.unwrap_or_else(|| self.default_think(from))
        } else {
            // ACK-clocked: the next burst leaves once the receiver's ACK reached the sender.
            2 * self.delay(from)
        };
        let start = self.begin(from, think, out);
        let end_ts = self.burst(step, base, &segs, start, out);
        self.now = self.now.max(end_ts);
        let next = first + segs.len();
        if next >= segs_all.len() {
            None
        } else {
            Some(next)
        }
    }

    fn default_think(&mut self, from: Dir) -> u64 {
        match from {
            Dir::ClientToServer => self.rng.log_range(20 * NS_PER_US, 800 * NS_PER_US),
            Dir::ServerToClient => self.rng.log_range(60 * NS_PER_US, 3 * NS_PER_MS),
        }
    }

    /// Gap between two data segments sent back to back (typing speed for [`Pace::Typed`]).
    fn segment_gap(&mut self, pace: Pace, prev_byte: Option<u8>, len: usize) -> u64 {
        if pace == Pace::Typed {
            return if prev_byte == Some(b'\r') {
                self.rng.range(30, 200) * NS_PER_US
            } else {
                self.rng.range(70, 260) * NS_PER_MS
            };
        }
        // Serialisation at 1 Gbit/s plus scheduling jitter.
        len as u64 * 8 + self.rng.range(1, 12) * NS_PER_US
    }

    /// One burst of data segments `segs` of `step` (stream base `base`) from `step.dir`,
    /// starting at `start`: impairments, the receiver's ACKs, repairs. Returns the time of the
    /// last frame.
    fn burst(
        &mut self,
        step: &Step,
        base: u64,
        segs: &[DataSeg],
        start: u64,
        out: &mut Vec<Frame>,
    ) -> u64 {
        let from = step.dir;
        let to = from.reverse();
        let typed = step.pace == Pace::Typed;
        let mut frames: Vec<Frame> = Vec::with_capacity(segs.len() * 2 + 4);

        // Capture times of the first transmissions.
        let mut arrivals: Vec<(u64, u64, usize, bool)> = Vec::with_capacity(segs.len() + 4);
        let mut t = start;
        let mut last_sent = start;
        for (i, s) in segs.iter().enumerate() {
            if i > 0 {
                let prev = ((s.off - base) as usize)
                    .checked_sub(1)
                    .and_then(|p| step.data.get(p).copied());
                t += self.segment_gap(step.pace, prev, s.len);
            }
            last_sent = t;
            if self.rng.chance(self.impair.loss) {
                continue;
            }
            arrivals.push((t, s.off, s.len, s.push));
            if self.rng.chance(self.impair.duplicate) {
                let dt = self.rng.range(2, 40) * NS_PER_US;
                arrivals.push((t + dt, s.off, s.len, s.push));
            }
        }
        for i in 1..arrivals.len() {
            if self.rng.chance(self.impair.reorder) {
                let (a, b) = (arrivals[i - 1].0, arrivals[i].0);
                arrivals[i - 1].0 = b;
                arrivals[i].0 = a;
            }
        }
        arrivals.sort_by_key(|a| a.0);

        let end = segs.last().map_or(base, |s| s.off + s.len as u64);
        let mut rx = Receiver::new(segs.first().map_or(end, |s| s.off));
        let mut last_arrival = start;
        let mut tmax = last_sent;
        for &(ts, off, len, push) in &arrivals {
            self.emit_data(&mut frames, ts, step, base, off, len, push);
            last_arrival = last_arrival.max(ts);
            tmax = tmax.max(ts);
            let reply = rx.receive(off, off + len as u64, typed);
            if let Some(ack_ts) = self.answer(&mut frames, to, ts, &mut rx, reply) {
                tmax = tmax.max(ack_ts);
            }
        }

        // Repairs: retransmit each hole until the receiver has everything.
        let mss = usize::from(self.endpoint(to).mss).clamp(1, MAX_SEGMENT);
        let rto = MIN_RTO_NS.max(4 * (self.timing.client_delay_ns + self.timing.server_delay_ns));
        let mut guard = 0;
        let mut recovery = false;
        while rx.next < end && guard < 64 {
            guard += 1;
            // SACK recovery: after a fast retransmit the other holes follow promptly.
            recovery |= rx.dupacks >= 3;
            let mut t = if recovery {
                (rx.last_ack_ts + 2 * self.delay(from) + self.rng.range(5, 30) * NS_PER_US)
                    .max(last_sent + NS_PER_US)
            } else {
                tmax + rto
            };
            let hole_start = rx.next;
            let hole_end = rx.ooo.first().map_or(end, |r| r.0).min(end);
            let pieces = self.repair_pieces(segs, hole_start, hole_end, end, mss);
            rx.dupacks = 0;
            for (off, len) in pieces {
                let push = off + len as u64 == end;
                self.emit_data(&mut frames, t, step, base, off, len, push);
                last_sent = t;
                last_arrival = last_arrival.max(t);
                tmax = tmax.max(t);
                let reply = rx.receive(off, off + len as u64, typed);
                if let Some(ack_ts) = self.answer(&mut frames, to, t, &mut rx, reply) {
                    tmax = tmax.max(ack_ts);
                }
                t += self.segment_gap(Pace::Stream, None, len);
            }
        }

        self.side_mut(from).sent = end.max(self.side(from).sent);
        if rx.unacked > 0 {
            let due = last_arrival + 2 * self.delay(to) + DELAYED_ACK_NS;
            self.pending_ack = Some((to, due));
        } else {
            self.pending_ack = None;
        }
        frames.sort_by_key(|f| f.ts_ns);
        let last = frames.last().map_or(start, |f| f.ts_ns);
        out.append(&mut frames);
        last
    }

    /// The receiver's answer to an arrival at `ts`, if it sends one now.
    fn answer(
        &mut self,
        frames: &mut Vec<Frame>,
        to: Dir,
        ts: u64,
        rx: &mut Receiver,
        reply: RxReply,
    ) -> Option<u64> {
        if reply == RxReply::Hold {
            return None;
        }
        // A receiver's ACKs leave in the order it decided them.
        let ack_ts = (ts + 2 * self.delay(to) + self.rng.range(4, 40) * NS_PER_US)
            .max(rx.last_ack_ts + NS_PER_US);
        rx.last_ack_ts = ack_ts;
        if reply == RxReply::DupAck {
            rx.last_dupack_ts = ack_ts;
        }
        let sack: Vec<(u64, u64)> = if reply == RxReply::DupAck {
            rx.sack_blocks()
        } else {
            Vec::new()
        };
        self.emit_ack(frames, ack_ts, to, rx.next, &sack);
        Some(ack_ts)
    }

    /// How a hole `[hole_start, hole_end)` is retransmitted: as sent, split in smaller
    /// pieces, or coalesced up to the MSS over bytes the receiver already holds.
    fn repair_pieces(
        &mut self,
        segs: &[DataSeg],
        hole_start: u64,
        hole_end: u64,
        end: u64,
        mss: usize,
    ) -> Vec<(u64, usize)> {
        let hole = (hole_end - hole_start) as usize;
        let mut pieces = Vec::new();
        match self.rng.range(0, 2) {
            1 if hole > 1 => {
                let size = (hole.min(mss) / 2).max(1);
                let mut off = hole_start;
                while off < hole_end {
                    let len = size.min((hole_end - off) as usize);
                    pieces.push((off, len));
                    off += len as u64;
                }
            }
            2 => {
                let mut off = hole_start;
                while off < hole_end {
                    let len = mss.min((end - off) as usize);
                    pieces.push((off, len));
                    off += len as u64;
                }
            }
            _ => {
                for s in segs {
                    let (a, b) = (s.off.max(hole_start), (s.off + s.len as u64).min(hole_end));
                    if a < b {
                        pieces.push((a, (b - a) as usize));
                    }
                }
            }
        }
        pieces
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_data(
        &mut self,
        frames: &mut Vec<Frame>,
        ts: u64,
        step: &Step,
        base: u64,
        off: u64,
        len: usize,
        push: bool,
    ) {
        let from = step.dir;
        let rel = (off - base) as usize;
        let Some(payload) = step.data.get(rel..rel + len) else {
            return;
        };
        let seg = Segment {
            flags: ACK | if push { PSH } else { 0 },
            seq: self.seq(from, off),
            ack: self.full_ack(from),
            window: self.endpoint(from).window,
            options: &[],
            payload,
        };
        // `emit` needs `&mut self` while `payload` borrows `step`, not `self`: fine.
        self.emit(frames, ts, from, &seg);
    }

    /// FIN from `first`, the peer's ACK and FIN (sometimes in one segment), the last ACK.
    pub fn close(&mut self, first: Dir, out: &mut Vec<Frame>) {
        let think = self.default_think(first);
        let t0 = self.begin(first, think, out);
        self.fin(out, t0, first);
        let other = first.reverse();
        let t1 = t0 + 2 * self.delay(other) + self.rng.range(10, 80) * NS_PER_US;
        let t2 = if self.rng.chance(0.5) {
            t1
        } else {
            let seg = Segment {
                flags: ACK,
                seq: self.seq(other, self.side(other).sent),
                ack: self.full_ack(other),
                window: self.endpoint(other).window,
                options: &[],
                payload: &[],
            };
            self.emit(out, t1, other, &seg);
            t1 + self.rng.range(20, 600) * NS_PER_US
        };
        self.fin(out, t2, other);
        let t3 = t2 + 2 * self.delay(first) + self.rng.range(10, 60) * NS_PER_US;
        let seg = Segment {
            flags: ACK,
            seq: self.seq(first, self.side(first).sent).wrapping_add(1),
            ack: self.full_ack(first),
            window: self.endpoint(first).window,
            options: &[],
            payload: &[],
        };
        self.emit(out, t3, first, &seg);
        self.now = t3;
    }

    fn fin(&mut self, out: &mut Vec<Frame>, ts: u64, from: Dir) {
        let seg = Segment {
            flags: FIN | ACK,
            seq: self.seq(from, self.side(from).sent),
            ack: self.full_ack(from),
            window: self.endpoint(from).window,
            options: &[],
            payload: &[],
        };
        self.emit(out, ts, from, &seg);
        self.side_mut(from).fin = true;
    }
}

/// What a receiver does after an arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RxReply {
    /// Nothing yet (delayed ACK).
    Hold,
    /// A cumulative ACK.
    Ack,
    /// A duplicate ACK carrying SACK blocks (out of order or duplicate data).
    DupAck,
}

/// A receiver's view of one burst: contiguous prefix and out-of-order ranges.
struct Receiver {
    next: u64,
    ooo: Vec<(u64, u64)>,
    /// In-order segments not yet acknowledged.
    unacked: u32,
    dupacks: u32,
    last_dupack_ts: u64,
    last_ack_ts: u64,
    /// Most recently received out-of-order range (reported first in SACK).
    recent: Option<(u64, u64)>,
}

impl Receiver {
    fn new(next: u64) -> Receiver {
        Receiver {
            next,
            ooo: Vec::new(),
            unacked: 0,
            dupacks: 0,
            last_dupack_ts: 0,
            last_ack_ts: 0,
            recent: None,
        }
    }

    fn receive(&mut self, a: u64, b: u64, ack_each: bool) -> RxReply {
        if b <= self.next {
            self.dupacks += 1;
            return RxReply::DupAck;
        }
        if a > self.next {
            self.insert(a, b);
            self.recent = Some((a, b));
            self.dupacks += 1;
            return RxReply::DupAck;
        }
        let had_gap = !self.ooo.is_empty();
        self.next = b;
        while let Some(&(l, r)) = self.ooo.first() {
            if l > self.next {
                break;
            }
            self.next = self.next.max(r);
            self.ooo.remove(0);
        }
        self.unacked += 1;
        if had_gap || ack_each || self.unacked >= 2 {
            self.unacked = 0;
            RxReply::Ack
        } else {
            RxReply::Hold
        }
    }

    fn insert(&mut self, a: u64, b: u64) {
        self.ooo.push((a, b));
        self.ooo.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ooo.len());
        for &(l, r) in &self.ooo {
            match merged.last_mut() {
                Some(last) if l <= last.1 => last.1 = last.1.max(r),
                _ => merged.push((l, r)),
            }
        }
        self.ooo = merged;
    }

    /// SACK blocks: the block holding the latest arrival first, then the others.
    fn sack_blocks(&self) -> Vec<(u64, u64)> {
        let mut blocks: Vec<(u64, u64)> = Vec::new();
        if let Some((a, _)) = self.recent {
            if let Some(&blk) = self.ooo.iter().find(|r| r.0 <= a && a < r.1) {
                blocks.push(blk);
            }
        }
        for &r in &self.ooo {
            if !blocks.contains(&r) {
                blocks.push(r);
            }
        }
        blocks.truncate(3);
        blocks
    }
}

// ---------------------------------------------------------------------------------------
// Conversations and their interleaving.

/// What [`Conversation::next_flight`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Frames were appended.
    Frames,
    /// The script reached [`Action::Pause`] and pausing is on.
    Paused,
    /// The script is finished.
    Done,
}

/// A TCP session and its script, played a flight at a time.
#[derive(Clone, Debug)]
pub struct Conversation {
    /// An identifier for the caller (the session number in bulk captures).
    pub id: u64,
    /// The connection.
    pub tcp: TcpSession,
    /// The script; may be dropped while parked and rebuilt (see [`write_bulk`]).
    pub script: Vec<Action>,
    /// Index of the next action.
    pub pos: usize,
    /// Next segment of the current [`Action::Send`].
    seg_cursor: usize,
    /// Whether [`Action::Pause`] stops the conversation.
    pub stop_at_pause: bool,
}

impl Conversation {
    /// A conversation playing `script` over `tcp`.
    pub fn new(id: u64, tcp: TcpSession, script: Vec<Action>) -> Conversation {
        Conversation {
            id,
            tcp,
            script,
            pos: 0,
            seg_cursor: 0,
            stop_at_pause: false,
        }
    }

    /// Appends the next flight (frames in capture order) to `out`.
    pub fn next_flight(&mut self, out: &mut Vec<Frame>) -> Progress {
        loop {
            let Some(action) = self.script.get(self.pos) else {
                return Progress::Done;
            };
            match action {
                Action::Connect => {
                    self.tcp.connect(out);
                    self.pos += 1;
                }
                Action::HalfOpen => {
                    self.tcp.half_open(out);
                    self.pos += 1;
                }
                Action::Send(step) => match self.tcp.send_burst(step, self.seg_cursor, out) {
                    Some(next) => self.seg_cursor = next,
                    None => {
                        self.seg_cursor = 0;
                        self.pos += 1;
                    }
                },
                Action::Close(first) => {
                    let first = *first;
                    self.tcp.close(first, out);
                    self.pos += 1;
                }
                Action::Pause => {
                    if self.stop_at_pause && self.tcp.settle_delayed_ack(out) {
                        return Progress::Frames;
                    }
                    self.pos += 1;
                    if self.stop_at_pause {
                        return Progress::Paused;
                    }
                    continue;
                }
            }
            return Progress::Frames;
        }
    }

    /// Plays the whole script (pauses ignored) into `out`, in capture order.
    pub fn run_to_end(&mut self, out: &mut Vec<Frame>) {
        self.stop_at_pause = false;
        while self.next_flight(out) != Progress::Done {}
    }
}

/// The bytes each side sends in `script`: (client to server, server to client).
pub fn script_streams(script: &[Action]) -> (Vec<u8>, Vec<u8>) {
    let (mut c, mut s) = (Vec::new(), Vec::new());
    for a in script {
        if let Action::Send(step) = a {
            match step.dir {
                Dir::ClientToServer => c.extend_from_slice(&step.data),
                Dir::ServerToClient => s.extend_from_slice(&step.data),
            }
        }
    }
    (c, s)
}

struct Job {
    conv: Conversation,
    pending: VecDeque<Frame>,
}

/// Interleaves conversations into one capture in timestamp order.
///
/// Up to `parallel` conversations progress at once; each keeps only its current flight in
/// memory. When one finishes (or pauses), the source is asked for the next.
pub struct Scheduler {
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    jobs: Vec<Option<Job>>,
    free: Vec<usize>,
    tick: u64,
    scratch: Vec<Frame>,
    /// Timestamp of the last frame written.
    pub now: u64,
}

impl Scheduler {
    /// An empty scheduler whose clock starts at `start_ns`.
    pub fn new(start_ns: u64) -> Scheduler {
        Scheduler {
            heap: BinaryHeap::new(),
            jobs: Vec::new(),
            free: Vec::new(),
            tick: 0,
            scratch: Vec::new(),
            now: start_ns,
        }
    }

    /// Runs until `source` returns `None` and every conversation is done or paused.
    /// `source(now)` returns the next conversation (already positioned at or after `now`);
    /// paused conversations are handed to `parked`.
    pub fn run(
        &mut self,
        parallel: usize,
        source: &mut dyn FnMut(u64) -> Option<Conversation>,
        sink: &mut dyn FrameSink,
        parked: &mut dyn FnMut(Conversation),
    ) -> io::Result<()> {
        let mut exhausted = false;
        for _ in 0..parallel.max(1) {
            if !self.start_next(source, parked) {
                exhausted = true;
                break;
            }
        }
        while let Some(Reverse((ts, _, slot))) = self.heap.pop() {
            let Some(job) = self.jobs.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if let Some(frame) = job.pending.pop_front() {
                sink.frame(frame.ts_ns, &frame.data)?;
                self.now = self.now.max(frame.ts_ns);
            }
            if let Some(head) = job.pending.front() {
                let key = (head.ts_ns.max(ts), self.next_tick(), slot);
                self.heap.push(Reverse(key));
                continue;
            }
            if self.refill(slot, parked) {
                continue;
            }
            // The slot is free: start another conversation.
            if !exhausted && !self.start_next(source, parked) {
                exhausted = true;
            }
        }
        Ok(())
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Starts conversations from `source` until one produces frames; false when exhausted.
    fn start_next(
        &mut self,
        source: &mut dyn FnMut(u64) -> Option<Conversation>,
        parked: &mut dyn FnMut(Conversation),
    ) -> bool {
        loop {
            let Some(conv) = source(self.now) else {
                return false;
            };
            let slot = match self.free.pop() {
                Some(s) => s,
                None => {
                    self.jobs.push(None);
                    self.jobs.len() - 1
                }
            };
            if let Some(cell) = self.jobs.get_mut(slot) {
                *cell = Some(Job {
                    conv,
                    pending: VecDeque::new(),
                });
            }
            if self.refill(slot, parked) {
                return true;
            }
        }
    }

    /// Asks the job in `slot` for its next flight; true if it has frames queued again,
    /// false if it finished or paused (its slot is then freed).
    fn refill(&mut self, slot: usize, parked: &mut dyn FnMut(Conversation)) -> bool {
        let Some(cell) = self.jobs.get_mut(slot) else {
            return false;
        };
        let Some(job) = cell.as_mut() else {
            return false;
        };
        loop {
            self.scratch.clear();
            match job.conv.next_flight(&mut self.scratch) {
                Progress::Frames => {
                    if self.scratch.is_empty() {
                        continue;
                    }
                    self.scratch.sort_by_key(|f| f.ts_ns);
                    job.pending.extend(self.scratch.drain(..));
                    let head = job.pending.front().map_or(self.now, |f| f.ts_ns);
                    self.tick += 1;
                    self.heap
                        .push(Reverse((head.max(self.now), self.tick, slot)));
                    return true;
                }
                Progress::Paused => {
                    if let Some(job) = cell.take() {
                        parked(job.conv);
                    }
                    self.free.push(slot);
                    return false;
                }
                Progress::Done => {
                    *cell = None;
                    self.free.push(slot);
                    return false;
                }
            }
        }
    }
}

/// Writes one conversation as a capture, frame by frame in time order.
pub fn write_conversation(conv: Conversation, sink: &mut dyn FrameSink) -> io::Result<()> {
    let start = conv.tcp.now();
    let mut one = Some(conv);
    let mut sched = Scheduler::new(start);
    sched.run(1, &mut |_| one.take(), sink, &mut |_| {})
}

// ---------------------------------------------------------------------------------------
// Bulk captures (issue 6 benchmarks, issue 7 half-open floods).

/// Options of [`write_bulk`].
#[derive(Clone, Debug)]
pub struct BulkOptions {
    /// Complete SMTP sessions.
    pub sessions: u64,
    /// Seed of everything random.
    pub seed: u64,
    /// Mean attachment size in KiB (base64 in the body; 0: plain text mails).
    pub attachment_kb: u32,
    /// Fraction of mails whose MAIL/RCPT/DATA go pipelined in one segment.
    pub pipelining_ratio: f64,
    /// Per-data-segment loss probability (reordering and duplicates follow at half and a
    /// quarter of it).
    pub loss: f64,
    /// The first this many sessions are all opened (handshake and banner) before any
    /// session goes further or closes.
    pub concurrent: u64,
    /// SYNs (answered by SYN/ACKs) that are never completed, spread over the capture.
    pub half_open: u64,
    /// Sessions in progress at once (interleaving).
    pub parallel: usize,
    /// Mails per session (0: connect, EHLO, QUIT).
    pub mails_per_session: u32,
    /// Capture time of the first frame, ns since the epoch.
    pub start_ns: u64,
}

impl Default for BulkOptions {
    fn default() -> BulkOptions {
        BulkOptions {
            sessions: 1000,
            seed: 1,
            attachment_kb: 0,
            pipelining_ratio: 0.3,
            loss: 0.0,
            concurrent: 0,
            half_open: 0,
            parallel: 64,
            mails_per_session: 1,
            start_ns: DEFAULT_EPOCH_NS,
        }
    }
}

/// 2026-01-01T00:00:00Z, the default start of generated captures.
pub const DEFAULT_EPOCH_NS: u64 = 1_767_225_600 * 1_000_000_000;

/// What [`write_bulk`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkSummary {
    /// Complete sessions.
    pub sessions: u64,
    /// Half-open connections.
    pub half_open: u64,
}

/// Base64 text shared by all attachments: 76-character lines with CRLF.
struct Base64Pool {
    text: Vec<u8>,
    line: usize,
}

impl Base64Pool {
    fn new(seed: u64) -> Base64Pool {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = Rng::new(seed ^ 0xB64);
        let lines = 4096;
        let mut text = Vec::with_capacity(lines * 78);
        for _ in 0..lines {
            for _ in 0..76 {
                text.push(ALPHABET[(rng.next_u64() & 63) as usize]);
            }
            text.extend_from_slice(b"\r\n");
        }
        Base64Pool { text, line: 78 }
    }

    /// About `bytes` of base64 lines starting at a line picked by `rng`.
    fn append(&self, rng: &mut Rng, bytes: usize, out: &mut Vec<u8>) {
        let lines = self.text.len() / self.line;
        let mut idx = rng.range(0, lines as u64 - 1) as usize;
        let mut left = bytes;
        while left > 0 {
            let at = idx * self.line;
            out.extend_from_slice(self.text.get(at..at + self.line).unwrap_or(b"\r\n"));
            left = left.saturating_sub(self.line);
            idx = (idx + 1) % lines;
        }
    }
}

fn mix(seed: u64, n: u64, salt: u64) -> u64 {
    let mut r = Rng::new(seed ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ salt);
    r.next_u64()
}

/// The flow of bulk session `i`: distinct 4-tuples for up to about 1.8 billion sessions.
fn bulk_flow(seed: u64, i: u64, rng: &mut Rng) -> FlowSpec {
    let host = (i % 65_000) as u32 + 1;
    let client_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + host);
    let port = 32_768 + ((i / 65_000) % 28_232) as u16;
    let server_no = (mix(seed, i, 0x5E) % 4) as u8;
    let mss = [1460u16, 1460, 1460, 1440, 1400, 1380][rng.range(0, 5) as usize % 6];
    let client = Endpoint {
        mac: [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01],
        ip: IpAddr::V4(client_ip),
        port,
        mss,
        wscale: 8,
        window: 502,
        ttl: rng.range(44, 63) as u8,
        isn: rng.next_u64() as u32,
    };
    let server = Endpoint {
        mac: [0x02, 0x00, 0x5e, 0x00, 0x01, 0x10 + server_no],
        ip: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 25 + server_no)),
        port: 25,
        mss: 1460,
        wscale: 7,
        window: 501,
        ttl: 64,
        isn: rng.next_u64() as u32,
    };
    FlowSpec {
        client,
        server,
        vlan: None,
    }
}

/// The script of bulk session `i` (a pure function of the options and `i`).
fn bulk_script(opts: &BulkOptions, pool: &Base64Pool, i: u64) -> Vec<Action> {
    let mut rng = Rng::new(mix(opts.seed, i, 0x5C819));
    let server_no = mix(opts.seed, i, 0x5E) % 4;
    let mx = format!("mx{server_no}.example.net");
    let client = format!("client{i}.example.org");
    let mut s = vec![
        Action::Connect,
        Action::Send(
            Step::server(format!("220 {mx} ESMTP Postfix\r\n"))
                .think(rng.log_range(300 * NS_PER_US, 8 * NS_PER_MS)),
        ),
        Action::Pause,
        Action::Send(Step::client(format!("EHLO {client}\r\n"))),
        Action::Send(Step::server(format!(
            "250-{mx}\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-VRFY\r\n250-ETRN\r\n\
             250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n\
             250 CHUNKING\r\n"
        ))),
    ];
    for m in 0..opts.mails_per_session {
        let from = format!("MAIL FROM:<sender{i}@example.org> SIZE={}\r\n", 600 + m);
        let rcpts: Vec<String> = (0..rng.range(1, 3))
            .map(|r| format!("RCPT TO:<user{}@example.net>\r\n", (i + r) % 977))
            .collect();
        if rng.chance(opts.pipelining_ratio) {
            let mut cmds = from.clone();
            let mut replies = String::from("250 2.1.0 Ok\r\n");
            for r in &rcpts {
                cmds.push_str(r);
                replies.push_str("250 2.1.5 Ok\r\n");
            }
            cmds.push_str("DATA\r\n");
            replies.push_str("354 End data with <CR><LF>.<CR><LF>\r\n");
            s.push(Action::Send(Step::client(cmds)));
            s.push(Action::Send(Step::server(replies)));
        } else {
            s.push(Action::Send(Step::client(from)));
            s.push(Action::Send(Step::server("250 2.1.0 Ok\r\n")));
            for r in rcpts {
                s.push(Action::Send(Step::client(r)));
                s.push(Action::Send(Step::server("250 2.1.5 Ok\r\n")));
            }
            s.push(Action::Send(Step::client("DATA\r\n")));
            s.push(Action::Send(Step::server(
                "354 End data with <CR><LF>.<CR><LF>\r\n",
            )));
        }
        s.push(Action::Send(Step::client(bulk_body(
            opts, pool, &mut rng, i, m,
        ))));
        let queue_id = rng.next_u64() & 0xff_ffff_ffff;
        s.push(Action::Send(
            Step::server(format!("250 2.0.0 Ok: queued as {queue_id:010X}\r\n"))
                .think(rng.log_range(2 * NS_PER_MS, 60 * NS_PER_MS)),
        ));
    }
    s.push(Action::Send(Step::client("QUIT\r\n")));
    s.push(Action::Send(Step::server("221 2.0.0 Bye\r\n")));
    s.push(Action::Close(if rng.chance(0.7) {
        Dir::ServerToClient
    } else {
        Dir::ClientToServer
    }));
    s
}

/// A mail body with headers, some text and (if asked) a base64 attachment, ending `.`.
fn bulk_body(opts: &BulkOptions, pool: &Base64Pool, rng: &mut Rng, i: u64, m: u32) -> Vec<u8> {
    let mut b = Vec::new();
    let boundary = format!("=_mg_{:016x}", rng.next_u64());
    b.extend_from_slice(
        format!(
            "From: Sender {i} <sender{i}@example.org>\r\nTo: <user{}@example.net>\r\n\
             Subject: Report {i}.{m}\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n\
             Message-ID: <{i}.{m}.{:x}@example.org>\r\nMIME-Version: 1.0\r\n",
            i % 977,
            rng.next_u64()
        )
        .as_bytes(),
    );
    if opts.attachment_kb > 0 {
        b.extend_from_slice(
            format!(
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
                 --{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            )
            .as_bytes(),
        );
    } else {
        b.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n\r\n");
    }
    for l in 0..rng.range(3, 12) {
        b.extend_from_slice(
            format!("Line {l} of the message text, nothing to see here.\r\n").as_bytes(),
        );
    }
    if opts.attachment_kb > 0 {
        b.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: application/octet-stream; name=\"r{i}.bin\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\
                 Content-Disposition: attachment; filename=\"r{i}.bin\"\r\n\r\n"
            )
            .as_bytes(),
        );
        let kb = u64::from(opts.attachment_kb);
        let size = rng.range(kb * 512, kb * 1536) as usize;
        pool.append(rng, size, &mut b);
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    }
    b.extend_from_slice(b".\r\n");
    b
}

/// Per-session timing and impairments of bulk session `i`.
fn bulk_conversation(opts: &BulkOptions, pool: &Base64Pool, i: u64, start: u64) -> Conversation {
    let mut rng = Rng::new(mix(opts.seed, i, 0x7C9));
    let flow = bulk_flow(opts.seed, i, &mut rng);
    let timing = Timing {
        client_delay_ns: rng.log_range(150 * NS_PER_US, 25 * NS_PER_MS),
        server_delay_ns: rng.log_range(15 * NS_PER_US, 200 * NS_PER_US),
    };
    let impair = Impairments {
        loss: opts.loss,
        reorder: opts.loss / 2.0,
        duplicate: opts.loss / 4.0,
    };
    let tcp = TcpSession::new(flow, timing, impair, rng.next_u64(), start);
    Conversation::new(i, tcp, bulk_script(opts, pool, i))
}

/// Half-open connection `j`: a spoofed source in 198.19.128.0/17.
fn half_open_conversation(seed: u64, j: u64, start: u64) -> Conversation {
    let mut rng = Rng::new(mix(seed, j, 0x4A1F));
    let host = (j % 32_000) as u32 + 1;
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 128, 0)) + host);
    let mut flow = bulk_flow(seed, j, &mut rng);
    flow.client.ip = IpAddr::V4(ip);
    flow.client.port = 1024 + ((j / 32_000) % 64_000) as u16;
    let timing = Timing {
        client_delay_ns: rng.log_range(NS_PER_MS, 80 * NS_PER_MS),
        server_delay_ns: 50 * NS_PER_US,
    };
    let tcp = TcpSession::new(flow, timing, Impairments::default(), rng.next_u64(), start);
    Conversation::new(u64::MAX - j, tcp, vec![Action::HalfOpen])
}

/// Writes a large capture of many interleaved SMTP sessions (and half-open connections).
///
/// With `concurrent > 0`, the first `concurrent` sessions are opened (handshake and banner)
/// and parked before anything else happens; then they are resumed in order, followed by the
/// remaining sessions. Half-open connections are spread evenly among the sessions of the
/// second phase. Memory stays bounded by `parallel` flights plus, while parked, about
/// 350 bytes per parked session (1,000,000 parked: about 360 MB resident).
pub fn write_bulk(opts: &BulkOptions, sink: &mut dyn FrameSink) -> io::Result<BulkSummary> {
    let pool = Base64Pool::new(opts.seed);
    let mut gap_rng = Rng::new(opts.seed ^ 0xA881);
    let mut sched = Scheduler::new(opts.start_ns);
    let concurrent = opts.concurrent.min(opts.sessions);
    let mut parked: Vec<Conversation> = Vec::new();

    // Phase 1: open the concurrent sessions, park them.
    if concurrent > 0 {
        let mut next = 0u64;
        let mut source = |now: u64| {
            if next >= concurrent {
                return None;
            }
            let start = now + gap_rng.log_range(2 * NS_PER_US, 200 * NS_PER_US);
            let mut c = bulk_conversation(opts, &pool, next, start);
            c.stop_at_pause = true;
            next += 1;
            Some(c)
        };
        sched.run(
            opts.parallel,
            &mut source,
            sink,
            &mut |mut c: Conversation| {
                c.script = Vec::new();
                parked.push(c);
            },
        )?;
        parked.sort_by_key(|c| c.id);
    }

    // Phase 2: resume the parked ones, then fresh sessions, half-open ones spread evenly.
    let mut parked = parked.into_iter();
    let mut fresh = concurrent;
    let total = (opts.sessions - concurrent) + opts.half_open;
    let mut slot = 0u64;
    let mut half = 0u64;
    let mut source = |now: u64| -> Option<Conversation> {
        if let Some(mut c) = parked.next() {
            c.script = bulk_script(opts, &pool, c.id);
            c.stop_at_pause = false;
            c.tcp.advance_to(now);
            return Some(c);
        }
        if slot >= total {
            return None;
        }
        let is_half =
            total > 0 && ((slot + 1) * opts.half_open / total) > (slot * opts.half_open / total);
        slot += 1;
        let start = now + gap_rng.log_range(5 * NS_PER_US, 2 * NS_PER_MS);
        if is_half {
            half += 1;
            Some(half_open_conversation(opts.seed, half - 1, start))
        } else {
            fresh += 1;
            Some(bulk_conversation(opts, &pool, fresh - 1, start))
        }
    };
    sched.run(opts.parallel, &mut source, sink, &mut |_| {})?;
    Ok(BulkSummary {
        sessions: opts.sessions,
        half_open: opts.half_open,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn flow(v6: bool, vlan: Option<u16>, client_isn: u32, server_isn: u32) -> FlowSpec {
        let (c, s) = if v6 {
            (
                IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2)),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)),
            )
        };
        let ep = |ip, port, isn| Endpoint {
            mac: [2, 0, 0, 0, 0, port as u8],
            ip,
            port,
            mss: 536,
            wscale: 7,
            window: 500,
            ttl: 64,
            isn,
        };
        FlowSpec {
            client: ep(c, 40_000, client_isn),
            server: ep(s, 25, server_isn),
            vlan,
        }
    }

    fn script(rng: &mut Rng) -> Vec<Action> {
        let mut body = Vec::new();
        for _ in 0..rng.range(0, 9000) {
            body.push(b'a' + (rng.next_u64() % 26) as u8);
        }
        vec![
            Action::Connect,
            Action::Send(Step::server("220 hi\r\n")),
            Action::Send(Step::pipelined(
                Dir::ClientToServer,
                &["MAIL FROM:<a@b>\r\n", "RCPT TO:<c@d>\r\nDATA\r\n"],
            )),
            Action::Send(Step::server("250 ok\r\n250 ok\r\n354 go\r\n")),
            Action::Send(Step::client(body)),
            Action::Send(Step::client("\r\n.\r\n").paced(Pace::Typed)),
            Action::Send(Step::server("250 queued\r\n")),
            Action::Close(Dir::ClientToServer),
        ]
    }

    /// What one parsed frame says, checked independently with etherparse.
    struct Parsed {
        from_client: bool,
        seq: u32,
        syn: bool,
        fin: bool,
        ack_flag: bool,
        ack: u32,
        payload: Vec<u8>,
    }

    fn parse(frame: &[u8], client_port: u16) -> Parsed {
        let p = SlicedPacket::from_ethernet(frame).expect("frame parses");
        let Some(TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("not TCP")
        };
        let payload = tcp.payload().to_vec();
        let header = tcp.to_header();
        let expect = match p.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
                let l2 = 14 + if p.vlan.is_some() { 4 } else { 0 };
                assert_eq!(
                    usize::from(h.total_len),
                    frame.len() - l2,
                    "IPv4 total length"
                );
                header.calc_checksum_ipv4(&h, &payload).unwrap()
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header().to_header();
                header.calc_checksum_ipv6(&h, &payload).unwrap()
            }
            _ => panic!("no IP"),
        };
        assert_eq!(header.checksum, expect, "TCP checksum");
        Parsed {
            from_client: header.source_port == client_port,
            seq: header.sequence_number,
            syn: header.syn,
            fin: header.fin,
            ack_flag: header.ack,
            ack: header.acknowledgment_number,
            payload,
        }
    }

    /// Reassembles each direction by sequence number, as a receiver would.
    fn reassemble(frames: &[Frame], f: &FlowSpec) -> (Vec<u8>, Vec<u8>) {
        let mut out = [Vec::new(), Vec::new()];
        let mut isn = [f.client.isn, f.server.isn];
        let mut pending: [Vec<(u64, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
        for fr in frames {
            let p = parse(&fr.data, f.client.port);
            let d = usize::from(!p.from_client);
            if p.syn {
                isn[d] = p.seq;
                continue;
            }
            if !p.payload.is_empty() {
                let off = u64::from(p.seq.wrapping_sub(isn[d]).wrapping_sub(1));
                pending[d].push((off, p.payload));
            }
        }
        for d in 0..2 {
            pending[d].sort_by_key(|x| x.0);
            for (off, data) in &pending[d] {
                let have = out[d].len() as u64;
                assert!(*off <= have, "hole in direction {d} at {have}");
                let skip = (have - off) as usize;
                if skip < data.len() {
                    // Overlapping bytes must be identical.
                    out[d].extend_from_slice(&data[skip..]);
                }
                let start = *off as usize;
                assert_eq!(
                    &out[d][start..start + data.len()],
                    &data[..],
                    "retransmission differs"
                );
            }
        }
        let [c, s] = out;
        (c, s)
    }

    fn play(
        seed: u64,
        v6: bool,
        vlan: Option<u16>,
        impair: Impairments,
    ) -> (Vec<Frame>, FlowSpec, Vec<Action>) {
        let mut rng = Rng::new(seed);
        let f = flow(v6, vlan, rng.next_u64() as u32, rng.next_u64() as u32);
        let s = script(&mut rng);
        let timing = Timing {
            client_delay_ns: rng.range(100, 20_000) * NS_PER_US,
            server_delay_ns: rng.range(10, 500) * NS_PER_US,
        };
        let tcp = TcpSession::new(f.clone(), timing, impair, seed, DEFAULT_EPOCH_NS);
        let mut sink: Vec<Frame> = Vec::new();
        write_conversation(Conversation::new(0, tcp, s.clone()), &mut sink).unwrap();
        (sink, f, s)
    }

    #[test]
    fn streams_survive_any_impairment_and_frames_are_valid() {
        let impair = Impairments {
            loss: 0.2,
            reorder: 0.15,
            duplicate: 0.1,
        };
        for seed in 0..120 {
            let v6 = seed % 3 == 0;
            let vlan = (seed % 4 == 1).then_some(42);
            let (frames, f, s) = play(seed, v6, vlan, impair);
            let (c, srv) = reassemble(&frames, &f);
            let (want_c, want_s) = script_streams(&s);
            assert_eq!(c, want_c, "client stream, seed {seed}");
            assert_eq!(srv, want_s, "server stream, seed {seed}");
            for w in frames.windows(2) {
                assert!(w[0].ts_ns <= w[1].ts_ns, "timestamps go back, seed {seed}");
            }
            // No segment above the MSS; no ACK for bytes not yet captured.
            let mut seen_end = [0u64; 2];
            let isn = [f.client.isn, f.server.isn];
            for fr in &frames {
                let p = parse(&fr.data, f.client.port);
                assert!(p.payload.len() <= 536, "segment above the MSS");
                let d = usize::from(!p.from_client);
                let rel = |seq: u32, side: usize| u64::from(seq.wrapping_sub(isn[side]));
                let end = rel(p.seq, d) + p.payload.len() as u64 + u64::from(p.syn || p.fin);
                seen_end[d] = seen_end[d].max(end);
                if p.ack_flag {
                    assert!(
                        rel(p.ack, 1 - d) <= seen_end[1 - d],
                        "ACK of unseen data, seed {seed}"
                    );
                }
            }
        }
    }

    #[test]
    fn impairments_show_up_when_asked_and_never_otherwise() {
        let count = |impair| {
            let (frames, f, s) = play(7, false, None, impair);
            let data_segments = frames
                .iter()
                .filter(|fr| !parse(&fr.data, f.client.port).payload.is_empty())
                .count();
            let (c, srv) = script_streams(&s);
            (
                data_segments,
                c.len().div_ceil(536) + srv.len().div_ceil(536),
            )
        };
        let (clean, _) = count(Impairments::default());
        let (dirty, _) = count(Impairments {
            loss: 0.3,
            reorder: 0.0,
            duplicate: 0.3,
        });
        assert!(
            dirty > clean,
            "loss and duplicates add segments: {dirty} vs {clean}"
        );
    }

    /// (sequence number, length) of every data segment.
    fn data_segments(frames: &[Frame], client_port: u16) -> Vec<(u32, usize)> {
        frames
            .iter()
            .map(|fr| parse(&fr.data, client_port))
            .filter(|p| !p.payload.is_empty())
            .map(|p| (p.seq, p.payload.len()))
            .collect()
    }

    #[test]
    fn some_retransmissions_use_another_segmentation() {
        let lossy = Impairments {
            loss: 0.25,
            ..Impairments::default()
        };
        let mut resegmented = 0;
        for seed in 0..40 {
            let (clean, f, _) = play(seed, false, None, Impairments::default());
            let (dirty, _, _) = play(seed, false, None, lossy);
            let original = data_segments(&clean, f.client.port);
            let seen = data_segments(&dirty, f.client.port);
            // Every original segment's bytes are covered; some segments are new shapes.
            if seen.iter().any(|s| !original.contains(s)) {
                resegmented += 1;
            }
        }
        assert!(
            resegmented > 5,
            "only {resegmented} of 40 sessions resegmented"
        );
    }

    #[test]
    fn sequence_numbers_wrap_past_2_pow_32() {
        let f = flow(false, None, 0xffff_ff00, 0xffff_fffe);
        let tcp = TcpSession::new(
            f.clone(),
            Timing {
                client_delay_ns: 1000,
                server_delay_ns: 1000,
            },
            Impairments::default(),
            1,
            0,
        );
        let s = vec![
            Action::Connect,
            Action::Send(Step::server("220 x\r\n")),
            Action::Send(Step::client(vec![b'x'; 2000])),
            Action::Close(Dir::ServerToClient),
        ];
        let mut frames = Vec::new();
        Conversation::new(0, tcp, s.clone()).run_to_end(&mut frames);
        let seqs: Vec<u32> = frames
            .iter()
            .map(|fr| parse(&fr.data, 40_000))
            .filter(|p| p.from_client && !p.payload.is_empty())
            .map(|p| p.seq)
            .collect();
        assert!(seqs.iter().any(|&q| q > 0xffff_0000) && seqs.iter().any(|&q| q < 0x1000));
        let (c, srv) = reassemble(&frames, &f);
        assert_eq!((c, srv), script_streams(&s));
    }

    #[test]
    fn odd_parameters_never_panic_and_keep_streams_whole() {
        let mut f = flow(false, Some(4095), u32::MAX, 0);
        f.client.mss = 1;
        f.server.mss = u16::MAX;
        f.server.ip = IpAddr::V6(Ipv6Addr::LOCALHOST); // mixed families: IPv4-mapped IPv6
        let script = vec![
            Action::Send(Step::client("data before the handshake is just bytes\r\n")),
            Action::Connect,
            Action::Send(Step::server(Vec::new())),
            Action::Send(Step::pipelined::<&[u8]>(Dir::ClientToServer, &[])),
            Action::Send(Step::server("x".repeat(300)).paced(Pace::Chunked(0))),
            Action::Send(Step::client(vec![b'y'; 140_000])),
            Action::Send(Step::client("typed\r\n").paced(Pace::Typed).think(0)),
            Action::Pause,
            Action::HalfOpen,
            Action::Close(Dir::ClientToServer),
            Action::Close(Dir::ServerToClient),
        ];
        let impair = Impairments {
            loss: 0.5,
            reorder: 1.0,
            duplicate: 1.0,
        };
        let tcp = TcpSession::new(
            f.clone(),
            Timing {
                client_delay_ns: 0,
                server_delay_ns: 0,
            },
            impair,
            9,
            0,
        );
        let mut frames: Vec<Frame> = Vec::new();
        write_conversation(Conversation::new(1, tcp, script.clone()), &mut frames).unwrap();
        for fr in &frames {
            let p = parse(&fr.data, f.client.port);
            assert!(p.payload.len() <= MAX_SEGMENT);
        }
        let (c, s) = reassemble(&frames, &f);
        assert_eq!((c, s), script_streams(&script));
    }

    #[test]
    fn same_seed_same_bytes() {
        let impair = Impairments {
            loss: 0.1,
            reorder: 0.1,
            duplicate: 0.1,
        };
        assert_eq!(
            play(3, true, Some(7), impair).0,
            play(3, true, Some(7), impair).0
        );
        assert_ne!(
            play(3, true, Some(7), impair).0,
            play(4, true, Some(7), impair).0
        );
    }

    fn syn_count(frames: &[Frame]) -> (usize, usize) {
        let mut syn = 0;
        let mut synack = 0;
        for fr in frames {
            let p = SlicedPacket::from_ethernet(&fr.data).unwrap();
            if let Some(TransportSlice::Tcp(t)) = p.transport {
                if t.syn() && !t.ack() {
                    syn += 1;
                }
                if t.syn() && t.ack() {
                    synack += 1;
                }
            }
        }
        (syn, synack)
    }

    #[test]
    fn bulk_writes_every_session_and_half_open_flood_in_time_order() {
        let opts = BulkOptions {
            sessions: 40,
            half_open: 25,
            attachment_kb: 4,
            loss: 0.05,
            parallel: 8,
            ..BulkOptions::default()
        };
        let mut frames: Vec<Frame> = Vec::new();
        write_bulk(&opts, &mut frames).unwrap();
        assert_eq!(syn_count(&frames), (65, 65));
        for w in frames.windows(2) {
            assert!(w[0].ts_ns <= w[1].ts_ns);
        }
        // Completed handshakes: one FIN per direction per complete session.
        let fins = frames
            .iter()
            .filter(|fr| matches!(SlicedPacket::from_ethernet(&fr.data).unwrap().transport, Some(TransportSlice::Tcp(t)) if t.fin()))
            .count();
        assert_eq!(fins, 80);
    }

    #[test]
    fn interleaved_bulk_sessions_each_carry_their_own_script() {
        let opts = BulkOptions {
            sessions: 50,
            attachment_kb: 3,
            loss: 0.08,
            pipelining_ratio: 0.5,
            mails_per_session: 2,
            parallel: 12,
            seed: 77,
            ..BulkOptions::default()
        };
        let mut frames: Vec<Frame> = Vec::new();
        write_bulk(&opts, &mut frames).unwrap();
        // Group frames by client address and port.
        let mut groups: std::collections::BTreeMap<(Vec<u8>, u16), Vec<Frame>> =
            std::collections::BTreeMap::new();
        for fr in &frames {
            let p = SlicedPacket::from_ethernet(&fr.data).unwrap();
            let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) = (p.net, p.transport)
            else {
                panic!("bulk frames are IPv4 TCP")
            };
            let key = if t.destination_port() == 25 {
                (ip.header().source().to_vec(), t.source_port())
            } else {
                (ip.header().destination().to_vec(), t.destination_port())
            };
            groups.entry(key).or_default().push(fr.clone());
        }
        assert_eq!(groups.len(), 50);
        let pool = Base64Pool::new(opts.seed);
        let mut seen = std::collections::BTreeSet::new();
        for ((_, port), g) in &groups {
            let f = flow(false, None, 0, 0);
            let f = FlowSpec {
                client: Endpoint {
                    port: *port,
                    ..f.client
                },
                ..f
            };
            let (c, s) = reassemble(g, &f);
            let text = String::from_utf8_lossy(&c);
            let i: u64 = text
                .strip_prefix("EHLO client")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse().ok())
                .expect("session starts with its EHLO");
            assert!(seen.insert(i), "session {i} twice");
            assert_eq!(
                (c, s),
                script_streams(&bulk_script(&opts, &pool, i)),
                "session {i}"
            );
        }
    }

    /// The frames of `sessions` sessions without mail, the first `concurrent` held open at once.
    fn parked_capture(sessions: u64, concurrent: u64) -> Vec<Frame> {
        let opts = BulkOptions {
            sessions,
            concurrent,
            parallel: 4,
            mails_per_session: 0,
            ..BulkOptions::default()
        };
        let mut frames: Vec<Frame> = Vec::new();
        write_bulk(&opts, &mut frames).unwrap();
        frames
    }

    #[test]
    fn concurrent_sessions_all_open_before_any_closes() {
        let frames = parked_capture(30, 20);
        let mut first_fin = None;
        let mut banners_before_fin = 0;
        for (i, fr) in frames.iter().enumerate() {
            let p = SlicedPacket::from_ethernet(&fr.data).unwrap();
            if let Some(TransportSlice::Tcp(t)) = p.transport {
                if t.fin() && first_fin.is_none() {
                    first_fin = Some(i);
                }
                if t.payload().starts_with(b"220 ") && first_fin.is_none() {
                    banners_before_fin += 1;
                }
            }
        }
        assert!(first_fin.is_some());
        assert!(
            banners_before_fin >= 20,
            "only {banners_before_fin} banners before the first FIN"
        );
        assert_eq!(syn_count(&frames), (30, 30));
    }

    /// A parked session is idle, not silent: its client acknowledges the banner within the
    /// delayed-ACK time, before any session is resumed (a real stack does not wait for its
    /// application to speak).
    #[test]
    fn parked_sessions_acknowledge_their_banner() {
        let frames = parked_capture(20, 20);
        // Per client (address, port): (banner end as an ACK number, banner time); its ACK's time.
        type Client = ([u8; 4], u16);
        let mut banner: std::collections::HashMap<Client, (u32, u64)> = Default::default();
        let mut acked: std::collections::HashMap<Client, u64> = Default::default();
        let mut first_client_data = None;
        for fr in &frames {
            let p = SlicedPacket::from_ethernet(&fr.data).unwrap();
            let (Some(etherparse::NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) =
                (&p.net, &p.transport)
            else {
                continue;
            };
            let (src, dst) = (ip.header().source(), ip.header().destination());
            if t.source_port() == 25 && t.payload().starts_with(b"220 ") {
                let end = t.sequence_number().wrapping_add(t.payload().len() as u32);
                banner.insert((dst, t.destination_port()), (end, fr.ts_ns));
            } else if t.destination_port() == 25 && !t.payload().is_empty() {
                first_client_data.get_or_insert(fr.ts_ns);
            } else if t.destination_port() == 25 && t.ack() {
                let client = (src, t.source_port());
                if banner
                    .get(&client)
                    .is_some_and(|b| b.0 == t.acknowledgment_number())
                {
                    acked.entry(client).or_insert(fr.ts_ns);
                }
            }
        }
        assert_eq!(banner.len(), 20);
        let resumed = first_client_data.expect("sessions resumed");
        for (client, (_, at)) in &banner {
            let ack = acked.get(client).copied().expect("banner acknowledged");
            assert!(
                ack < resumed,
                "{client:?}: banner acknowledged only on resume"
            );
            // Linux delays an ACK by 200 ms at most; the client is a one-way delay away.
            assert!(
                ack - at <= 250 * NS_PER_MS,
                "{client:?}: ACK after {} ns",
                ack - at
            );
        }
    }
}
