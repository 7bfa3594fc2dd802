//! A small in-process lab for engine-level security tests and the `engine` fuzz target.
//!
//! It builds frames itself (etherparse's `PacketBuilder`, which computes checksums, plus raw
//! byte surgery for IP fragments and deliberately broken checksums) and never uses
//! `mailguard::wire`, so a bug there cannot hide a bug in the engine.
//!
//! The pieces:
//! - [`Flow`], [`Seg`], [`build`], [`fragment`], [`corrupt_tcp_checksum`],
//!   [`corrupt_ip_checksum`]: frame construction.
//! - [`check_checksums`]: the wire invariant every emitted frame must meet.
//! - [`Receiver`]: what a TCP receiver behind the engine ends up with. It is deliberately
//!   *more permissive* than any real stack, so that it errs towards seeing an attack: it
//!   reassembles IP fragments (first bytes win; a conflicting overlap is recorded), accepts
//!   data at any sequence offset (no window check), accepts data carried by SYN and RST
//!   segments (RFC 5961 rules aside: a RST counts only at exactly the next sequence number, a
//!   second SYN with another ISN is ignored), and removes the urgent byte from the stream (BSD/Linux out-of-band semantics,
//!   the byte at `seq + urgent_pointer - 1`). Frames with a bad checksum are dropped, as every
//!   real receiver does. A byte position received twice with different values is a
//!   *conflict*: the engine must never emit one (DESIGN.md §3.2).
//! - [`SmtpServer`]: a deliberately lenient and vulnerable SMTP server model that executes
//!   what it receives: it trims leading white space, ends the verb at SP, TAB, NUL or CR,
//!   compares it case-insensitively, reads `BDAT n` chunks by length, takes the line after a
//!   334 to `AUTH PLAIN`/`AUTH LOGIN` as a SASL response (other mechanisms get 504), ends a message body at a `.` line terminated by CRLF,
//!   bare LF or bare CR (so SMTP smuggling works against it), answers DATA with 503 when no
//!   RCPT was given, and executes plaintext pipelined behind STARTTLS (CVE-2011-0411).
//!   [`SmtpServer::executed`] is the list of verbs it ran: a blocked verb there means the
//!   filter was bypassed.
//! - [`Lab`]: an [`Engine`] between a scripted client (outside) and the server model (inside).
//!   Every frame the engine emits is checked with [`check_checksums`] and routed, following
//!   the replay convention (the input frame if the verdict is `Forward`, then the sink).

#![allow(dead_code)]

use etherparse::PacketBuilder;
use mailguard::engine::{Engine, EngineConfig, FailMode, FrameSink, Side, Time, Verdict};
use mailguard::smtp::{PolicyConfig, Profile};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Checksums.

/// Adds `data` as big-endian 16-bit words to a ones'-complement accumulator.
pub fn ones_sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds an accumulator into the final 16-bit internet checksum (complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The TCP checksum of `l4` (header with its checksum field as given, plus payload) under the
/// pseudo-header of `src`/`dst`. Zero means the checksum in `l4` is right.
fn tcp_verify(src: &[u8], dst: &[u8], l4: &[u8]) -> u16 {
    let mut acc = ones_sum(src, 0);
    acc = ones_sum(dst, acc);
    acc += 6;
    acc += l4.len() as u64;
    fold(ones_sum(l4, acc))
}

// ---------------------------------------------------------------------------------------------
// Building frames.

/// MAC addresses: the client's side and the server's side.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC address of the server.
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Client TCP port.
pub const CLIENT_PORT: u16 = 40_000;
/// Server TCP port (filtered).
pub const SERVER_PORT: u16 = 25;

/// The addresses of the one connection a [`Lab`] runs (benchmarking ranges only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// IPv6 instead of IPv4.
    pub v6: bool,
}

