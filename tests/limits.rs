//! Resource bounds (issue 7): which connection eviction takes and which it keeps, the memory
//! ceiling (including a connection growing past it), and a 1,000,000-connection half-open
//! SYN flood replayed by the real `mailguard replay` binary next to legitimate SMTP sessions,
//! whose output must be exactly what it is without the flood.
//!
//! No test times anything: bounds are checked on the engine's own accounting and on the
//! replay child's peak RSS (`wait4`'s rusage of that child alone).

use etherparse::PacketBuilder;
use mailguard::engine::{
    DropReason, Engine, EngineConfig, EvictClass, FrameSink, Limits, Side, Stats, Time, Verdict,
};
use mailguard::io::pcap::CaptureReader;
use mailguard::wire::{classify, Classified};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SERVER: [u8; 4] = [198, 18, 0, 25];
const SEC: u64 = 1_000_000_000;

/// One client connection to SERVER:25, its frames built with etherparse.
#[derive(Clone, Copy)]
struct Flow {
    host: u8,
    port: u16,
    c_isn: u32,
    s_isn: u32,
}

impl Flow {
    fn new(host: u8) -> Flow {
        Flow {
            host,
            port: 40_000 + u16::from(host),
            c_isn: 1000 * u32::from(host),
            s_isn: 7_000_000 + u32::from(host),
        }
    }

    fn frame(
        &self,
        from_client: bool,
        seq: u32,
        ack: Option<u32>,
        syn: bool,
        data: &[u8],
    ) -> Vec<u8> {
        let client = [198, 18, 1, self.host];
        let (src, dst, sp, dp) = if from_client {
            (client, SERVER, self.port, 25)
        } else {
            (SERVER, client, 25, self.port)
        };
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, seq, 64_000);
        let b = if syn { b.syn() } else { b };
        let b = match ack {
            Some(a) => b.ack(a),
            None => b,
        };
        let mut v = Vec::new();
        b.write(&mut v, data).expect("build frame");
        v
    }

    fn syn(&self) -> Vec<u8> {
        self.frame(true, self.c_isn, None, true, b"")
    }

    fn syn_ack(&self) -> Vec<u8> {
        self.frame(false, self.s_isn, Some(self.c_isn + 1), true, b"")
    }

    /// Client data at client offset `off`, acknowledging server offset `ack`.
    fn client(&self, off: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        self.frame(
            true,
            self.c_isn + 1 + off,
            Some(self.s_isn + 1 + ack),
            false,
            data,
        )
    }

    /// Server data at server offset `off`, acknowledging client offset `ack`.
    fn server(&self, off: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        self.frame(
            false,
            self.s_isn + 1 + off,
            Some(self.c_isn + 1 + ack),
            false,
            data,
        )
    }
}

struct Lab {
    e: Engine,
    sink: FrameSink,
}

impl Lab {
    fn new(limits: Limits) -> Lab {
        Lab {
            e: Engine::new(EngineConfig::default()).with_limits(limits),
            sink: FrameSink::default(),
        }
    }

    fn feed(&mut self, at_ns: u64, from_client: bool, frame: &[u8]) -> Verdict {
        self.sink.clear();
        let side = if from_client {
            Side::Outside
        } else {
            Side::Inside
        };
        self.e
            .handle_frame(Time(at_ns), side, frame, &mut self.sink)
    }

    /// A connection that carried payload: handshake, the server's banner, at `t`.
    fn session(&mut self, t: u64, f: &Flow) {
        assert!(!matches!(self.feed(t, true, &f.syn()), Verdict::Drop(_)));
        assert!(!matches!(
            self.feed(t, false, &f.syn_ack()),
            Verdict::Drop(_)
        ));
        assert!(!matches!(
            self.feed(t, true, &f.client(0, 0, b"")),
            Verdict::Drop(_)
        ));
        assert!(!matches!(
            self.feed(t, false, &f.server(0, 0, b"220 mx ESMTP\r\n")),
            Verdict::Drop(_)
        ));
    }

    fn evicted(&self, class: EvictClass) -> u64 {
        self.e.stats().evicted[class as usize]
    }
}

fn assert_accounting(s: &Stats) {
    assert_eq!(
        s.frames_in,
        s.forwarded_total() + s.rewritten + s.dropped_total(),
        "every frame in is forwarded, rewritten or dropped"
    );
}

