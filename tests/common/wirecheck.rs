//! Wire checks of DESIGN.md §3 over a trace of a simulated run, independent of the engine.
//!
//! The harness records a [`Trace`]: every frame an endpoint transmitted
//! ([`Tap::EndpointTx`]), every frame the link delivered to the engine ([`Tap::EngineRx`])
//! and every frame the engine emitted ([`Tap::EngineTx`]), in the order they happened, each
//! with the [`Side`] of the endpoint concerned. [`check`] replays it and returns every
//! [`Violation`] of the following invariants for the frames the engine emitted toward an
//! endpoint R (the peer, which sent the bytes, is S):
//!
//! - **Checksums**: Ethernet II + IPv4 + TCP must parse, the IPv4 header checksum and the
//!   TCP checksum (over the pseudo-header) must verify ([`Kind::BadIpChecksum`],
//!   [`Kind::BadTcpChecksum`], [`Kind::Malformed`]). Non-IPv4 frames (ARP) are not checked.
//! - **MTU / MSS**: the IP packet fits R's link MTU; the payload is at most the MSS R
//!   announced in the SYN R itself sent (536 if it announced none).
//! - **Identical retransmission**: per R, a map from R-relative sequence offset to byte;
//!   every emitted payload byte must match what was emitted before at that offset.
//! - **Within window**: a payload must end at or before the right edge (ACK + scaled window)
//!   that R advertised in a frame the engine had *received* before emitting it (what the
//!   engine could know; smoltcp never shrinks its window, so the maximum is used).
//! - **No over-ACK**: an ACK toward R acknowledges R's own sequence space. It must not exceed
//!   what R actually transmitted, and the bytes it covers must have been delivered: with `M`
//!   the [`EditMap`] of direction R→S, acknowledging R's SYN and first `k` data bytes requires
//!   that S had acknowledged, in frames the engine received, its SYN and `M.needed(k)` output
//!   bytes; acknowledging R's FIN requires that S had acknowledged all output and the FIN.
//!   Deleted input may thus be acknowledged as soon as the output before it is; inserted
//!   output must be acknowledged by S before anything behind it is acknowledged to R.
//! - **SACK**: each block `[l, r)` toward R must lie inside what R transmitted
//!   (`1 <= l < r <= snd_max`), and the output of those input bytes (through `M`) must be
//!   inside what S had acknowledged or selectively acknowledged.
//! - **Window translation**: the right edge advertised to R (in R's sequence space), mapped
//!   through `M` into S's space, must not exceed the right edge S advertised plus
//!   `M.growth` (output a filter inserted may be buffered by it, so it may take that much
//!   slack). It must never move left across frames the engine authored; a frame that is a
//!   byte-for-byte copy of one S transmitted is exempt, because a stale ACK reordered by the
//!   network before the engine is S's own advertisement and receivers ignore stale window
//!   updates (RFC 9293 SND.WL1/WL2).
//! - **FIN**: a FIN toward R sits right after the whole transformed stream of S
//!   (`1 + out_len` of S→R), never before data it follows.
//! - **Acceptable ACKs**: a frame the engine authored (not a byte-for-byte copy of one S sent)
//!   that acknowledges more than any frame emitted toward R before must have a sequence
//!   number R accepts (RFC 9293 §3.10.7.4: a zero-length segment at or after what R has
//!   acknowledged, a longer one ending after it); otherwise R drops it and its ACK is lost.
//! - **Keep-alives** (RFC 1122: one garbage octet below what R already acknowledged) are not
//!   checked for identical bytes: the receiver discards that octet; smoltcp sends `0x00`.
//! - RST segments are checked for checksums and MTU only.
//!
//! `M` is computed from the dialogue after the run (the whole op list is deterministic), so
//! these checks run offline over the trace rather than online.
#![allow(dead_code)]

use super::expect::EditMap;
use mailguard::engine::Side;
use std::collections::{HashMap, HashSet};

