//! Classifying Ethernet frames, reading TCP segments out of them, mutating and building them.

use super::checksum::{
    ipv4_header_checksum, tcp_checksum, update_checksum_u16, update_checksum_u32,
};
use etherparse::{IpNumber, NetSlice, SlicedPacket, TransportSlice};
use std::net::IpAddr;

/// TCP flag bits as in the header's 13th byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;

    /// True if every bit of `mask` is set.
    pub fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
}

/// Up to four SACK blocks (left, right edges as on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SackBlocks {
    /// The blocks; only the first `len` are meaningful.
    pub blocks: [(u32, u32); 4],
    /// Number of blocks.
    pub len: usize,
}

impl SackBlocks {
    /// The meaningful blocks.
    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.blocks[..self.len.min(4)]
    }

    /// Appends a block if there is room.
    pub fn push(&mut self, b: (u32, u32)) {
        if self.len < 4 {
            self.blocks[self.len] = b;
            self.len += 1;
        }
    }
}

/// The TCP options the engine cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only).
    pub mss: Option<u16>,
    /// Window scale shift (SYN only).
    pub wscale: Option<u8>,
    /// SACK permitted (SYN only).
    pub sack_permitted: bool,
    /// Timestamps (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks.
    pub sack: SackBlocks,
}

impl TcpOptions {
    /// Parses an option list; stops quietly at the first malformed option.
    pub fn parse(mut opts: &[u8]) -> TcpOptions {
        let mut out = TcpOptions::default();
        while let Some((&kind, rest)) = opts.split_first() {
            match kind {
                0 => break,
                1 => {
                    opts = rest;
                    continue;
                }
                _ => {}
            }
            let Some(&len) = rest.first() else { break };
            let len = usize::from(len);
            if len < 2 || len > opts.len() {
                break;
            }
            let body = &opts[2..len];
            match (kind, body.len()) {
                (2, 2) => out.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                (3, 1) => out.wscale = Some(body[0]),
                (4, 0) => out.sack_permitted = true,
                (5, n) if n.is_multiple_of(8) => {
                    for b in body.chunks_exact(8) {
                        let l = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                        let r = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                        out.sack.push((l, r));
                    }
                }
                (8, 8) => {
                    let v = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    let e = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                    out.timestamps = Some((v, e));
                }
                _ => {}
            }
            opts = &opts[len..];
        }
        out
    }
}

/// A TCP segment found in a frame, with the offsets needed to mutate it in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFrame {
    /// Offset of the IP header in the frame.
    pub ip_off: usize,
    /// Offset of the TCP header in the frame.
    pub tcp_off: usize,
    /// Offset of the TCP payload in the frame.
    pub payload_off: usize,
    /// End of the TCP segment in the frame (Ethernet padding may follow).
    pub end: usize,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The segment's fields.
    pub seg: Segment,
}

impl TcpFrame {
    /// The payload length.
    pub fn payload_len(&self) -> usize {
        self.end - self.payload_off
    }
}

/// The fields of a TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Raw window field.
    pub window: u16,
    /// Parsed options.
    pub options: TcpOptions,
}

/// An IP fragment carrying (part of) a TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpFragment {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The ports, if this is the first fragment and it holds them.
    pub ports: Option<(u16, u16)>,
}

/// What a frame is, as far as the engine is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classified {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NotIp,
    /// IP but not TCP (or TCP inside an IP fragment that is not the engine's concern).
    NotTcp,
    /// A fragment of a TCP datagram.
    Fragment(IpFragment),
    /// A complete TCP segment.
    Tcp(TcpFrame),
    /// Truncated or malformed.
    Unparseable,
}

fn offset_in(frame: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(frame.as_ptr() as usize)?;
    (start + part.len() <= frame.len()).then_some(start)
}

/// Classifies an Ethernet II frame (802.1Q / QinQ tags allowed).
///
/// The common case (a whole TCP segment over IPv4, or over IPv6 without extension
/// headers, at most two VLAN tags) is read by hand ([`classify_fast`]); everything else
/// (fragments, extension headers, other protocols, anything short or malformed) goes
/// through etherparse ([`classify_sliced`]). Both give the same answer on every frame the
/// fast path accepts (proptests in `tests.rs`, and the `classify` fuzz target).
pub fn classify(frame: &[u8]) -> Classified {
    match classify_fast(frame) {
        Some(t) => Classified::Tcp(t),
        None => classify_sliced(frame),
    }
}

