//! Sessions extracted from the real captures (`scripts/extract-streams.py` →
//! `tests/fixtures/streams/*.stream`), run through every profile: no panic, held bytes
//! bounded, `off` is the identity, chunking does not matter; and hand-reviewed verdicts for
//! a handful of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mailguard::smtp::{
    transform, BannerMask, Dir, Event, PolicyConfig, Profile, ResetReason, Transcript, MAX_HELD,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/streams")
}

/// Parses a fixture: `C <hex>` / `S <hex>` lines, `#` comments.
fn load(path: &Path) -> Vec<(Dir, Vec<u8>)> {
    let text = std::fs::read_to_string(path).expect("fixture readable");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (tag, hex) = l.split_once(' ').expect("tag and hex");
            let dir = match tag {
                "C" => Dir::ClientToServer,
                "S" => Dir::ServerToClient,
                _ => panic!("bad tag in {}", path.display()),
            };
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            (dir, bytes)
        })
        .collect()
}

fn fixture(name: &str) -> Vec<(Dir, Vec<u8>)> {
    load(&dir().join(format!("{name}.stream")))
}

fn run(profile: Profile, chunks: &[(Dir, Vec<u8>)]) -> Transcript {
    run_cfg(
        PolicyConfig {
            profile,
            ..Default::default()
        },
        chunks,
    )
}

fn run_cfg(cfg: PolicyConfig, chunks: &[(Dir, Vec<u8>)]) -> Transcript {
    let script: Vec<(Dir, &[u8])> = chunks.iter().map(|(d, b)| (*d, &b[..])).collect();
    transform(Arc::new(cfg), &script)
}

fn side(chunks: &[(Dir, Vec<u8>)], d: Dir) -> Vec<u8> {
    chunks
        .iter()
        .filter(|(x, _)| *x == d)
        .flat_map(|(_, b)| b.iter().copied())
        .collect()
}

