//! Engine behaviour on hand-built connections: pass-through, length-changing edits with their
//! sequence/ACK fix-ups, retransmission identity, ACK clamping, injected bytes and their
//! timer, resets, fragments, VLAN/IPv6, wrap-around, limits and expiry.
//!
//! Input frames are built with etherparse (independently of the engine's own builder);
//! every frame the engine emits is parsed back and its checksums verified.

use etherparse::{PacketBuilder, TcpOptionElement, VlanId};
use mailguard::engine::{
    DropReason, Edit, Engine, EngineConfig, FailMode, ForwardReason, FrameSink, Identity, Limits,
    PolicyFactory, Scripted, Side, Time, Verdict,
};
use mailguard::smtp::Dir;
use mailguard::wire::{classify, verify_checksums, Classified, TcpFlags, TcpFrame};
use std::time::Duration;

const C2S: Dir = Dir::ClientToServer;
const S2C: Dir = Dir::ServerToClient;

#[derive(Clone, Copy)]
struct Net {
    v6: bool,
    vlan: bool,
}

const V4: Net = Net {
    v6: false,
    vlan: false,
};

/// One emitted frame, parsed.
#[derive(Clone, Debug)]
struct Out {
    side: Side,
    t: TcpFrame,
    payload: Vec<u8>,
}

impl Out {
    fn flags(&self) -> TcpFlags {
        self.t.seg.flags
    }
}

struct Lab<F: PolicyFactory> {
    e: Engine<F>,
    net: Net,
    now: Time,
    sink: FrameSink,
    c_isn: u32,
    s_isn: u32,
}

fn cfg() -> EngineConfig {
    EngineConfig::default()
}

impl<F: PolicyFactory> Lab<F> {
    fn new(e: Engine<F>, net: Net, c_isn: u32, s_isn: u32) -> Self {
        Lab {
            e,
            net,
            now: Time(1_000_000_000),
            sink: FrameSink::default(),
            c_isn,
            s_isn,
        }
    }

    /// A frame from the client (`from_client`) or the server.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &self,
        from_client: bool,
        seq: u32,
        ack: Option<u32>,
        flags: u8,
        win: u16,
        opts: &[TcpOptionElement],
        payload: &[u8],
    ) -> Vec<u8> {
        let (smac, dmac) = if from_client {
            ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        } else {
            ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        };
        let (sp, dp) = if from_client {
            (40000, 25)
        } else {
            (25, 40000)
        };
        let b = PacketBuilder::ethernet2(smac, dmac);
        let b = if self.net.vlan {
            b.single_vlan(VlanId::try_new(125).unwrap())
        } else {
            b.single_vlan(VlanId::try_new(0).unwrap())
        };
        let b = if self.net.v6 {
            let a = |x: u8| {
                let mut o = [0u8; 16];
                o[0] = 0x20;
                o[1] = 0x01;
                o[2] = 0x0d;
                o[3] = 0xb8;
                o[15] = x;
                o
            };
            let (s, d) = if from_client {
                (a(1), a(2))
            } else {
                (a(2), a(1))
            };
            b.ipv6(s, d, 64)
        } else {
            let (s, d) = if from_client {
                ([198, 18, 0, 1], [198, 18, 0, 2])
            } else {
                ([198, 18, 0, 2], [198, 18, 0, 1])
            };
            b.ipv4(s, d, 64)
        };
        let mut b = b.tcp(sp, dp, seq, win);
        if let Some(a) = ack {
            b = b.ack(a);
        }
        if flags & TcpFlags::SYN != 0 {
            b = b.syn();
        }
        if flags & TcpFlags::FIN != 0 {
            b = b.fin();
        }
        if flags & TcpFlags::RST != 0 {
            b = b.rst();
        }
        if flags & TcpFlags::PSH != 0 {
            b = b.psh();
        }
        if !opts.is_empty() {
            b = b.options(opts).unwrap();
        }
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        if !self.net.vlan {
            // No tag: strip the VLAN header the builder wrote (keeps one code path above).
            v.drain(12..16);
        }
        v
    }

    fn feed(&mut self, side: Side, frame: &[u8]) -> (Verdict, Vec<Out>) {
        self.sink.clear();
        let v = self.e.handle_frame(self.now, side, frame, &mut self.sink);
        let mut outs = Vec::new();
        if let Verdict::Forward(_) = v {
            outs.push(parse(side.other(), frame));
        }
        for (s, f) in self.sink.iter() {
            outs.push(parse(s, f));
        }
        (v, outs)
    }

    /// A data/ACK segment at relative `off` from the client (`from_client`) or the server,
    /// acknowledging the peer's relative `ack_off`.
    fn segment(
        &mut self,
        from_client: bool,
        off: u32,
        ack_off: u32,
        flags: u8,
        payload: &[u8],
    ) -> (Verdict, Vec<Out>) {
        let (own_isn, peer_isn, side) = if from_client {
            (self.c_isn, self.s_isn, Side::Outside)
        } else {
            (self.s_isn, self.c_isn, Side::Inside)
        };
        let f = self.frame(
            from_client,
            own_isn.wrapping_add(1).wrapping_add(off),
            Some(peer_isn.wrapping_add(1).wrapping_add(ack_off)),
            flags | TcpFlags::ACK,
            8000,
            &[],
            payload,
        );
        self.feed(side, &f)
    }

    fn client(&mut self, off: u32, ack_off: u32, flags: u8, payload: &[u8]) -> (Verdict, Vec<Out>) {
        self.segment(true, off, ack_off, flags, payload)
    }

    fn server(&mut self, off: u32, ack_off: u32, flags: u8, payload: &[u8]) -> (Verdict, Vec<Out>) {
        self.segment(false, off, ack_off, flags, payload)
    }

    fn handshake(&mut self) {
        let syn = self.frame(
            true,
            self.c_isn,
            None,
            TcpFlags::SYN,
            8000,
            &[TcpOptionElement::MaximumSegmentSize(1400)],
            &[],
        );
        let (v, _) = self.feed(Side::Outside, &syn);
        assert_eq!(v, Verdict::Forward(ForwardReason::Unchanged));
        let synack = self.frame(
            false,
            self.s_isn,
            Some(self.c_isn.wrapping_add(1)),
            TcpFlags::SYN | TcpFlags::ACK,
            8000,
            &[TcpOptionElement::MaximumSegmentSize(100)],
            &[],
        );
        let (v, _) = self.feed(Side::Inside, &synack);
        assert_eq!(v, Verdict::Forward(ForwardReason::Unchanged));
        let (v, _) = self.client(0, 0, 0, b"");
        assert_eq!(v, Verdict::Forward(ForwardReason::Unchanged));
    }

    /// Relative offset of an emitted frame's sequence number in the client's or server's space.
    fn c_off(&self, seq: u32) -> u32 {
        seq.wrapping_sub(self.c_isn.wrapping_add(1))
    }
    fn s_off(&self, seq: u32) -> u32 {
        seq.wrapping_sub(self.s_isn.wrapping_add(1))
    }
}

