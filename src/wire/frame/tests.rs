//! Frame parsing and building, checked against frames built independently by etherparse.

use super::*;
use crate::wire::set_tcp_window;
use etherparse::{PacketBuilder, TcpOptionElement, VlanId};
use std::net::{Ipv4Addr, Ipv6Addr};

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const V4_A: [u8; 4] = [198, 18, 0, 1];
const V4_B: [u8; 4] = [198, 18, 0, 2];

fn v6(last: u16) -> [u8; 16] {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last).octets()
}

fn write(b: PacketBuilderStep, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("etherparse writes");
    v
}

type PacketBuilderStep = etherparse::PacketBuilderStep<etherparse::TcpHeader>;

fn tcp_of(frame: &[u8]) -> TcpFrame {
    match classify(frame) {
        Classified::Tcp(t) => t,
        other => panic!("expected TCP, got {other:?}"),
    }
}

#[test]
fn ipv4_tcp_with_options() {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_A, V4_B, 64)
        .tcp(40000, 25, 0xffff_fff0, 29200)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(7, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap();
    let f = write(b, &[]);
    let t = tcp_of(&f);
    assert_eq!(t.ip_off, 14);
    assert_eq!(t.tcp_off, 34);
    assert_eq!(t.src, IpAddr::V4(Ipv4Addr::from(V4_A)));
    assert_eq!(t.seg.dst_port, 25);
    assert_eq!(t.seg.seq, 0xffff_fff0);
    assert!(t.seg.flags.has(TcpFlags::SYN));
    assert_eq!(t.seg.options.mss, Some(1460));
    assert_eq!(t.seg.options.wscale, Some(7));
    assert!(t.seg.options.sack_permitted);
    assert_eq!(t.seg.options.timestamps, Some((7, 0)));
    assert!(verify_checksums(&f, &t));
}

#[test]
fn vlan_and_qinq() {
    let single = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(VlanId::try_new(125).unwrap())
        .ipv4(V4_A, V4_B, 64)
        .tcp(40000, 25, 1, 100)
        .ack(5);
    let f = write(single, b"EHLO x\r\n");
    let t = tcp_of(&f);
    assert_eq!(t.ip_off, 18);
    assert_eq!(&f[t.payload_off..t.end], b"EHLO x\r\n");
    assert!(verify_checksums(&f, &t));

    let double = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
        .ipv6(v6(1), v6(2), 64)
        .tcp(40000, 25, 1, 100)
        .ack(5);
    let f = write(double, b"QUIT\r\n");
    let t = tcp_of(&f);
    assert_eq!(t.ip_off, 22);
    assert_eq!(t.tcp_off, 62);
    assert!(verify_checksums(&f, &t));
    // A template taken from it rebuilds the same frame byte for byte.
    let tpl = Template::from_frame(&f, &t).unwrap();
    let mut buf = vec![0u8; tpl.frame_len(20 + 6)];
    build_tcp_frame(
        &mut buf,
        &tpl,
        0,
        1,
        5,
        TcpFlags::ACK,
        100,
        &[],
        (b"QU", b"IT\r\n"),
    )
    .unwrap();
    assert_eq!(buf, f);
}

#[test]
fn ipv6_rebuild_and_reverse() {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(v6(1), v6(2), 61)
        .tcp(25, 40000, 77, 500)
        .ack(99)
        .psh();
    let f = write(b, b"220 hi\r\n");
    let t = tcp_of(&f);
    let tpl = Template::from_frame(&f, &t).unwrap();
    let rev = tpl.reversed();
    let mut buf = vec![0u8; rev.frame_len(20)];
    build_tcp_frame(
        &mut buf,
        &rev,
        0,
        99,
        85,
        TcpFlags::ACK,
        1000,
        &[],
        (&[], &[]),
    )
    .unwrap();
    let r = tcp_of(&buf);
    assert_eq!(r.src, t.dst);
    assert_eq!(r.seg.src_port, 40000);
    assert_eq!(&buf[0..6], &MAC_A);
    assert!(verify_checksums(&buf, &r));
}

#[test]
fn bad_checksum_detected_and_truncation_unparseable() {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_A, V4_B, 64)
        .tcp(40000, 25, 1, 100);
    let mut f = write(b, b"MAIL FROM:<a@b>\r\n");
    let t = tcp_of(&f);
    let last = f.len() - 1;
    f[last] ^= 0x20;
    assert!(!verify_checksums(&f, &t));
    f.truncate(60);
    assert_eq!(classify(&f), Classified::Unparseable);
}