/// Idle-first eviction: embryonic connections go before one carrying a session, the one
/// idle longest first; a session idle long enough goes once no embryonic one is left; one
/// active within the grace period never goes (the SYN is dropped instead); an evicted
/// connection's later payload is dropped as untracked, a kept one's is handled.
#[test]
fn eviction_takes_embryonic_idle_longest_first_and_spares_recent_sessions() {
    let mut lab = Lab::new(Limits {
        max_connections: 3,
        evict_grace: Duration::from_secs(1),
        ..Limits::default()
    });
    let (a, b, c, d, e, f, g) = (
        Flow::new(1),
        Flow::new(2),
        Flow::new(3),
        Flow::new(4),
        Flow::new(5),
        Flow::new(6),
        Flow::new(7),
    );
    lab.session(0, &a);
    // b: a SYN only; c: SYN and SYN-ACK, nothing more (half-open).
    assert!(!matches!(lab.feed(SEC, true, &b.syn()), Verdict::Drop(_)));
    assert!(!matches!(
        lab.feed(2 * SEC, true, &c.syn()),
        Verdict::Drop(_)
    ));
    assert!(!matches!(
        lab.feed(2 * SEC, false, &c.syn_ack()),
        Verdict::Drop(_)
    ));
    // a is active again at 5 s (its index entry still says 0 s).
    assert!(!matches!(
        lab.feed(5 * SEC, true, &a.client(0, 14, b"EHLO me\r\n")),
        Verdict::Drop(_)
    ));
    assert_eq!(lab.e.connection_count(), 3);

    // d: the table is full: b (embryonic, idle since 1 s) goes, a (a session) stays.
    assert!(!matches!(
        lab.feed(10 * SEC, true, &d.syn()),
        Verdict::Drop(_)
    ));
    assert_eq!(lab.evicted(EvictClass::Embryonic), 1);
    assert_eq!(lab.e.connection_count(), 3);
    assert_eq!(
        lab.feed(10 * SEC, true, &b.client(0, 0, b"EXPN root\r\n")),
        Verdict::Drop(DropReason::Untracked),
        "the evicted connection is forgotten"
    );
    // e: c (embryonic since 2 s) goes before d (embryonic since 10 s).
    assert!(!matches!(
        lab.feed(10 * SEC + SEC / 2, true, &e.syn()),
        Verdict::Drop(_)
    ));
    assert_eq!(lab.evicted(EvictClass::Embryonic), 2);
    // f: embryonic ones go at any age: d (10 s) before e (10.5 s); a is still kept.
    assert!(!matches!(
        lab.feed(10 * SEC + 6 * SEC / 10, true, &f.syn()),
        Verdict::Drop(_)
    ));
    assert_eq!(lab.evicted(EvictClass::Embryonic), 3);
    assert_eq!(lab.evicted(EvictClass::Active), 0);
    assert!(
        !matches!(
            lab.feed(11 * SEC, true, &a.client(9, 14, b"NOOP\r\n")),
            Verdict::Drop(_)
        ),
        "the session survived three evictions"
    );

    // Only sessions left: e and f become sessions at 11.2 s; a was last active at 11 s.
    let t = 11 * SEC + 2 * SEC / 10;
    for fl in [&e, &f] {
        assert!(!matches!(
            lab.feed(t, false, &fl.syn_ack()),
            Verdict::Drop(_)
        ));
        assert!(!matches!(
            lab.feed(t, false, &fl.server(0, 0, b"220 mx\r\n")),
            Verdict::Drop(_)
        ));
    }
    // g within the grace period of all three: dropped over-limit, nobody evicted.
    assert_eq!(
        lab.feed(11 * SEC + SEC / 2, true, &g.syn()),
        Verdict::Drop(DropReason::OverLimit)
    );
    assert_eq!(lab.e.stats().evicted_total(), 3);
    // At 12.1 s a (idle 1.1 s) is past the grace period, e and f (0.9 s) are not: a goes.
    let t = 12 * SEC + SEC / 10;
    assert!(!matches!(lab.feed(t, true, &g.syn()), Verdict::Drop(_)));
    assert_eq!(lab.evicted(EvictClass::Active), 1);
    assert_eq!(
        lab.feed(t, true, &a.client(15, 14, b"QUIT\r\n")),
        Verdict::Drop(DropReason::Untracked)
    );
    for fl in [&e, &f] {
        assert!(!matches!(
            lab.feed(t, true, &fl.client(0, 8, b"EHLO me\r\n")),
            Verdict::Drop(_)
        ));
    }
    assert_eq!(lab.e.connection_count(), 3);
    assert_accounting(lab.e.stats());
    let json = lab.e.stats().to_json();
    assert_eq!(json["evicted"]["embryonic"], 3);
    assert_eq!(json["evicted"]["active"], 1);
    assert_eq!(json["evicted"]["finished"], 0);
}