fn parse(side: Side, f: &[u8]) -> Out {
    let Classified::Tcp(t) = classify(f) else {
        panic!("emitted frame is not TCP: {f:02x?}");
    };
    assert!(verify_checksums(f, &t), "emitted frame with a bad checksum");
    Out {
        side,
        t,
        payload: f[t.payload_off..t.end].to_vec(),
    }
}

fn scripted(edits: Vec<(Dir, u64, Edit)>) -> Lab<Scripted> {
    Lab::new(
        Engine::with_policy(cfg(), Scripted::new(edits)),
        V4,
        1000,
        5000,
    )
}

fn to(side: Side, outs: &[Out]) -> Vec<&Out> {
    outs.iter().filter(|o| o.side == side).collect()
}

#[test]
fn identity_passes_frames_unchanged() {
    let mut lab = Lab::new(Engine::with_policy(cfg(), Identity), V4, 1, 2);
    lab.handshake();
    let (v, outs) = lab.server(0, 0, TcpFlags::PSH, b"220 hi\r\n");
    assert_eq!(v, Verdict::Forward(ForwardReason::Unchanged));
    assert_eq!(outs.len(), 1);
    let (v, _) = lab.client(0, 8, TcpFlags::PSH, b"HELO x\r\n");
    assert_eq!(v, Verdict::Forward(ForwardReason::Unchanged));
    assert_eq!(lab.e.stats().connections, 1);
}

#[test]
fn deleted_line_is_acknowledged_by_the_filter_and_later_bytes_shift() {
    // pix40-like: the client's first line (8 bytes) is removed and answered by the filter.
    let mut lab = scripted(vec![
        (C2S, 0, Edit::Delete(8)),
        (C2S, 8, Edit::InsertOther(b"250 OK\r\n".to_vec())),
    ]);
    lab.handshake();
    let (v, outs) = lab.client(0, 0, TcpFlags::PSH, b"EHLO x\r\nMAIL FROM:<a@b>\r\n");
    assert_eq!(v, Verdict::Rewritten);
    let srv = to(Side::Inside, &outs);
    let data: Vec<u8> = srv.iter().flat_map(|o| o.payload.clone()).collect();
    assert_eq!(data, b"MAIL FROM:<a@b>\r\n");
    assert_eq!(
        lab.c_off(srv[0].t.seg.seq),
        0,
        "output starts where the input did"
    );
    let cli = to(Side::Outside, &outs);
    let injected: Vec<u8> = cli.iter().flat_map(|o| o.payload.clone()).collect();
    assert_eq!(injected, b"250 OK\r\n");
    // The filter acknowledges the deleted bytes, not the ones the server has not acked.
    let ack = cli.iter().map(|o| lab.c_off(o.t.seg.ack)).max().unwrap();
    assert_eq!(ack, 8);
    // The server acknowledges its 17 bytes: the client is told all 25 arrived.
    let (_, outs) = lab.server(0, 17, 0, b"");
    let cli = to(Side::Outside, &outs);
    assert_eq!(lab.c_off(cli.last().unwrap().t.seg.ack), 25);
    // The server's reply follows the injected bytes in the client's stream.
    let (_, outs) = lab.server(0, 17, TcpFlags::PSH, b"250 sender ok\r\n");
    let cli = to(Side::Outside, &outs);
    assert_eq!(lab.s_off(cli[0].t.seg.seq), 8);
    assert_eq!(cli[0].payload, b"250 sender ok\r\n");
    // The client's ACK of the injected bytes is absorbed: the server is told only of its own.
    let (_, outs) = lab.client(25, 8 + 15, 0, b"");
    let srv = to(Side::Inside, &outs);
    assert_eq!(lab.s_off(srv.last().unwrap().t.seg.ack), 15);
    let (_, outs) = lab.client(25, 5, 0, b"");
    for o in to(Side::Inside, &outs) {
        assert!(lab.s_off(o.t.seg.ack) <= 15);
    }
}

