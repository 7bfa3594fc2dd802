//! Helpers for the live tests: a namespace lab built by `scripts/lab.sh` (unique names per
//! test), the bridge run as a child of the test, commands and closures run inside the
//! lab's namespaces, every wait bounded.
//!
//! Tests call [`skip_reason`] first and return early (printing why) when the machine cannot
//! run them: not root, no `ip netns`, missing programs.

#![allow(dead_code)]

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The client's address (outside host).
pub const CLIENT: &str = "198.18.0.1";
/// The server's address (inside host, smtp-sink on port 25).
pub const SERVER: &str = "198.18.0.2";
/// The greeting smtp-sink sends in the lab (`-h mail2000.lab.example`: its 2s and 0s show pix51's mask).
pub const SINK_GREETING: &str = "220 mail2000.lab.example ESMTP";

static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One lab at a time per test binary: the machine is small and shared.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the live tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("live tests need root (network namespaces)".into());
    }
    let ok = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !ok("ip", &["netns", "list"]) {
        return Some("`ip netns` does not work here".into());
    }
    for prog in ["swaks", "ethtool", "ping", "timeout", "tcpdump"] {
        if !ok("sh", &["-c", &format!("command -v {prog}")]) {
            return Some(format!("{prog} is not installed (scripts/install-deps.sh)"));
        }
    }
    if !Path::new("/usr/sbin/smtp-sink").exists() && !ok("sh", &["-c", "command -v smtp-sink"]) {
        return Some("smtp-sink is not installed (postfix, scripts/install-deps.sh)".into());
    }
    None
}

/// Prints the reason and returns true when the test must be skipped.
pub fn should_skip(test: &str) -> bool {
    match skip_reason() {
        Some(r) => {
            eprintln!("SKIPPED {test}: {r}");
            true
        }
        None => false,
    }
}

/// The hosts of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// The client namespace (`-out`).
    Out,
    /// The server namespace (`-in`).
    In,
    /// The namespace mailguard runs in (`-br`).
    Bridge,
}

/// How the bridge is run.
#[derive(Clone, Debug)]
pub struct BridgeSpec {
    /// `afpacket` or `tap`.
    pub backend: &'static str,
    /// Worker threads.
    pub workers: usize,
    /// Profile name.
    pub profile: &'static str,
    /// More command-line options.
    pub extra: Vec<String>,
}

impl BridgeSpec {
    /// A spec with no extra options.
    pub fn new(backend: &'static str, workers: usize, profile: &'static str) -> BridgeSpec {
        BridgeSpec {
            backend,
            workers,
            profile,
            extra: Vec::new(),
        }
    }
}

/// The four backend × worker combinations the issue asks for.
pub const COMBOS: [(&str, usize); 4] = [("afpacket", 1), ("afpacket", 2), ("tap", 1), ("tap", 2)];

/// A lab built by `scripts/lab.sh`; torn down when dropped.
pub struct Lab {
    prefix: String,
    dir: PathBuf,
    backend: &'static str,
    bridge: Option<Child>,
}

fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab.sh")
}

/// The bridge binary under test.
pub fn mailguard_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mailguard")
}