/// Where in the simulated network a frame was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    /// The endpoint on `side` transmitted it.
    EndpointTx,
    /// The link from `side` delivered it to the engine.
    EngineRx,
    /// The engine emitted it toward the endpoint on `side`.
    EngineTx,
    /// The lane to or from the endpoint on `side` lost the frame just traced before (not
    /// checked; for coverage and debugging).
    Lost,
}

/// One observation.
#[derive(Clone, Debug)]
pub struct TraceEvent {
    /// Where.
    pub tap: Tap,
    /// Which endpoint it concerns.
    pub side: Side,
    /// The frame.
    pub frame: Vec<u8>,
}

/// Everything observed in one run, in order.
pub type Trace = Vec<TraceEvent>;

/// The invariant a frame broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Not parseable as Ethernet/IPv4/TCP, or inconsistent lengths.
    Malformed,
    /// IPv4 header checksum wrong.
    BadIpChecksum,
    /// TCP checksum wrong.
    BadTcpChecksum,
    /// Larger than the receiver's link MTU.
    OverMtu,
    /// Payload larger than the receiver's MSS.
    OverMss,
    /// A sequence position re-sent with a different byte.
    RetransmissionMismatch,
    /// Payload beyond the receiver's advertised window.
    OutOfWindow,
    /// ACK covering bytes not sent or not yet acknowledged by the receiver.
    OverAck,
    /// SACK block outside what was sent or not acknowledged by the receiver.
    BadSack,
    /// Translated window beyond what the receiver offered.
    WindowBeyondReceiver,
    /// Translated window right edge moved left.
    WindowShrunk,
    /// A FIN not at the end of the transformed stream.
    FinMisplaced,
    /// A frame the engine authored that advances the ACK it tells the receiver, with a
    /// sequence number the receiver will not accept (so the ACK is lost).
    UnacceptableSeq,
}

/// One broken invariant.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Which invariant.
    pub kind: Kind,
    /// Index of the event in the trace.
    pub index: usize,
    /// Human-readable specifics.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{} {:?}: {}", self.index, self.kind, self.detail)
    }
}

/// TCP flags used here.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// ACK flag.
pub const ACK: u8 = 0x10;

/// A parsed TCP segment (only what the checks need).
#[derive(Clone, Debug, Default)]
pub struct Seg {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte.
    pub flags: u8,
    /// Window field.
    pub win: u16,
    /// Offset of the TCP header in the frame.
    pub tcp_off: usize,
    /// Offset of the payload in the frame.
    pub payload_off: usize,
    /// Payload length.
    pub payload_len: usize,
    /// IP packet length.
    pub ip_len: usize,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window scale option.
    pub ws: Option<u8>,
    /// SACK blocks.
    pub sack: Vec<(u32, u32)>,
}

impl Seg {
    /// Whether a flag is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sequence space the segment occupies (payload, SYN and FIN).
    pub fn seq_len(&self) -> u64 {
        self.payload_len as u64 + u64::from(self.has(SYN)) + u64::from(self.has(FIN))
    }
}

/// Ones' complement sum of `data` added to `acc` (not folded).
pub fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

/// Folds a sum to 16 bits.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The TCP checksum over pseudo-header and segment, given the IPv4 header and segment.
fn tcp_sum(ip: &[u8], tcp: &[u8]) -> u32 {
    let mut acc = sum16(0, ip.get(12..20).unwrap_or_default());
    acc += 6 + tcp.len() as u32;
    sum16(acc, tcp)
}

