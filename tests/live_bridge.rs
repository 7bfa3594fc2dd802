//! End-to-end plumbing of the live bridge, through the real binary, with real programs on
//! both sides (swaks, smtp-sink, ping, TCP peers), for both backends and 1 and 2 workers.
//!
//! These hold whatever the engine does with SMTP: non-SMTP traffic crosses unchanged under
//! a filtering profile, the `off` profile leaves SMTP untouched (DESIGN.md §2), a client
//! typing one byte per segment gets through, the bridge stops cleanly on SIGTERM with a
//! summary and restores the offloads it turned off.
//! Needs root and network namespaces; skipped with a printed reason otherwise.

#[path = "common/lab.rs"]
mod lab;

use lab::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// `ethtool -k` of the bridge's ports, for the before/after comparison.
fn offloads(lab: &Lab) -> String {
    let (o, i) = lab.ports();
    let mut all = String::new();
    for port in [o, i] {
        let out = lab.run(
            Host::Bridge,
            &["ethtool", "-k", &port],
            Duration::from_secs(5),
        );
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

/// ICMP echo, small and fragmented (4000 bytes over a 1500 MTU), crosses and comes back
/// intact (ping checks the echoed payload pattern itself).
fn ping_crosses(lab: &Lab, what: &str) {
    for size in ["56", "1400", "4000"] {
        let out = lab.run(
            Host::Out,
            &[
                "ping", "-c3", "-i0.2", "-W2", "-p", "a55a0ff0", "-s", size, SERVER,
            ],
            Duration::from_secs(15),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && text.contains(" 0% packet loss")
                && !text.contains("wrong data"),
            "{what}: ping -s {size} through the bridge failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A TCP connection to another port (2525) carries 1 MiB each way unchanged.
fn other_tcp_port_crosses(lab: &Lab, what: &str) {
    const LEN: usize = 1 << 20;
    let data: Vec<u8> = (0..LEN as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let listener = lab.in_ns(Host::In, || {
        TcpListener::bind(format!("{SERVER}:2525")).expect("bind echo server")
    });
    let server = std::thread::spawn(move || -> std::io::Result<usize> {
        listener.set_nonblocking(false)?;
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            s.write_all(buf.get(..n).unwrap_or_default())?;
            total += n;
        }
        Ok(total)
    });
    let sent = data.clone();
    let echoed = lab.in_ns(Host::Out, move || -> std::io::Result<Vec<u8>> {
        let addr = format!("{SERVER}:2525").parse().expect("address");
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_write_timeout(Some(Duration::from_secs(20)))?;
        let mut w = s.try_clone()?;
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            w.write_all(&sent)?;
            w.shutdown(std::net::Shutdown::Write)
        });
        let mut back = Vec::new();
        (&s).read_to_end(&mut back)?;
        writer
            .join()
            .map_err(|_| std::io::Error::other("writer panicked"))??;
        Ok(back)
    });
    let echoed = echoed.unwrap_or_else(|e| panic!("{what}: TCP to port 2525 failed: {e}"));
    let served = server.join().expect("echo server thread");
    assert_eq!(
        served.ok(),
        Some(LEN),
        "{what}: server did not get every byte"
    );
    assert!(
        echoed == data,
        "{what}: bytes changed crossing on port 2525 ({} back)",
        echoed.len()
    );
}

/// Under `off`, swaks's mail arrives and the client sees the server's own greeting and
/// EHLO reply, byte for byte.
fn off_profile_untouched(lab: &Lab, what: &str) {
    lab.clear_sink();
    let t = swaks(lab, &["--header", "Subject: live off"]);
    let lines = server_lines(&t);
    assert_eq!(
        lines.first().map(String::as_str),
        Some(SINK_GREETING),
        "{what}: {t}"
    );
    for ext in [
        "250-PIPELINING",
        "250-XCLIENT NAME HELO",
        "250-ENHANCEDSTATUSCODES",
    ] {
        assert!(
            lines.iter().any(|l| l == ext),
            "{what}: {ext} missing from EHLO reply: {t}"
        );
    }
    let mails = lab.wait_mails(1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1, "{what}: mail did not arrive: {t}");
    assert!(
        mails.iter().any(|m| m.contains("Subject: live off")),
        "{what}: {mails:?}"
    );
    let cmds = lab.sink_commands();
    assert!(
        cmds.iter().any(|c| c.starts_with("EHLO ")),
        "{what}: server log {cmds:?}"
    );
}

/// A client typing one byte per segment gets a whole session through under `off`, and the
/// server sees exactly the commands typed.
fn byte_per_segment_under_off(lab: &Lab, what: &str) {
    lab.clear_sink();
    let result = lab.in_ns(Host::Out, || -> std::io::Result<String> {
        let mut c = SmtpClient::connect(&format!("{SERVER}:25"), true)?;
        c.reply()?;
        c.command("EHLO slow.example")?;
        c.command("MAIL FROM:<slow@outside.example>")?;
        c.command("RCPT TO:<bob@lab.example>")?;
        c.command("DATA")?;
        c.send_raw(b"Subject: typed slowly\r\n\r\nhello\r\n")?;
        c.command(".")?;
        c.command("QUIT")?;
        Ok(c.transcript)
    });
    let transcript = result.unwrap_or_else(|e| panic!("{what}: slow client failed: {e}"));
    let mails = lab.wait_mails(1, Duration::from_secs(10));
    assert!(
        mails.iter().any(|m| m.contains("Subject: typed slowly")),
        "{what}: mail typed byte by byte did not arrive: {transcript}"
    );
    let cmds = lab.sink_commands();
    for expected in [
        "EHLO slow.example",
        "MAIL FROM:<slow@outside.example>",
        "RCPT TO:<bob@lab.example>",
        "DATA",
    ] {
        assert!(
            cmds.iter().any(|c| c == expected),
            "{what}: server never saw {expected:?}: {cmds:?}"
        );
    }
}

fn plumbing(backend: &'static str, workers: usize) {
    let test = format!("live bridge plumbing ({backend}, {workers} worker(s))");
    if should_skip(&test) {
        return;
    }
    let _guard = serial();
    let mut lab = Lab::up(backend);
    let before = offloads(&lab);
    lab.start_bridge(&BridgeSpec::new(backend, workers, "strict"));
    let what = format!("{backend}/{workers}/strict");
    ping_crosses(&lab, &what);
    other_tcp_port_crosses(&lab, &what);
    lab.start_bridge(&BridgeSpec::new(backend, workers, "off"));
    let what = format!("{backend}/{workers}/off");
    off_profile_untouched(&lab, &what);
    byte_per_segment_under_off(&lab, &what);
    // Let at least one --stats-interval (1 s) pass so a periodic line is due.
    std::thread::sleep(Duration::from_millis(2500));
    let (status, out, err) = lab.stop_bridge().expect("bridge was running");
    assert!(status.success(), "{what}: bridge exit {status}: {out}{err}");
    assert!(
        out.contains("mailguard bridge: stopped after"),
        "{what}: no summary: {out}{err}"
    );
    assert!(
        !out.contains("rx out=0 in=0"),
        "{what}: summary counted no frames: {out}"
    );
    assert!(
        err.contains("stats: rx out="),
        "{what}: no periodic stats line: {err}"
    );
    assert_eq!(
        offloads(&lab),
        before,
        "{what}: offloads not restored at exit"
    );
}

#[test]
fn afpacket_one_worker() {
    plumbing("afpacket", 1);
}

#[test]
fn afpacket_two_workers() {
    plumbing("afpacket", 2);
}

#[test]
fn tap_one_worker() {
    plumbing("tap", 1);
}

#[test]
fn tap_two_workers() {
    plumbing("tap", 2);
}

/// Missing and down interfaces give a one-line error and a non-zero exit.
#[test]
fn clear_errors_for_missing_and_down_interfaces() {
    if should_skip("clear_errors_for_missing_and_down_interfaces") {
        return;
    }
    let _guard = serial();
    let lab = Lab::up("afpacket");
    let (o, i) = lab.ports();
    let missing = lab.run(
        Host::Bridge,
        &[
            mailguard_bin(),
            "bridge",
            "--outside",
            "nosuch0",
            "--inside",
            &i,
        ],
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert_eq!(
        err.trim(),
        "mailguard: error: interface nosuch0 does not exist"
    );
    let down = lab.run(
        Host::Bridge,
        &["ip", "link", "set", &o, "down"],
        Duration::from_secs(5),
    );
    assert!(down.status.success());
    let out = lab.run(
        Host::Bridge,
        &[mailguard_bin(), "bridge", "--outside", &o, "--inside", &i],
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let expected = format!("mailguard: error: interface {o} is down (ip link set {o} up)");
    assert_eq!(err.trim(), expected);
}

/// `[rx out, rx in, tx out, tx in]` from the bridge's summary line.
fn frame_counts(summary: &str) -> [u64; 4] {
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with("rx out="))
        .unwrap_or_else(|| panic!("no counters in the summary: {summary}"));
    let mut v = [0u64; 4];
    let numbers = line
        .split([' ', '|'])
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| *k == "out" || *k == "in")
        .filter_map(|(_, n)| n.parse().ok());
    for (slot, n) in v.iter_mut().zip(numbers) {
        *slot = n;
    }
    v
}

/// Only forwarding happened: nothing truncated or failed to send, every frame read on one
/// side was written to the other once, and the bridge never read its own frames back
/// (PACKET_IGNORE_OUTGOING).
fn assert_forwarded_only(test: &str, summary: &str) {
    assert!(
        summary.contains("truncated=0 tx-errors=0"),
        "{test}: {summary}"
    );
    let counts = frame_counts(summary);
    assert_eq!(
        counts[0], counts[3],
        "{test}: rx outside != tx inside: {summary}"
    );
    assert_eq!(
        counts[1], counts[2],
        "{test}: rx inside != tx outside: {summary}"
    );
}

/// Raises the MTU of every link of the lab to `mtu` (both hosts, the bridge's ports and,
/// for tap, the TAP devices and kernel bridges).
fn set_mtu(lab: &Lab, backend: &str, mtu: &str) {
    let (o0, i0) = lab.host_links();
    let (o1, i1) = (o0.replace("o0", "o1"), i0.replace("i0", "i1"));
    let mut links = vec![
        (Host::Out, o0),
        (Host::In, i0),
        (Host::Bridge, o1),
        (Host::Bridge, i1),
    ];
    if backend == "tap" {
        let (to, ti) = lab.ports();
        let (bo, bi) = (to.replace("to", "bo"), ti.replace("ti", "bi"));
        links.extend([
            (Host::Bridge, to),
            (Host::Bridge, ti),
            (Host::Bridge, bo),
            (Host::Bridge, bi),
        ]);
    }
    for (host, link) in links {
        let out = lab.run(
            host,
            &["ip", "link", "set", &link, "mtu", mtu],
            Duration::from_secs(5),
        );
        assert!(out.status.success(), "mtu {mtu} on {link}: {out:?}");
    }
}

/// Frames of almost 64 KiB cross whole (no truncation, none dropped as oversized), and
/// `--pcap-out` records what the bridge sent.
fn jumbo_and_pcap_out(backend: &'static str, suffix: &str) {
    let test = format!("jumbo frames and --pcap-out {suffix} ({backend})");
    if should_skip(&test) {
        return;
    }
    let _guard = serial();
    let mut lab = Lab::up(backend);
    set_mtu(&lab, backend, "65000");
    let pcap = tempfile::Builder::new()
        .suffix(suffix)
        .tempfile()
        .expect("temp file");
    let pcap_path = pcap.path().to_string_lossy().into_owned();
    let mut spec = BridgeSpec::new(backend, 1, "strict");
    spec.extra = vec!["--pcap-out".into(), pcap_path];
    lab.start_bridge(&spec);
    // 64000 bytes of ICMP payload, don't fragment: one 64042-byte frame each way.
    let out = lab.run(
        Host::Out,
        &[
            "ping", "-c2", "-i0.2", "-W2", "-M", "do", "-s", "64000", SERVER,
        ],
        Duration::from_secs(15),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(" 0% packet loss"),
        "{test}: 64000-byte ping did not cross: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, summary, err) = lab.stop_bridge().expect("bridge was running");
    assert!(status.success(), "{test}: {summary}{err}");
    assert_forwarded_only(&test, &summary);
    assert!(!summary.contains("own frames re-read"), "{test}: {summary}");

    let recorded = read_capture(pcap.path(), suffix == ".pcapng");
    const BIG: usize = 14 + 20 + 8 + 64000;
    let requests = recorded
        .iter()
        .filter(|(_, f)| f.len() == BIG && f.get(34) == Some(&8));
    let replies = recorded
        .iter()
        .filter(|(_, f)| f.len() == BIG && f.get(34) == Some(&0));
    assert_eq!(
        requests.clone().count(),
        2,
        "{test}: echo requests of {BIG} bytes in the capture"
    );
    assert_eq!(
        replies.clone().count(),
        2,
        "{test}: echo replies of {BIG} bytes in the capture"
    );
    if suffix == ".pcapng" {
        // Requests were sent to the inside (interface 1), replies to the outside (0).
        assert!(
            requests.into_iter().all(|(i, _)| *i == Some(1)),
            "{test}: request sides"
        );
        assert!(
            replies.into_iter().all(|(i, _)| *i == Some(0)),
            "{test}: reply sides"
        );
    }
}

/// The frames of a `--pcap-out` file, each with its interface id (pcapng only); every
/// record must be whole.
fn read_capture(path: &std::path::Path, pcapng: bool) -> Vec<(Option<u32>, Vec<u8>)> {
    let file = std::fs::File::open(path).expect("open --pcap-out file");
    let mut frames = Vec::new();
    if pcapng {
        let mut reader = pcap_file::pcapng::PcapNgReader::new(file).expect("a pcapng");
        let mut interfaces = 0;
        while let Some(block) = reader.next_block() {
            match block.expect("a whole block") {
                pcap_file::pcapng::Block::InterfaceDescription(_) => interfaces += 1,
                pcap_file::pcapng::Block::EnhancedPacket(p) => {
                    assert_eq!(p.original_len as usize, p.data.len(), "a record was cut");
                    frames.push((Some(p.interface_id), p.data.into_owned()));
                }
                _ => {}
            }
        }
        assert_eq!(interfaces, 2, "one interface per side");
    } else {
        let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap");
        while let Some(pkt) = reader.next_packet() {
            let pkt = pkt.expect("a whole record");
            assert_eq!(pkt.orig_len as usize, pkt.data.len(), "a record was cut");
            frames.push((None, pkt.data.into_owned()));
        }
    }
    frames
}

fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(text.split(':')) {
        *slot = u8::from_str_radix(part, 16).expect("mac byte");
    }
    mac
}

/// Sends `frame` as is on `link` with a raw socket (call from inside the namespace).
fn send_raw_frame(link: &str, frame: &[u8]) {
    let name = std::ffi::CString::new(link).expect("name");
    // SAFETY: plain libc calls on values we own; the socket is closed below.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert_ne!(ifindex, 0, "no {link}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        let n = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        libc::close(fd);
        assert_eq!(
            n,
            frame.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// 802.1Q-tagged frames cross with their tag (VLAN id and priority bits) intact, although
/// the kernel strips tags before AF_PACKET sees them (afpacket: read from the ring). tcpdump on the server side is the
/// judge (it puts the tag back from the auxiliary data on its own).
fn vlan_crosses(backend: &'static str) {
    let test = format!("vlan_crosses ({backend})");
    if should_skip(&test) {
        return;
    }
    let _guard = serial();
    let mut lab = Lab::up(backend);
    let (o0, i0) = lab.host_links();
    let (src, dst) = (
        parse_mac(&lab.mac(Host::Out, &o0)),
        parse_mac(&lab.mac(Host::In, &i0)),
    );
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(src, dst)
        .ipv4([198, 18, 1, 1], [198, 18, 1, 2], 64)
        .udp(4000, 4001)
        .write(&mut frame, b"tagged payload")
        .expect("build frame");
    // VLAN 100, priority 5: TCI 0xa064.
    frame.splice(12..12, [0x81, 0x00, 0xa0, 0x64]);
    lab.start_bridge(&BridgeSpec::new(backend, 1, "strict"));
    let pcap = tempfile::NamedTempFile::new().expect("temp file");
    let path = pcap.path().to_string_lossy().into_owned();
    let mut tcpdump = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(Host::In),
            "timeout",
            "15",
            "tcpdump",
        ])
        .args([
            "-i",
            &i0,
            "-U",
            "-c",
            "1",
            "-w",
            &path,
            "vlan and udp port 4001",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tcpdump");
    // Wait for tcpdump to listen (it says so on stderr), bounded by its own timeout.
    let mut stderr = std::io::BufReader::new(tcpdump.stderr.take().expect("stderr"));
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut stderr, &mut line);
    assert!(line.contains("listening"), "{test}: tcpdump: {line}");
    let sent = frame.clone();
    let link = o0.clone();
    lab.in_ns(Host::Out, move || {
        for _ in 0..3 {
            send_raw_frame(&link, &sent);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let status = tcpdump.wait().expect("tcpdump exit");
    assert!(
        status.success(),
        "{test}: tcpdump saw no tagged frame ({status})"
    );
    let file = std::fs::File::open(pcap.path()).expect("pcap");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap header");
    let got = reader
        .next_packet()
        .expect("one frame")
        .expect("whole record");
    assert_eq!(
        got.data.as_ref(),
        frame.as_slice(),
        "{test}: the frame changed crossing"
    );
    if backend == "afpacket" {
        // The tag came back from the ring slot's header, not the recvmsg fallback.
        let (_, _, err) = lab.stop_bridge().expect("bridge was running");
        assert_ring_path(&test, &err, false);
    }
}

#[test]
fn afpacket_vlan_crosses_tagged() {
    vlan_crosses("afpacket");
}

#[test]
fn tap_vlan_crosses_tagged() {
    vlan_crosses("tap");
}

/// A bridge port going down and up again does not stop the bridge: traffic crosses again.
#[test]
fn afpacket_survives_a_port_going_down_and_up() {
    let test = "afpacket_survives_a_port_going_down_and_up";
    if should_skip(test) {
        return;
    }
    let _guard = serial();
    let mut lab = Lab::up("afpacket");
    lab.start_bridge(&BridgeSpec::new("afpacket", 2, "strict"));
    let (o1, _) = lab.ports();
    for state in ["down", "up"] {
        let out = lab.run(
            Host::Bridge,
            &["ip", "link", "set", &o1, state],
            Duration::from_secs(5),
        );
        assert!(out.status.success(), "{test}: link {state}: {out:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    ping_crosses(&lab, test);
    let (status, summary, err) = lab.stop_bridge().expect("bridge was running");
    assert!(
        status.success(),
        "{test}: the bridge did not survive: {summary}{err}"
    );
}

#[test]
fn afpacket_jumbo_frames_and_pcap_out() {
    jumbo_and_pcap_out("afpacket", ".pcap");
}

#[test]
fn tap_jumbo_frames_and_pcap_out() {
    jumbo_and_pcap_out("tap", ".pcapng");
}

/// With the tap backend, missing TAP devices are created (multi-queue for 2 workers) and
/// brought up; SIGINT stops the bridge with a summary and the devices go away with it.
#[test]
fn tap_devices_are_created_and_sigint_stops_cleanly() {
    let test = "tap_devices_are_created_and_sigint_stops_cleanly";
    if should_skip(test) {
        return;
    }
    let _guard = serial();
    let lab = Lab::up("afpacket");
    let ns = lab.ns(Host::Bridge);
    let (a, b) = ("mgnewtapa", "mgnewtapb");
    let mut child = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            mailguard_bin(),
            "bridge",
            "--backend",
            "tap",
        ])
        .args(["--outside", a, "--inside", b, "--workers", "2"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start bridge");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let link_up = |name: &str| {
        let out = lab.run(
            Host::Bridge,
            &["ip", "-d", "link", "show", name],
            Duration::from_secs(5),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success() && text.contains(",UP") && text.contains("multi_queue"),
            text,
        )
    };
    loop {
        let (ok_a, ta) = link_up(a);
        let (ok_b, tb) = link_up(b);
        if ok_a && ok_b {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("bridge output");
            panic!(
                "{test}: TAP devices not created up and multi-queue: {ta}{tb}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{test}: bridge did not stop on SIGINT within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("bridge output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{test}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("mailguard bridge: stopped after"),
        "{test}: {stdout}"
    );
    for name in [a, b] {
        let out = lab.run(
            Host::Bridge,
            &["ip", "link", "show", name],
            Duration::from_secs(5),
        );
        assert!(!out.status.success(), "{test}: {name} outlived the bridge");
    }
}

/// The afpacket bridge logged that it reads through receive rings (not the `recvmsg`
/// fallback) and writes through transmit rings (`tx_ring`, `--tx-ring`) or `sendmmsg`
/// (the default), so the ring tests below test the path they mean to.
fn assert_ring_path(test: &str, err: &str, tx_ring: bool) {
    let send = if tx_ring {
        "transmit rings (TPACKET_V2)"
    } else {
        "sendmmsg"
    };
    assert!(
        err.contains(&format!("afpacket: receive rings (TPACKET_V2), {send}")),
        "{test}: the bridge did not read through its rings and send by {send}: {err}"
    );
}

/// A one-worker strict afpacket bridge sending through transmit rings with qdisc bypass.
fn tx_ring_spec() -> BridgeSpec {
    let mut spec = BridgeSpec::new("afpacket", 1, "strict");
    spec.extra = vec!["--tx-ring".into(), "--qdisc-bypass".into()];
    spec
}

/// Byte `i` of the stream the ring test sends.
fn stream_byte(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 11) as u8
}

/// A TCP stream many times the receive ring crosses the afpacket bridge whole and in
/// order: the outside ring (its slot count from the library) wraps at least ten times,
/// every frame read is written once, none is cut. Bounded: TCP flow control, 120 s.
#[test]
fn afpacket_ring_wraps_many_times_under_a_bounded_load() {
    let test = "afpacket_ring_wraps_many_times_under_a_bounded_load";
    if should_skip(test) {
        return;
    }
    let _guard = serial();
    let mut lab = Lab::up("afpacket");
    lab.start_bridge(&tx_ring_spec());
    let slots = mailguard::io::afpacket::ring_frames(1500) as u64;
    // Full-MSS segments of 1448 bytes: 12 ring turns of data frames at the least.
    let len: u64 = slots * 12 * 1448;
    let listener = lab.in_ns(Host::In, || {
        TcpListener::bind(format!("{SERVER}:2525")).expect("bind sink")
    });
    let server = std::thread::spawn(move || -> std::io::Result<(u64, u64)> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut buf = vec![0u8; 65536];
        let (mut total, mut wrong) = (0u64, 0u64);
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            for &b in buf.get(..n).unwrap_or_default() {
                wrong += u64::from(b != stream_byte(total));
                total += 1;
            }
        }
        Ok((total, wrong))
    });
    let sent = lab.in_ns(Host::Out, move || -> std::io::Result<u64> {
        let addr = format!("{SERVER}:2525").parse().expect("address");
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_write_timeout(Some(Duration::from_secs(120)))?;
        let mut chunk = vec![0u8; 65536];
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(chunk.len() as u64) as usize;
            for (k, b) in chunk.iter_mut().take(n).enumerate() {
                *b = stream_byte(at + k as u64);
            }
            s.write_all(chunk.get(..n).unwrap_or_default())?;
            at += n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(at)
    });
    let sent = sent.unwrap_or_else(|e| panic!("{test}: sending failed: {e}"));
    let (got, wrong) = server
        .join()
        .expect("sink thread")
        .unwrap_or_else(|e| panic!("{test}: receiving failed: {e}"));
    assert_eq!((sent, got, wrong), (len, len, 0), "{test}: stream damaged");
    let (status, summary, err) = lab.stop_bridge().expect("bridge was running");
    assert!(status.success(), "{test}: {summary}{err}");
    assert_ring_path(test, &err, true);
    let counts = frame_counts(&summary);
    assert!(
        counts[0] >= 10 * slots,
        "{test}: only {} frames read outside for a ring of {slots}: {summary}",
        counts[0]
    );
    assert_forwarded_only(test, &summary);
}

/// Frames longer than a ring slot (the MTU is raised after the bridge sized its rings for
/// 1500) are neither cut nor lost: they take the copy path and cross whole, both ways.
#[test]
fn afpacket_frames_longer_than_a_ring_slot_cross_whole() {
    let test = "afpacket_frames_longer_than_a_ring_slot_cross_whole";
    if should_skip(test) {
        return;
    }
    let _guard = serial();
    let mut lab = Lab::up("afpacket");
    lab.start_bridge(&tx_ring_spec());
    let slot = mailguard::io::afpacket::ring_frame_size(1500);
    set_mtu(&lab, "afpacket", "9000");
    // 8000 bytes of ICMP, don't fragment: 8042-byte frames, four times a 2 KiB slot.
    let payload = 8000;
    assert!(
        14 + 28 + payload > slot,
        "{test}: frames must exceed a slot"
    );
    let out = lab.run(
        Host::Out,
        &[
            "ping", "-c3", "-i0.2", "-W2", "-M", "do", "-p", "c3a5", "-s", "8000", SERVER,
        ],
        Duration::from_secs(15),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(" 0% packet loss"),
        "{test}: 8000-byte ping did not cross: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the ring still carries ordinary frames after the copies.
    other_tcp_port_crosses(&lab, test);
    let (status, summary, err) = lab.stop_bridge().expect("bridge was running");
    assert!(status.success(), "{test}: {summary}{err}");
    assert_ring_path(test, &err, true);
    assert_forwarded_only(test, &summary);
}

/// `--busy-poll-us` at its largest: traffic crosses both ways, the option is in effect
/// (logged), and the spinning worker still sees SIGTERM and stops with a summary.
#[test]
fn afpacket_busy_poll_forwards_and_stops_cleanly() {
    let test = "afpacket_busy_poll_forwards_and_stops_cleanly";
    if should_skip(test) {
        return;
    }
    let _guard = serial();
    let mut lab = Lab::up("afpacket");
    let mut spec = BridgeSpec::new("afpacket", 1, "strict");
    spec.extra = vec!["--busy-poll-us".into(), "100000".into()];
    lab.start_bridge(&spec);
    ping_crosses(&lab, test);
    other_tcp_port_crosses(&lab, test);
    let (status, summary, err) = lab.stop_bridge().expect("bridge was running");
    assert!(status.success(), "{test}: {summary}{err}");
    assert!(
        err.contains("busy-poll 100000 us"),
        "{test}: option not in effect: {err}"
    );
    assert_ring_path(test, &err, false);
    assert!(
        summary.contains("mailguard bridge: stopped after"),
        "{test}: {summary}"
    );
    assert!(
        summary.contains("truncated=0 tx-errors=0"),
        "{test}: {summary}"
    );
}