#[test]
fn retransmissions_are_served_from_the_log_whatever_the_segmentation() {
    let mut lab = scripted(vec![(C2S, 2, Edit::Replace(b"XX".to_vec()))]);
    lab.handshake();
    let (_, first) = lab.client(0, 0, 0, b"abcdefgh");
    let sent: Vec<u8> = to(Side::Inside, &first)
        .iter()
        .flat_map(|o| o.payload.clone())
        .collect();
    assert_eq!(sent, b"abXXefgh");
    // Re-segmented retransmission with different bytes: the log's bytes go out again.
    let (_, outs) = lab.client(1, 0, 0, b"ZZZZZ");
    for o in to(Side::Inside, &outs) {
        let off = lab.c_off(o.t.seg.seq) as usize;
        assert_eq!(o.payload, sent[off..off + o.payload.len()].to_vec());
    }
    assert!(
        !to(Side::Inside, &outs).is_empty(),
        "unacknowledged output is re-sent"
    );
    // Once acknowledged, a retransmission is answered with an ACK, not forwarded.
    lab.server(0, 8, 0, b"");
    let (_, outs) = lab.client(0, 0, 0, b"abcd");
    assert!(to(Side::Inside, &outs).is_empty());
    let cli = to(Side::Outside, &outs);
    assert_eq!(lab.c_off(cli[0].t.seg.ack), 8);
}

#[test]
fn acks_are_clamped_to_what_the_sender_sent() {
    // Replay: a recorded server acknowledges client bytes the filter removed.
    let mut lab = scripted(vec![(C2S, 0, Edit::Delete(5))]);
    lab.handshake();
    lab.client(0, 0, 0, b"QUIT\r\nNOOP\r\n");
    let (_, outs) = lab.server(0, 1000, 0, b"");
    for o in to(Side::Outside, &outs) {
        assert!(
            lab.c_off(o.t.seg.ack) <= 12,
            "ACK beyond what the client sent"
        );
    }
}

#[test]
fn injected_bytes_are_retransmitted_on_the_engines_timer_until_acknowledged() {
    let mut lab = scripted(vec![(C2S, 0, Edit::InsertOther(b"250 OK\r\n".to_vec()))]);
    lab.handshake();
    let (_, outs) = lab.client(0, 0, 0, b"X");
    assert_eq!(to(Side::Outside, &outs)[0].payload, b"250 OK\r\n");
    let t1 = lab.e.poll_timeout().expect("a retransmission timer");
    lab.sink.clear();
    lab.e.handle_timeout(t1, &mut lab.sink);
    // The client's byte (unacknowledged by the server) is re-sent too; look at the client's.
    let re: Vec<Out> = lab
        .sink
        .iter()
        .map(|(s, f)| parse(s, f))
        .filter(|o| o.side == Side::Outside)
        .collect();
    assert_eq!(re.len(), 1);
    assert_eq!(re[0].payload, b"250 OK\r\n");
    assert_eq!(
        lab.s_off(re[0].t.seg.seq),
        0,
        "same bytes at the same position"
    );
    // The client acknowledges them: no more retransmission.
    lab.now = t1;
    lab.client(1, 8, 0, b"");
    lab.server(0, 1, 0, b"");
    assert_eq!(lab.e.poll_timeout(), None, "nothing left to retransmit");
}

#[test]
fn sequence_numbers_wrap_past_2_32() {
    let mut lab = Lab::new(
        Engine::with_policy(cfg(), Scripted::new(vec![(C2S, 3, Edit::Delete(4))])),
        V4,
        u32::MAX - 2,
        u32::MAX - 1,
    );
    lab.handshake();
    let (_, outs) = lab.client(0, 0, 0, b"abcdefghij");
    let srv = to(Side::Inside, &outs);
    assert_eq!(srv[0].payload, b"abchij");
    assert_eq!(srv[0].t.seg.seq, u32::MAX - 1);
    let (_, outs) = lab.server(0, 6, 0, b"");
    let cli = to(Side::Outside, &outs);
    assert_eq!(cli[0].t.seg.ack, 8, "ISN - 2 + 1 + 10 wraps to 8");
    let (_, outs) = lab.client(10, 0, 0, b"k");
    // Output offset 6: (ISN + 1 + 6) mod 2^32.
    assert_eq!(to(Side::Inside, &outs)[0].t.seg.seq, 4);
}

#[test]
fn policy_reset_goes_to_both_sides_at_their_next_sequence_numbers() {
    let mut lab = scripted(vec![(C2S, 4, Edit::Reset)]);
    lab.handshake();
    lab.server(0, 0, 0, b"220 x\r\n");
    let (_, outs) = lab.client(0, 7, 0, b"abcdefgh");
    let rsts: Vec<&Out> = outs
        .iter()
        .filter(|o| o.flags().has(TcpFlags::RST))
        .collect();
    assert_eq!(rsts.len(), 2);
    let to_srv = rsts.iter().find(|o| o.side == Side::Inside).unwrap();
    let to_cli = rsts.iter().find(|o| o.side == Side::Outside).unwrap();
    assert_eq!(
        lab.c_off(to_srv.t.seg.seq),
        0,
        "the server has received nothing yet"
    );
    assert_eq!(lab.s_off(to_cli.t.seg.seq), 7);
    let (v, _) = lab.client(8, 7, 0, b"more");
    assert_eq!(v, Verdict::Drop(DropReason::ConnectionReset));
    assert_eq!(lab.e.stats().resets.values().sum::<u64>(), 1);
}

#[test]
fn fin_follows_the_rewritten_data() {
    let mut lab = scripted(vec![(C2S, 0, Edit::Delete(2))]);
    lab.handshake();
    let (_, outs) = lab.client(0, 0, TcpFlags::FIN, b"xxQUIT\r\n");
    let srv = to(Side::Inside, &outs);
    let fin = srv.iter().find(|o| o.flags().has(TcpFlags::FIN)).unwrap();
    assert_eq!(lab.c_off(fin.t.seg.seq) + fin.payload.len() as u32, 6);
    // The server acknowledges data and FIN: the client is told all 8 bytes and its FIN.
    let (_, outs) = lab.server(0, 7, 0, b"");
    let cli = to(Side::Outside, &outs);
    assert_eq!(lab.c_off(cli.last().unwrap().t.seg.ack), 9);
}