fn blocked(t: &Transcript) -> Vec<String> {
    t.events
        .iter()
        .filter_map(|e| match e {
            Event::VerbBlocked(v) => Some(v.as_str().to_string()),
            _ => None,
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn every_fixture_every_profile() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("fixture directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "stream"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 40, "expected the extracted fixtures");
    for path in &paths {
        let chunks = load(path);
        let name = path.file_name().unwrap().to_string_lossy();
        for profile in Profile::ALL {
            for kb in [BannerMask::Standard, BannerMask::Kb] {
                let cfg = PolicyConfig {
                    profile,
                    banner_mask: kb,
                    allow_verbs: vec!["X-LINK2STATE".into(), "XEXCH50".into()],
                };
                let t = run_cfg(cfg.clone(), &chunks);
                assert!(
                    t.max_held <= MAX_HELD,
                    "{name} {profile}: held {}",
                    t.max_held
                );
                if profile == Profile::Off {
                    assert_eq!(t.to_server, side(&chunks, Dir::ClientToServer), "{name}");
                    assert_eq!(t.to_client, side(&chunks, Dir::ServerToClient), "{name}");
                    assert!(t.events.is_empty(), "{name}");
                }
                // Same session cut into 7-byte segments.
                let small: Vec<(Dir, Vec<u8>)> = chunks
                    .iter()
                    .flat_map(|(d, b)| b.chunks(7).map(move |c| (*d, c.to_vec())))
                    .collect();
                let u = run_cfg(cfg, &small);
                assert_eq!(u.to_server, t.to_server, "{name} {profile}: server");
                assert_eq!(u.to_client, t.to_client, "{name} {profile}: client");
                assert_eq!(u.events, t.events, "{name} {profile}: events");
            }
        }
    }
}

/// suricata-verify firewall-127: VRFY, EXPN, HELP blocked under pix51 (lower-case verbs
/// allowed); asa allows VRFY and HELP; pix40 answers them itself.
#[test]
fn reviewed_firewall_127_interactive() {
    let c = fixture("suricata-verify__firewall-127-smtp-interactive__s0");
    let t = run(Profile::Pix51, &c);
    assert_eq!(blocked(&t), ["VRFY", "EXPN", "HELP"]);
    assert!(contains(
        &t.to_server,
        b"NOOP\r\nXXXXXXXX\r\nXXXXXXXXXX\r\nXXXX\r\nmail from:<alice@example.com>\r\n"
    ));
    assert!(t.to_server.starts_with(b"helo client.example.com\r\n"));
    assert!(t
        .to_client
        .starts_with(b"220 ******************************\r\n"));
    assert!(t.events.contains(&Event::DataEnded));
    let t = run(Profile::Asa, &c);
    assert_eq!(blocked(&t), ["EXPN"]);
    let t = run(Profile::Pix40, &c);
    assert_eq!(blocked(&t), ["VRFY", "EXPN", "HELP"]);
    assert!(!contains(&t.to_server, b"VRFY bob"));
    assert_eq!(
        t.events
            .iter()
            .filter(|e| **e == Event::ReplyInjected)
            .count(),
        3
    );
}

/// snort3 appids_smtp: netcat with bare LF; 'EXPN   decode' blocked; strict normalises the
/// body's bare LFs and removes VRFY/ETRN from the EHLO reply.
#[test]
fn reviewed_snort_appids_expn() {
    let c = fixture("snort3-demo__appids_smtp__s0");
    let t = run(Profile::Pix51, &c);
    assert_eq!(blocked(&t), ["EHLO", "EXPN"]);
    assert!(t
        .to_server
        .starts_with(b"XXXXXXX\nMAIL FROM: nobody\nRCPT TO: mullican\nXXXXXXXXXXXXX\nDATA\n"));
    let t = run(Profile::Strict, &c);
    assert_eq!(blocked(&t), ["EXPN"]);
    assert!(contains(&t.to_server, b"DATA\nsdlkfjlkj\r\n.\r\nquit\n"));
    assert!(contains(
        &t.to_client,
        b"250-valhalla.interzone.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"
    ));
}

/// markofu Mailenable VRFY (CVE-2008-1275): 'VRFY \nSMTPISGONNADIE\r\n' is two lines.
#[test]
fn reviewed_mailenable_vrfy() {
    let c = fixture("markofu-pcaps__evilfingers_Mailenable_VRFY__s0");
    let t = run(Profile::Pix51, &c);
    assert_eq!(t.to_server, b"XXXXX\nXXXXXXXXXXXXXX\r\n");
    assert_eq!(blocked(&t), ["VRFY", "SMTPISGONNADIE"]);
    let t = run(Profile::Asa, &c);
    assert_eq!(t.to_server, b"VRFY \nXXXXXXXXXXXXXX\r\n");
    let t = run(Profile::Strict, &c);
    assert_eq!(t.to_server, b"XXXXX\nXXXXXXXXXXXXXX\r\n");
}

/// nDPI DARPA 1999: EHLO refused (500), HELO fallback, 30 RCPT.
#[test]
fn reviewed_darpa_ehlo_helo() {
    let c = fixture("ndpi__smtp-darpa1999__s0");
    let t = run(Profile::Pix51, &c);
    assert_eq!(blocked(&t), ["EHLO"]);
    assert!(t
        .to_server
        .starts_with(b"XXXXXXXXXXXXXXXXXXXX\r\nHELO delta.peach.mil\r\n"));
    for p in [Profile::Asa, Profile::Strict] {
        let t = run(p, &c);
        assert!(blocked(&t).is_empty(), "{p}");
        assert_eq!(t.reset, None, "{p}: 30 RCPT is within asa's limit");
        assert_eq!(t.to_server, side(&c, Dir::ClientToServer), "{p}");
    }
}

/// suricata-verify smtp-rset-bdat: strict passes both BDAT chunks by length.
#[test]
fn reviewed_rset_bdat_strict() {
    let c = fixture("suricata-verify__smtp-rset-bdat__s0");
    let t = run(Profile::Strict, &c);
    assert!(blocked(&t).is_empty());
    assert!(t.events.contains(&Event::BdatChunk(11)));
    assert!(t.events.contains(&Event::BdatChunk(13)));
    assert_eq!(t.to_server, side(&c, Dir::ClientToServer));
    assert!(contains(&t.to_client, b"250-DSN\r\n250 CHUNKING\r\n"));
    assert!(!contains(&t.to_client, b"VRFY"));
    // asa blocks BDAT: the chunk's text is then a command line, blocked too.
    let t = run(Profile::Asa, &c);
    assert_eq!(blocked(&t), ["BDAT", "MESSAGE", "BDAT", "MESSAGE"]);
}

/// suricata-verify smtp-startssl: strict passes TLS through; asa refuses STARTTLS.
#[test]
fn reviewed_startssl() {
    let c = fixture("suricata-verify__smtp-startssl__s0");
    let t = run(Profile::Strict, &c);
    assert!(t.events.contains(&Event::TlsPassthrough));
    assert_eq!(t.to_server, side(&c, Dir::ClientToServer));
    assert!(contains(&t.to_client, b"250-STARTTLS\r\n"));
    assert!(contains(&t.to_client, b"250-DSN\r\n250 SMTPUTF8\r\n"));
    let t = run(Profile::Asa, &c);
    assert!(contains(&t.to_client, b"250-XXXXXXXA\r\n"));
    assert!(contains(
        &t.to_server,
        b"EHLO desktop.unx.ca\r\nXXXXXXXX\r\n"
    ));
    assert!(!contains(&t.to_server, b"\x16\x03\x01\x02\x00"));
    assert!(!t.events.contains(&Event::TlsPassthrough));
}

/// zeek many-addresses: 600 RCPT in one transaction → asa resets after the 100th.
#[test]
fn reviewed_many_recipients() {
    let c = fixture("zeek__smtp-many-addresses__s0");
    let t = run(Profile::Asa, &c);
    assert_eq!(t.reset, Some(ResetReason::TooManyRecipients));
    let rcpts = t
        .to_server
        .windows(5)
        .filter(|w| w.eq_ignore_ascii_case(b"RCPT "))
        .count();
    assert_eq!(rcpts, 100);
    assert_eq!(run(Profile::Pix51, &c).reset, None);
}

/// suricata-verify smtp-long-command: a 4 KB EHLO line → reset under asa/strict at its
/// 513th byte (its first 512 bytes streamed, unterminated, the verb only ever held), streamed
/// X-ed by the PIX profiles with almost nothing held.
#[test]
fn reviewed_long_command() {
    let c = fixture("suricata-verify__smtp-long-command__s0");
    let sent = side(&c, Dir::ClientToServer);
    for p in [Profile::Asa, Profile::Strict] {
        let t = run(p, &c);
        assert_eq!(t.reset, Some(ResetReason::CommandLineTooLong), "{p}");
        assert_eq!(
            t.to_server,
            sent[..512],
            "{p}: the long line's first 512 bytes stream, never its end"
        );
        assert!(!t.to_server.contains(&b'\n'), "{p}");
        assert!(t.max_held <= 8, "{p}: held {}", t.max_held);
    }
    let t = run(Profile::Pix51, &c);
    assert_eq!(t.reset, None);
    assert!(t.max_held <= 8);
    assert!(t.to_server.starts_with(&[b'X'; 100]));
}