/// EtherTypes etherparse takes as a VLAN tag: 802.1Q, 802.1ad and the old QinQ 0x9100.
fn is_vlan_tag(ethertype: u16) -> bool {
    matches!(ethertype, 0x8100 | 0x88a8 | 0x9100)
}

/// Big-endian u16 at `at`, if in bounds.
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at.checked_add(1)?)?,
    ]))
}

/// Big-endian u32 at `at`, if in bounds.
fn be32(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// The offset of the IP header and its EtherType, after at most two VLAN tags (as
/// etherparse reads them: a second tag only right after a first).
fn link_end(frame: &[u8]) -> Option<(usize, u16)> {
    let mut off = 12;
    let mut ethertype = be16(frame, off)?;
    for _ in 0..2 {
        if !is_vlan_tag(ethertype) {
            break;
        }
        off += 4;
        ethertype = be16(frame, off)?;
    }
    Some((off + 2, ethertype))
}

/// A whole TCP segment over IPv4 (options allowed, not a fragment) or IPv6 (next header
/// TCP, no extension headers), read by hand; `None` for anything else, including anything
/// that etherparse would reject. Every length is checked before it is used.
pub(crate) fn classify_fast(frame: &[u8]) -> Option<TcpFrame> {
    let (ip_off, ethertype) = link_end(frame)?;
    let ip = frame.get(ip_off..)?;
    let (src, dst, ip_hdr_len, ip_end) = match ethertype {
        0x0800 => {
            let vihl = *ip.first()?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            let total = usize::from(be16(ip, 2)?);
            let frag = be16(ip, 6)?;
            // Version 4, a header of 20..60 bytes inside the total length and the frame,
            // TCP, neither a later fragment nor one with more to come (etherparse reads the
            // DF bit and the reserved bit as flags only).
            if vihl >> 4 != 4 || ihl < 20 || total < ihl || ip.len() < total {
                return None;
            }
            if *ip.get(9)? != 6 || frag & 0x3fff != 0 {
                return None;
            }
            let s = be32(ip, 12)?;
            let d = be32(ip, 16)?;
            (
                IpAddr::from(s.to_be_bytes()),
                IpAddr::from(d.to_be_bytes()),
                ihl,
                total,
            )
        }
        0x86dd => {
            let plen = usize::from(be16(ip, 4)?);
            // A payload length of 0 (jumbogram) is etherparse's to judge.
            if *ip.first()? >> 4 != 6 || *ip.get(6)? != 6 || plen == 0 || ip.len() < 40 + plen {
                return None;
            }
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), 40, 40 + plen)
        }
        _ => return None,
    };
    let tcp = ip.get(ip_hdr_len..ip_end)?;
    let doff = usize::from(*tcp.get(12)? >> 4) * 4;
    if doff < 20 || tcp.len() < doff {
        return None;
    }
    let tcp_off = ip_off + ip_hdr_len;
    Some(TcpFrame {
        ip_off,
        tcp_off,
        payload_off: tcp_off + doff,
        end: tcp_off + tcp.len(),
        src,
        dst,
        seg: Segment {
            src_port: be16(tcp, 0)?,
            dst_port: be16(tcp, 2)?,
            seq: be32(tcp, 4)?,
            ack: be32(tcp, 8)?,
            flags: TcpFlags(*tcp.get(13)? & 0x3f),
            window: be16(tcp, 14)?,
            options: TcpOptions::parse(tcp.get(20..doff)?),
        },
    })
}