/// The memory accounted to one connection at rest, measured on a fresh engine.
fn one_connection_bytes() -> (usize, usize) {
    let mut lab = Lab::new(Limits::default());
    let empty = lab.e.memory();
    lab.feed(0, true, &Flow::new(1).syn());
    let one = lab.e.memory();
    assert!(one > empty);
    (empty, one)
}

/// Many SYNs, one per 2 s, under a ceiling that holds a few: the accounted memory never
/// passes it (peak included), old ones are evicted, nothing is dropped.
#[test]
fn memory_ceiling_bounds_the_table_by_evicting() {
    let (_, one) = one_connection_bytes();
    let ceiling = 40 * one;
    let mut lab = Lab::new(Limits {
        max_memory: ceiling,
        // None expires while the test runs: every one that goes is evicted.
        embryonic_timeout: Duration::from_secs(3600),
        ..Limits::default()
    });
    for i in 0..200u32 {
        let fl = Flow {
            host: (i % 250) as u8 + 1,
            port: 10_000 + i as u16,
            c_isn: i * 100_000,
            s_isn: 9_000_000 + i,
        };
        let v = lab.feed(u64::from(i) * 2 * SEC, true, &fl.syn());
        assert!(!matches!(v, Verdict::Drop(_)), "SYN {i}: {v:?}");
        assert!(lab.e.memory() <= ceiling, "{} > {ceiling}", lab.e.memory());
    }
    let s = lab.e.stats();
    assert!(
        s.peak_memory as usize <= ceiling,
        "peak {} > {ceiling}",
        s.peak_memory
    );
    assert!(
        s.peak_memory as usize >= ceiling / 2,
        "the ceiling was reached"
    );
    assert!(
        lab.e.connection_count() < 100,
        "{} connections under a ceiling of 40 single-connection engines",
        lab.e.connection_count()
    );
    assert_eq!(
        s.evicted[EvictClass::Embryonic as usize],
        200 - lab.e.connection_count() as u64
    );
    assert_eq!(s.dropped_total(), 0);
    assert_accounting(s);
}

/// A session buffering out-of-order bytes past the ceiling, with nothing else to evict, is
/// reset by the filter (both sides told) and forgotten; the peak stays under the ceiling.
#[test]
fn connection_growing_past_the_ceiling_is_reset() {
    let (_, one) = one_connection_bytes();
    let ceiling = 3 * one + 20_000;
    let mut lab = Lab::new(Limits {
        max_memory: ceiling,
        ..Limits::default()
    });
    let a = Flow::new(1);
    lab.session(0, &a);
    // Out of order (a hole at offset 0): held by the reassembler, 1000 bytes at a time.
    let chunk = [b'x'; 1000];
    let mut reset_at = None;
    for i in 0..100u32 {
        let v = lab.feed(SEC, true, &a.client(10 + i * 1000, 14, &chunk));
        assert!(lab.e.memory() <= ceiling);
        if lab.e.connection_count() == 0 {
            reset_at = Some((i, v, lab.sink.len()));
            break;
        }
    }
    let (i, _, rsts) = reset_at.expect("the connection was reset before 100 KB");
    assert!(i >= 10, "reset only once past the ceiling, after {i} KB");
    assert_eq!(rsts, 2, "a reset goes to both sides");
    let s = lab.e.stats();
    assert_eq!(s.resets.get("memory-ceiling"), Some(&1));
    assert!(s.peak_memory as usize <= ceiling);
    assert_accounting(s);
    assert_eq!(
        lab.feed(2 * SEC, true, &a.client(0, 14, b"EHLO me\r\n")),
        Verdict::Drop(DropReason::Untracked)
    );
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailguard"))
}