/// Parses an Ethernet II / IPv4 / TCP frame and verifies its checksums.
/// `Ok(None)` for frames that are not IPv4 (ARP).
pub fn parse(frame: &[u8]) -> Result<Option<Seg>, (Kind, String)> {
    let malformed = |what: &str| (Kind::Malformed, what.to_string());
    if frame.get(12..14) != Some(&[0x08, 0x00][..]) {
        return Ok(None);
    }
    let ip = frame.get(14..).ok_or_else(|| malformed("no IP header"))?;
    let vihl = *ip.first().ok_or_else(|| malformed("empty IP"))?;
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return Err(malformed("bad IPv4 version or header length"));
    }
    let ip_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip_len < ihl + 20 || ip_len > ip.len() {
        return Err(malformed("bad IPv4 total length"));
    }
    if fold(sum16(0, &ip[..ihl])) != 0xffff {
        return Err((Kind::BadIpChecksum, "IPv4 header checksum".into()));
    }
    if ip[9] != 6 {
        return Err(malformed("not TCP"));
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(malformed("IP fragment"));
    }
    let tcp = &ip[ihl..ip_len];
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > tcp.len() {
        return Err(malformed("bad TCP data offset"));
    }
    if fold(tcp_sum(&ip[..ihl], tcp)) != 0xffff {
        return Err((Kind::BadTcpChecksum, "TCP checksum".into()));
    }
    let be16 = |o: usize| u16::from_be_bytes([tcp[o], tcp[o + 1]]);
    let be32 = |o: usize| u32::from_be_bytes([tcp[o], tcp[o + 1], tcp[o + 2], tcp[o + 3]]);
    let mut seg = Seg {
        sport: be16(0),
        dport: be16(2),
        seq: be32(4),
        ack: be32(8),
        flags: tcp[13],
        win: be16(14),
        tcp_off: 14 + ihl,
        payload_off: 14 + ihl + doff,
        payload_len: tcp.len() - doff,
        ip_len,
        ..Seg::default()
    };
    parse_options(&tcp[20..doff], &mut seg).map_err(malformed)?;
    Ok(Some(seg))
}

fn parse_options(mut opts: &[u8], seg: &mut Seg) -> Result<(), &'static str> {
    while let Some(&kind) = opts.first() {
        match kind {
            0 => break,
            1 => {
                opts = &opts[1..];
                continue;
            }
            _ => {}
        }
        let len = usize::from(*opts.get(1).ok_or("truncated option")?);
        if len < 2 || len > opts.len() {
            return Err("bad option length");
        }
        let body = &opts[2..len];
        match (kind, body.len()) {
            (2, 2) => seg.mss = Some(u16::from_be_bytes([body[0], body[1]])),
            (3, 1) => seg.ws = Some(body[0]),
            (5, n) if n % 8 == 0 => {
                for b in body.chunks_exact(8) {
                    seg.sack.push((
                        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                        u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                    ));
                }
            }
            (2 | 3 | 5, _) => return Err("bad MSS/WS/SACK option"),
            _ => {}
        }
        opts = &opts[len..];
    }
    Ok(())
}