/// [`classify`] through etherparse's slices alone, for every frame: the reference the fast
/// path is checked against (here and by the `frame` fuzz target), and the path of
/// everything it does not take.
pub fn classify_sliced(frame: &[u8]) -> Classified {
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return Classified::Unparseable;
    };
    let Some(net) = &p.net else {
        return Classified::NotIp;
    };
    let (src, dst, ip_off, ip_payload) = match net {
        NetSlice::Ipv4(v4) => (
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
            offset_in(frame, v4.header().slice()),
            v4.payload(),
        ),
        NetSlice::Ipv6(v6) => (
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
            offset_in(frame, v6.header().slice()),
            v6.payload(),
        ),
    };
    let Some(ip_off) = ip_off else {
        return Classified::Unparseable;
    };
    if ip_payload.ip_number != IpNumber::TCP {
        return Classified::NotTcp;
    }
    let v6_fragmenting = match net {
        NetSlice::Ipv6(v6) => ipv6_fragment(v6).is_some_and(|(off, more)| off != 0 || more),
        NetSlice::Ipv4(_) => false,
    };
    if ip_payload.fragmented || v6_fragmenting {
        let ports = fragment_ports(net, ip_payload.payload);
        return Classified::Fragment(IpFragment { src, dst, ports });
    }
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        return Classified::Unparseable;
    };
    let Some(tcp_off) = offset_in(frame, tcp.slice()) else {
        return Classified::Unparseable;
    };
    let payload_off = tcp_off + tcp.header_slice().len();
    let end = tcp_off + tcp.slice().len();
    let mut flags = 0u8;
    for (bit, on) in [
        (TcpFlags::FIN, tcp.fin()),
        (TcpFlags::SYN, tcp.syn()),
        (TcpFlags::RST, tcp.rst()),
        (TcpFlags::PSH, tcp.psh()),
        (TcpFlags::ACK, tcp.ack()),
        (TcpFlags::URG, tcp.urg()),
    ] {
        if on {
            flags |= bit;
        }
    }
    Classified::Tcp(TcpFrame {
        ip_off,
        tcp_off,
        payload_off,
        end,
        src,
        dst,
        seg: Segment {
            src_port: tcp.source_port(),
            dst_port: tcp.destination_port(),
            seq: tcp.sequence_number(),
            ack: tcp.acknowledgment_number(),
            flags: TcpFlags(flags),
            window: tcp.window_size(),
            options: TcpOptions::parse(tcp.options()),
        },
    })
}

/// The ports of the first fragment of a TCP datagram, if present.
fn fragment_ports(net: &NetSlice<'_>, payload: &[u8]) -> Option<(u16, u16)> {
    let first = match net {
        NetSlice::Ipv4(v4) => v4.header().fragments_offset().value() == 0,
        NetSlice::Ipv6(v6) => ipv6_fragment(v6).is_none_or(|(offset, _)| offset == 0),
    };
    if !first || payload.len() < 4 {
        return None;
    }
    Some((
        u16::from_be_bytes([payload[0], payload[1]]),
        u16::from_be_bytes([payload[2], payload[3]]),
    ))
}

/// The (offset, more-fragments) of an IPv6 fragment header, read from the raw bytes
/// (RFC 8200 layout: offset in the top 13 bits of bytes 2..4, M in the lowest bit).
fn ipv6_fragment(v6: &etherparse::Ipv6Slice<'_>) -> Option<(u16, bool)> {
    for ext in v6.extensions().clone() {
        if let etherparse::Ipv6ExtensionSlice::Fragment(f) = ext {
            let s = f.slice();
            let w = u16::from_be_bytes([*s.get(2)?, *s.get(3)?]);
            return Some((w >> 3, w & 1 == 1));
        }
    }
    None
}

/// Checks the IPv4 header checksum (if IPv4) and the TCP checksum of a classified frame.
pub fn verify_checksums(frame: &[u8], t: &TcpFrame) -> bool {
    let Some(tcp) = frame.get(t.tcp_off..t.end) else {
        return false;
    };
    if t.src.is_ipv4() {
        let Some(h) = frame.get(t.ip_off..t.tcp_off) else {
            return false;
        };
        if ipv4_header_checksum(h) != 0 {
            return false;
        }
    }
    tcp_checksum(t.src, t.dst, tcp) == 0
}

fn read_u16(frame: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
}