#[test]
fn output_growth_respects_the_receivers_mss() {
    let mut lab = scripted(vec![(C2S, 1, Edit::Insert(vec![b'y'; 1000]))]);
    lab.handshake();
    let (_, outs) = lab.client(0, 0, 0, b"ab");
    let srv = to(Side::Inside, &outs);
    assert!(srv.len() > 1);
    let total: usize = srv.iter().map(|o| o.payload.len()).sum();
    assert_eq!(total, 1002);
    assert!(
        srv.iter().all(|o| o.payload.len() <= 100),
        "server MSS is 100"
    );
}

#[test]
fn vlan_and_ipv6_frames_keep_their_encapsulation() {
    let mut lab = Lab::new(
        Engine::with_policy(cfg(), Scripted::new(vec![(C2S, 0, Edit::Delete(1))])),
        Net {
            v6: true,
            vlan: true,
        },
        7,
        9,
    );
    lab.handshake();
    let (_, outs) = lab.client(0, 0, 0, b"_HELO x\r\n");
    let srv = to(Side::Inside, &outs);
    assert_eq!(srv[0].payload, b"HELO x\r\n");
    assert_eq!(srv[0].t.ip_off, 18, "802.1Q tag kept");
    assert!(srv[0].t.src.is_ipv6());
}

#[test]
fn fragments_of_filtered_connections_are_dropped() {
    let mut lab = Lab::new(Engine::with_policy(cfg(), Identity), V4, 1, 2);
    lab.handshake();
    let mut f = lab.frame(true, 2, Some(3), TcpFlags::ACK, 100, &[], b"EXPN root\r\n");
    // More-fragments on the first fragment, header checksum fixed.
    let ip = 14;
    f[ip + 6] |= 0x20;
    f[ip + 10] = 0;
    f[ip + 11] = 0;
    let c = mailguard::wire::ipv4_header_checksum(&f[ip..ip + 20]);
    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    let (v, _) = lab.feed(Side::Outside, &f);
    assert_eq!(v, Verdict::Drop(DropReason::Fragment));
    // A later fragment (no ports) between the tracked addresses.
    f[ip + 6] = 0;
    f[ip + 7] = 2;
    f[ip + 10] = 0;
    f[ip + 11] = 0;
    let c = mailguard::wire::ipv4_header_checksum(&f[ip..ip + 20]);
    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    let (v, _) = lab.feed(Side::Outside, &f);
    assert_eq!(v, Verdict::Drop(DropReason::Fragment));
}

#[test]
fn bad_checksums_untracked_segments_and_table_limits() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let mut lab = Lab::new(
        Engine::with_policy(cfg(), Identity).with_limits(limits),
        V4,
        1,
        2,
    );
    // Untracked mid-stream segment: its payload cannot be judged and is dropped even under
    // fail-open; a pure ACK is forwarded under fail-open.
    let f = lab.frame(true, 50, Some(60), TcpFlags::ACK, 100, &[], b"EXPN x\r\n");
    assert_eq!(
        lab.feed(Side::Outside, &f).0,
        Verdict::Drop(DropReason::Untracked)
    );
    let f = lab.frame(true, 50, Some(60), TcpFlags::ACK, 100, &[], b"");
    assert_eq!(
        lab.feed(Side::Outside, &f).0,
        Verdict::Forward(ForwardReason::Untracked)
    );
    lab.handshake();
    let mut bad = lab.frame(true, 2, Some(3), TcpFlags::ACK, 100, &[], b"VRFY x\r\n");
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert_eq!(
        lab.feed(Side::Outside, &bad).0,
        Verdict::Drop(DropReason::BadChecksum)
    );
    // A second connection does not fit: the first carried payload just now, so it is a
    // session within the eviction grace period (an embryonic one would be evicted instead;
    // tests/limits.rs covers eviction).
    let (v, _) = lab.client(0, 0, 0, b"NOOP\r\n");
    assert!(!matches!(v, Verdict::Drop(_)), "{v:?}");
    let mut syn = lab.frame(true, 77, None, TcpFlags::SYN, 100, &[], b"");
    syn[14 + 20] = 0x9c; // another client port (40000 -> 40100), checksum fixed below
    syn[14 + 21] = 0xa4;
    let t = match classify(&syn) {
        Classified::Tcp(t) => t,
        _ => unreachable!(),
    };
    syn[t.tcp_off + 16] = 0;
    syn[t.tcp_off + 17] = 0;
    let c = mailguard::wire::tcp_checksum(t.src, t.dst, &syn[t.tcp_off..t.end]);
    syn[t.tcp_off + 16..t.tcp_off + 18].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        lab.feed(Side::Outside, &syn).0,
        Verdict::Drop(DropReason::OverLimit)
    );

    let closed = EngineConfig {
        fail_mode: FailMode::Closed,
        ..EngineConfig::default()
    };
    let mut lab = Lab::new(Engine::with_policy(closed, Identity), V4, 1, 2);
    let f = lab.frame(true, 50, Some(60), TcpFlags::ACK, 100, &[], b"EXPN x\r\n");
    assert_eq!(
        lab.feed(Side::Outside, &f).0,
        Verdict::Drop(DropReason::Untracked)
    );
}

