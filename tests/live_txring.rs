//! The afpacket backend's transmit ring (`PACKET_TX_RING`), driven through the `Backend`
//! trait in the lab's bridge namespace, with a raw socket on the client's end of the link
//! reading what arrives: the ring wraps, a full ring falls back to the copy path in order
//! and counts it, frames the ring does not take go the copy path, and the ring sends the
//! same bytes the copy path (`sendmmsg`) sends.
//!
//! Frames carry an experimental EtherType (0x88b5) to the broadcast address, so the client
//! host's stack ignores them and the reader can pick them out of whatever else the link
//! carries. Every wait is bounded; tests skip (saying why) where the lab cannot run.

#[path = "common/lab.rs"]
mod lab;

use lab::{serial, should_skip, Host, Lab};
use mailguard::engine::Side;
use mailguard::io::afpacket::{tx_ring_frames, AfPacketBackend, TxOptions};

/// The transmit ring with qdisc bypass (`--tx-ring --qdisc-bypass`).
const RING: TxOptions = TxOptions {
    ring: true,
    qdisc_bypass: true,
};
use mailguard::io::backend::{Backend, IoStats};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// Test frame `seq` of `len` bytes (at least 18): broadcast, the test EtherType, the
/// sequence number, then bytes that depend on both.
fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&ETHERTYPE);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend((18..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8));
    f
}

/// A frame length between 60 and 1514 for frame `seq`, with the extremes often.
fn length(seq: u32) -> usize {
    match seq % 7 {
        0 => 60,
        1 => 1514,
        2 => 61,
        _ => 60 + (seq as usize * 97) % 1455,
    }
}

/// A raw socket bound to `link` in `host`'s namespace, with a large receive buffer.
fn reader(lab: &Lab, host: Host, link: &str) -> RawFd {
    let link = std::ffi::CString::new(link).expect("name");
    lab.in_ns(host, move || {
        // SAFETY: plain socket(2)/setsockopt(2)/bind(2) calls on values we own.
        unsafe {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let size: libc::c_int = 32 << 20;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as libc::c_ushort;
            sll.sll_protocol = proto;
            sll.sll_ifindex = libc::if_nametoindex(link.as_ptr()) as libc::c_int;
            assert!(sll.sll_ifindex > 0, "no such link");
            let rc = libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            fd
        }
    })
}

/// The test frames `fd` receives until `want` of them arrived or 10 s passed.
fn read_frames(fd: RawFd, want: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16384];
    while got.len() < want && Instant::now() < deadline {
        // SAFETY: reading into a buffer we own, of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        let Ok(n) = usize::try_from(n) else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let f = buf.get(..n).unwrap_or_default();
        if f.get(12..14) == Some(&ETHERTYPE[..]) {
            got.push(f.to_vec());
        }
    }
    got
}

/// Test frames still arriving on `fd` within 300 ms (there should be none).
fn read_stray(fd: RawFd) -> usize {
    std::thread::sleep(Duration::from_millis(300));
    read_frames(fd, usize::MAX).len()
}

fn close(fd: RawFd) {
    // SAFETY: the test owns `fd` and does not use it again.
    unsafe { libc::close(fd) };
}

/// Opens one backend on the lab's ports in the bridge namespace, sends `frames` to the
/// outside in groups of `group` (a flush after each), and returns its counters and
/// whether it used transmit rings.
fn send_through(lab: &Lab, tx: TxOptions, frames: Vec<Vec<u8>>, group: usize) -> (IoStats, bool) {
    let (outside, inside) = lab.ports();
    lab.in_ns(Host::Bridge, move || {
        let mut b = AfPacketBackend::open_with(&outside, &inside, None, tx).expect("open");
        for chunk in frames.chunks(group) {
            for f in chunk {
                b.send(Side::Outside, f).expect("send");
            }
            b.flush().expect("flush");
        }
        (b.io_stats(), b.uses_tx_rings())
    })
}