fn read_u32(frame: &[u8], at: usize) -> Option<u32> {
    let b = frame.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn write_u32_with_checksum(frame: &mut [u8], tcp_off: usize, at: usize, new: u32) -> Option<()> {
    let old = read_u32(frame, at)?;
    let check = read_u16(frame, tcp_off + 16)?;
    let check = update_checksum_u32(check, old, new);
    frame
        .get_mut(at..at + 4)?
        .copy_from_slice(&new.to_be_bytes());
    frame
        .get_mut(tcp_off + 16..tcp_off + 18)?
        .copy_from_slice(&check.to_be_bytes());
    Some(())
}

/// Sets the sequence number of the segment at `tcp_off`, updating the checksum incrementally.
/// Returns `None` (frame unchanged) if the header is out of bounds.
pub fn set_tcp_seq(frame: &mut [u8], tcp_off: usize, seq: u32) -> Option<()> {
    write_u32_with_checksum(frame, tcp_off, tcp_off + 4, seq)
}

/// Sets the acknowledgement number, updating the checksum incrementally.
pub fn set_tcp_ack(frame: &mut [u8], tcp_off: usize, ack: u32) -> Option<()> {
    write_u32_with_checksum(frame, tcp_off, tcp_off + 8, ack)
}

/// Sets the window field, updating the checksum incrementally.
pub fn set_tcp_window(frame: &mut [u8], tcp_off: usize, window: u16) -> Option<()> {
    let old = read_u16(frame, tcp_off + 14)?;
    let check = read_u16(frame, tcp_off + 16)?;
    let check = update_checksum_u16(check, old, window);
    frame
        .get_mut(tcp_off + 14..tcp_off + 16)?
        .copy_from_slice(&window.to_be_bytes());
    frame
        .get_mut(tcp_off + 16..tcp_off + 18)?
        .copy_from_slice(&check.to_be_bytes());
    Some(())
}

/// Writes into `out` (exactly `t.payload_off` bytes) a copy of the segment `t` of `frame`
/// without its payload: IP length fields, IPv4 header checksum and TCP checksum fixed.
pub fn strip_payload(frame: &[u8], t: &TcpFrame, out: &mut [u8]) -> Option<()> {
    out.copy_from_slice(frame.get(..t.payload_off)?);
    let ip_len = t.payload_off - t.ip_off;
    if t.src.is_ipv4() {
        let total = u16::try_from(ip_len).ok()?;
        out.get_mut(t.ip_off + 2..t.ip_off + 4)?
            .copy_from_slice(&total.to_be_bytes());
        out.get_mut(t.ip_off + 10..t.ip_off + 12)?.fill(0);
        let c = ipv4_header_checksum(out.get(t.ip_off..t.tcp_off)?);
        out.get_mut(t.ip_off + 10..t.ip_off + 12)?
            .copy_from_slice(&c.to_be_bytes());
    } else {
        let plen = u16::try_from(ip_len.checked_sub(40)?).ok()?;
        out.get_mut(t.ip_off + 4..t.ip_off + 6)?
            .copy_from_slice(&plen.to_be_bytes());
    }
    out.get_mut(t.tcp_off + 16..t.tcp_off + 18)?.fill(0);
    let c = tcp_checksum(t.src, t.dst, out.get(t.tcp_off..)?);
    out.get_mut(t.tcp_off + 16..t.tcp_off + 18)?
        .copy_from_slice(&c.to_be_bytes());
    Some(())
}

/// The IP layer of a [`Template`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateIp {
    /// IPv4 without options.
    V4 {
        /// Type of service byte.
        tos: u8,
        /// Time to live.
        ttl: u8,
        /// Don't-fragment flag.
        df: bool,
    },
    /// IPv6 without extension headers.
    V6 {
        /// Traffic class.
        tclass: u8,
        /// Flow label (20 bits).
        flow: u32,
        /// Hop limit.
        hop: u8,
    },
}