/// Runs `cmd` with its stdout to `out` and returns its peak resident set in bytes (this
/// child's alone).
fn run_measured(cmd: &mut Command, out: &Path) -> (std::process::ExitStatus, u64) {
    let child = cmd
        .stdout(std::fs::File::create(out).expect("stdout file"))
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data, filled by wait4 for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    std::mem::forget(child); // reaped above
    use std::os::unix::process::ExitStatusExt;
    (
        std::process::ExitStatus::from_raw(status),
        usage.ru_maxrss as u64 * 1024,
    )
}

/// The frames of every legitimate flow (client not in the flood's 198.19.128.0/17), in
/// order, keyed by (client, server).
fn legit_flows(path: &Path) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut r = CaptureReader::open(path).expect("open output");
    let mut flows: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    while let Some(f) = r.next_frame() {
        let f = f.expect("frame");
        let Classified::Tcp(t) = classify(&f.data) else {
            continue;
        };
        let (client, cport, server, sport) = if t.seg.dst_port == 25 {
            (t.src, t.seg.src_port, t.dst, t.seg.dst_port)
        } else {
            (t.dst, t.seg.dst_port, t.src, t.seg.src_port)
        };
        if let std::net::IpAddr::V4(v4) = client {
            let o = v4.octets();
            if o[0] == 198 && o[1] == 19 && o[2] >= 128 {
                continue;
            }
        }
        flows
            .entry(format!("{client}:{cport} {server}:{sport}"))
            .or_default()
            .push(f.data.clone());
    }
    flows
}

/// The number after `key` in the replay summary line starting with `line`.
fn summary_number(summary: &str, line: &str, key: &str) -> u64 {
    let l = summary
        .lines()
        .find(|l| l.trim_start().starts_with(line))
        .unwrap_or_else(|| panic!("no {line:?} line in:\n{summary}"));
    let rest = &l[l.find(key).unwrap_or_else(|| panic!("no {key:?} in {l:?}")) + key.len()..];
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no number after {key:?} in {l:?}"))
}