impl Flow {
    fn ip(&self, client: bool) -> Vec<u8> {
        match (self.v6, client) {
            (false, true) => vec![198, 18, 0, 1],
            (false, false) => vec![198, 18, 0, 2],
            (true, true) => vec![0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            (true, false) => vec![0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        }
    }
}

/// One TCP segment to build.
#[derive(Clone, Debug, Default)]
pub struct Seg {
    /// Sent by the client (else by the server).
    pub from_client: bool,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (ACK flag set when present).
    pub ack: Option<u32>,
    /// SYN flag.
    pub syn: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// URG flag with this urgent pointer.
    pub urg: Option<u16>,
    /// Advertised window.
    pub window: u16,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Builds an Ethernet frame for `seg` with correct checksums (MSS option 1460 on SYNs).
pub fn build(flow: Flow, seg: &Seg) -> Vec<u8> {
    let (smac, dmac) = if seg.from_client {
        (CLIENT_MAC, SERVER_MAC)
    } else {
        (SERVER_MAC, CLIENT_MAC)
    };
    let (sport, dport) = if seg.from_client {
        (CLIENT_PORT, SERVER_PORT)
    } else {
        (SERVER_PORT, CLIENT_PORT)
    };
    let src = flow.ip(seg.from_client);
    let dst = flow.ip(!seg.from_client);
    let eth = PacketBuilder::ethernet2(smac, dmac);
    let ip = if flow.v6 {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&src);
        d.copy_from_slice(&dst);
        eth.ipv6(s, d, 64)
    } else {
        let mut s = [0u8; 4];
        let mut d = [0u8; 4];
        s.copy_from_slice(&src);
        d.copy_from_slice(&dst);
        eth.ipv4(s, d, 64)
    };
    let mut b = ip.tcp(sport, dport, seg.seq, seg.window);
    if let Some(a) = seg.ack {
        b = b.ack(a);
    }
    if seg.syn {
        b = b.syn();
        b = b.options_raw(&[2, 4, 0x05, 0xb4]).expect("MSS option fits");
    }
    if seg.fin {
        b = b.fin();
    }
    if seg.rst {
        b = b.rst();
    }
    if !seg.payload.is_empty() {
        b = b.psh();
    }
    if let Some(p) = seg.urg {
        b = b.urg(p);
    }
    let mut out = Vec::with_capacity(b.size(seg.payload.len()));
    b.write(&mut out, &seg.payload).expect("frame builds");
    out
}

/// Where the IP header and the IP payload of an untagged Ethernet frame built by [`build`]
/// start: `(ip_start, l4_start)`.
fn layout(frame: &[u8]) -> (usize, usize) {
    if frame.get(12..14) == Some(&[0x86, 0xdd][..]) {
        (14, 54)
    } else {
        let ihl = usize::from(frame.get(14).copied().unwrap_or(0x45) & 0x0f) * 4;
        (14, 14 + ihl)
    }
}

/// Splits the frame built by [`build`] into IP fragments, one per `(start, end)` range of its
/// IP payload (the TCP segment), with identification `id`. The ranges may overlap or repeat;
/// "more fragments" is set on every range that ends before the payload does.
pub fn fragment(frame: &[u8], ranges: &[(usize, usize)], id: u32) -> Vec<Vec<u8>> {
    let (ip, l4) = layout(frame);
    let payload = &frame[l4..];
    let v6 = ip + 40 == l4 && frame[12..14] == [0x86, 0xdd];
    ranges
        .iter()
        .map(|&(s, e)| {
            let e = e.min(payload.len());
            let s = s.min(e);
            let more = e < payload.len();
            let part = &payload[s..e];
            if v6 {
                let mut out = frame[..l4].to_vec();
                out[ip + 6] = 44; // next header: fragment
                let plen = (8 + part.len()) as u16;
                out[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
                let off = ((s / 8) as u16) << 3 | u16::from(more);
                out.extend_from_slice(&[6, 0]);
                out.extend_from_slice(&off.to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(part);
                out
            } else {
                let mut out = frame[..l4].to_vec();
                let total = (l4 - ip + part.len()) as u16;
                out[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
                out[ip + 4..ip + 6].copy_from_slice(&(id as u16).to_be_bytes());
                let flags = ((s / 8) as u16) | if more { 0x2000 } else { 0 };
                out[ip + 6..ip + 8].copy_from_slice(&flags.to_be_bytes());
                out[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
                let sum = fold(ones_sum(&out[ip..l4], 0));
                out[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
                out.extend_from_slice(part);
                out
            }
        })
        .collect()
}

/// Breaks the TCP checksum of a frame built by [`build`].
pub fn corrupt_tcp_checksum(frame: &mut [u8]) {
    let (_, l4) = layout(frame);
    frame[l4 + 16] ^= 0x5a;
}

/// Breaks the IPv4 header checksum of a frame built by [`build`].
pub fn corrupt_ip_checksum(frame: &mut [u8]) {
    frame[14 + 10] ^= 0x5a;
}

// ---------------------------------------------------------------------------------------------
// Parsing what the engine emits.

/// The IP layer of a frame.
#[derive(Debug)]
pub struct IpView<'a> {
    /// Source address bytes.
    pub src: &'a [u8],
    /// Destination address bytes.
    pub dst: &'a [u8],
    /// Upper-layer protocol (after the IPv6 extension headers).
    pub proto: u8,
    /// `(offset in bytes, more fragments, identification)` when this is a fragment.
    pub frag: Option<(usize, bool, u32)>,
    /// The IP payload (possibly a fragment of it).
    pub payload: &'a [u8],
    /// The IPv4 header checksum verifies (always true for IPv6).
    pub header_ok: bool,
}

/// Parses Ethernet (with up to two VLAN tags) and IPv4/IPv6. `None` if not IP or malformed.
pub fn parse_ip(frame: &[u8]) -> Option<IpView<'_>> {
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        at += 4;
        ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    }
    let ip = at + 2;
    match ethertype {
        0x0800 => {
            let h = frame.get(ip..ip + 20)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if h[0] >> 4 != 4 || ihl < 20 || total < ihl {
                return None;
            }
            let hdr = frame.get(ip..ip + ihl)?;
            let all = frame.get(ip..ip + total)?;
            let fl = u16::from_be_bytes([h[6], h[7]]);
            let off = usize::from(fl & 0x1fff) * 8;
            let more = fl & 0x2000 != 0;
            Some(IpView {
                src: &h[12..16],
                dst: &h[16..20],
                proto: h[9],
                frag: (off != 0 || more).then_some((
                    off,
                    more,
                    u32::from(u16::from_be_bytes([h[4], h[5]])),
                )),
                payload: &all[ihl..],
                header_ok: fold(ones_sum(hdr, 0)) == 0,
            })
        }
        0x86dd => {
            let h = frame.get(ip..ip + 40)?;
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            let mut next = h[6];
            let body = frame.get(ip + 40..ip + 40 + plen)?;
            let mut pos = 0;
            let mut frag = None;
            loop {
                match next {
                    0 | 43 | 60 => {
                        let e = body.get(pos..pos + 2)?;
                        next = e[0];
                        pos += (usize::from(e[1]) + 1) * 8;
                    }
                    44 => {
                        let e = body.get(pos..pos + 8)?;
                        next = e[0];
                        let fo = u16::from_be_bytes([e[2], e[3]]);
                        let id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                        frag = Some((usize::from(fo >> 3) * 8, fo & 1 != 0, id));
                        pos += 8;
                    }
                    _ => break,
                }
            }
            Some(IpView {
                src: &h[8..24],
                dst: &h[24..40],
                proto: next,
                frag: frag.filter(|&(o, m, _)| o != 0 || m),
                payload: body.get(pos..)?,
                header_ok: true,
            })
        }
        _ => None,
    }
}

/// The wire invariant of DESIGN.md §3.3 for one emitted frame: the IPv4 header checksum and,
/// for an unfragmented TCP segment, the TCP checksum verify. Non-IP frames pass.
pub fn check_checksums(frame: &[u8]) -> Result<(), String> {
    let Some(ip) = parse_ip(frame) else {
        return Ok(());
    };
    if !ip.header_ok {
        return Err("bad IPv4 header checksum".into());
    }
    if ip.proto == 6 && ip.frag.is_none() && tcp_verify(ip.src, ip.dst, ip.payload) != 0 {
        return Err("bad TCP checksum".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The receiver model.

/// Largest stream offset a [`Receiver`] stores (the tests stay far below it).
const RECEIVER_LIMIT: usize = 1 << 20;

/// A parsed TCP header, as far as the lab needs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpInfo {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (when the ACK flag is set).
    pub ack: Option<u32>,
    /// SYN flag.
    pub syn: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// Window.
    pub window: u16,
}

/// One endpoint's receive side: see the module docs for how permissive it is.
#[derive(Debug, Default)]
pub struct Receiver {
    /// The peer's initial sequence number, once its SYN arrived.
    pub isn: Option<u32>,
    bytes: Vec<Option<u8>>,
    oob: Vec<usize>,
    fin_at: Option<usize>,
    /// The connection was closed by a RST: one received at exactly the next expected sequence
    /// number, or one this endpoint sent itself. Further segments are ignored.
    pub rst: bool,
    /// RSTs ignored because their sequence number was not exactly the next expected one.
    pub ignored_rsts: usize,
    /// SYNs ignored because the connection was already synchronised with another ISN.
    pub ignored_syns: usize,
    /// Byte positions received twice with different values (TCP or IP-fragment overlap).
    pub conflicts: usize,
    /// Frames dropped for a bad checksum.
    pub bad_checksums: usize,
    /// TCP segments accepted.
    pub segments: usize,
    frags: Vec<(u32, usize, bool, Vec<u8>)>,
    /// The last TCP header accepted.
    pub last: Option<TcpInfo>,
}

impl Receiver {
    /// Takes one frame as the endpoint's NIC would deliver it.
    pub fn on_frame(&mut self, frame: &[u8]) {
        let Some(ip) = parse_ip(frame) else {
            return;
        };
        if !ip.header_ok {
            self.bad_checksums += 1;
            return;
        }
        if ip.proto != 6 {
            return;
        }
        let (src, dst) = (ip.src.to_vec(), ip.dst.to_vec());
        match ip.frag {
            None => {
                let l4 = ip.payload.to_vec();
                self.on_segment(&src, &dst, &l4);
            }
            Some((off, more, id)) => {
                if self.frags.len() < 1024 {
                    self.frags.push((id, off, more, ip.payload.to_vec()));
                }
                if let Some(l4) = self.reassemble(id) {
                    self.on_segment(&src, &dst, &l4);
                }
            }
        }
    }

    /// Reassembles datagram `id` once complete (first bytes win, conflicts counted).
    fn reassemble(&mut self, id: u32) -> Option<Vec<u8>> {
        let mine: Vec<&(u32, usize, bool, Vec<u8>)> =
            self.frags.iter().filter(|f| f.0 == id).collect();
        let total = mine.iter().find(|f| !f.2).map(|f| f.1 + f.3.len())?;
        if total > 65_535 {
            return None;
        }
        let mut buf: Vec<Option<u8>> = vec![None; total];
        let mut conflicts = 0;
        for f in &mine {
            for (i, &b) in f.3.iter().enumerate() {
                if let Some(slot) = buf.get_mut(f.1 + i) {
                    match slot {
                        None => *slot = Some(b),
                        Some(old) if *old != b => conflicts += 1,
                        Some(_) => {}
                    }
                }
            }
        }
        let out: Option<Vec<u8>> = buf.into_iter().collect();
        let out = out?;
        self.conflicts += conflicts;
        self.frags.retain(|f| f.0 != id);
        Some(out)
    }

    fn on_segment(&mut self, src: &[u8], dst: &[u8], l4: &[u8]) {
        if self.rst || l4.len() < 20 {
            return;
        }
        if tcp_verify(src, dst, l4) != 0 {
            self.bad_checksums += 1;
            return;
        }
        let doff = usize::from(l4[12] >> 4) * 4;
        if doff < 20 || doff > l4.len() {
            return;
        }
        let fl = l4[13];
        let info = TcpInfo {
            seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
            ack: (fl & 0x10 != 0).then(|| u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]])),
            syn: fl & 0x02 != 0,
            fin: fl & 0x01 != 0,
            rst: fl & 0x04 != 0,
            window: u16::from_be_bytes([l4[14], l4[15]]),
        };
        let urg = (fl & 0x20 != 0).then(|| u16::from_be_bytes([l4[18], l4[19]]));
        if info.rst && (self.isn.is_none() || Some(info.seq) != self.next_ack()) {
            // RFC 5961: only a RST at exactly the next expected sequence number closes the
            // connection; any other is ignored, data and all. (Strict on purpose: a filter
            // that believes a RST its receiver ignores would stop filtering a live stream.)
            self.ignored_rsts += 1;
            return;
        }
        if info.syn && self.isn.is_some_and(|isn| isn != info.seq) {
            // A SYN that is not a retransmission of the first one, on a synchronised
            // connection: RFC 5961 §4 receivers answer a challenge ACK and take nothing from it.
            self.ignored_syns += 1;
            return;
        }
        self.segments += 1;
        self.last = Some(info);
        if info.syn && self.isn.is_none() {
            self.isn = Some(info.seq);
        }
        let Some(isn) = self.isn else {
            return;
        };
        let data_seq = if info.syn {
            info.seq.wrapping_add(1)
        } else {
            info.seq
        };
        let rel = i64::from(data_seq.wrapping_sub(isn.wrapping_add(1)) as i32);
        let payload = &l4[doff..];
        for (i, &b) in payload.iter().enumerate() {
            let pos = rel + i as i64;
            if pos < 0 || pos >= RECEIVER_LIMIT as i64 {
                continue;
            }
            let pos = pos as usize;
            if self.bytes.len() <= pos {
                self.bytes.resize(pos + 1, None);
            }
            match self.bytes[pos] {
                None => self.bytes[pos] = Some(b),
                Some(old) if old != b => self.conflicts += 1,
                Some(_) => {}
            }
        }
        if let Some(p) = urg.filter(|&p| p > 0) {
            let pos = rel + i64::from(p) - 1;
            if (0..RECEIVER_LIMIT as i64).contains(&pos) && !self.oob.contains(&(pos as usize)) {
                self.oob.push(pos as usize);
            }
        }
        if info.fin {
            let end = rel + payload.len() as i64;
            if end >= 0 && self.fin_at.is_none() {
                self.fin_at = Some(end as usize);
            }
        }
        if info.rst {
            self.rst = true;
        }
    }

    /// Number of contiguous bytes received from offset 0 (urgent bytes included).
    pub fn contiguous(&self) -> usize {
        self.bytes.iter().take_while(|b| b.is_some()).count()
    }

    /// The in-order byte stream the application reads (urgent bytes removed).
    pub fn stream(&self) -> Vec<u8> {
        self.bytes
            .iter()
            .enumerate()
            .map_while(|(i, b)| b.map(|b| (i, b)))
            .filter(|(i, _)| !self.oob.contains(i))
            .map(|(_, b)| b)
            .collect()
    }

    /// True once the FIN was reached in order.
    pub fn fin_reached(&self) -> bool {
        self.fin_at.is_some_and(|f| f <= self.contiguous())
    }

    /// The acknowledgement number this endpoint sends, once the peer's SYN arrived.
    pub fn next_ack(&self) -> Option<u32> {
        let isn = self.isn?;
        let n = self.contiguous() as u32 + 1 + u32::from(self.fin_reached());
        Some(isn.wrapping_add(n))
    }
}

// ---------------------------------------------------------------------------------------------
// The SMTP server model.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    Command,
    Data,
    /// Inside a BDAT chunk: this many bytes remain.
    Bdat(usize),
    /// After a 334 to AUTH: the next line is a SASL response, not a command.
    AuthResponse,
    /// After STARTTLS: plaintext up to this stream offset is still executed (the
    /// CVE-2011-0411 bug), anything later is TLS and ignored.
    Tls(usize),
}

/// A lenient, vulnerable SMTP server (see the module docs).
#[derive(Debug)]
pub struct SmtpServer {
    state: ServerState,
    pos: usize,
    rcpt: bool,
    /// Verbs executed, upper case, in order.
    pub executed: Vec<String>,
    /// Replies not yet sent.
    pub pending: Vec<u8>,
    /// Message bodies received (without the terminating line).
    pub bodies: Vec<Vec<u8>>,
    body_start: usize,
}

/// The greeting the server model sends.
pub const GREETING: &[u8] = b"220 mx.example.org ESMTP ready\r\n";

impl Default for SmtpServer {
    fn default() -> Self {
        SmtpServer {
            state: ServerState::Command,
            pos: 0,
            rcpt: false,
            executed: Vec::new(),
            pending: GREETING.to_vec(),
            bodies: Vec::new(),
            body_start: 0,
        }
    }
}

/// The verb a lenient server sees in a command line.
pub fn lenient_verb(line: &[u8]) -> String {
    let start = line
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(line.len());
    let rest = &line[start..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b' ' | b'\t' | 0 | b'\r'))
        .unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).to_ascii_uppercase()
}