#[test]
fn idle_connections_expire_and_report() {
    let config = EngineConfig {
        record_connections: true,
        ..EngineConfig::default()
    };
    let mut lab = Lab::new(Engine::with_policy(config, Identity), V4, 1, 2);
    lab.handshake();
    assert_eq!(lab.e.connection_count(), 1);
    assert_eq!(
        lab.e.poll_timeout(),
        None,
        "expiry is not a timer the caller must run"
    );
    let idle = Limits::default().idle_timeout;
    lab.sink.clear();
    lab.e
        .handle_timeout(lab.now.after(idle - Duration::from_secs(1)), &mut lab.sink);
    assert_eq!(lab.e.connection_count(), 1, "not idle long enough");
    lab.e.handle_timeout(lab.now.after(idle), &mut lab.sink);
    assert_eq!(lab.e.connection_count(), 0);
    let reports = lab.e.take_connection_reports(false);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].server, "198.18.0.2:25");
}

#[test]
fn windows_never_shrink_and_never_exceed_the_receivers() {
    let mut lab = scripted(vec![(C2S, 0, Edit::Delete(3))]);
    lab.handshake();
    let mut last_edge = 0u32;
    for (i, win) in [8000u16, 6000, 7000, 100].into_iter().enumerate() {
        let off = (i * 4) as u32;
        lab.client(off, 0, 0, b"abcd");
        let srv_ack = (off + 4).saturating_sub(3);
        let f = lab.frame(
            false,
            lab.s_isn + 1,
            Some(lab.c_isn + 1 + srv_ack),
            TcpFlags::ACK,
            win,
            &[],
            b"",
        );
        let (_, outs) = lab.feed(Side::Inside, &f);
        for o in to(Side::Outside, &outs) {
            let edge = lab.c_off(o.t.seg.ack) + u32::from(o.t.seg.window);
            assert!(edge >= last_edge, "window shrank");
            last_edge = edge;
            // The receiver's right edge, carried into the client's offsets (+3 deleted).
            assert!(edge <= (srv_ack + 3 + u32::from(win)).max(last_edge));
        }
    }
}

#[test]
fn server_side_deletions_translate_the_clients_acks() {
    // strict-like: a line of the server's EHLO reply is removed.
    let mut lab = scripted(vec![(S2C, 11, Edit::Delete(10))]);
    lab.handshake();
    let (_, outs) = lab.server(0, 0, 0, b"250-a.org\r\n250-VRFY\r\n250 OK\r\n");
    let cli = to(Side::Outside, &outs);
    let got: Vec<u8> = cli.iter().flat_map(|o| o.payload.clone()).collect();
    assert_eq!(got, b"250-a.org\r\n250 OK\r\n");
    // The client acknowledges everything it got (19 bytes): the server is told all 29.
    let (_, outs) = lab.client(0, 19, 0, b"");
    let srv = to(Side::Inside, &outs);
    assert_eq!(lab.s_off(srv.last().unwrap().t.seg.ack), 29);
    // A partial ACK short of the deletion point stays short of it.
    let mut lab = scripted(vec![(S2C, 11, Edit::Delete(10))]);
    lab.handshake();
    lab.server(0, 0, 0, b"250-a.org\r\n250-VRFY\r\n250 OK\r\n");
    let (_, outs) = lab.client(0, 5, 0, b"");
    let srv = to(Side::Inside, &outs);
    assert_eq!(lab.s_off(srv.last().unwrap().t.seg.ack), 5);
}

#[test]
fn a_missing_syn_ack_is_picked_up_from_the_servers_first_segment() {
    let mut lab = scripted(vec![(S2C, 0, Edit::Delete(4))]);
    let syn = lab.frame(true, lab.c_isn, None, TcpFlags::SYN, 8000, &[], &[]);
    lab.feed(Side::Outside, &syn);
    let (v, outs) = lab.server(0, 0, TcpFlags::PSH, b"xxxx220 hi\r\n");
    assert_eq!(v, Verdict::Rewritten);
    let cli = to(Side::Outside, &outs);
    assert_eq!(cli[0].payload, b"220 hi\r\n");
    assert_eq!(lab.s_off(cli[0].t.seg.seq), 0);
}

mod segmentation {
    //! Whatever the client's segmentation, loss, duplication and reordering, the server
    //! receives the policy's transform of the client's stream, every output position carries
    //! one value, and the client is never told of more than it sent.

    use super::*;
    use mailguard::engine::Policy;
    use mailguard::smtp::{Op, Output};
    use proptest::prelude::*;

    /// The transform of `stream` by `edits`, computed by the policy alone in one piece.
    fn transform(edits: &[(Dir, u64, Edit)], stream: &[u8]) -> Vec<u8> {
        let mut s = Scripted::new(edits.to_vec()).session();
        let mut out = Output::default();
        s.feed(C2S, stream, &mut out);
        let mut pos = 0;
        let mut v = Vec::new();
        for op in &out.to_server {
            match op {
                Op::Copy(n) => v.extend_from_slice(&stream[pos..pos + n]),
                Op::Replace(b) | Op::Insert(b) => v.extend_from_slice(b),
                Op::Delete(_) => {}
            }
            pos += op.consumed();
        }
        v
    }