/// Sets `link` in `host` up or down.
fn link_set(lab: &Lab, host: Host, link: &str, state: &str) {
    let out = lab.run(
        host,
        &["ip", "link", "set", link, state],
        Duration::from_secs(5),
    );
    assert!(out.status.success(), "ip link set {link} {state}: {out:?}");
}

/// Three turns and a bit of the ring, flushed every 50 frames: everything arrives in order
/// and byte for byte; then the same frames through the copy path (the default, `sendmmsg`) arrive
/// identical to the ring's.
#[test]
fn tx_ring_wraps_and_sends_the_same_frames_as_the_copy_path() {
    let test = "tx_ring_wraps_and_sends_the_same_frames_as_the_copy_path";
    if should_skip(test) {
        return;
    }
    let _guard = serial();
    let lab = Lab::up("afpacket");
    let (client, _) = lab.host_links();
    let n = tx_ring_frames(1500) * 3 + 37;
    let frames: Vec<Vec<u8>> = (0..n as u32).map(|s| frame(s, length(s))).collect();
    let fd = reader(&lab, Host::Out, &client);

    let (stats, ring) = send_through(&lab, RING, frames.clone(), 50);
    assert!(ring, "{test}: no transmit ring");
    let via_ring = read_frames(fd, n);
    assert_eq!(via_ring.len(), n, "{test}: ring frames lost");
    assert!(
        via_ring == frames,
        "{test}: ring frames differ or reordered"
    );
    assert_eq!(stats.tx_frames, [n as u64, 0], "{test}: {stats:?}");
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!(stats.tx_bytes, [bytes, 0], "{test}: {stats:?}");
    assert_eq!(
        (stats.tx_errors, stats.tx_copied, stats.tx_retries),
        (0, 0, 0),
        "{test}: {stats:?}"
    );

    // The default options are the copy path (`sendmmsg`, no `--tx-ring`).
    let (stats, ring) = send_through(&lab, TxOptions::default(), frames.clone(), 50);
    assert!(!ring, "{test}: the default options used a transmit ring");
    let via_copy = read_frames(fd, n);
    assert_eq!(via_copy.len(), n, "{test}: copy-path frames lost");
    assert!(
        via_copy == via_ring,
        "{test}: the two paths sent different frames"
    );
    assert_eq!(stats.tx_frames, [n as u64, 0], "{test}: {stats:?}");
    assert_eq!(read_stray(fd), 0, "{test}: frames sent twice");
    close(fd);
}