#[test]
fn ipv4_fragments_detected() {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_A, V4_B, 64)
        .tcp(40000, 25, 1, 100);
    let mut f = write(b, b"EXPN root\r\n");
    // Set More Fragments on the first fragment and fix the header checksum.
    f[14 + 6] |= 0x20;
    f[14 + 10] = 0;
    f[14 + 11] = 0;
    let c = ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    match classify(&f) {
        Classified::Fragment(fr) => assert_eq!(fr.ports, Some((40000, 25))),
        other => panic!("expected fragment, got {other:?}"),
    }
    // A later fragment (offset 8 bytes) carries no ports.
    f[14 + 6] = 0x00;
    f[14 + 7] = 0x01;
    f[24] = 0;
    f[25] = 0;
    let c = ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    match classify(&f) {
        Classified::Fragment(fr) => assert_eq!(fr.ports, None),
        other => panic!("expected fragment, got {other:?}"),
    }
}

#[test]
fn ipv6_fragment_header_detected() {
    // Ethernet + IPv6 (next header 44) + fragment header (next header TCP, offset 0, M=1).
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(v6(1), v6(2), 64)
        .tcp(40000, 25, 1, 100);
    let whole = write(b, b"VRFY x\r\n");
    let tcp = &whole[54..];
    let mut f = whole[..54].to_vec();
    f[20] = 44; // next header: fragment
    let plen = (tcp.len() + 8) as u16;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[6, 0, 0x00, 0x01, 0, 0, 0, 7]);
    f.extend_from_slice(tcp);
    match classify(&f) {
        Classified::Fragment(fr) => assert_eq!(fr.ports, Some((40000, 25))),
        other => panic!("expected fragment, got {other:?}"),
    }
}

#[test]
fn not_ip_and_not_tcp() {
    let mut arp = vec![0u8; 42];
    arp[12] = 0x08;
    arp[13] = 0x06;
    assert_eq!(classify(&arp), Classified::NotIp);
    let udp = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_A, V4_B, 64)
        .udp(53, 53);
    let mut v = Vec::new();
    udp.write(&mut v, b"x").unwrap();
    assert_eq!(classify(&v), Classified::NotTcp);
}

#[test]
fn incremental_mutation_keeps_checksum_valid() {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_A, V4_B, 64)
        .tcp(40000, 25, 0xffff_fffe, 100)
        .ack(3);
    let mut f = write(b, b"DATA\r\n");
    let t = tcp_of(&f);
    set_tcp_seq(&mut f, t.tcp_off, 5).unwrap();
    set_tcp_ack(&mut f, t.tcp_off, 0x8000_0001).unwrap();
    set_tcp_window(&mut f, t.tcp_off, 7).unwrap();
    let t2 = tcp_of(&f);
    assert_eq!((t2.seg.seq, t2.seg.ack, t2.seg.window), (5, 0x8000_0001, 7));
    assert!(verify_checksums(&f, &t2));
}

#[test]
fn malformed_options_are_ignored() {
    assert_eq!(TcpOptions::parse(&[2, 0, 1]), TcpOptions::default());
    assert_eq!(TcpOptions::parse(&[8, 200]), TcpOptions::default());
    let o = TcpOptions::parse(&[1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 9]);
    assert_eq!(o.sack.as_slice(), &[(1, 9)]);
}

/// The parts of a frame the fast-path proptests build: link tags, IP version, header
/// option lengths, payload and Ethernet padding.
#[derive(Clone, Debug)]
struct Shape {
    tags: Vec<u16>,
    v6: bool,
    ip_opts: Vec<u8>,
    tcp_opts: Vec<u8>,
    payload: Vec<u8>,
    padding: usize,
    fields: [u8; 16],
}