/// Link and IP headers to wrap engine-built segments of one direction in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    l2: [u8; 32],
    /// Bytes of `l2` used (at most 32, so a byte: the template is 80 bytes, not 88).
    l2_len: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP fields.
    pub ip: TemplateIp,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl Template {
    /// Takes the headers of a classified frame.
    pub fn from_frame(frame: &[u8], t: &TcpFrame) -> Option<Template> {
        let mut l2 = [0u8; 32];
        let l2_len = t.ip_off;
        l2.get_mut(..l2_len)?.copy_from_slice(frame.get(..l2_len)?);
        let ip_hdr = frame.get(t.ip_off..t.tcp_off)?;
        let ip = match t.src {
            IpAddr::V4(_) => TemplateIp::V4 {
                tos: *ip_hdr.get(1)?,
                ttl: *ip_hdr.get(8)?,
                df: ip_hdr.get(6)? & 0x40 != 0,
            },
            IpAddr::V6(_) => {
                let w = read_u32(ip_hdr, 0)?;
                TemplateIp::V6 {
                    tclass: (w >> 20) as u8,
                    flow: w & 0x000f_ffff,
                    hop: *ip_hdr.get(7)?,
                }
            }
        };
        // The innermost EtherType must announce the IP version we will write.
        let et: u16 = if matches!(ip, TemplateIp::V4 { .. }) {
            0x0800
        } else {
            0x86dd
        };
        if l2_len >= 2 {
            l2[l2_len - 2..l2_len].copy_from_slice(&et.to_be_bytes());
        }
        Some(Template {
            l2,
            l2_len: u8::try_from(l2_len).ok()?,
            src: t.src,
            dst: t.dst,
            ip,
            src_port: t.seg.src_port,
            dst_port: t.seg.dst_port,
        })
    }

    /// The template of the opposite direction (MACs, addresses and ports swapped).
    pub fn reversed(&self) -> Template {
        let mut r = *self;
        if self.l2_len >= 12 {
            r.l2[0..6].copy_from_slice(&self.l2[6..12]);
            r.l2[6..12].copy_from_slice(&self.l2[0..6]);
        }
        r.src = self.dst;
        r.dst = self.src;
        r.src_port = self.dst_port;
        r.dst_port = self.src_port;
        r
    }

    fn ip_header_len(&self) -> usize {
        match self.ip {
            TemplateIp::V4 { .. } => 20,
            TemplateIp::V6 { .. } => 40,
        }
    }

    /// Length of a frame carrying `tcp_len` bytes of TCP.
    pub fn frame_len(&self, tcp_len: usize) -> usize {
        usize::from(self.l2_len) + self.ip_header_len() + tcp_len
    }
}

/// Writes a complete frame into `buf` (which must be exactly
/// `t.frame_len(20 + options.len() + payload)` bytes): headers from `t`, the given TCP fields,
/// options (a multiple of 4 bytes) and the payload given as two parts (a ring buffer's halves).
#[allow(clippy::too_many_arguments)]
pub fn build_tcp_frame(
    buf: &mut [u8],
    t: &Template,
    ip_id: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: (&[u8], &[u8]),
) -> Option<()> {
    let tcp_hdr_len = 20 + options.len();
    let tcp_len = tcp_hdr_len + payload.0.len() + payload.1.len();
    if buf.len() != t.frame_len(tcp_len) || !options.len().is_multiple_of(4) || tcp_hdr_len > 60 {
        return None;
    }
    let (l2, rest) = buf.split_at_mut(usize::from(t.l2_len));
    l2.copy_from_slice(t.l2.get(..usize::from(t.l2_len))?);
    let (ip, tcp) = rest.split_at_mut(t.ip_header_len());
    match (t.ip, t.src, t.dst) {
        (TemplateIp::V4 { tos, ttl, df }, IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + tcp_len).ok()?;
            ip[0] = 0x45;
            ip[1] = tos;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
            ip[6] = if df { 0x40 } else { 0 };
            ip[7] = 0;
            ip[8] = ttl;
            ip[9] = 6;
            ip[10] = 0;
            ip[11] = 0;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = ipv4_header_checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (TemplateIp::V6 { tclass, flow, hop }, IpAddr::V6(s), IpAddr::V6(d)) => {
            let w = (6u32 << 28) | (u32::from(tclass) << 20) | (flow & 0x000f_ffff);
            ip[0..4].copy_from_slice(&w.to_be_bytes());
            ip[4..6].copy_from_slice(&u16::try_from(tcp_len).ok()?.to_be_bytes());
            ip[6] = 6;
            ip[7] = hop;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
        }
        _ => return None,
    }
    tcp[0..2].copy_from_slice(&t.src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&t.dst_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = ((tcp_hdr_len / 4) as u8) << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    tcp[16..20].fill(0);
    tcp[20..tcp_hdr_len].copy_from_slice(options);
    let (a, b) = payload;
    tcp[tcp_hdr_len..tcp_hdr_len + a.len()].copy_from_slice(a);
    tcp[tcp_hdr_len + a.len()..].copy_from_slice(b);
    let c = tcp_checksum(t.src, t.dst, tcp);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests;