impl SmtpServer {
    /// Consumes whatever new bytes `stream` holds; replies accumulate in `pending`.
    pub fn process(&mut self, stream: &[u8]) {
        loop {
            let rest = stream.get(self.pos..).unwrap_or(&[]);
            match self.state {
                ServerState::Tls(limit) => {
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        return;
                    };
                    if self.pos + nl >= limit {
                        return;
                    }
                    // The vulnerable server runs it, answering inside TLS (not modelled).
                    self.executed.push(lenient_verb(&rest[..nl]));
                    self.pos += nl + 1;
                }
                ServerState::Command => {
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        return;
                    };
                    let line = rest[..nl].to_vec();
                    self.pos += nl + 1;
                    self.command(&line);
                    if let ServerState::Tls(_) = self.state {
                        self.state = ServerState::Tls(stream.len());
                    }
                    if matches!(self.state, ServerState::Data | ServerState::Bdat(_)) {
                        self.body_start = self.pos;
                    }
                }
                ServerState::AuthResponse => {
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        return;
                    };
                    self.pos += nl + 1;
                    self.state = ServerState::Command;
                    self.pending
                        .extend_from_slice(b"535 5.7.8 authentication failed\r\n");
                }
                ServerState::Bdat(left) => {
                    let n = left.min(rest.len());
                    if n == 0 {
                        return;
                    }
                    self.pos += n;
                    if n == left {
                        self.bodies.push(stream[self.body_start..self.pos].to_vec());
                        self.state = ServerState::Command;
                        self.pending.extend_from_slice(b"250 2.0.0 chunk ok\r\n");
                    } else {
                        self.state = ServerState::Bdat(left - n);
                    }
                }
                ServerState::Data => {
                    let Some((dot, after)) = find_end_of_data(stream, self.body_start, self.pos)
                    else {
                        return;
                    };
                    self.bodies.push(stream[self.body_start..dot].to_vec());
                    self.pos = after;
                    self.state = ServerState::Command;
                    self.rcpt = false;
                    self.pending.extend_from_slice(b"250 2.0.0 queued\r\n");
                }
            }
        }
    }

    fn command(&mut self, line: &[u8]) {
        let verb = lenient_verb(line);
        let reply: &[u8] = match verb.as_str() {
            "HELO" | "EHLO" | "NOOP" | "RSET" => b"250 2.0.0 ok\r\n",
            "MAIL" => {
                self.rcpt = false;
                b"250 2.1.0 ok\r\n"
            }
            "RCPT" => {
                self.rcpt = true;
                b"250 2.1.5 ok\r\n"
            }
            "DATA" if self.rcpt => {
                self.state = ServerState::Data;
                b"354 go ahead\r\n"
            }
            "DATA" => b"503 5.5.1 need RCPT\r\n",
            "AUTH" => {
                let text = String::from_utf8_lossy(line).to_ascii_uppercase();
                let mut words = text.split_ascii_whitespace().skip(1);
                match (words.next(), words.next()) {
                    (Some("PLAIN" | "LOGIN"), None) => {
                        self.state = ServerState::AuthResponse;
                        b"334 \r\n"
                    }
                    (Some("PLAIN" | "LOGIN"), Some(_)) => b"535 5.7.8 authentication failed\r\n",
                    _ => b"504 5.5.4 unrecognized authentication type\r\n",
                }
            }
            "BDAT" => match bdat_size(line) {
                Some(n) if n > 0 => {
                    self.state = ServerState::Bdat(n);
                    // Answered once the chunk has been read.
                    self.executed.push(verb);
                    return;
                }
                Some(_) => b"250 2.0.0 empty chunk\r\n",
                None => b"501 5.5.4 bad size\r\n",
            },
            "QUIT" => b"221 2.0.0 bye\r\n",
            "STARTTLS" => {
                self.state = ServerState::Tls(0);
                b"220 2.0.0 ready to start TLS\r\n"
            }
            "EXPN" | "VRFY" | "WIZ" | "DEBUG" | "TURN" => b"250 2.0.0 executed\r\n",
            _ => b"500 5.5.2 unknown command\r\n",
        };
        self.executed.push(verb);
        self.pending.extend_from_slice(reply);
    }

    /// True if the server executed `verb` (upper case).
    pub fn ran(&self, verb: &str) -> bool {
        self.executed.iter().any(|v| v == verb)
    }
}