    /// Records the bytes emitted towards the server by position (one value per position) and
    /// checks that no ACK to the client exceeds what it sent.
    fn check(
        lab: &Lab<Scripted>,
        outs: &[Out],
        got: &mut Vec<Option<u8>>,
        sent: usize,
    ) -> Result<(), TestCaseError> {
        for o in outs {
            if o.side == Side::Inside {
                let base = lab.c_off(o.t.seg.seq) as usize;
                for (i, &b) in o.payload.iter().enumerate() {
                    if got.len() <= base + i {
                        got.resize(base + i + 1, None);
                    }
                    if let Some(old) = got[base + i] {
                        prop_assert_eq!(old, b, "position {} emitted with two values", base + i);
                    }
                    got[base + i] = Some(b);
                }
            } else if o.t.seg.flags.has(TcpFlags::ACK) {
                prop_assert!(lab.c_off(o.t.seg.ack) as usize <= sent);
            }
        }
        Ok(())
    }

    fn edit() -> impl Strategy<Value = (Dir, u64, Edit)> {
        (
            0u64..400,
            prop_oneof![
                (1usize..20).prop_map(Edit::Delete),
                proptest::collection::vec(any::<u8>(), 1..30).prop_map(Edit::Insert),
                proptest::collection::vec(any::<u8>(), 1..10).prop_map(Edit::Replace),
            ],
        )
            .prop_map(|(at, e)| (C2S, at, e))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn server_gets_the_transform(
            stream in proptest::collection::vec(any::<u8>(), 1..500),
            edits in proptest::collection::vec(edit(), 0..6),
            cuts in proptest::collection::vec(1usize..120, 1..40),
            order in proptest::collection::vec(any::<u16>(), 0..80),
        ) {
            // Segments of the stream, then a delivery schedule with duplicates and reordering.
            let mut segs = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= stream.len() { break; }
                let e = (at + c).min(stream.len());
                segs.push((at, e));
                at = e;
            }
            let mut schedule: Vec<usize> = (0..segs.len()).collect();
            for (i, r) in order.iter().enumerate() {
                let j = usize::from(*r) % segs.len();
                if i % 3 == 0 { schedule.push(j); } else if !schedule.is_empty() {
                    let n = schedule.len();
                    schedule.swap(i % n, j % n);
                }
            }
            schedule.extend(0..segs.len()); // every segment arrives at least once in order at the end

            let mut lab = scripted(edits.clone());
            lab.handshake();
            let mut got: Vec<Option<u8>> = Vec::new();
            for &i in &schedule {
                let (s, e) = segs[i];
                let (_, outs) = lab.client(s as u32, 0, 0, &stream[s..e]);
                check(&lab, &outs, &mut got, stream.len())?;
            }
            let want = transform(&edits, &stream);
            let have: Vec<u8> = got.iter().map_while(|b| *b).collect();
            prop_assert_eq!(&have, &want);
            prop_assert_eq!(got.len(), want.len());
            // The server acknowledges everything: the client is told its whole stream arrived.
            let (_, outs) = lab.server(0, want.len() as u32, 0, b"");
            check(&lab, &outs, &mut got, stream.len())?;
            let last = outs.iter().rfind(|o| o.side == Side::Outside).expect("an ACK to the client");
            prop_assert_eq!(lab.c_off(last.t.seg.ack) as usize, stream.len());
        }
    }
}

/// A policy that holds each line until its LF, then copies it (like a verb check).
struct LineHold {
    held: usize,
}

impl mailguard::engine::Policy for LineHold {
    fn feed(&mut self, dir: Dir, data: &[u8], out: &mut mailguard::smtp::Output) {
        if dir == S2C {
            out.to_client.push(mailguard::smtp::Op::Copy(data.len()));
            return;
        }
        self.held += data.len();
        if let Some(p) = data.iter().rposition(|&b| b == b'\n') {
            let release = self.held - (data.len() - p - 1);
            out.to_server.push(mailguard::smtp::Op::Copy(release));
            self.held -= release;
        }
    }
    fn finish(&mut self, _dir: Dir, _out: &mut mailguard::smtp::Output) {}
    fn is_passthrough(&self) -> bool {
        false
    }
}

struct LineHoldFactory;

impl PolicyFactory for LineHoldFactory {
    type Policy = LineHold;
    fn session(&self) -> LineHold {
        LineHold { held: 0 }
    }
}

#[test]
fn held_bytes_are_acknowledged_only_once_the_sender_is_stalled_on_them() {
    let limits = Limits {
        ack_held_when_stalled: true,
        ..Limits::default()
    };
    let mut lab = Lab::new(
        Engine::with_policy(cfg(), LineHoldFactory).with_limits(limits),
        V4,
        10,
        20,
    );
    lab.handshake();
    let (_, outs) = lab.client(0, 0, TcpFlags::PSH, b"E");
    assert!(
        to(Side::Inside, &outs).is_empty(),
        "held: nothing to the server"
    );
    for o in to(Side::Outside, &outs) {
        assert_eq!(lab.c_off(o.t.seg.ack), 0, "held bytes are not acknowledged");
    }
    let (_, outs) = lab.client(1, 0, TcpFlags::PSH, b"H");
    for o in to(Side::Outside, &outs) {
        assert_eq!(lab.c_off(o.t.seg.ack), 0);
    }
    // One retransmission may be loss: still not acknowledged.
    let (_, outs) = lab.client(0, 0, TcpFlags::PSH, b"EH");
    for o in to(Side::Outside, &outs) {
        assert_eq!(lab.c_off(o.t.seg.ack), 0);
    }
    // The client, stalled, retransmits again: the filter acknowledges what it holds.
    let (_, outs) = lab.client(0, 0, TcpFlags::PSH, b"EH");
    let cli = to(Side::Outside, &outs);
    assert_eq!(lab.c_off(cli.last().expect("an ACK").t.seg.ack), 2);
    // The line completes and goes to the server whole.
    let (_, outs) = lab.client(2, 0, TcpFlags::PSH, b"LO\r\n");
    let srv = to(Side::Inside, &outs);
    let data: Vec<u8> = srv.iter().flat_map(|o| o.payload.clone()).collect();
    assert_eq!(data, b"EHLO\r\n");
    assert_eq!(lab.c_off(srv[0].t.seg.seq), 0);
}