/// Recomputes the IPv4 header and TCP checksums of a frame in place (for tests that build
/// or corrupt frames). Does nothing to frames that are not IPv4/TCP.
pub fn fix_checksums(frame: &mut [u8]) {
    if frame.get(12..14) != Some(&[0x08, 0x00][..]) || frame.len() < 34 {
        return;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let ip_len = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    if ihl < 20 || ip_len < ihl + 20 || 14 + ip_len > frame.len() || frame[23] != 6 {
        return;
    }
    frame[24] = 0;
    frame[25] = 0;
    let c = !fold(sum16(0, &frame[14..14 + ihl]));
    frame[24..26].copy_from_slice(&c.to_be_bytes());
    let t = 14 + ihl;
    frame[t + 16] = 0;
    frame[t + 17] = 0;
    let c = !fold(tcp_sum(&frame[14..14 + ihl], &frame[t..14 + ip_len]));
    frame[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
}

/// Offsets relative to an initial sequence number.
fn rel(seq: u32, isn: u32) -> u64 {
    u64::from(seq.wrapping_sub(isn))
}

fn idx(side: Side) -> usize {
    match side {
        Side::Outside => 0,
        Side::Inside => 1,
    }
}

/// Union of intervals `[lo, hi)`.
#[derive(Clone, Debug, Default)]
struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    fn add(&mut self, lo: u64, hi: u64) {
        if lo >= hi {
            return;
        }
        self.0.push((lo, hi));
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(l, h) in &self.0 {
            match merged.last_mut() {
                Some(last) if l <= last.1 => last.1 = last.1.max(h),
                _ => merged.push((l, h)),
            }
        }
        self.0 = merged;
    }

    fn covers(&self, lo: u64, hi: u64) -> bool {
        lo >= hi || self.0.iter().any(|&(l, h)| l <= lo && hi <= h)
    }

    fn cum(&self) -> u64 {
        match self.0.first() {
            Some(&(0, h)) => h,
            _ => 0,
        }
    }
}

/// What is known about one endpoint.
#[derive(Clone, Debug, Default)]
struct EndpointState {
    /// ISN of the SYN it transmitted.
    isn: Option<u32>,
    /// MSS and window scale from its SYN.
    mss: Option<u16>,
    ws: Option<u8>,
    sent_syn: bool,
    /// Highest relative sequence it transmitted (exclusive).
    snd_max: u64,
    /// Relative sequence of its FIN.
    fin: Option<u64>,
    /// Frames it transmitted, byte for byte.
    transmitted: HashSet<Vec<u8>>,
    /// What it acknowledged or selectively acknowledged (relative to `out_isn`), as
    /// received by the engine.
    received: Ranges,
    /// Largest right edge it advertised (relative to `out_isn`), as received by the engine.
    right_edge: Option<u64>,
    /// ISN of the SYN the engine emitted toward it (the space it receives in).
    out_isn: Option<u32>,
    /// Window scale option of the SYN the engine emitted toward it.
    out_ws: Option<u8>,
    /// Byte at each relative offset emitted toward it.
    out_bytes: HashMap<u64, u8>,
    /// Largest right edge the engine advertised to it (relative to `isn`).
    out_edge: Option<u64>,
    /// Largest ACK the engine sent it (relative to `isn`).
    out_ack: Option<u64>,
}

impl EndpointState {
    /// Shift applied to windows this endpoint advertises.
    fn rx_shift(&self) -> u8 {
        match (self.ws, self.out_ws) {
            (Some(s), Some(_)) => s.min(14),
            _ => 0,
        }
    }

    /// Shift applied to windows the engine advertises to this endpoint.
    fn tx_shift(&self) -> u8 {
        match (self.ws, self.out_ws) {
            (Some(_), Some(s)) => s.min(14),
            _ => 0,
        }
    }
}

/// Link parameters the checks need.
#[derive(Clone, Copy, Debug)]
pub struct Links {
    /// IP MTU toward the client (Outside) and the server (Inside).
    pub ip_mtu: [usize; 2],
}

/// The edit maps of both directions: `[client→server, server→client]`.
pub type Maps<'a> = [&'a EditMap; 2];

/// Runs every check over a trace. `maps[0]` maps the client's stream to the server's input,
/// `maps[1]` the server's to the client's.
pub fn check(trace: &[TraceEvent], maps: Maps<'_>, links: Links) -> Vec<Violation> {
    let mut st = [EndpointState::default(), EndpointState::default()];
    let mut out = Vec::new();
    for (i, ev) in trace.iter().enumerate() {
        let seg = match parse(&ev.frame) {
            Ok(Some(seg)) => seg,
            Ok(None) => continue,
            Err((kind, detail)) => {
                if ev.tap == Tap::EngineTx {
                    out.push(Violation {
                        kind,
                        index: i,
                        detail,
                    });
                }
                continue;
            }
        };
        let me = idx(ev.side);
        match ev.tap {
            Tap::Lost => {}
            Tap::EndpointTx => on_endpoint_tx(&mut st[me], &seg, &ev.frame),
            Tap::EngineRx => on_engine_rx(&mut st[me], &seg),
            Tap::EngineTx => {
                let (r, s) = if me == 0 {
                    let [a, b] = &mut st;
                    (a, b)
                } else {
                    let [a, b] = &mut st;
                    (b, a)
                };
                let ctx = Ctx {
                    index: i,
                    frame: &ev.frame,
                    seg: &seg,
                    mtu: links.ip_mtu[me],
                    // Direction R→S: R is the client when the frame goes Outside.
                    map: maps[me],
                    data_map: maps[1 - me],
                };
                on_engine_tx(&ctx, r, s, &mut out);
            }
        }
    }
    out
}