/// A well-formed frame of `shape`: lengths consistent, every other field from `fields`.
fn shaped_frame(s: &Shape) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&MAC_B);
    for &tag in &s.tags {
        f.extend_from_slice(&tag.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x7d]);
    }
    let ip_opts = &s.ip_opts[..s.ip_opts.len() / 4 * 4];
    let tcp_opts = &s.tcp_opts[..s.tcp_opts.len() / 4 * 4];
    let tcp_len = 20 + tcp_opts.len() + s.payload.len();
    if s.v6 {
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        f.extend_from_slice(&[0x60 | (s.fields[0] & 0x0f), s.fields[1], s.fields[2], 0]);
        f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
        f.extend_from_slice(&[6, s.fields[3]]);
        f.extend_from_slice(&v6(1));
        f.extend_from_slice(&v6(u16::from(s.fields[4])));
    } else {
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let ihl = 5 + ip_opts.len() / 4;
        let total = (ihl * 4 + tcp_len) as u16;
        f.push(0x40 | ihl as u8);
        f.push(s.fields[0]);
        f.extend_from_slice(&total.to_be_bytes());
        // DF and the reserved bit may be set: neither makes a fragment.
        f.extend_from_slice(&[s.fields[1], s.fields[2], s.fields[3] & 0xc0, 0]);
        f.extend_from_slice(&[s.fields[4], 6, s.fields[5], s.fields[6]]);
        f.extend_from_slice(&V4_A);
        f.extend_from_slice(&V4_B);
        f.extend_from_slice(ip_opts);
    }
    f.extend_from_slice(&[s.fields[7], 25, 0x9c, 0x40]);
    f.extend_from_slice(&s.fields[8..16]);
    f.push((((20 + tcp_opts.len()) / 4) as u8 * 16) | (s.fields[9] & 0x0f));
    f.extend_from_slice(&[s.fields[10], s.fields[11], s.fields[12], 0, 0, 0, 0]);
    f.extend_from_slice(tcp_opts);
    f.extend_from_slice(&s.payload);
    f.resize(f.len() + s.padding, 0);
    f
}

fn shape() -> impl proptest::strategy::Strategy<Value = Shape> {
    use proptest::prelude::*;
    let tag = prop_oneof![Just(0x8100u16), Just(0x88a8), Just(0x9100)];
    (
        proptest::collection::vec(tag, 0..3),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..44),
        proptest::collection::vec(any::<u8>(), 0..44),
        proptest::collection::vec(any::<u8>(), 0..80),
        0usize..12,
        any::<[u8; 16]>(),
    )
        .prop_map(
            |(tags, v6, ip_opts, tcp_opts, payload, padding, fields)| Shape {
                tags,
                v6,
                ip_opts,
                tcp_opts,
                payload,
                padding,
                fields,
            },
        )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Every well-formed TCP frame takes the fast path (so the comparisons below are not
    /// vacuous), and it gives what etherparse's slices give.
    #[test]
    fn fast_path_takes_well_formed_frames_and_agrees(s in shape()) {
        let f = shaped_frame(&s);
        let fast = classify_fast(&f);
        proptest::prop_assert!(fast.is_some(), "fast path refused {:02x?}", f);
        proptest::prop_assert_eq!(fast.map(Classified::Tcp), Some(classify_sliced(&f)));
    }

    /// Overwritten header bytes (lengths that lie, versions, protocols, fragment fields,
    /// EtherTypes, data offsets) and truncation anywhere: the fast path either refuses the
    /// frame or gives exactly etherparse's answer, and `classify` always does.
    #[test]
    fn fast_path_agrees_on_mutated_frames(
        s in shape(),
        edits in proptest::collection::vec((0usize..120, proptest::prelude::any::<u8>()), 1..6),
        cut in proptest::prelude::any::<Option<usize>>(),
    ) {
        let mut f = shaped_frame(&s);
        for (at, b) in edits {
            if let Some(x) = f.get_mut(at) {
                *x = b;
            }
        }
        if let Some(c) = cut {
            f.truncate(c % (f.len() + 1));
        }
        let reference = classify_sliced(&f);
        if let Some(t) = classify_fast(&f) {
            proptest::prop_assert_eq!(Classified::Tcp(t), reference);
        }
        proptest::prop_assert_eq!(classify(&f), reference);
    }

    /// Arbitrary bytes, with an IPv4 or IPv6 EtherType at the usual place half the time.
    #[test]
    fn fast_path_agrees_on_arbitrary_bytes(
        mut f in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        et in proptest::prelude::prop_oneof![
            proptest::prelude::Just(None),
            proptest::prelude::Just(Some([0x08u8, 0x00, 0x45])),
            proptest::prelude::Just(Some([0x86, 0xdd, 0x60])),
        ],
    ) {
        if let (Some(et), Some(at)) = (et, f.get_mut(12..15)) {
            at.copy_from_slice(&et);
        }
        let reference = classify_sliced(&f);
        if let Some(t) = classify_fast(&f) {
            proptest::prop_assert_eq!(Classified::Tcp(t), reference);
        }
        proptest::prop_assert_eq!(classify(&f), reference);
    }
}