#[test]
fn expired_connections_are_swept_by_later_frames() {
    let mut lab = Lab::new(Engine::with_policy(cfg(), Identity), V4, 1, 2);
    lab.handshake();
    lab.now = lab.now.after(Limits::default().idle_timeout);
    // Any frame (here one of another protocol) sweeps the expired connection.
    let mut arp = vec![0u8; 42];
    arp[12] = 0x08;
    arp[13] = 0x06;
    lab.sink.clear();
    let v = lab
        .e
        .handle_frame(lab.now, Side::Outside, &arp, &mut lab.sink);
    assert_eq!(v, Verdict::Forward(ForwardReason::NotIp));
    assert_eq!(lab.e.connection_count(), 0);
    // A late segment of it is now untracked: its data is dropped, not forwarded unjudged.
    let (v, _) = lab.client(0, 0, 0, b"NOOP\r\n");
    assert_eq!(v, Verdict::Drop(DropReason::Untracked));
}

mod robustness {
    //! Arbitrary and mutated frames never panic the engine, and what it emits is valid TCP.

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn mutated_frames_never_panic(
            muts in proptest::collection::vec((0usize..8, any::<u16>(), any::<u8>(), any::<bool>()), 1..40),
            garbage in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut lab = scripted(vec![
                (C2S, 1, Edit::Delete(2)),
                (C2S, 4, Edit::InsertOther(b"250 OK\r\n".to_vec())),
                (S2C, 2, Edit::Insert(b"xy".to_vec())),
            ]);
            lab.handshake();
            let base = [
                lab.frame(true, lab.c_isn + 1, Some(lab.s_isn + 1), TcpFlags::ACK | TcpFlags::PSH, 900, &[], b"EHLO x\r\n"),
                lab.frame(false, lab.s_isn + 1, Some(lab.c_isn + 1), TcpFlags::ACK, 900, &[], b"220 hi\r\n"),
                lab.frame(true, lab.c_isn + 9, Some(lab.s_isn + 5), TcpFlags::ACK | TcpFlags::FIN, 900, &[], b"QUIT\r\n"),
                lab.frame(false, lab.s_isn + 1, Some(lab.c_isn + 3), TcpFlags::ACK | TcpFlags::RST, 0, &[], b""),
            ];
            for (which, at, val, fix) in muts {
                let mut f = base[which % base.len()].clone();
                let i = usize::from(at) % f.len();
                f[i] ^= val;
                if fix {
                    // Keep checksums right half of the time so the mutation reaches the engine.
                    if let Classified::Tcp(t) = classify(&f) {
                        f[t.tcp_off + 16] = 0;
                        f[t.tcp_off + 17] = 0;
                        let c = mailguard::wire::tcp_checksum(t.src, t.dst, &f[t.tcp_off..t.end]);
                        f[t.tcp_off + 16..t.tcp_off + 18].copy_from_slice(&c.to_be_bytes());
                    }
                }
                if which >= 4 {
                    f.truncate(i);
                }
                let side = if which % 2 == 0 { Side::Outside } else { Side::Inside };
                lab.sink.clear();
                lab.e.handle_frame(lab.now, side, &f, &mut lab.sink);
                for (_, out) in lab.sink.iter() {
                    let Classified::Tcp(t) = classify(out) else {
                        return Err(TestCaseError::fail("emitted a non-TCP frame"));
                    };
                    prop_assert!(verify_checksums(out, &t));
                }
                lab.now = lab.now.after(Duration::from_millis(100));
                lab.sink.clear();
                lab.e.handle_timeout(lab.now, &mut lab.sink);
            }
            lab.sink.clear();
            lab.e.handle_frame(lab.now, Side::Outside, &garbage, &mut lab.sink);
        }
    }
}

#[test]
fn a_zero_window_is_probed_with_one_byte_when_the_sender_probes() {
    let mut lab = scripted(vec![(C2S, 0, Edit::Delete(1))]);
    lab.handshake();
    // The server closes its window.
    let f = lab.frame(
        false,
        lab.s_isn + 1,
        Some(lab.c_isn + 1),
        TcpFlags::ACK,
        0,
        &[],
        b"",
    );
    lab.feed(Side::Inside, &f);
    let (_, outs) = lab.client(0, 0, 0, b"xHELO a\r\n");
    assert!(
        to(Side::Inside, &outs).iter().all(|o| o.payload.len() <= 1),
        "nothing beyond a one-byte probe while the window is closed"
    );
    let probe = to(Side::Inside, &outs)
        .into_iter()
        .find(|o| o.payload.len() == 1)
        .expect("a one-byte probe");
    assert_eq!(probe.payload, b"H");
    // The window opens: the rest follows, from the same log.
    let f = lab.frame(
        false,
        lab.s_isn + 1,
        Some(lab.c_isn + 2),
        TcpFlags::ACK,
        1000,
        &[],
        b"",
    );
    let (_, outs) = lab.feed(Side::Inside, &f);
    let rest: Vec<u8> = to(Side::Inside, &outs)
        .iter()
        .flat_map(|o| o.payload.clone())
        .collect();
    assert_eq!(rest, b"ELO a\r\n");
}

#[test]
fn held_bytes_are_never_acknowledged_by_default() {
    let mut lab = Lab::new(Engine::with_policy(cfg(), LineHoldFactory), V4, 10, 20);
    lab.handshake();
    lab.client(0, 0, TcpFlags::PSH, b"EH");
    for _ in 0..3 {
        let (_, outs) = lab.client(0, 0, TcpFlags::PSH, b"EH");
        for o in to(Side::Outside, &outs) {
            assert_eq!(lab.c_off(o.t.seg.ack), 0, "held bytes acknowledged");
        }
    }
}