fn on_endpoint_tx(e: &mut EndpointState, seg: &Seg, frame: &[u8]) {
    if seg.has(SYN) && !e.sent_syn {
        e.sent_syn = true;
        e.isn = Some(seg.seq);
        e.mss = seg.mss;
        e.ws = seg.ws;
    }
    if let Some(isn) = e.isn {
        let start = rel(seg.seq, isn);
        e.snd_max = e.snd_max.max(start + seg.seq_len());
        if seg.has(FIN) {
            e.fin = Some(start + seg.payload_len as u64);
        }
    }
    e.transmitted.insert(frame.to_vec());
}

fn on_engine_rx(e: &mut EndpointState, seg: &Seg) {
    if seg.has(RST) || !seg.has(ACK) {
        return;
    }
    let Some(out_isn) = e.out_isn else { return };
    let ack = rel(seg.ack, out_isn);
    e.received.add(0, ack);
    for &(l, r) in &seg.sack {
        e.received.add(rel(l, out_isn), rel(r, out_isn));
    }
    let shift = if seg.has(SYN) { 0 } else { e.rx_shift() };
    let edge = ack + (u64::from(seg.win) << shift);
    e.right_edge = Some(e.right_edge.map_or(edge, |x| x.max(edge)));
}

struct Ctx<'a> {
    index: usize,
    frame: &'a [u8],
    seg: &'a Seg,
    mtu: usize,
    /// Direction R→S (what ACKs and windows toward R refer to).
    map: &'a EditMap,
    /// Direction S→R (the data the frame carries).
    data_map: &'a EditMap,
}

impl Ctx<'_> {
    fn push(&self, out: &mut Vec<Violation>, kind: Kind, detail: String) {
        out.push(Violation {
            kind,
            index: self.index,
            detail,
        });
    }
}

/// Checks a frame the engine emitted toward R; S is R's peer.
fn on_engine_tx(c: &Ctx<'_>, r: &mut EndpointState, s: &EndpointState, out: &mut Vec<Violation>) {
    let seg = c.seg;
    if seg.ip_len > c.mtu {
        c.push(
            out,
            Kind::OverMtu,
            format!("IP length {} > {}", seg.ip_len, c.mtu),
        );
    }
    if seg.has(SYN) && r.out_isn.is_none() {
        r.out_isn = Some(seg.seq);
        r.out_ws = seg.ws;
    }
    if seg.has(RST) {
        return;
    }
    check_payload(c, r, out);
    check_fin(c, r, out);
    if seg.has(ACK) {
        check_acceptable(c, r, s, out);
        check_ack(c, r, s, out);
        check_sack(c, r, s, out);
        check_window(c, r, s, out);
    }
}

fn check_payload(c: &Ctx<'_>, r: &mut EndpointState, out: &mut Vec<Violation>) {
    let seg = c.seg;
    if seg.payload_len == 0 {
        return;
    }
    if r.sent_syn {
        let mss = usize::from(r.mss.unwrap_or(536));
        if seg.payload_len > mss {
            c.push(
                out,
                Kind::OverMss,
                format!("payload {} > MSS {mss}", seg.payload_len),
            );
        }
    }
    let Some(out_isn) = r.out_isn else {
        c.push(
            out,
            Kind::Malformed,
            "data before any SYN toward the receiver".into(),
        );
        return;
    };
    let start = rel(seg.seq, out_isn) + u64::from(seg.has(SYN));
    if seg.payload_len == 1 && start < r.received.cum() {
        return; // A keep-alive probe.
    }
    let payload = c
        .frame
        .get(seg.payload_off..seg.payload_off + seg.payload_len)
        .unwrap_or_default();
    let mut mismatches = 0usize;
    let mut first = None;
    for (k, &b) in payload.iter().enumerate() {
        let off = start + k as u64;
        let prev = *r.out_bytes.entry(off).or_insert(b);
        if prev != b {
            mismatches += 1;
            first.get_or_insert((off, prev, b));
        }
    }
    if let Some((off, prev, b)) = first {
        c.push(
            out,
            Kind::RetransmissionMismatch,
            format!(
                "{mismatches} bytes differ, first at offset {off}: was {prev:#04x}, now {b:#04x}"
            ),
        );
    }
    if let Some(edge) = r.right_edge {
        let end = start + seg.payload_len as u64;
        if end > edge {
            c.push(
                out,
                Kind::OutOfWindow,
                format!("payload ends at {end}, receiver's right edge {edge}"),
            );
        }
    }
}

