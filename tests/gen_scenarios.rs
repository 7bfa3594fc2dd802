//! `mailguard gen --scenario NAME`: every bundled scenario is judged by tshark (an independent
//! dissector): valid checksums, nothing malformed, the TCP stream carries exactly the
//! scenario's dialogue, and the committed `pcaps/NAME.pcap` is what the binary writes.
//!
//! tshark is required (scripts/install-deps.sh installs it).

#[path = "common/tshark.rs"]
mod tshark;

use mailguard::cli::gen::{scenario, ScenarioName, KB320027_GREETING};
use std::path::{Path, PathBuf};
use std::process::Command;
use tshark::{follow_stream, frames_matching, tshark};

fn gen_scenario(name: ScenarioName, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{}.pcap", name.name()));
    let st = Command::new(env!("CARGO_BIN_EXE_mailguard"))
        .args(["gen", "--scenario", name.name(), "-o"])
        .arg(&out)
        .output()
        .expect("run mailguard");
    assert!(
        st.status.success(),
        "gen failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

/// Number of frames matching a display filter.
fn count(pcap: &Path, filter: &str) -> usize {
    frames_matching(pcap, filter).len()
}

/// The two directions of TCP stream 0 (node 0 = client, node 1 = server).
fn follow(pcap: &Path) -> (Vec<u8>, Vec<u8>) {
    follow_stream(pcap, 0)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn every_scenario_passes_tshark_with_checksums_on() {
    let dir = tempdir();
    for name in ScenarioName::ALL {
        let pcap = gen_scenario(name, dir.path());
        let total = count(&pcap, "frame");
        assert!(total > 8, "{}: only {total} frames", name.name());
        let bad = count(
            &pcap,
            "tcp.checksum.status == 0 || ip.checksum.status == 0 || _ws.malformed \
             || _ws.expert.severity >= error || tcp.analysis.ack_lost_segment",
        );
        assert_eq!(bad, 0, "{}: frames tshark flags as bad", name.name());
        assert_eq!(count(&pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 0"), 1);
        assert_eq!(
            count(&pcap, "tcp.flags.fin == 1"),
            2,
            "{}: one FIN each way",
            name.name()
        );
    }
}

#[test]
fn tshark_follow_yields_exactly_the_dialogue() {
    let dir = tempdir();
    for name in ScenarioName::ALL {
        let pcap = gen_scenario(name, dir.path());
        let (client, server) = follow(&pcap);
        let (want_c, want_s) = scenario(name).streams();
        assert!(!want_c.is_empty() && !want_s.is_empty());
        assert!(client == want_c, "{}: client stream differs", name.name());
        assert!(server == want_s, "{}: server stream differs", name.name());
    }
}

#[test]
fn generation_is_deterministic_and_bundled_pcaps_are_current() {
    let (a, b) = (tempdir(), tempdir());
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
    for name in ScenarioName::ALL {
        let x = std::fs::read(gen_scenario(name, a.path())).expect("read");
        let y = std::fs::read(gen_scenario(name, b.path())).expect("read");
        assert!(x == y, "{}: two runs differ", name.name());
        assert!(x.len() < 100_000, "{}: {} bytes", name.name(), x.len());
        let committed = std::fs::read(bundled.join(format!("{}.pcap", name.name())))
            .expect("bundled capture exists (scripts/make-pcaps.sh)");
        assert!(
            committed == x,
            "pcaps/{}.pcap is stale: run scripts/make-pcaps.sh",
            name.name()
        );
    }
}

#[test]
fn kb320027_carries_the_kb_greeting_and_the_exchange_dialogue() {
    let sc = scenario(ScenarioName::Kb320027);
    let (c, s) = sc.streams();
    let s = String::from_utf8_lossy(&s);
    let greeting = format!("\r\n{KB320027_GREETING}\r\n");
    assert!(s.contains(&greeting), "exact KB greeting line");
    assert!(s.starts_with("220-"), "multi-line greeting");
    for ext in [
        "8bitmime",
        "AUTH GSSAPI NTLM LOGIN",
        "X-LINK2STATE",
        "XEXCH50",
        "STARTTLS",
        "PIPELINING",
        "SIZE",
        "DSN",
        "ENHANCEDSTATUSCODES",
        "VRFY",
        "ETRN",
        "TURN",
    ] {
        assert!(
            s.contains(&format!("250-{ext}\r\n")),
            "EHLO reply advertises {ext}"
        );
    }
    let wanted = [
        "EHLO",
        "AUTH",
        "X-LINK2STATE",
        "goodmorning",
        "HELO",
        "MAIL",
        "RCPT",
        "DATA",
        "QUIT",
    ];
    let c_text = String::from_utf8_lossy(&c);
    let verbs: Vec<&str> = c_text
        .split("\r\n")
        .filter_map(|l| l.split(' ').next())
        .filter(|v| wanted.contains(v))
        .collect();
    assert_eq!(verbs, wanted);
    assert!(c.iter().any(|&b| b >= 0x80), "8-bit body bytes");
    assert!(c_text.contains("\r\n..the next line"), "a dot-stuffed line");
    assert!(c_text.contains("BODY=8BITMIME"));
}

#[test]
fn scenario_specific_wire_shapes() {
    let dir = tempdir();
    // telnet: every client data segment carries one byte.
    let p = gen_scenario(ScenarioName::Telnet, dir.path());
    let lens = tshark(
        &p,
        &[
            "-Y",
            "tcp.dstport == 25 && tcp.len > 0",
            "-T",
            "fields",
            "-e",
            "tcp.len",
        ],
    );
    let lens: Vec<&str> = lens.lines().collect();
    assert!(
        lens.len() > 50 && lens.iter().all(|l| *l == "1"),
        "one byte per client segment"
    );
    assert!(scenario(ScenarioName::Telnet)
        .streams()
        .0
        .starts_with(b"helo tester\r\nvrfy root\r\n"));
    // pipelining: MAIL, RCPT, VRFY, RCPT, DATA in one segment.
    let p = gen_scenario(ScenarioName::Pipelining, dir.path());
    assert_eq!(
        count(
            &p,
            "tcp.payload contains \"MAIL FROM\" && tcp.payload contains \"VRFY bob\" \
             && tcp.payload contains \"RCPT TO:<carol\" && tcp.payload contains \"DATA\""
        ),
        1
    );
    // ipv6-vlan: every frame is IPv6 in VLAN 100.
    let p = gen_scenario(ScenarioName::Ipv6Vlan, dir.path());
    assert_eq!(
        count(&p, "vlan.id == 100 && ipv6 && tcp"),
        count(&p, "frame")
    );
    // starttls: TLS records after the 220, parsed as TLS by tshark.
    let p = gen_scenario(ScenarioName::Starttls, dir.path());
    assert_eq!(count(&p, "tls.handshake.type == 1"), 1);
    assert_eq!(count(&p, "tls.handshake.type == 2"), 1);
    assert!(count(&p, "tls.record.opaque_type == 23") > 10);
    // bdat: two BDAT commands, the second LAST, lengths matching the chunks.
    let (c, _) = scenario(ScenarioName::Bdat).streams();
    let c = String::from_utf8_lossy(&c);
    assert_eq!(c.matches("BDAT ").count(), 2);
    assert!(c.contains(" LAST\r\n"));
    // smuggling: both smuggling terminators, each followed by a hidden MAIL FROM.
    let (c, s) = scenario(ScenarioName::Smuggling).streams();
    let c = String::from_utf8_lossy(&c);
    assert!(c.contains("\r\n\n.\r\nMAIL FROM:") && c.contains("\r\n\r.\r\nMAIL FROM:"));
    assert_eq!(String::from_utf8_lossy(&s).matches("queued as").count(), 1);
}

#[test]
fn lossy_has_loss_reordering_duplicates_and_wrapping_sequence_numbers() {
    let dir = tempdir();
    let p = gen_scenario(ScenarioName::Lossy, dir.path());
    assert!(
        count(
            &p,
            "tcp.analysis.retransmission || tcp.analysis.fast_retransmission"
        ) > 0
    );
    assert!(count(&p, "tcp.analysis.out_of_order") > 0);
    assert!(count(&p, "tcp.analysis.duplicate_ack") > 0);
    assert!(count(&p, "tcp.analysis.lost_segment") > 0);
    // Absolute sequence numbers of client data: some before 2^32, some after the wrap.
    let seqs = tshark(
        &p,
        &[
            "-o",
            "tcp.relative_sequence_numbers:FALSE",
            "-Y",
            "tcp.dstport == 25 && tcp.len > 0",
            "-T",
            "fields",
            "-e",
            "tcp.seq",
        ],
    );
    let seqs: Vec<u64> = seqs
        .lines()
        .map(|l| l.trim().parse().expect("seq"))
        .collect();
    assert!(seqs.iter().any(|&s| s > 0xffff_0000) && seqs.iter().any(|&s| s < 0x0010_0000));
}
