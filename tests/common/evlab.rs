//! The live evasion lab: a client namespace, the real `mailguard bridge` (AF_PACKET) in a
//! namespace of its own, and a server namespace, joined by two veth pairs; a recording SMTP
//! server in the server namespace and an attacker that crafts TCP segments itself.
//!
//! ```text
//!   P-c  client 198.18.77.1/24  Pc0 --veth-- Pc1 \
//!   P-b  mailguard bridge --outside Pc1 --inside Ps1     (no addresses)
//!   P-s  server 198.18.77.2/24  Ps0 --veth-- Ps1 /   RecServer on :25
//! ```
//!
//! Choices made here:
//! - **The attacker** ([`Attacker`]) writes Ethernet frames on `Pc0` with an AF_PACKET socket
//!   and reads the server's answers on the same socket. It uses the address 198.18.77.10,
//!   which no kernel in the lab owns: the client kernel, which sees the server's answers to
//!   it, drops them (no forwarding in a fresh namespace) instead of resetting a connection it
//!   does not know, so no firewall rule is needed. The server reaches it through a permanent
//!   neighbour entry (the MAC of `Pc0`). Frames come from `tests/common/evasion.rs`'s builder
//!   (the in-process suite's), re-addressed by [`retarget`].
//! - **The server** ([`RecServer`]) is a real Linux TCP listener whose SMTP behaviour is the
//!   in-process suite's lenient, vulnerable model ([`SmtpServer`]): it answers what that model
//!   answers (354 or 503 to DATA, 220 to STARTTLS, `250 executed` to a blocked verb...), and
//!   records, per client port, every byte its socket delivered and every verb the model ran.
//!   Those bytes, what the server's kernel handed to the application, are what the cases check.
//!   It delays its `220` to STARTTLS by 300 ms, so that bytes pipelined behind STARTTLS always
//!   reach the filter before that answer (the case the filter must drop them in).
//! - The lab uses 198.18.77.0/24, which no other test uses; everything it creates carries the
//!   prefix `P` (`ev` + pid + serial) and is removed on drop; every wait is bounded.

#![allow(dead_code)]

use super::evasion::{build, fold, ones_sum, Flow, Seg, SmtpServer, HELO};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The client host's address (a real Linux TCP client).
pub const CLIENT_IP: [u8; 4] = [198, 18, 77, 1];
/// The server's address (the [`RecServer`] listens on port 25).
pub const SERVER_IP: [u8; 4] = [198, 18, 77, 2];
/// The attacker's address: owned by no kernel in the lab.
pub const ATTACKER_IP: [u8; 4] = [198, 18, 77, 10];
/// `SERVER_IP` as text.
pub const SERVER: &str = "198.18.77.2";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Why the live lab cannot run here, if it cannot: not root, no `ip netns`, a program missing.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the live lab needs root (network namespaces)".into());
    }
    if !sh(&["ip", "netns", "list"], 10).0 {
        return Some("`ip netns` does not work here".into());
    }
    for prog in ["ethtool", "ping"] {
        if !sh(&["sh", "-c", &format!("command -v {prog}")], 10).0 {
            return Some(format!("{prog} is not installed (scripts/install-deps.sh)"));
        }
    }
    None
}

/// The bridge binary under test.
pub fn mailguard_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mailguard")
}

/// Runs a command with a time limit; returns (success, stdout + stderr).
fn sh(args: &[&str], limit_secs: u32) -> (bool, String) {
    let out = Command::new("timeout")
        .arg(limit_secs.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("{e}")),
    }
}

/// Runs a command that must succeed.
fn must(args: &[&str]) {
    let (ok, out) = sh(args, 20);
    assert!(ok, "{}: {out}", args.join(" "));
}

/// Runs `f` on a new thread that joined the network namespace `ns` (by name).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_ns(ns, f)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Spawns a thread that joins the network namespace `ns` and runs `f`.
fn spawn_in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open the namespace");
        // SAFETY: setns on a namespace fd we hold; it affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// Parses `aa:bb:cc:dd:ee:ff`.
fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(text.trim().split(':')) {
        *slot = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    mac
}

/// The three namespaces, the links, the recording server and (when started) the bridge.
pub struct EvLab {
    prefix: String,
    dir: PathBuf,
    bridge: Option<Child>,
    /// The recording server in the server namespace.
    pub server: Option<RecServer>,
    /// MAC of the client host's link (the attacker's source MAC).
    pub client_mac: [u8; 6],
    /// MAC of the server's link.
    pub server_mac: [u8; 6],
    next_port: u16,
}

impl EvLab {
    /// Builds the namespaces and links and starts the recording server (no bridge yet).
    pub fn up() -> EvLab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("ev{}{}", std::process::id() % 10000, n % 10);
        let dir = std::env::temp_dir().join(format!("{prefix}-evlab"));
        let _ = std::fs::create_dir_all(&dir);
        let mut lab = EvLab {
            prefix,
            dir,
            bridge: None,
            server: None,
            client_mac: [0; 6],
            server_mac: [0; 6],
            next_port: 20_000,
        };
        let p = lab.prefix.clone();
        let (c, b, s) = (lab.ns('c'), lab.ns('b'), lab.ns('s'));
        for ns in [&c, &b, &s] {
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let (c0, c1, s0, s1) = (
            format!("{p}c0"),
            format!("{p}c1"),
            format!("{p}s0"),
            format!("{p}s1"),
        );
        must(&[
            "ip", "link", "add", &c0, "netns", &c, "type", "veth", "peer", "name", &c1, "netns", &b,
        ]);
        must(&[
            "ip", "link", "add", &s0, "netns", &s, "type", "veth", "peer", "name", &s1, "netns", &b,
        ]);
        must(&["ip", "-n", &c, "addr", "add", "198.18.77.1/24", "dev", &c0]);
        must(&["ip", "-n", &s, "addr", "add", "198.18.77.2/24", "dev", &s0]);
        for (ns, link) in [(&c, &c0), (&s, &s0), (&b, &c1), (&b, &s1)] {
            // Offloads would hand the bridge super-frames and partial checksums.
            let _ = sh(
                &[
                    "ip", "netns", "exec", ns, "ethtool", "-K", link, "tx", "off", "tso", "off",
                    "gso", "off", "gro", "off",
                ],
                10,
            );
            must(&["ip", "-n", ns, "link", "set", link, "up"]);
        }
        let mac = |ns: &str, link: &str| {
            let (_, out) = sh(
                &[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "cat",
                    &format!("/sys/class/net/{link}/address"),
                ],
                5,
            );
            parse_mac(&out)
        };
        lab.client_mac = mac(&c, &c0);
        lab.server_mac = mac(&s, &s0);
        let attacker = format!(
            "{}.{}.{}.{}",
            ATTACKER_IP[0], ATTACKER_IP[1], ATTACKER_IP[2], ATTACKER_IP[3]
        );
        let lladdr = lab
            .client_mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        must(&[
            "ip",
            "-n",
            &s,
            "neigh",
            "replace",
            &attacker,
            "lladdr",
            &lladdr,
            "dev",
            &s0,
            "nud",
            "permanent",
        ]);
        lab.server = Some(RecServer::start(&s));
        lab
    }

    /// The namespace `c` (client), `b` (bridge) or `s` (server).
    pub fn ns(&self, which: char) -> String {
        format!("{}-{which}", self.prefix)
    }

    /// The client host's link (where the attacker writes).
    pub fn client_link(&self) -> String {
        format!("{}c0", self.prefix)
    }

    /// A client port no earlier connection of this lab used.
    pub fn fresh_port(&mut self) -> u16 {
        self.next_port = self.next_port.wrapping_add(1).max(20_000);
        self.next_port
    }

    /// The recording server.
    pub fn server(&self) -> &RecServer {
        self.server
            .as_ref()
            .expect("the server runs while the lab is up")
    }

