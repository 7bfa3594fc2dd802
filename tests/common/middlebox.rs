//! What sits between the two links: the real [`Engine`], or the engine wrapped by a
//! deliberately broken post-processor (to prove that the wire checks catch each defect).
#![allow(dead_code)]

use super::wirecheck::{fix_checksums, parse, Seg, ACK, SYN};
use mailguard::engine::{Engine, EngineConfig, FrameSink, Side, Time, Verdict};

/// Frames to emit, each with the side it goes out on.
pub type Emitted = Vec<(Side, Vec<u8>)>;

/// A bump in the wire driven by the simulation.
pub trait Middlebox {
    /// A frame read from `side` at `now`; frames to emit are appended to `out`.
    fn handle_frame(&mut self, now: Time, side: Side, frame: &[u8], out: &mut Emitted);
    /// When `handle_timeout` next needs to run.
    fn poll_timeout(&self) -> Option<Time>;
    /// Runs due timers.
    fn handle_timeout(&mut self, now: Time, out: &mut Emitted);
}

/// The engine under the replay convention: the input frame goes out on the other side if
/// the verdict is `Forward`, then every frame of the sink, in order.
pub struct EngineBox {
    /// The engine.
    pub engine: Engine,
    sink: FrameSink,
}

impl EngineBox {
    /// An engine with `config`.
    pub fn new(config: EngineConfig) -> EngineBox {
        EngineBox {
            engine: Engine::new(config),
            sink: FrameSink::default(),
        }
    }

    fn drain(&mut self, out: &mut Emitted) {
        out.extend(self.sink.iter().map(|(s, f)| (s, f.to_vec())));
        self.sink.clear();
    }
}

impl Middlebox for EngineBox {
    fn handle_frame(&mut self, now: Time, side: Side, frame: &[u8], out: &mut Emitted) {
        self.sink.clear();
        let verdict = self.engine.handle_frame(now, side, frame, &mut self.sink);
        if let Verdict::Forward(_) = verdict {
            out.push((side.other(), frame.to_vec()));
        }
        self.drain(out);
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.engine.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Time, out: &mut Emitted) {
        self.sink.clear();
        self.engine.handle_timeout(now, &mut self.sink);
        self.drain(out);
    }
}

/// A defect injected after the engine, for testing the checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// The first data segment toward the server gets a wrong TCP checksum.
    CorruptTcpChecksum,
    /// The first data segment toward the server gets a wrong IPv4 header checksum.
    CorruptIpChecksum,
    /// The first data segment toward the server is also sent a second time with one payload
    /// byte changed (checksums fixed): a retransmission with different bytes.
    ResendDifferentBytes,
    /// Every client data segment is acknowledged to the client at once, before the server
    /// has acknowledged it (the classic proxy over-ACK).
    EarlyAckToClient,
    /// Every ACK toward the client acknowledges 10 more bytes than it did.
    AckBeyondSent,
    /// The server's MSS option is raised to 1460 on its way to the client.
    InflateMss,
    /// Windows toward the client are inflated to 65535 (beyond what the server offers).
    InflateWindow,
    /// Every other pure ACK toward the client advertises a quarter of its window.
    ShrinkWindow,
    /// SACK blocks toward the client are stretched 1000 bytes to the right.
    StretchSack,
    /// One payload byte of the first data segment toward the server is changed (checksums
    /// fixed): the server receives a stream that is not the transform of the client's.
    FlipPayloadByte,
}

/// The engine with a [`Defect`] applied to what it emits.
pub struct Broken {
    inner: EngineBox,
    defect: Defect,
    /// How many times the defect was applied (a test of the checker must see it happen).
    pub applied: u64,
    toggle: bool,
}

impl Broken {
    /// Wraps an engine.
    pub fn new(inner: EngineBox, defect: Defect) -> Broken {
        Broken {
            inner,
            defect,
            applied: 0,
            toggle: false,
        }
    }

    fn mutate(&mut self, input: Option<(Side, &[u8])>, out: &mut Emitted, from: usize) {
        if let (Defect::EarlyAckToClient, Some((Side::Outside, frame))) = (self.defect, input) {
            if let Some(ack) = early_ack(frame) {
                self.applied += 1;
                out.push((Side::Outside, ack));
            }
            return;
        }
        let mut extra = Vec::new();
        for (side, frame) in out.iter_mut().skip(from) {
            let Ok(Some(seg)) = parse(frame) else {
                continue;
            };
            if self.apply(*side, frame, &seg, &mut extra) {
                self.applied += 1;
            }
        }
        out.extend(extra);
    }