/// The chunk size of a `BDAT n [LAST]` line.
fn bdat_size(line: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(line);
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Lenient end-of-data search from `from`: a `.` at a line start (the body start, or after LF,
/// or after a CR not followed by LF) followed by CR or LF. Returns the offset of the `.` line's
/// start and the offset just after its terminator.
fn find_end_of_data(s: &[u8], body_start: usize, from: usize) -> Option<(usize, usize)> {
    let mut i = from.max(body_start);
    while i < s.len() {
        let at_line_start = i == body_start
            || s.get(i - 1) == Some(&b'\n')
            || (s.get(i - 1) == Some(&b'\r') && s.get(i) != Some(&b'\n'));
        if at_line_start && s[i] == b'.' {
            match s.get(i + 1) {
                Some(b'\r') if s.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
                Some(b'\r') => return Some((i, i + 2)),
                Some(b'\n') => return Some((i, i + 2)),
                None => return None,
                _ => {}
            }
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The lab.

/// Client initial sequence number: close to the wrap, so offsets wrap early.
pub const CLIENT_ISN: u32 = 0xffff_fff0;
/// Server initial sequence number.
pub const SERVER_ISN: u32 = 0x7fff_fff0;
/// Window the server model advertises.
pub const SERVER_WINDOW: u16 = 8192;
/// The client's first command (stream offset 0).
pub const HELO: &[u8] = b"HELO client.example\r\n";

/// An engine between a scripted client (outside) and [`SmtpServer`] (inside).
pub struct Lab {
    /// The engine under test.
    pub engine: Engine,
    sink: FrameSink,
    /// Simulated clock.
    pub now: Time,
    /// Addresses.
    pub flow: Flow,
    /// What the client received.
    pub client: Receiver,
    /// What the server received.
    pub server: Receiver,
    /// The server's SMTP state.
    pub smtp: SmtpServer,
    /// Server bytes sent (stream offset of its next byte).
    server_sent: usize,
    /// Highest client stream offset sent so far (for the client's ACKs).
    pub client_sent: usize,
    client_acked: Option<u32>,
    server_acked: Option<u32>,
    /// Emitted frames that broke the checksum invariant, with the reason.
    pub bad_emitted: Vec<String>,
    /// Frames the engine emitted (forwarded or from the sink).
    pub emitted: usize,
}

impl Lab {
    /// A lab whose engine filters port 25 with `profile`.
    pub fn new(profile: Profile, v6: bool) -> Lab {
        let policy = PolicyConfig {
            profile,
            ..PolicyConfig::default()
        };
        let config = EngineConfig {
            ports: vec![SERVER_PORT],
            policy: Arc::new(policy),
            fail_mode: FailMode::Open,
            record_connections: false,
        };
        Lab {
            engine: Engine::new(config),
            sink: FrameSink::default(),
            now: Time(1_000_000_000),
            flow: Flow { v6 },
            client: Receiver::default(),
            server: Receiver::default(),
            smtp: SmtpServer::default(),
            server_sent: 0,
            client_sent: 0,
            client_acked: None,
            server_acked: None,
            bad_emitted: Vec::new(),
            emitted: 0,
        }
    }

    /// Hands one frame read on `side` to the engine and delivers what it emits.
    pub fn inject(&mut self, side: Side, frame: &[u8]) {
        self.note_own_rst(side, frame);
        self.now = self.now.after(std::time::Duration::from_millis(1));
        self.sink.clear();
        let verdict = self
            .engine
            .handle_frame(self.now, side, frame, &mut self.sink);
        if let Verdict::Forward(_) = verdict {
            // A frame forwarded byte for byte keeps whatever checksums it came with.
            let exempt = check_checksums(frame).is_err();
            self.deliver(side.other(), frame, exempt);
        }
        self.flush_sink();
    }

    /// An endpoint that sends a RST has closed its connection: it accepts nothing more. (A RST
    /// injected on the outside with the server's addresses is a spoof: the server did not send
    /// it.)
    fn note_own_rst(&mut self, side: Side, frame: &[u8]) {
        let Some(ip) = parse_ip(frame) else {
            return;
        };
        let is_rst =
            ip.proto == 6 && ip.frag.is_none() && ip.payload.get(13).is_some_and(|f| f & 0x04 != 0);
        if !is_rst {
            return;
        }
        let from_client = ip.src == self.flow.ip(true).as_slice();
        match (side, from_client) {
            (Side::Outside, true) => self.client.rst = true,
            (Side::Inside, false) => self.server.rst = true,
            _ => {}
        }
    }

    fn flush_sink(&mut self) {
        let frames: Vec<(Side, Vec<u8>)> = self.sink.iter().map(|(s, f)| (s, f.to_vec())).collect();
        self.sink.clear();
        for (s, f) in frames {
            self.deliver(s, &f, false);
        }
    }

    /// Routes an emitted frame to the receiver behind `out_side`, checking its checksums
    /// unless `exempt` (an invalid input forwarded untouched).
    fn deliver(&mut self, out_side: Side, frame: &[u8], exempt: bool) {
        self.emitted += 1;
        if let Err(e) = check_checksums(frame) {
            if !exempt {
                self.bad_emitted
                    .push(format!("{e} on a frame to {out_side:?}"));
            }
        }
        match out_side {
            Side::Inside => self.server.on_frame(frame),
            Side::Outside => self.client.on_frame(frame),
        }
    }

    /// Sequence number of client stream offset `off`.
    pub fn client_seq(&self, off: usize) -> u32 {
        CLIENT_ISN.wrapping_add(1).wrapping_add(off as u32)
    }

    /// A client segment carrying `payload` at stream offset `off`, acknowledging what the
    /// client received.
    pub fn client_seg(&self, off: usize, payload: &[u8]) -> Seg {
        Seg {
            from_client: true,
            seq: self.client_seq(off),
            ack: self.client.next_ack(),
            window: 65_535,
            payload: payload.to_vec(),
            ..Seg::default()
        }
    }

    /// A server segment carrying `payload` at server stream offset `off`, acknowledging what
    /// the server received.
    pub fn server_seg(&self, off: usize, payload: &[u8]) -> Seg {
        Seg {
            from_client: false,
            seq: SERVER_ISN.wrapping_add(1).wrapping_add(off as u32),
            ack: self.server.next_ack(),
            window: SERVER_WINDOW,
            payload: payload.to_vec(),
            ..Seg::default()
        }
    }

    /// Server stream offset of the next byte the server model sends.
    pub fn server_sent(&self) -> usize {
        self.server_sent
    }

    /// Builds and injects `seg` from the client, without letting the server answer.
    pub fn push_client(&mut self, seg: &Seg) {
        let off = seg.seq.wrapping_sub(self.client_seq(0)) as usize;
        if off < RECEIVER_LIMIT {
            self.client_sent = self.client_sent.max(off + seg.payload.len());
        }
        let f = build(self.flow, seg);
        self.inject(Side::Outside, &f);
    }

    /// Sends `payload` at client offset `off` and lets both sides answer.
    pub fn send(&mut self, off: usize, payload: &[u8]) {
        let seg = self.client_seg(off, payload);
        self.push_client(&seg);
        self.settle();
    }

    /// Handshake, greeting, and the client's HELO answered. Returns the next client offset.
    pub fn connect(&mut self) -> usize {
        self.connect_with_syn_data(&[])
    }

    /// As [`Lab::connect`], with `syn_data` carried by the client's SYN.
    pub fn connect_with_syn_data(&mut self, syn_data: &[u8]) -> usize {
        let syn = Seg {
            from_client: true,
            seq: CLIENT_ISN,
            syn: true,
            window: 65_535,
            payload: syn_data.to_vec(),
            ..Seg::default()
        };
        let f = build(self.flow, &syn);
        self.inject(Side::Outside, &f);
        self.settle();
        self.send(0, HELO);
        HELO.len()
    }

    /// Lets the server process and answer, and the client acknowledge, until quiet.
    pub fn settle(&mut self) {
        for _ in 0..64 {
            let mut progressed = self.server_turn();
            progressed |= self.client_turn();
            if !progressed {
                break;
            }
        }
    }

    /// The server's move: SYN-ACK, or process new bytes and send replies and ACKs.
    fn server_turn(&mut self) -> bool {
        if self.server.rst {
            return false;
        }
        let Some(ack) = self.server.next_ack() else {
            return false;
        };
        if self.server_acked.is_none() {
            let synack = Seg {
                from_client: false,
                seq: SERVER_ISN,
                ack: Some(ack),
                syn: true,
                window: SERVER_WINDOW,
                ..Seg::default()
            };
            self.server_acked = Some(ack);
            let f = build(self.flow, &synack);
            self.inject(Side::Inside, &f);
            return true;
        }
        if !self.client_established() {
            return false;
        }
        let stream = self.server.stream();
        self.smtp.process(&stream);
        let ack = self.server.next_ack();
        let replies = std::mem::take(&mut self.smtp.pending);
        if replies.is_empty() && ack == self.server_acked {
            return false;
        }
        let seg = Seg {
            from_client: false,
            seq: SERVER_ISN
                .wrapping_add(1)
                .wrapping_add(self.server_sent as u32),
            ack,
            fin: false,
            window: SERVER_WINDOW,
            payload: replies.clone(),
            ..Seg::default()
        };
        self.server_sent += replies.len();
        self.server_acked = ack;
        let f = build(self.flow, &seg);
        self.inject(Side::Inside, &f);
        true
    }

    /// The client has seen the SYN-ACK (and so has acknowledged it by its next move).
    fn client_established(&self) -> bool {
        self.client_acked.is_some()
    }

    /// The client's move: acknowledge what it received.
    fn client_turn(&mut self) -> bool {
        if self.client.rst {
            return false;
        }
        let ack = self.client.next_ack();
        if ack.is_none() || ack == self.client_acked {
            return false;
        }
        self.client_acked = ack;
        let seg = Seg {
            from_client: true,
            seq: self.client_seq(self.client_sent),
            ack,
            window: 65_535,
            ..Seg::default()
        };
        let f = build(self.flow, &seg);
        self.inject(Side::Outside, &f);
        true
    }

    /// Runs the engine's timers for a few simulated seconds, settling after each.
    pub fn drain_timers(&mut self) {
        for _ in 0..10 {
            self.now = self.now.after(std::time::Duration::from_millis(300));
            if self.engine.poll_timeout().is_some_and(|t| t <= self.now) {
                self.sink.clear();
                self.engine.handle_timeout(self.now, &mut self.sink);
                self.flush_sink();
            }
            self.settle();
        }
    }

    /// What the server's application read so far.
    pub fn server_stream(&self) -> Vec<u8> {
        self.server.stream()
    }

    /// What the client's application read so far.
    pub fn client_stream(&self) -> Vec<u8> {
        self.client.stream()
    }
}

/// Shows bytes readably in assertion messages.
pub fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}
