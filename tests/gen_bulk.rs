//! `mailguard gen` bulk mode (issue 6 benchmark loads, issue 7 half-open floods), small
//! sizes: the expected number of sessions (counted as SYNs by tshark), valid TCP, complete
//! SMTP dialogues in the streams, determinism, the concurrent phase, and the CLI's errors.
//!
//! tshark is required (scripts/install-deps.sh installs it).

#[path = "common/tshark.rs"]
mod tshark;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tshark::{follow_stream, frames_matching};

fn gen(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailguard"))
        .arg("gen")
        .args(args)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run mailguard")
}

fn gen_ok(args: &[&str], dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let o = gen(args, &out);
    assert!(
        o.status.success(),
        "gen {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("frames"),
        "summary line on stderr: {stderr}"
    );
    out
}

#[test]
fn bulk_has_the_sessions_asked_for_and_valid_tcp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "--sessions",
        "60",
        "--half-open",
        "40",
        "--attachment-kb",
        "6",
        "--loss",
        "0.02",
        "--pipelining-ratio",
        "0.5",
        "--seed",
        "9",
        "--parallel",
        "16",
    ];
    let p = gen_ok(&args, dir.path(), "bulk.pcap");
    assert_eq!(
        frames_matching(&p, "tcp.flags.syn == 1 && tcp.flags.ack == 0").len(),
        100
    );
    assert_eq!(
        frames_matching(&p, "tcp.flags.syn == 1 && tcp.flags.ack == 1").len(),
        100
    );
    // Only the complete sessions close: a FIN each way.
    assert_eq!(frames_matching(&p, "tcp.flags.fin == 1").len(), 120);
    let bad = frames_matching(
        &p,
        "tcp.checksum.status == 0 || ip.checksum.status == 0 || _ws.malformed \
         || _ws.expert.severity >= error || tcp.analysis.ack_lost_segment",
    );
    assert!(bad.is_empty(), "bad frames: {bad:?}");
    // Loss happened and was repaired.
    assert!(!frames_matching(
        &p,
        "tcp.analysis.retransmission || tcp.analysis.fast_retransmission"
    )
    .is_empty());
    // Attachments travel in full-MSS segments.
    assert!(frames_matching(&p, "tcp.len >= 1380").len() > 100);
    // Pipelined MAIL/RCPT/DATA in one segment, for some mails.
    assert!(!frames_matching(
        &p,
        "tcp.payload contains \"MAIL FROM\" && tcp.payload contains \"DATA\r\n\""
    )
    .is_empty());
    // Whole dialogues in a few reassembled streams (stream numbers follow the first SYN,
    // so they include half-open ones: pick streams that completed).
    let mut complete = 0;
    for stream in 0..12 {
        let (c, s) = follow_stream(&p, stream);
        if s.is_empty() {
            assert!(c.is_empty(), "half-open stream {stream} carries no data");
            continue;
        }
        complete += 1;
        assert!(s.starts_with(b"220 ") && s.ends_with(b"221 2.0.0 Bye\r\n"));
        assert!(c.starts_with(b"EHLO ") && c.ends_with(b"\r\n.\r\nQUIT\r\n"));
        assert!(String::from_utf8_lossy(&c).contains("Content-Transfer-Encoding: base64"));
    }
    assert!(
        complete >= 5,
        "only {complete} complete streams among the first 12"
    );
}

#[test]
fn bulk_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = |seed: &'static str| {
        [
            "--sessions",
            "30",
            "--loss",
            "0.05",
            "--attachment-kb",
            "3",
            "--seed",
            seed,
        ]
    };
    let a = std::fs::read(gen_ok(&args("5"), dir.path(), "a.pcap")).expect("read");
    let b = std::fs::read(gen_ok(&args("5"), dir.path(), "b.pcap")).expect("read");
    let c = std::fs::read(gen_ok(&args("6"), dir.path(), "c.pcap")).expect("read");
    assert!(a == b, "same seed, same bytes");
    assert!(a != c, "another seed, another capture");
}

#[test]
fn concurrent_opens_every_connection_before_closing_any() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "--sessions",
        "150",
        "--concurrent",
        "120",
        "--mails-per-session",
        "0",
        "--parallel",
        "8",
    ];
    let p = gen_ok(&args, dir.path(), "concurrent.pcap");
    let syns = frames_matching(&p, "tcp.flags.syn == 1 && tcp.flags.ack == 0");
    assert_eq!(syns.len(), 150);
    let bad = frames_matching(
        &p,
        "tcp.checksum.status == 0 || ip.checksum.status == 0 || _ws.malformed \
         || _ws.expert.severity >= error",
    );
    assert!(bad.is_empty(), "bad frames: {bad:?}");
    let first_fin = *frames_matching(&p, "tcp.flags.fin == 1")
        .first()
        .expect("sessions close");
    let banners = frames_matching(&p, "tcp.srcport == 25 && tcp.payload contains \"220 \"");
    let opened_before_fin = banners.iter().filter(|&&f| f < first_fin).count();
    assert!(
        opened_before_fin >= 120,
        "{opened_before_fin} banners before the first FIN"
    );
}

#[test]
fn cli_errors_are_one_line_and_nonzero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("x.pcap");
    for (args, needle) in [
        (vec![], "--scenario"),
        (vec!["--sessions", "3", "--concurrent", "5"], "--concurrent"),
        (vec!["--sessions", "3", "--loss", "0.9"], "--loss"),
        (
            vec!["--scenario", "kb320027", "--sessions", "3"],
            "cannot be used",
        ),
        (vec!["--scenario", "nosuch"], "invalid value"),
    ] {
        let o = gen(&args, &out);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let o = gen(&["--sessions", "1"], Path::new("/nonexistent-dir/x.pcap"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot create"));
}