    /// Applies the defect to one emitted frame; true if it changed something.
    fn apply(&mut self, side: Side, frame: &mut [u8], seg: &Seg, extra: &mut Emitted) -> bool {
        let to_server = side == Side::Inside;
        let t = seg.tcp_off;
        match self.defect {
            Defect::CorruptTcpChecksum if to_server && seg.payload_len > 0 && self.applied == 0 => {
                frame[t + 16] ^= 0x5a;
                true
            }
            Defect::CorruptIpChecksum if to_server && seg.payload_len > 0 && self.applied == 0 => {
                frame[24] ^= 0x5a;
                true
            }
            Defect::ResendDifferentBytes
                if to_server && seg.payload_len > 0 && self.applied == 0 =>
            {
                let mut copy = frame.to_vec();
                copy[seg.payload_off] ^= 0x20;
                fix_checksums(&mut copy);
                extra.push((side, copy));
                true
            }
            Defect::AckBeyondSent if !to_server && seg.has(ACK) => {
                let ack = seg.ack.wrapping_add(10);
                frame[t + 8..t + 12].copy_from_slice(&ack.to_be_bytes());
                fix_checksums(frame);
                true
            }
            Defect::InflateMss if !to_server && seg.has(SYN) && seg.mss.is_some() => {
                set_mss(frame, t, 1460)
            }
            Defect::InflateWindow if !to_server && seg.has(ACK) && !seg.has(SYN) => {
                frame[t + 14..t + 16].copy_from_slice(&u16::MAX.to_be_bytes());
                fix_checksums(frame);
                true
            }
            Defect::ShrinkWindow
                if !to_server && seg.has(ACK) && seg.payload_len == 0 && seg.win >= 4 =>
            {
                self.toggle = !self.toggle;
                if self.toggle {
                    frame[t + 14..t + 16].copy_from_slice(&(seg.win / 4).to_be_bytes());
                    fix_checksums(frame);
                }
                self.toggle
            }
            Defect::FlipPayloadByte if to_server && seg.payload_len > 0 && self.applied == 0 => {
                frame[seg.payload_off] ^= 0x20;
                fix_checksums(frame);
                true
            }
            Defect::StretchSack if !to_server && !seg.sack.is_empty() => stretch_sack(frame, t),
            _ => false,
        }
    }
}

/// A bare ACK to the client for everything in a client data segment.
fn early_ack(frame: &[u8]) -> Option<Vec<u8>> {
    let seg = parse(frame).ok()??;
    if seg.payload_len == 0 {
        return None;
    }
    let t = seg.tcp_off;
    let mut ack = frame.get(..t + 20)?.to_vec();
    // Swap MACs, IPs and ports.
    let (a, b) = (frame[0..6].to_vec(), frame[6..12].to_vec());
    ack[0..6].copy_from_slice(&b);
    ack[6..12].copy_from_slice(&a);
    ack[26..30].copy_from_slice(&frame[30..34]);
    ack[30..34].copy_from_slice(&frame[26..30]);
    ack[t..t + 2].copy_from_slice(&frame[t + 2..t + 4]);
    ack[t + 2..t + 4].copy_from_slice(&frame[t..t + 2]);
    // The client's ISN space is unknown here; the server's sequence is not needed for a
    // test of the checker: reuse the client's ACK number as our sequence number.
    ack[t + 4..t + 8].copy_from_slice(&seg.ack.to_be_bytes());
    let end = seg.seq.wrapping_add(seg.payload_len as u32);
    ack[t + 8..t + 12].copy_from_slice(&end.to_be_bytes());
    ack[t + 12] = 5 << 4;
    ack[t + 13] = ACK;
    let ip_len = (t - 14 + 20) as u16;
    ack[16..18].copy_from_slice(&ip_len.to_be_bytes());
    fix_checksums(&mut ack);
    Some(ack)
}

/// Walks TCP options of the frame, calling `f(kind, offset_of_option)`.
fn for_each_option(frame: &[u8], t: usize, mut f: impl FnMut(u8, usize)) {
    let doff = usize::from(frame[t + 12] >> 4) * 4;
    let mut o = t + 20;
    while o < t + doff {
        let kind = frame[o];
        if kind == 0 {
            break;
        }
        if kind == 1 {
            o += 1;
            continue;
        }
        let len = usize::from(*frame.get(o + 1).unwrap_or(&0));
        if len < 2 {
            break;
        }
        f(kind, o);
        o += len;
    }
}

fn set_mss(frame: &mut [u8], t: usize, mss: u16) -> bool {
    let mut at = None;
    for_each_option(frame, t, |k, o| {
        if k == 2 {
            at = Some(o);
        }
    });
    let Some(o) = at else { return false };
    frame[o + 2..o + 4].copy_from_slice(&mss.to_be_bytes());
    fix_checksums(frame);
    true
}

fn stretch_sack(frame: &mut [u8], t: usize) -> bool {
    let mut at = None;
    for_each_option(frame, t, |k, o| {
        if k == 5 {
            at = Some(o);
        }
    });
    let Some(o) = at else { return false };
    let r = u32::from_be_bytes([frame[o + 6], frame[o + 7], frame[o + 8], frame[o + 9]]);
    frame[o + 6..o + 10].copy_from_slice(&r.wrapping_add(1000).to_be_bytes());
    fix_checksums(frame);
    true
}

impl Middlebox for Broken {
    fn handle_frame(&mut self, now: Time, side: Side, frame: &[u8], out: &mut Emitted) {
        let from = out.len();
        self.inner.handle_frame(now, side, frame, out);
        self.mutate(Some((side, frame)), out, from);
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.inner.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Time, out: &mut Emitted) {
        let from = out.len();
        self.inner.handle_timeout(now, out);
        self.mutate(None, out, from);
    }
}