    /// Starts `mailguard bridge --profile profile` (AF_PACKET, one worker) and waits until a
    /// ping crosses it. Its output goes to a file (see [`EvLab::bridge_log`]).
    pub fn start_bridge(&mut self, profile: &str) {
        self.stop_bridge();
        let log = self.dir.join(format!("bridge-{profile}.log"));
        let file = File::create(&log).expect("bridge log");
        let err = file.try_clone().expect("bridge log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns('b'), mailguard_bin()])
            .arg("bridge")
            .args(["--outside", &format!("{}c1", self.prefix)])
            .args(["--inside", &format!("{}s1", self.prefix)])
            .args(["--backend", "afpacket", "--workers", "1"])
            .args(["--profile", profile])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("start mailguard bridge");
        self.bridge = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (ok, _) = sh(
                &[
                    "ip",
                    "netns",
                    "exec",
                    &self.ns('c'),
                    "ping",
                    "-c1",
                    "-W1",
                    SERVER,
                ],
                3,
            );
            if ok {
                return;
            }
            if let Some(Ok(Some(status))) = self.bridge.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "mailguard exited early ({status}): {}",
                    self.bridge_log(profile)
                );
            }
            assert!(
                Instant::now() < deadline,
                "no ping crossed the bridge within 15 s ({profile})"
            );
        }
    }

    /// What the bridge printed under `profile`.
    pub fn bridge_log(&self, profile: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("bridge-{profile}.log"))).unwrap_or_default()
    }

    /// Stops the bridge (SIGTERM, SIGKILL after 10 s); true if it exited successfully.
    pub fn stop_bridge(&mut self) -> bool {
        let Some(mut child) = self.bridge.take() else {
            return true;
        };
        // SAFETY: signalling our own child, not yet reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return s.success(),
                _ if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// A raw TCP connection from the attacker's address to the server, on a fresh port.
    pub fn attacker(&mut self) -> Attacker {
        let port = self.fresh_port();
        let link = self.client_link();
        let (src, dst) = (self.client_mac, self.server_mac);
        in_ns(&self.ns('c'), move || Attacker::open(&link, src, dst, port))
    }
}

impl Drop for EvLab {
    fn drop(&mut self) {
        self.stop_bridge();
        if let Some(s) = self.server.take() {
            s.stop();
        }
        for which in ['c', 'b', 's'] {
            let _ = sh(&["ip", "netns", "del", &self.ns(which)], 10);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// The recording server.

/// How a server connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The server executed QUIT, answered and closed.
    Quit,
    /// The client closed (FIN): the server read end of file.
    Eof,
    /// The connection was reset.
    Reset,
    /// Another error, or the server's time limit (20 s) ran out.
    Other(String),
}

/// What the server saw on one connection.
#[derive(Clone, Debug, Default)]
pub struct ConnRecord {
    /// Every byte the socket delivered, in order.
    pub received: Vec<u8>,
    /// Verbs the lenient model executed.
    pub executed: Vec<String>,
    /// Set when the connection is over.
    pub end: Option<End>,
}

/// A TCP listener on 198.18.77.2:25 answering as [`SmtpServer`] and recording per client port.
pub struct RecServer {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u16, ConnRecord>>>,
    thread: Option<JoinHandle<()>>,
}

impl RecServer {
    /// Starts listening inside namespace `ns`.
    pub fn start(ns: &str) -> RecServer {
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<HashMap<u16, ConnRecord>>> = Arc::default();
        let listener =
            in_ns(ns, || TcpListener::bind(format!("{SERVER}:25"))).expect("bind 198.18.77.2:25");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            let mut handlers = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        let (stop3, conns3) = (stop2.clone(), conns2.clone());
                        handlers.push(std::thread::spawn(move || {
                            serve(stream, peer, &stop3, &conns3)
                        }));
                        handlers.retain(|h| !h.is_finished());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for h in handlers {
                let _ = h.join();
            }
        });
        RecServer {
            stop,
            conns,
            thread: Some(thread),
        }
    }

