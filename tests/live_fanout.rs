//! Both directions of every flow reach the same worker, on the kernel, for both backends:
//! the test opens two workers' ports with the library (no engine, no forwarding), sends UDP
//! flows from the client to the server and back (static neighbours, so no ARP is needed),
//! and checks which worker read each frame on each side.
//! Needs root and network namespaces; skipped with a printed reason otherwise.

#[path = "common/lab.rs"]
mod lab;

use lab::*;
use mailguard::engine::Side;
use mailguard::io::backend::{Backend, FrameBatch};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

const FLOWS: u16 = 64;
const PER_FLOW: usize = 3;

/// (client port, server port) of the UDP datagram in `frame`, if it is one of the test's.
fn udp_flow(frame: &[u8]) -> Option<(u16, u16)> {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::NetSlice::Ipv4(ip)) = sliced.net else {
        return None;
    };
    let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
        return None;
    };
    let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
    let client: Ipv4Addr = CLIENT.parse().ok()?;
    let server: Ipv4Addr = SERVER.parse().ok()?;
    if src == client && dst == server {
        Some((udp.source_port(), udp.destination_port()))
    } else if src == server && dst == client {
        Some((udp.destination_port(), udp.source_port()))
    } else {
        None
    }
}

/// Sends `PER_FLOW` datagrams per flow from `from` to `to`, ports from the flow index.
fn send_flows(local: &'static str, remote: &'static str, from_client: bool) {
    for f in 0..FLOWS {
        let (cport, sport) = (40000 + f * 7, 5000 + f);
        let (lport, rport) = if from_client {
            (cport, sport)
        } else {
            (sport, cport)
        };
        let l: Ipv4Addr = local.parse().expect("local");
        let r: Ipv4Addr = remote.parse().expect("remote");
        let sock = UdpSocket::bind(SocketAddrV4::new(l, lport)).expect("bind udp");
        for _ in 0..PER_FLOW {
            sock.send_to(b"fanout", SocketAddrV4::new(r, rport))
                .expect("send udp");
        }
    }
}

/// A TAP device gets its carrier when a queue attaches, and its kernel bridge port starts
/// forwarding a moment later (link events are deferred): wait for that, bounded.
fn wait_tap_ports_forwarding(lab: &Lab) {
    let (to, ti) = lab.ports();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for tap in [to, ti] {
        let state = format!("/sys/class/net/{tap}/brport/state");
        loop {
            let out = lab.run(Host::Bridge, &["cat", &state], Duration::from_secs(5));
            // 3 is BR_STATE_FORWARDING.
            if String::from_utf8_lossy(&out.stdout).trim() == "3" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{tap} never started forwarding in its kernel bridge"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn fanout_is_symmetric<B: Backend + 'static>(
    backend_name: &'static str,
    open: fn(&str, &str, usize) -> std::io::Result<Vec<B>>,
) {
    let test = format!("fanout_is_symmetric ({backend_name})");
    if should_skip(&test) {
        return;
    }
    let _guard = serial();
    let lab = Lab::up(backend_name);
    let (o0, i0) = lab.host_links();
    let mac_o0 = lab.mac(Host::Out, &o0);
    let mac_i0 = lab.mac(Host::In, &i0);
    for (host, ip, mac, dev) in [
        (Host::Out, SERVER, &mac_i0, &o0),
        (Host::In, CLIENT, &mac_o0, &i0),
    ] {
        let out = lab.run(
            host,
            &[
                "ip",
                "neigh",
                "replace",
                ip,
                "lladdr",
                mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ],
            Duration::from_secs(5),
        );
        assert!(out.status.success(), "static neighbour: {out:?}");
    }
    let (outside, inside) = lab.ports();
    let mut workers = lab
        .in_ns(Host::Bridge, move || open(&outside, &inside, 2))
        .unwrap_or_else(|e| panic!("{test}: opening 2 workers: {e}"));
    if backend_name == "tap" {
        wait_tap_ports_forwarding(&lab);
    }
    lab.in_ns(Host::Out, || send_flows(CLIENT, SERVER, true));
    lab.in_ns(Host::In, || send_flows(SERVER, CLIENT, false));

    // flow -> set of (worker, side) that read one of its frames.
    let mut seen: BTreeMap<(u16, u16), BTreeSet<(usize, &'static str)>> = BTreeMap::new();
    let mut batch = FrameBatch::default();
    for (w, backend) in workers.iter_mut().enumerate() {
        let mut idle_rounds = 0;
        // Every frame is queued already; stop after a few empty waits (bounded).
        for _ in 0..1000 {
            batch.clear();
            let n = backend
                .recv_batch(Some(Duration::from_millis(100)), 64, &mut batch)
                .expect("recv_batch");
            if n == 0 {
                idle_rounds += 1;
                if idle_rounds == 3 {
                    break;
                }
                continue;
            }
            idle_rounds = 0;
            for (side, frame) in batch.iter() {
                if let Some(flow) = udp_flow(frame) {
                    let s = if side == Side::Outside {
                        "outside"
                    } else {
                        "inside"
                    };
                    seen.entry(flow).or_default().insert((w, s));
                }
            }
        }
    }
    assert_eq!(
        seen.len(),
        usize::from(FLOWS),
        "{test}: flows seen {seen:?}"
    );
    let mut per_worker = [0usize; 2];
    for (flow, readers) in &seen {
        let workers: BTreeSet<usize> = readers.iter().map(|r| r.0).collect();
        let sides: BTreeSet<&str> = readers.iter().map(|r| r.1).collect();
        assert_eq!(
            sides.len(),
            2,
            "{test}: flow {flow:?} not seen in both directions: {readers:?}"
        );
        assert_eq!(
            workers.len(),
            1,
            "{test}: flow {flow:?} split across workers: {readers:?}"
        );
        for w in workers {
            if let Some(c) = per_worker.get_mut(w) {
                *c += 1;
            }
        }
    }
    assert!(
        per_worker.iter().all(|&c| c > 0),
        "{test}: one worker got every flow ({per_worker:?}): no fanout at all"
    );
}

#[test]
fn afpacket_fanout_is_symmetric() {
    fanout_is_symmetric("afpacket", mailguard::io::afpacket::open_workers);
}

#[test]
fn tap_queues_are_symmetric() {
    fanout_is_symmetric("tap", mailguard::io::tap::open_workers);
}