/// 1,000,000 half-open connections (SYN and SYN-ACK, never completed) interleaved with 200
/// SMTP sessions, replayed with a 64 MiB ceiling: every legitimate flow's frames are
/// exactly those of the replay without the flood, the engine's accounted peak stays under
/// the ceiling, and the replay's peak RSS under the ceiling plus a fixed 48 MiB (the
/// process, its pcap buffers and the allocator's slack; a replay without the flood stays
/// under 16 MiB).
#[test]
fn half_open_flood_stays_under_the_ceiling_and_sessions_keep_working() {
    let n: u64 = std::env::var("MAILGUARD_FLOOD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| -> PathBuf { dir.path().join(name) };
    for (name, half) in [("base.pcap", 0), ("flood.pcap", n)] {
        let o = bin()
            .args(["gen", "--sessions", "200", "--seed", "3", "--half-open"])
            .arg(half.to_string())
            .arg("-o")
            .arg(p(name))
            .output()
            .expect("gen");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    const CEILING: u64 = 64 << 20;
    const OVERHEAD: u64 = 48 << 20;
    let mut outputs = Vec::new();
    for name in ["base", "flood"] {
        // No --report: it keeps a record of every connection (a million here), outside
        // the engine's ceiling.
        let (status, rss) = run_measured(
            bin()
                .arg("replay")
                .arg(p(&format!("{name}.pcap")))
                .arg("-o")
                .arg(p(&format!("{name}.out.pcap")))
                .args(["--profile", "strict", "--max-memory", "64M"]),
            &p(&format!("{name}.txt")),
        );
        assert!(status.success(), "replay {name}: {status:?}");
        let summary = std::fs::read_to_string(p(&format!("{name}.txt"))).expect("summary");
        let peak = summary_number(&summary, "memory:", "peak");
        assert!(peak <= CEILING, "{name}: accounted peak {peak} > {CEILING}");
        assert!(peak > 0, "{name}: memory accounted");
        assert!(
            rss <= CEILING + OVERHEAD,
            "{name}: peak RSS {rss} > {CEILING} + {OVERHEAD}"
        );
        let frames_in = summary_number(&summary, "frames in:", "frames in:");
        let forwarded = summary_number(&summary, "forwarded unchanged:", ":");
        let rewritten = summary_number(&summary, "rewritten:", ":");
        let dropped = summary_number(&summary, "dropped:", ":");
        assert_eq!(
            frames_in,
            forwarded + rewritten + dropped,
            "{name}: frames in = forwarded + rewritten + dropped:\n{summary}"
        );
        if name == "flood" {
            assert!(frames_in >= 2 * n, "{summary}");
            let evicted = summary_number(&summary, "memory:", "embryonic");
            assert!(
                evicted > n / 2,
                "the flood was absorbed by evicting half-open entries ({evicted}):\n{summary}"
            );
            assert!(
                summary.contains("resets:               none"),
                "no session was reset:\n{summary}"
            );
        }
        outputs.push(legit_flows(&p(&format!("{name}.out.pcap"))));
    }
    let (base, flood) = (&outputs[0], &outputs[1]);
    assert_eq!(base.len(), 200, "200 legitimate flows");
    assert_eq!(
        base.keys().collect::<Vec<_>>(),
        flood.keys().collect::<Vec<_>>()
    );
    for (k, frames) in base {
        assert!(
            flood.get(k) == Some(frames),
            "flow {k} differs with the flood ({} frames without, {} with)",
            frames.len(),
            flood.get(k).map_or(0, Vec::len)
        );
    }
}

/// The CLI: sizes with suffixes reach the engine (the summary states the ceiling and the
/// limit on connections), a bad size is refused before anything runs.
#[test]
fn limit_options_reach_the_engine_and_bad_sizes_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.pcap");
    let o = bin()
        .args(["replay", "pcaps/kb320027.pcap", "-o"])
        .arg(&out)
        .args(["--max-memory", "3M", "--max-connections", "7"])
        .output()
        .expect("replay");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        summary_number(&text, "memory:", "ceiling"),
        3 << 20,
        "{text}"
    );
    assert_eq!(summary_number(&text, "memory:", "at most"), 7, "{text}");
    let peak = summary_number(&text, "memory:", "peak");
    assert!(peak > 0 && peak <= 3 << 20, "{text}");
    assert!(text.contains("evicted: none"), "{text}");
    for bad in ["12X", "M", "1.5G", "99999999999T"] {
        let o = bin()
            .args(["replay", "pcaps/kb320027.pcap", "-o"])
            .arg(&out)
            .args(["--max-memory", bad])
            .output()
            .expect("replay");
        assert_eq!(o.status.code(), Some(2), "--max-memory {bad} refused");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--max-memory"),
            "the error names the option"
        );
    }
}

/// Same capture, same options, same output (DESIGN.md §3, rule 9) also when the memory
/// ceiling evicts: each replay is a new process with its own hash seed, and the account
/// that drives eviction must not depend on it (it once counted the flow table's real
/// capacity, which depends on where removals left tombstones, i.e. on the seed).
#[test]
fn eviction_under_the_memory_ceiling_is_the_same_on_every_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| -> PathBuf { dir.path().join(name) };
    let o = bin()
        .args("gen --sessions 300 --seed 7 --attachment-kb 0 --mails-per-session 3".split(' '))
        .args("--loss 0.05 --concurrent 100 -o".split(' '))
        .arg(p("in.pcap"))
        .output()
        .expect("gen");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut runs = Vec::new();
    for i in 0..4 {
        let out = p(&format!("out{i}.pcap"));
        let o = bin()
            .arg("replay")
            .arg(p("in.pcap"))
            .arg("-o")
            .arg(&out)
            .args(["--profile", "strict", "--max-memory", "60000"])
            .args(["--max-log-bytes", "1500", "--drain", "30"])
            .output()
            .expect("replay");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary = String::from_utf8_lossy(&o.stdout).into_owned();
        let evicted = summary_number(&summary, "memory:", "finished")
            + summary_number(&summary, "memory:", "embryonic");
        assert!(evicted > 0, "the ceiling evicted:\n{summary}");
        runs.push((std::fs::read(&out).expect("output"), evicted));
    }
    for (i, run) in runs.iter().enumerate().skip(1) {
        assert_eq!(run.1, runs[0].1, "run {i} evicted a different number");
        assert!(run.0 == runs[0].0, "run {i} wrote a different capture");
    }
}