    /// The record of the connection from client port `port`, if one was accepted.
    pub fn record(&self, port: u16) -> Option<ConnRecord> {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&port)
            .cloned()
    }

    /// Waits up to `limit` for the connection from `port` to end; returns its record.
    pub fn wait_end(&self, port: u16, limit: Duration) -> Option<ConnRecord> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.record(port);
            if r.as_ref().is_some_and(|r| r.end.is_some()) || Instant::now() >= deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the listener and every connection handler.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RecServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answer to STARTTLS, which the server sends late (see the module docs).
const STARTTLS_REPLY: &[u8] = b"220 2.0.0 ready to start TLS\r\n";

/// One connection: greet, then read, record, let the model answer, until QUIT, EOF, a reset,
/// the stop flag or 20 s.
fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    stop: &AtomicBool,
    conns: &Mutex<HashMap<u16, ConnRecord>>,
) {
    let port = peer.port();
    let update = |f: &mut dyn FnMut(&mut ConnRecord)| {
        let mut map = conns.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(port).or_default());
    };
    update(&mut |r| *r = ConnRecord::default());
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut model = SmtpServer::default();
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        if !model.pending.is_empty() {
            if model.pending.ends_with(STARTTLS_REPLY) {
                std::thread::sleep(Duration::from_millis(300));
            }
            let out = std::mem::take(&mut model.pending);
            if let Err(e) = stream.write_all(&out) {
                break End::Other(format!("write: {e}"));
            }
        }
        if model.ran("QUIT") {
            break End::Quit;
        }
        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            break End::Other("server time limit".into());
        }
        match stream.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) => {
                let got = buf.get(..n).unwrap_or_default();
                all.extend_from_slice(got);
                model.process(&all);
                let executed = model.executed.clone();
                update(&mut |r| {
                    r.received.extend_from_slice(got);
                    r.executed = executed.clone();
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break End::Reset,
            Err(e) => break End::Other(format!("read: {e}")),
        }
    };
    drop(stream);
    update(&mut |r| r.end = Some(end.clone()));
}

// ---------------------------------------------------------------------------------------------
// The attacker.

/// Rewrites the addresses of a frame built by [`build`] (IPv4, no IP options) and recomputes
/// its IPv4 header and TCP checksums.
pub fn retarget(frame: &mut [u8], macs: ([u8; 6], [u8; 6]), ips: ([u8; 4], [u8; 4]), sport: u16) {
    if frame.len() < 54 {
        return;
    }
    frame[0..6].copy_from_slice(&macs.1);
    frame[6..12].copy_from_slice(&macs.0);
    frame[26..30].copy_from_slice(&ips.0);
    frame[30..34].copy_from_slice(&ips.1);
    frame[34..36].copy_from_slice(&sport.to_be_bytes());
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = fold(ones_sum(&frame[14..34], 0));
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let end = (14 + total).min(frame.len());
    frame[50..52].copy_from_slice(&[0, 0]);
    let mut acc = ones_sum(&frame[26..34], 0);
    acc += 6 + (end - 34) as u64;
    let sum = fold(ones_sum(&frame[34..end], acc));
    frame[50..52].copy_from_slice(&sum.to_be_bytes());
}

/// What the attacker learned from one frame of the server's.
#[derive(Clone, Copy, Debug, Default)]
struct Incoming {
    seq: u32,
    ack: Option<u32>,
    flags: u8,
}