fn check_fin(c: &Ctx<'_>, r: &EndpointState, out: &mut Vec<Violation>) {
    let seg = c.seg;
    let (true, Some(out_isn)) = (seg.has(FIN), r.out_isn) else {
        return;
    };
    let at = rel(seg.seq, out_isn) + u64::from(seg.has(SYN)) + seg.payload_len as u64;
    let want = 1 + c.data_map.out_len;
    if at != want {
        c.push(
            out,
            Kind::FinMisplaced,
            format!("FIN at {at}, the transformed stream ends at {want}"),
        );
    }
}

fn check_acceptable(
    c: &Ctx<'_>,
    r: &mut EndpointState,
    s: &EndpointState,
    out: &mut Vec<Violation>,
) {
    let seg = c.seg;
    let (Some(isn), Some(out_isn)) = (r.isn, r.out_isn) else {
        return;
    };
    if seg.has(SYN) {
        return;
    }
    let ack = rel(seg.ack, isn);
    let advances = r.out_ack.is_none_or(|prev| ack > prev);
    r.out_ack = Some(r.out_ack.map_or(ack, |p| p.max(ack)));
    if !advances || s.transmitted.contains(c.frame) {
        return;
    }
    let rcv_nxt = r.received.cum();
    let start = rel(seg.seq, out_isn);
    let len = seg.seq_len();
    let acceptable = if len == 0 {
        start >= rcv_nxt
    } else {
        start + len > rcv_nxt
    };
    if !acceptable {
        c.push(
            out,
            Kind::UnacceptableSeq,
            format!(
                "ACK {ack} sent at seq {start} (+{len}) but the receiver expects {rcv_nxt}: dropped"
            ),
        );
    }
}

/// Relative sequence S must have acknowledged (cumulatively) before R's `ack` may be sent.
fn required_for_ack(map: &EditMap, r: &EndpointState, ack: u64) -> u64 {
    if ack == 0 {
        return 0;
    }
    match r.fin {
        Some(fin) if ack > fin => 1 + map.out_len + 1,
        _ => 1 + map.needed(ack - 1),
    }
}

fn check_ack(c: &Ctx<'_>, r: &EndpointState, s: &EndpointState, out: &mut Vec<Violation>) {
    let Some(isn) = r.isn else {
        c.push(
            out,
            Kind::OverAck,
            "ACK toward an endpoint that never sent a SYN".into(),
        );
        return;
    };
    let ack = rel(c.seg.ack, isn);
    if ack > r.snd_max {
        c.push(
            out,
            Kind::OverAck,
            format!("ACK {ack} beyond what the endpoint sent ({})", r.snd_max),
        );
        return;
    }
    let need = required_for_ack(c.map, r, ack);
    let have = s.received.cum();
    if have < need {
        c.push(
            out,
            Kind::OverAck,
            format!("ACK {ack} needs the peer to have acknowledged {need}, it acknowledged {have}"),
        );
    }
}

fn check_sack(c: &Ctx<'_>, r: &EndpointState, s: &EndpointState, out: &mut Vec<Violation>) {
    let Some(isn) = r.isn else { return };
    for &(l, h) in &c.seg.sack {
        let (l, h) = (rel(l, isn), rel(h, isn));
        if !(1 <= l && l < h && h <= r.snd_max) {
            c.push(
                out,
                Kind::BadSack,
                format!("block [{l}, {h}) outside what was sent (1..{})", r.snd_max),
            );
            continue;
        }
        let data_end = r.fin.map_or(h, |f| h.min(f)).max(l);
        let lo = 1 + c.map.needed(l - 1);
        let hi = 1 + c.map.needed(data_end - 1);
        if !s.received.covers(lo, hi) {
            c.push(
                out,
                Kind::BadSack,
                format!("block [{l}, {h}) is output [{lo}, {hi}), not acknowledged by the peer"),
            );
        }
    }
}

