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