/// A TCP client written by hand over an AF_PACKET socket: it sends exactly the segments a case
/// asks for (any sequence number, flags, urgent pointer, fragments, broken checksums) and
/// keeps just enough state to acknowledge what the server sends.
///
/// Client stream offset 0 is the first byte after the SYN. The initial sequence number is
/// close to the 32-bit wrap, so offsets wrap early.
pub struct Attacker {
    fd: i32,
    ifindex: i32,
    macs: ([u8; 6], [u8; 6]),
    /// The client port of this connection.
    pub port: u16,
    /// Initial sequence number.
    pub isn: u32,
    /// The server's initial sequence number, once its SYN-ACK arrived.
    pub server_isn: Option<u32>,
    /// What the server's side sent, in order (the filter's rewrites and insertions included).
    pub received: Vec<u8>,
    /// Highest client offset the server's side acknowledged (`None` before any ACK of data).
    pub acked: Option<usize>,
    /// The server's side sent FIN (all of its data received).
    pub fin: bool,
    /// The server's side sent RST.
    pub rst: bool,
    /// Byte ranges of the client stream sent so far.
    sent: Vec<(usize, usize)>,
}

/// `ETH_P_IP` in network order, for the socket's protocol.
fn eth_p_ip() -> u16 {
    (libc::ETH_P_IP as u16).to_be()
}