#[test]
fn only_a_rst_at_the_next_sequence_number_closes_the_connection() {
    let linger = Limits::default().closed_linger + Duration::from_secs(1);
    let mut lab = Lab::new(Engine::with_policy(cfg(), Identity), V4, 1, 2);
    lab.handshake();
    let (v, _) = lab.client(0, 0, 0, b"NOOP\r\n");
    assert_eq!(v, Verdict::Forward(ForwardReason::Unchanged));
    // 10 bytes past the client's next sequence number: the server would answer with a
    // challenge ACK (RFC 5961) and keep the connection, so the engine keeps it too.
    let (v, outs) = lab.client(16, 0, TcpFlags::RST, b"");
    assert!(
        v == Verdict::Forward(ForwardReason::Unchanged)
            || outs.iter().any(|o| o.flags().has(TcpFlags::RST)),
        "the RST is passed on for the server to judge: {v:?}"
    );
    lab.now = lab.now.after(linger);
    let (v, _) = lab.client(6, 0, 0, b"NOOP\r\n");
    assert_eq!(v, Verdict::Forward(ForwardReason::Unchanged));
    assert_eq!(lab.e.connection_count(), 1);
    // Exactly at the next sequence number: the server closes, and so does the engine; once
    // the closed connection is forgotten, late data is dropped, not forwarded unjudged.
    let (v, _) = lab.client(12, 0, TcpFlags::RST, b"");
    assert_eq!(v, Verdict::Forward(ForwardReason::Unchanged));
    lab.now = lab.now.after(linger);
    let (v, _) = lab.client(12, 0, 0, b"EXPN root\r\n");
    assert_eq!(v, Verdict::Drop(DropReason::Untracked));
    assert_eq!(lab.e.connection_count(), 0);
}

#[test]
fn replacements_of_rewritten_frames_are_not_counted_as_originated() {
    let mut lab = scripted(vec![(C2S, 6, Edit::Delete(8))]);
    lab.handshake();
    let mut frames_out = 0u64;
    let (v, outs) = lab.client(0, 0, 0, b"NOOP\r\n");
    assert_eq!(v, Verdict::Forward(ForwardReason::Unchanged));
    frames_out += outs.len() as u64; // the forwarded input and what the engine emitted
    let (v, outs) = lab.server(0, 6, 0, b"");
    assert_eq!(v, Verdict::Forward(ForwardReason::Unchanged));
    frames_out += outs.len() as u64; // the forwarded input and what the engine emitted
    let before = lab.e.stats().clone();
    // Deleted whole: nothing replaces it, the engine acknowledges the bytes itself.
    let (v, outs) = lab.client(6, 0, 0, b"EXPN x\r\n");
    assert_eq!(v, Verdict::Rewritten);
    assert!(to(Side::Inside, &outs).is_empty());
    assert_eq!(
        to(Side::Outside, &outs).len(),
        1,
        "an ACK for the deleted bytes"
    );
    frames_out += outs.len() as u64;
    let s = lab.e.stats().clone();
    assert_eq!(s.replacements - before.replacements, 0);
    assert_eq!(s.originated - before.originated, 1);
    // Its sequence number shifted: one replacement, nothing originated.
    let (v, outs) = lab.client(14, 0, 0, b"QUIT\r\n");
    assert_eq!(v, Verdict::Rewritten);
    assert_eq!(to(Side::Inside, &outs).len(), 1);
    frames_out += outs.len() as u64;
    let t = lab.e.stats().clone();
    assert_eq!(t.replacements - s.replacements, 1);
    assert_eq!(t.originated - s.originated, 0);
    assert_eq!(
        t.forwarded_total() + t.rewritten + t.dropped_total(),
        t.frames_in
    );
    let handshake_frames = t.frames_in - 4;
    assert_eq!(
        t.forwarded_total() + t.replacements + t.originated,
        frames_out + handshake_frames,
        "frames out = forwarded + replacements + originated"
    );
}

#[test]
fn a_rst_off_the_next_sequence_number_is_translated_and_the_connection_kept() {
    let linger = Limits::default().closed_linger + Duration::from_secs(1);
    let mut lab = scripted(vec![(C2S, 0, Edit::Delete(6))]);
    lab.handshake();
    let (v, _) = lab.client(0, 0, 0, b"NOOP\r\n");
    assert_eq!(v, Verdict::Rewritten);
    // 10 past the client's next input offset (6): 10 past the server's next output offset (0).
    let (v, outs) = lab.client(16, 0, TcpFlags::RST, b"");
    assert_eq!(v, Verdict::Rewritten);
    let rst: Vec<&Out> = to(Side::Inside, &outs)
        .into_iter()
        .filter(|o| o.flags().has(TcpFlags::RST))
        .collect();
    assert_eq!(rst.len(), 1, "{outs:?}");
    assert_eq!(lab.c_off(rst[0].t.seg.seq), 10);
    lab.now = lab.now.after(linger);
    let (v, outs) = lab.client(6, 0, 0, b"QUIT\r\n");
    assert_eq!(
        v,
        Verdict::Rewritten,
        "still tracked: shifted by the deletion"
    );
    let srv = to(Side::Inside, &outs);
    assert_eq!(srv.len(), 1);
    assert_eq!(lab.c_off(srv[0].t.seg.seq), 0);
    assert_eq!(srv[0].payload, b"QUIT\r\n");
}