/// The far end goes down, so the kernel refuses every frame: the ring fills (refusals
/// counted, its frames kept in order), the frames after it take the copy path and are
/// counted as copied and failed. When the link is back, one flush sends the ring's frames,
/// all of them, in order and once; the ring then takes new frames again.
#[test]
fn a_full_tx_ring_keeps_its_frames_in_order_and_falls_back() {
    let test = "a_full_tx_ring_keeps_its_frames_in_order_and_falls_back";
    if should_skip(test) {
        return;
    }
    let _guard = serial();
    let lab = Lab::up("afpacket");
    let (client, _) = lab.host_links();
    let (outside, inside) = lab.ports();
    let slots = tx_ring_frames(1500);
    let extra = 40;
    let fd = reader(&lab, Host::Out, &client);
    link_set(&lab, Host::Out, &client, "down");
    let frames: Vec<Vec<u8>> = (0..(slots + extra + 10) as u32)
        .map(|s| frame(s, length(s)))
        .collect();
    let (down, up) = {
        let frames = frames.clone();
        let ns_out = lab.ns(Host::Out);
        lab.in_ns(Host::Bridge, move || {
            let mut b = AfPacketBackend::open_with(&outside, &inside, None, RING).expect("open");
            assert!(b.uses_tx_rings());
            for chunk in frames.get(..slots + extra).unwrap_or_default().chunks(64) {
                for f in chunk {
                    b.send(Side::Outside, f).expect("send");
                }
                b.flush().expect("flush");
            }
            let down = b.io_stats();
            let ok = std::process::Command::new("ip")
                .args(["-n", &ns_out, "link", "set", &client, "up"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "link back up");
            // The carrier comes back at once on veth; allow the kernel a moment.
            std::thread::sleep(Duration::from_millis(200));
            b.flush().expect("flush");
            for f in frames.get(slots + extra..).unwrap_or_default() {
                b.send(Side::Outside, f).expect("send");
            }
            b.flush().expect("flush");
            (down, b.io_stats())
        })
    };
    assert_eq!(down.tx_frames, [0, 0], "{test}: sent while down: {down:?}");
    assert!(
        down.tx_retries > 0,
        "{test}: refusals not counted: {down:?}"
    );
    assert_eq!(down.tx_copied, extra as u64, "{test}: {down:?}");
    assert_eq!(down.tx_errors, extra as u64, "{test}: {down:?}");
    let want: Vec<Vec<u8>> = frames
        .get(..slots)
        .unwrap_or_default()
        .iter()
        .chain(frames.get(slots + extra..).unwrap_or_default())
        .cloned()
        .collect();
    let got = read_frames(fd, want.len());
    assert_eq!(
        got.len(),
        want.len(),
        "{test}: frames lost after the link came back"
    );
    assert!(got == want, "{test}: ring frames reordered or changed");
    assert_eq!(up.tx_frames, [want.len() as u64, 0], "{test}: {up:?}");
    assert_eq!(
        (up.tx_copied, up.tx_errors),
        (extra as u64, extra as u64),
        "{test}: {up:?}"
    );
    assert_eq!(read_stray(fd), 0, "{test}: frames sent twice");
    close(fd);
}

/// Frames longer than the ring's slots (the MTU is raised after the backend sized its
/// rings for 1500) take the copy path; frames queued behind them until the next flush go
/// the same way, so the order on the wire is the order sent.
#[test]
fn frames_the_tx_ring_does_not_take_go_the_copy_path_in_order() {
    let test = "frames_the_tx_ring_does_not_take_go_the_copy_path_in_order";
    if should_skip(test) {
        return;
    }
    let _guard = serial();
    let lab = Lab::up("afpacket");
    let (client, _) = lab.host_links();
    let (outside, inside) = lab.ports();
    let fd = reader(&lab, Host::Out, &client);
    let frames = vec![
        frame(0, 100),
        frame(1, 4014),
        frame(2, 60),
        frame(3, 1514),
        frame(4, 200),
        frame(5, 9014),
    ];
    let stats = {
        let frames = frames.clone();
        let link = lab.ns(Host::Out);
        let (o1, i1) = (outside.clone(), inside.clone());
        lab.in_ns(Host::Bridge, move || {
            let mut b = AfPacketBackend::open_with(&o1, &i1, None, RING).expect("open");
            assert!(b.uses_tx_rings());
            for (ns, dev) in [(None, &o1), (Some(&link), &client)] {
                let mut cmd = std::process::Command::new("ip");
                if let Some(ns) = ns {
                    cmd.args(["-n", ns]);
                }
                let ok = cmd
                    .args(["link", "set", dev, "mtu", "9000"])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "mtu 9000 on {dev}");
            }
            // Groups: [0 ring, 1 copy, 2 and 3 behind it], [4 ring], [5 copy].
            for group in [&frames[..4], &frames[4..5], &frames[5..]] {
                for f in group {
                    b.send(Side::Outside, f).expect("send");
                }
                b.flush().expect("flush");
            }
            b.io_stats()
        })
    };
    let got = read_frames(fd, frames.len());
    let lens: Vec<usize> = got.iter().map(Vec::len).collect();
    assert!(got == frames, "{test}: got frames of {lens:?}: {stats:?}");
    assert_eq!(stats.tx_frames, [6, 0], "{test}: {stats:?}");
    assert_eq!(stats.tx_copied, 4, "{test}: {stats:?}");
    assert_eq!(stats.tx_errors, 0, "{test}: {stats:?}");
    close(fd);
}