impl Attacker {
    /// Opens the raw socket on `link` (call inside the client namespace).
    pub fn open(link: &str, src_mac: [u8; 6], dst_mac: [u8; 6], port: u16) -> Attacker {
        let name = std::ffi::CString::new(link).expect("link name");
        // SAFETY: plain libc calls on values we own; the descriptor is closed on drop.
        let (fd, ifindex) = unsafe {
            let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            assert_ne!(ifindex, 0, "no link {link}");
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(eth_p_ip()));
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = eth_p_ip();
            sll.sll_ifindex = ifindex;
            let rc = libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 10_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            (fd, ifindex)
        };
        Attacker {
            fd,
            ifindex,
            macs: (src_mac, dst_mac),
            port,
            isn: 0xffff_ff00u32.wrapping_add(u32::from(port % 200)),
            server_isn: None,
            received: Vec::new(),
            acked: None,
            fin: false,
            rst: false,
            sent: Vec::new(),
        }
    }

    /// Sequence number of client offset `off`.
    pub fn seq(&self, off: usize) -> u32 {
        self.isn.wrapping_add(1).wrapping_add(off as u32)
    }

    /// The acknowledgement number for what was received from the server.
    fn ack_number(&self) -> Option<u32> {
        let isn = self.server_isn?;
        Some(
            isn.wrapping_add(1)
                .wrapping_add(self.received.len() as u32)
                .wrapping_add(u32::from(self.fin)),
        )
    }

    /// A data segment at client offset `off`, acknowledging what was received.
    pub fn seg(&self, off: usize, payload: &[u8]) -> Seg {
        Seg {
            from_client: true,
            seq: self.seq(off),
            ack: self.ack_number(),
            window: 65_535,
            payload: payload.to_vec(),
            ..Seg::default()
        }
    }

    /// The frame for `seg`, addressed from the attacker to the server, checksums valid.
    pub fn frame(&self, seg: &Seg) -> Vec<u8> {
        let mut f = build(Flow { v6: false }, seg);
        retarget(&mut f, self.macs, (ATTACKER_IP, SERVER_IP), self.port);
        f
    }

    /// Writes one frame on the link as is (retrying a few times while the socket's send
    /// buffer is full).
    pub fn send_frame(&self, frame: &[u8]) {
        let mut result = self.try_send_frame(frame);
        for _ in 0..50 {
            match &result {
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOBUFS)
                        || e.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                    result = self.try_send_frame(frame);
                }
                _ => break,
            }
        }
        if let Err(e) = result {
            panic!("sendto on the attacker's socket: {e}");
        }
    }

    fn try_send_frame(&self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: sendto on our socket with a sockaddr_ll we own.
        let n = unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = self.ifindex;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&self.macs.1);
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n == frame.len() as isize {
            Ok(())
        } else if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Err(std::io::Error::other(format!("sendto wrote {n} bytes")))
        }
    }

    /// Builds and sends `seg`, noting the client bytes it carries.
    pub fn push(&mut self, seg: &Seg) {
        if !seg.syn {
            let off = seg.seq.wrapping_sub(self.seq(0)) as usize;
            if off < 1 << 24 && !seg.payload.is_empty() {
                self.sent.push((off, off + seg.payload.len()));
            }
        }
        let f = self.frame(seg);
        self.send_frame(&f);
    }

    /// Sends `payload` at client offset `off` (no waiting).
    pub fn send(&mut self, off: usize, payload: &[u8]) {
        let s = self.seg(off, payload);
        self.push(&s);
    }

    /// Forgets that bytes from client offset `off` on were sent (they never reached anyone).
    pub fn forget_from(&mut self, off: usize) {
        self.sent.retain(|r| r.0 < off);
        for r in &mut self.sent {
            r.1 = r.1.min(off);
        }
    }

    /// The client offset up to which every byte was sent at least once.
    pub fn contiguous_sent(&self) -> usize {
        let mut ranges = self.sent.clone();
        ranges.sort_unstable();
        let mut end = 0;
        for (s, e) in ranges {
            if s > end {
                break;
            }
            end = end.max(e);
        }
        end
    }

    /// Reads one frame (10 ms timeout) and handles it if it is the server's, on this
    /// connection. Returns true if it was.
    fn recv_one(&mut self) -> bool {
        let mut buf = [0u8; 2048];
        // SAFETY: recv into a buffer we own.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return false;
        }
        let frame = buf.get(..n as usize).unwrap_or_default();
        let Some((inc, payload)) = self.parse(frame) else {
            return false;
        };
        self.handle(inc, &payload);
        true
    }

    /// The TCP header fields and payload of a frame from the server to this connection.
    fn parse(&self, f: &[u8]) -> Option<(Incoming, Vec<u8>)> {
        if f.get(12..14)? != [0x08, 0x00] {
            return None;
        }
        let ihl = usize::from(f.get(14)? & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([*f.get(16)?, *f.get(17)?]));
        if *f.get(23)? != 6 || f.get(26..30)? != SERVER_IP || f.get(30..34)? != ATTACKER_IP {
            return None;
        }
        if u16::from_be_bytes([*f.get(20)?, *f.get(21)?]) & 0x3fff != 0 {
            return None;
        }
        let tcp = f.get(14 + ihl..14 + total)?;
        let be16 = |o: usize| Some(u16::from_be_bytes([*tcp.get(o)?, *tcp.get(o + 1)?]));
        let be32 = |o: usize| Some(u32::from_be_bytes(tcp.get(o..o + 4)?.try_into().ok()?));
        if be16(0)? != 25 || be16(2)? != self.port {
            return None;
        }
        let doff = usize::from(tcp.get(12)? >> 4) * 4;
        let flags = *tcp.get(13)?;
        let inc = Incoming {
            seq: be32(4)?,
            ack: (flags & 0x10 != 0).then(|| be32(8)).flatten(),
            flags,
        };
        Some((inc, tcp.get(doff..)?.to_vec()))
    }

    fn handle(&mut self, inc: Incoming, payload: &[u8]) {
        if inc.flags & 0x04 != 0 {
            self.rst = true;
            return;
        }
        if inc.flags & 0x02 != 0 {
            if self.server_isn.is_none() {
                self.server_isn = Some(inc.seq);
            }
            self.note_ack(inc.ack);
            // Complete the handshake (and answer a retransmitted SYN-ACK).
            let ack = self.seg(0, b"");
            self.push(&ack);
            return;
        }
        self.note_ack(inc.ack);
        let Some(isn) = self.server_isn else {
            return;
        };
        let rel = inc.seq.wrapping_sub(isn.wrapping_add(1)) as usize;
        let have = self.received.len();
        if !payload.is_empty() && rel <= have && rel + payload.len() > have {
            self.received
                .extend_from_slice(payload.get(have - rel..).unwrap_or_default());
        }
        if inc.flags & 0x01 != 0 && rel + payload.len() == self.received.len() {
            self.fin = true;
        }
        if !payload.is_empty() || inc.flags & 0x01 != 0 {
            self.ack_now();
        }
    }

    fn note_ack(&mut self, ack: Option<u32>) {
        let Some(ack) = ack else {
            return;
        };
        let off = ack.wrapping_sub(self.seq(0)) as usize;
        if off < 1 << 24 {
            self.acked = Some(self.acked.map_or(off, |a| a.max(off)));
        }
    }

    /// A pure ACK at the offset the server acknowledged last (always inside its window).
    pub fn ack_now(&mut self) {
        let off = self.acked.unwrap_or(0);
        let s = self.seg(off, b"");
        let f = self.frame(&s);
        self.send_frame(&f);
    }

    /// Handles the server's frames until `done` holds or `limit` passes; returns `done`.
    pub fn wait(&mut self, limit: Duration, done: impl Fn(&Attacker) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.recv_one();
        }
    }

    /// Handles the server's frames for `d`.
    pub fn pump(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            self.recv_one();
        }
    }

    /// Complete replies (a line whose code is followed by a space) received so far.
    pub fn replies(&self) -> usize {
        self.received
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| l.ends_with(b"\n") && l.get(3) == Some(&b' '))
            .count()
    }

    /// Waits until `n` complete replies have arrived.
    pub fn wait_replies(&mut self, n: usize) -> bool {
        self.wait(Duration::from_secs(3), |a| a.replies() >= n)
    }

    /// Waits (up to 3 s) until the server's side acknowledged client offset `off`.
    pub fn wait_acked(&mut self, off: usize) -> bool {
        self.wait_acked_for(off, Duration::from_secs(3))
    }

    /// Waits up to `limit` until the server's side acknowledged client offset `off`: a
    /// retransmission timeout, for segments the filter may have dropped.
    pub fn wait_acked_for(&mut self, off: usize, limit: Duration) -> bool {
        self.wait(limit, |a| a.acked.is_some_and(|x| x >= off))
    }

    /// Handshake (the SYN carrying `syn_data`, retried without data if unanswered) and the
    /// greeting. Returns false if the server's side never answered.
    pub fn handshake(&mut self, syn_data: &[u8]) -> bool {
        let mut syn = Seg {
            from_client: true,
            seq: self.isn,
            syn: true,
            window: 65_535,
            payload: syn_data.to_vec(),
            ..Seg::default()
        };
        for attempt in 0..4 {
            self.push(&syn);
            if self.wait(Duration::from_millis(500 + 500 * attempt), |a| {
                a.server_isn.is_some()
            }) {
                return self.wait_replies(1);
            }
            // A filter that drops a SYN with data: retry as a client without TFO would.
            syn.payload.clear();
        }
        false
    }

    /// Handshake, greeting, `HELO` answered. Returns the next client offset.
    pub fn connect(&mut self) -> Result<usize, String> {
        if !self.handshake(b"") {
            return Err("no SYN-ACK or greeting".into());
        }
        self.send(0, HELO);
        if !self.wait_replies(2) {
            return Err(format!(
                "no reply to HELO; received {}",
                self.received.escape_ascii()
            ));
        }
        Ok(HELO.len())
    }

    /// Ends the session: `QUIT` at the end of what was sent, then FIN; waits for the server's
    /// side to close or reset (resending both once if nothing happens).
    pub fn finish(&mut self) {
        let off = self.contiguous_sent();
        let quit = b"QUIT\r\n";
        for _ in 0..3 {
            self.send(off, quit);
            let mut fin = self.seg(off + quit.len(), b"");
            fin.fin = true;
            self.push(&fin);
            if self.wait(Duration::from_secs(1), |a| a.fin || a.rst) {
                return;
            }
        }
    }

    /// Resets the connection at the offset the server acknowledged.
    pub fn abort(&mut self) {
        let mut s = self.seg(self.acked.unwrap_or(0), b"");
        s.rst = true;
        s.ack = None;
        self.push(&s);
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this value owns.
        unsafe {
            libc::close(self.fd);
        }
    }
}