fn check_window(c: &Ctx<'_>, r: &mut EndpointState, s: &EndpointState, out: &mut Vec<Violation>) {
    let Some(isn) = r.isn else { return };
    let seg = c.seg;
    let shift = if seg.has(SYN) { 0 } else { r.tx_shift() };
    let edge = rel(seg.ack, isn) + (u64::from(seg.win) << shift);
    if let Some(s_edge) = s.right_edge {
        let mapped = 1 + c.map.needed(edge.saturating_sub(1));
        if mapped > s_edge + c.map.growth {
            c.push(
                out,
                Kind::WindowBeyondReceiver,
                format!(
                    "right edge {edge} maps to {mapped}, receiver offered {s_edge} (+{} growth)",
                    c.map.growth
                ),
            );
        }
    }
    let verbatim = s.transmitted.contains(c.frame);
    if let Some(prev) = r.out_edge {
        if edge < prev && !verbatim {
            c.push(
                out,
                Kind::WindowShrunk,
                format!("right edge {edge} after {prev}"),
            );
        }
    }
    r.out_edge = Some(r.out_edge.map_or(edge, |p| p.max(edge)));
}

/// One line per traced frame (tap, side, flags, relative seq/ack, length, window, SACK), for
/// debugging a failing seed.
pub fn dump(trace: &[TraceEvent]) -> String {
    let mut isn: [Option<u32>; 2] = [None, None];
    let mut s = String::new();
    for (i, ev) in trace.iter().enumerate() {
        if ev.tap == Tap::Lost {
            s.push_str(&format!("#{i} lost by the lane\n"));
            continue;
        }
        let Ok(Some(seg)) = parse(&ev.frame) else {
            s.push_str(&format!(
                "#{i} {:?} {:?} non-TCP or bad frame\n",
                ev.tap, ev.side
            ));
            continue;
        };
        // The sender of the frame: the endpoint itself for EndpointTx/EngineRx, else the peer.
        let from_client = seg.dport == 25;
        let (me, peer) = if from_client { (0, 1) } else { (1, 0) };
        if seg.has(SYN) && isn[me].is_none() {
            isn[me] = Some(seg.seq);
        }
        let r = |v: u32, who: usize| isn[who].map_or(u64::from(v), |x| rel(v, x));
        let flags: String = [(SYN, 'S'), (ACK, 'A'), (FIN, 'F'), (RST, 'R')]
            .iter()
            .filter(|(f, _)| seg.has(*f))
            .map(|(_, c)| *c)
            .collect();
        let sack: Vec<_> = seg
            .sack
            .iter()
            .map(|&(l, h)| (r(l, peer), r(h, peer)))
            .collect();
        s.push_str(&format!(
            "#{i} {:?} {:?} {} {flags} seq {} ack {} len {} win {} sack {:?}\n",
            ev.tap,
            ev.side,
            if from_client { "c>s" } else { "s>c" },
            r(seg.seq, me),
            r(seg.ack, peer),
            seg.payload_len,
            seg.win,
            sack
        ));
    }
    s
}

/// Builds an Ethernet II / IPv4 / TCP frame between the simulated client
/// (198.18.0.1:`client_port`, MAC 02:00:00:00:00:01) and server (198.18.0.2:25) with valid
/// checksums. `options` is padded with NOPs to a multiple of 4 bytes.
#[allow(clippy::too_many_arguments)]
pub fn build_frame(
    from_client: bool,
    client_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(1);
    }
    let (src, dst) = if from_client { (1u8, 2u8) } else { (2, 1) };
    let (sport, dport) = if from_client {
        (client_port, 25)
    } else {
        (25, client_port)
    };
    let tcp_len = 20 + opts.len() + payload.len();
    let mut f = Vec::with_capacity(34 + tcp_len);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, dst, 0x02, 0, 0, 0, 0, src, 0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[198, 18, 0, src, 198, 18, 0, dst]);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.push(((20 + opts.len()) / 4) as u8 * 16);
    f.push(flags);
    f.extend_from_slice(&win.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(&opts);
    f.extend_from_slice(payload);
    fix_checksums(&mut f);
    f
}