impl Lab {
    /// Builds the namespaces, links and smtp-sink for `backend` (no bridge yet).
    pub fn up(backend: &'static str) -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("m{}{}", std::process::id() % 10000, n % 100);
        let dir = std::env::temp_dir().join(format!("{prefix}-lab"));
        let lab = Lab {
            prefix,
            dir,
            backend,
            bridge: None,
        };
        let out = lab.script(&["up"]);
        assert!(
            out.status.success(),
            "lab.sh up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("60")
            .arg(lab_script())
            .args(args)
            .env("MG_PREFIX", &self.prefix)
            .env("MG_DIR", &self.dir)
            .env("MG_BACKEND", self.backend)
            .env("MG_NO_BRIDGE", "1")
            .env("MAILGUARD", mailguard_bin())
            .output()
            .expect("run scripts/lab.sh")
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: Host) -> String {
        let suffix = match host {
            Host::Out => "out",
            Host::In => "in",
            Host::Bridge => "br",
        };
        format!("{}-{suffix}", self.prefix)
    }

    /// The interface names mailguard bridges: (outside, inside).
    pub fn ports(&self) -> (String, String) {
        if self.backend == "tap" {
            (format!("{}to", self.prefix), format!("{}ti", self.prefix))
        } else {
            (format!("{}o1", self.prefix), format!("{}i1", self.prefix))
        }
    }

    /// The client's and server's interfaces: (outside host's, inside host's).
    pub fn host_links(&self) -> (String, String) {
        (format!("{}o0", self.prefix), format!("{}i0", self.prefix))
    }

    /// Runs `args` in `host`'s namespace, killed after `limit`.
    pub fn run(&self, host: Host, args: &[&str], limit: Duration) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(host), "timeout"])
            .arg(format!("{}", limit.as_secs().max(1)))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec")
    }

    /// Starts the bridge with `spec` and waits until a ping crosses it.
    pub fn start_bridge(&mut self, spec: &BridgeSpec) {
        self.stop_bridge();
        let (outside, inside) = self.ports();
        let workers = spec.workers.to_string();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.ns(Host::Bridge),
            mailguard_bin(),
            "bridge",
        ])
        .args(["--outside", &outside, "--inside", &inside])
        .args(["--backend", spec.backend, "--workers", &workers])
        .args(["--profile", spec.profile, "--stats-interval", "1"])
        .args(&spec.extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let child = cmd.spawn().expect("start mailguard bridge");
        self.bridge = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ping = self.run(
                Host::Out,
                &["ping", "-c1", "-W1", SERVER],
                Duration::from_secs(3),
            );
            if ping.status.success() {
                return;
            }
            if let Some(Ok(Some(status))) = self.bridge.as_mut().map(|c| c.try_wait()) {
                let (out, err) = self.take_bridge_output();
                panic!("mailguard exited early ({status}): {out}{err}");
            }
            assert!(
                Instant::now() < deadline,
                "no ping crossed the bridge within 15 s ({spec:?})"
            );
        }
    }

    fn take_bridge_output(&mut self) -> (String, String) {
        let Some(child) = self.bridge.as_mut() else {
            return (String::new(), String::new());
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        (out, err)
    }

    /// Stops the bridge with SIGTERM (SIGKILL after 10 s); returns its exit status, stdout
    /// and stderr, or `None` if no bridge was running.
    pub fn stop_bridge(&mut self) -> Option<(ExitStatus, String, String)> {
        let child = self.bridge.as_mut()?;
        let pid = child.id() as libc::pid_t;
        // SAFETY: `pid` is our own child, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                _ if Instant::now() >= deadline => {
                    let _ = child.kill();
                    break child.wait().expect("wait for killed mailguard");
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let (out, err) = self.take_bridge_output();
        self.bridge = None;
        Some((status, out, err))
    }

    /// What smtp-sink logged (`-v`: every command line it received).
    pub fn sink_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("smtp-sink.log")).unwrap_or_default()
    }

    /// The command lines smtp-sink received, in order, since the log was last cleared.
    pub fn sink_commands(&self) -> Vec<String> {
        self.sink_log()
            .lines()
            .filter_map(|l| {
                l.strip_prefix("/usr/sbin/smtp-sink: ")
                    .or(l.strip_prefix("smtp-sink: "))
            })
            .filter(|l| {
                ![
                    "name_mask",
                    "trying",
                    "connect",
                    "vstream",
                    "fd=",
                    "smtp_stream",
                    "disconnect",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            .map(str::to_string)
            .collect()
    }

    /// Empties smtp-sink's log and the received mail.
    pub fn clear_sink(&self) {
        let _ = std::fs::write(self.dir.join("smtp-sink.log"), "");
        if let Ok(rd) = std::fs::read_dir(self.dir.join("mail")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// The mails smtp-sink accepted (dump files, envelope and message).
    pub fn mails(&self) -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(self.dir.join("mail"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v.iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    /// Waits up to `limit` until `n` mails have arrived; returns them.
    pub fn wait_mails(&self, n: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let m = self.mails();
            if m.len() >= n || Instant::now() >= deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `f` on a thread that has joined `host`'s network namespace.
    pub fn in_ns<T: Send + 'static>(
        &self,
        host: Host,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/var/run/netns/{}", self.ns(host));
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            // SAFETY: setns on a namespace fd we hold; affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// The MAC address of `link` in `host`.
    pub fn mac(&self, host: Host, link: &str) -> String {
        let out = self.run(
            host,
            &["cat", &format!("/sys/class/net/{link}/address")],
            Duration::from_secs(5),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.stop_bridge();
        let _ = self.script(&["down"]);
    }
}

/// The name swaks greets with (fixed, so X-ed lengths do not depend on the host name).
pub const SWAKS_HELO: &str = "client.example";

/// swaks from the client to the lab's smtp-sink; returns its transcript (stdout + stderr).
pub fn swaks(lab: &Lab, extra: &[&str]) -> String {
    let mut args = vec![
        "swaks",
        "--server",
        SERVER,
        "--from",
        "alice@outside.example",
        "--to",
        "bob@lab.example",
        "--ehlo",
        SWAKS_HELO,
        "--timeout",
        "10",
    ];
    args.extend_from_slice(extra);
    let out = lab.run(Host::Out, &args, Duration::from_secs(40));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lines the server sent in a swaks transcript (`<-  ` and `<** ` lines), text only.
pub fn server_lines(transcript: &str) -> Vec<String> {
    transcript
        .lines()
        .filter_map(|l| l.strip_prefix("<-  ").or(l.strip_prefix("<** ")))
        .map(str::to_string)
        .collect()
}

/// A minimal SMTP client for tests, optionally typing one byte per TCP segment
/// (TCP_NODELAY, one write per byte, a short pause between writes), like telnet in
/// character mode. Every read and write has a timeout.
pub struct SmtpClient {
    stream: std::net::TcpStream,
    pending: Vec<u8>,
    byte_per_segment: bool,
    /// Everything exchanged, `C: ` and `S: ` prefixed lines.
    pub transcript: String,
}

impl SmtpClient {
    /// Connects to `addr` (call from inside the client namespace).
    pub fn connect(addr: &str, byte_per_segment: bool) -> std::io::Result<SmtpClient> {
        let addr: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
        let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(SmtpClient {
            stream,
            pending: Vec::new(),
            byte_per_segment,
            transcript: String::new(),
        })
    }

    /// Reads one whole reply (all `ddd-` lines and the final `ddd ` line).
    pub fn reply(&mut self) -> std::io::Result<String> {
        use std::io::Read as _;
        let mut reply = String::new();
        loop {
            while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line).into_owned();
                self.transcript.push_str("S: ");
                self.transcript.push_str(&text);
                reply.push_str(&text);
                let is_last = line.len() < 4 || line.get(3) != Some(&b'-');
                if is_last {
                    return Ok(reply);
                }
            }
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("connection closed; partial reply {reply:?}"),
                ));
            }
            self.pending
                .extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }

    /// Sends raw bytes (one segment per byte if so configured).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        self.transcript.push_str("C: ");
        self.transcript.push_str(&String::from_utf8_lossy(bytes));
        if self.byte_per_segment {
            for b in bytes {
                self.stream.write_all(std::slice::from_ref(b))?;
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        } else {
            self.stream.write_all(bytes)
        }
    }

    /// Sends `line` + CRLF and reads the reply.
    pub fn command(&mut self, line: &str) -> std::io::Result<String> {
        self.send_raw(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }
}
