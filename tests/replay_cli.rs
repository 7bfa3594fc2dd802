//! `mailguard replay` as a user runs it: the built binary on the real-capture corpus under
//! every profile, on pcapng and non-Ethernet inputs, and on each kind of bad input.
//!
//! The corpus is `/work/shared/pcaps/real/` (or `$MAILGUARD_REAL_PCAPS`); tests that need it
//! print a message and pass when it is absent. tshark is the independent judge of TCP
//! validity; the corpus test fails if it is missing (install it with
//! `scripts/install-deps.sh`).

use mailguard::io::pcap::{CaptureReader, Frame};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROFILES: [&str; 6] = ["off", "pix40", "pix44", "pix51", "asa", "strict"];

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailguard"))
}

fn replay(input: &Path, output: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("replay")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(extra)
        .output()
        .expect("run mailguard")
}

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MAILGUARD_REAL_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/pcaps/real"));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "SKIP: real-capture corpus {} absent (set MAILGUARD_REAL_PCAPS)",
            dir.display()
        );
        None
    }
}

fn corpus() -> Vec<PathBuf> {
    let Some(dir) = corpus_dir() else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus {} holds no capture",
        dir.display()
    );
    files
}

/// Every frame of a capture, read with the library's reader.
fn frames(path: &Path) -> Vec<Frame> {
    let mut r = CaptureReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v = Vec::new();
    while let Some(f) = r.next_frame() {
        v.push(
            f.unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .clone(),
        );
    }
    v
}

fn same_frames(a: &[Frame], b: &[Frame]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} frames in, {} out", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x.data != y.data || x.orig_len != y.orig_len || x.ts_ns != y.ts_ns {
            return Err(format!("frame {} differs", i + 1));
        }
    }
    Ok(())
}

/// The frames tshark judges bad (bad IP/TCP checksum, malformed), by content.
fn bad_frames(path: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-Y",
            "tcp.checksum.status == 0 || ip.checksum.status == 0 || _ws.malformed",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .expect("tshark not found: run scripts/install-deps.sh");
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let all = frames(path);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<usize>().ok())
        .filter_map(|n| all.get(n.wrapping_sub(1)).map(|f| f.data.clone()))
        .collect()
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn real_corpus_every_profile() {
    let files = corpus();
    if files.is_empty() {
        return;
    }
    let dir = tmpdir();
    let mut failures = Vec::new();
    for input in &files {
        let name = input.file_name().unwrap_or_default().to_string_lossy();
        let input_frames = frames(input);
        // Computed lazily: only outputs that differ from the input need tshark.
        let mut input_bad: Option<Vec<Vec<u8>>> = None;
        for profile in PROFILES {
            let out = dir.path().join(format!("{name}.{profile}.pcap"));
            let run = replay(
                input,
                &out,
                &["--profile", profile, "--ports", "25,587,465,2525"],
            );
            if !run.status.success() {
                failures.push(format!(
                    "{name} {profile}: exit {:?}: {}",
                    run.status.code(),
                    String::from_utf8_lossy(&run.stderr).trim()
                ));
                continue;
            }
            if profile == "off" {
                if let Err(e) = same_frames(&input_frames, &frames(&out)) {
                    failures.push(format!("{name} off: output is not the input: {e}"));
                }
                continue;
            }
            if same_frames(&input_frames, &frames(&out)).is_ok() {
                // Output identical to the input: it cannot hold a frame the input lacked.
                continue;
            }
            let new_bad = bad_frames(&out)
                .into_iter()
                .filter(|f| {
                    !input_bad
                        .get_or_insert_with(|| bad_frames(input))
                        .contains(f)
                })
                .count();
            if new_bad > 0 {
                failures.push(format!(
                    "{name} {profile}: {new_bad} frames with a bad checksum or malformed \
                     that were not in the input ({})",
                    out.display()
                ));
            }
        }
    }
    if !failures.is_empty() {
        // Keep the outputs for inspection.
        let kept = dir.keep();
        panic!(
            "{} failures (outputs kept in {}):\n{}",
            failures.len(),
            kept.display(),
            failures.join("\n")
        );
    }
}

/// A classic pcap (little-endian, µs) with the given link type and records.
fn write_pcap(path: &Path, linktype: u32, records: &[(u32, u32, &[u8])]) {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0u8; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&linktype.to_le_bytes());
    for (sec, usec, data) in records {
        b.extend_from_slice(&sec.to_le_bytes());
        b.extend_from_slice(&usec.to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
    }
    std::fs::write(path, b).expect("write pcap");
}

/// pcapng block: type, body, padded, with both length fields.
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    let len = (body.len() + 12) as u32;
    let mut b = kind.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&body);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// A pcapng with one interface of `linktype` at nanosecond resolution (`if_tsresol` = 9).
fn write_pcapng(path: &Path, linktype: u16, records: &[(u64, &[u8])]) {
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut out = block(0x0a0d_0d0a, &shb);
    let mut idb = linktype.to_le_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&0u32.to_le_bytes());
    // if_tsresol = 9 (ns), then opt_endofopt.
    idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
    out.extend(block(1, &idb));
    for (ts, data) in records {
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(*ts as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(data);
        out.extend(block(6, &epb));
    }
    std::fs::write(path, out).expect("write pcapng");
}

/// An Ethernet/IPv4/TCP frame to port 25 carrying `payload` (checksums not computed: the
/// tests here run under `off` or only look at the exit status).
fn smtp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (40 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]);
    f.extend_from_slice(&[
        0x9c, 0x40, 0, 25, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

fn stderr_line(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        s.trim_end().lines().count(),
        1,
        "error should be one line, got: {s:?}"
    );
    s
}

#[test]
fn missing_input_is_exit_1() {
    let dir = tmpdir();
    let o = replay(
        &dir.path().join("nope.pcap"),
        &dir.path().join("o.pcap"),
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr_line(&o);
    assert!(e.contains("cannot read") && e.contains("nope.pcap"), "{e}");
    assert!(
        !dir.path().join("o.pcap").exists(),
        "no output for a missing input"
    );
}

#[test]
fn not_a_capture_is_exit_2() {
    let dir = tmpdir();
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "text.pcap",
            b"EHLO example.org\r\nQUIT\r\n",
            "unknown magic number",
        ),
        ("empty.pcap", b"", "only 0 bytes long"),
        ("gz.pcap", &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0], "gzip"),
    ];
    for (name, bytes, why) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, bytes).expect("write");
        let o = replay(&input, &dir.path().join("o.pcap"), &[]);
        assert_eq!(o.status.code(), Some(2), "{name}");
        let e = stderr_line(&o);
        assert!(
            e.contains("is not a capture file") && e.contains(why),
            "{name}: {e}"
        );
    }
}

#[test]
fn unsupported_link_type_is_exit_2() {
    let dir = tmpdir();
    let input = dir.path().join("wifi.pcap");
    write_pcap(&input, 105, &[(1, 0, &[0u8; 30])]);
    let o = replay(&input, &dir.path().join("o.pcap"), &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr_line(&o);
    assert!(e.contains("unsupported link type 105"), "{e}");
}

#[test]
fn truncated_capture_is_exit_3_and_output_stays_valid() {
    let dir = tmpdir();
    let input = dir.path().join("cut.pcap");
    let a = smtp_frame(b"EHLO a\r\n");
    let b = smtp_frame(b"MAIL FROM:<a@b>\r\n");
    let c = smtp_frame(b"RCPT TO:<c@d>\r\n");
    write_pcap(&input, 1, &[(1, 0, &a), (1, 10, &b), (1, 20, &c)]);
    let mut bytes = std::fs::read(&input).expect("read");
    let full = bytes.len();
    bytes.truncate(full - 5);
    std::fs::write(&input, &bytes).expect("write");
    let out = dir.path().join("o.pcap");
    for profile in ["off", "strict"] {
        let o = replay(&input, &out, &["--profile", profile]);
        assert_eq!(o.status.code(), Some(3), "{profile}");
        let e = stderr_line(&o);
        let c_start = 24 + 2 * 16 + a.len() + b.len();
        assert!(
            e.contains("truncated capture")
                && e.contains("after 2 complete packets")
                && e.contains(&format!("at byte {c_start}")),
            "{e}"
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("frames in:            2"));
        // What was written is a complete pcap.
        let written = frames(&out);
        if profile == "off" {
            assert_eq!(written.len(), 2);
            assert_eq!(written[0].data, a);
            assert_eq!(written[1].data, b);
        }
    }
    // A record header cut short is truncation too.
    bytes.truncate(24 + 16 + a.len() + 7);
    std::fs::write(&input, &bytes).expect("write");
    let o = replay(&input, &out, &["--profile", "off"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr_line(&o).contains("after 1 complete packets"));
    assert_eq!(frames(&out).len(), 1);
}

#[test]
fn unwritable_output_is_exit_4() {
    let dir = tmpdir();
    let input = dir.path().join("in.pcap");
    write_pcap(&input, 1, &[(1, 0, &smtp_frame(b"NOOP\r\n"))]);
    let o = replay(&input, &dir.path().join("no/such/dir/o.pcap"), &[]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr_line(&o).contains("cannot write"));
    // Writing over the input would destroy it while it is read.
    let before = std::fs::read(&input).expect("read");
    let o = replay(&input, &dir.path().join(".").join("in.pcap"), &[]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr_line(&o).contains("is the input file"));
    assert_eq!(std::fs::read(&input).ok(), Some(before));
}

#[test]
fn pcapng_input_gives_the_same_frames_as_pcap() {
    let dir = tmpdir();
    let a = smtp_frame(b"EHLO a\r\n");
    let b = smtp_frame(b"QUIT\r\n");
    let ng = dir.path().join("in.pcapng");
    write_pcapng(
        &ng,
        1,
        &[
            (1_700_000_000_123_456_789, &a),
            (1_700_000_001_000_000_001, &b),
        ],
    );
    let out = dir.path().join("o.pcap");
    let o = replay(&ng, &out, &["--profile", "off"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = frames(&out);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].data, a);
    assert_eq!(got[0].ts_ns, 1_700_000_000_123_456_789);
    assert_eq!(got[1].ts_ns, 1_700_000_001_000_000_001);
    // Under a filtering profile the link type and frame count are kept too (stub or not).
    let o = replay(&ng, &out, &["--profile", "strict"]);
    assert!(o.status.success());
    assert_eq!(CaptureReader::open(&out).expect("open").linktype(), 1);
}

#[test]
fn linux_sll_and_loopback_pass_through_off() {
    let dir = tmpdir();
    let ip = &smtp_frame(b"EHLO a\r\n")[14..];
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(ip);
    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(ip);
    for (lt, f) in [(113u32, sll), (0, null)] {
        let input = dir.path().join(format!("lt{lt}.pcap"));
        write_pcap(&input, lt, &[(5, 1, &f), (5, 2, &f[..3])]);
        for profile in PROFILES {
            let out = dir.path().join(format!("lt{lt}.{profile}.pcap"));
            let o = replay(&input, &out, &["--profile", profile]);
            assert!(o.status.success(), "linktype {lt} {profile}");
            let r = CaptureReader::open(&out).expect("open");
            assert_eq!(r.linktype(), lt, "output keeps the link type");
            if profile == "off" {
                assert_eq!(std::fs::read(&out).ok(), std::fs::read(&input).ok());
            }
        }
    }
}

#[test]
fn summary_and_report_say_what_happened() {
    let dir = tmpdir();
    let input = dir.path().join("in.pcap");
    write_pcap(
        &input,
        1,
        &[(1, 0, &smtp_frame(b"NOOP\r\n")), (1, 1, &[0u8; 20])],
    );
    let out = dir.path().join("o.pcap");
    let report = dir.path().join("r.json");
    let o = replay(
        &input,
        &out,
        &[
            "--profile",
            "pix51",
            "--report",
            report.to_str().expect("utf8"),
        ],
    );
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for key in [
        "connections:",
        "commands seen:",
        "commands blocked:",
        "banners masked:",
        "EHLO replies masked:",
        "replies injected:",
        "resets:",
        "frames in:            2",
        "forwarded unchanged:",
        "rewritten:",
        "dropped:",
        "frames originated:",
        "rate:",
        "policy: pix51",
    ] {
        assert!(text.contains(key), "summary lacks {key:?}:\n{text}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(json["stats"]["frames_in"], 2);
    assert_eq!(json["policy"]["profile"], "pix51");
    assert!(json["connections"].is_array());
    assert!(json["stats"]["forwarded"].is_object());
}

#[test]
fn help_teaches_with_examples() {
    let o = bin().args(["replay", "--help"]).output().expect("run");
    assert!(o.status.success());
    let h = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "Examples:",
        "--profile",
        "--report",
        "kb320027",
        "pix40",
        "strict",
    ] {
        assert!(h.contains(needle), "--help lacks {needle:?}");
    }
}

/// Internet checksum over `data` starting from `sum`.
fn csum(mut sum: u32, data: &[u8]) -> u16 {
    for c in data.chunks(2) {
        let hi = u32::from(c[0]) << 8;
        sum += hi | c.get(1).map_or(0, |&b| u32::from(b));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// [`smtp_frame`] with valid IPv4 and TCP checksums.
fn valid_smtp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = smtp_frame(payload);
    let ip_sum = csum(0, &f[14..34]);
    f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    let tcp_len = (f.len() - 34) as u32;
    let mut pseudo = f[26..34].to_vec();
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    let mut seg = pseudo;
    seg.extend_from_slice(&f[34..]);
    let tcp_sum = csum(0, &seg);
    f[50..52].copy_from_slice(&tcp_sum.to_be_bytes());
    f
}

/// The corpus test's judge can fail: tshark flags a frame whose payload was changed after
/// its checksum was computed, and not the intact one.
#[test]
fn tshark_judge_catches_a_bad_checksum() {
    if Command::new("tshark").arg("-v").output().is_err() {
        println!("SKIP: tshark not installed (scripts/install-deps.sh)");
        return;
    }
    let dir = tmpdir();
    let good = valid_smtp_frame(b"EHLO a\r\n");
    let mut bad = good.clone();
    if let Some(last) = bad.last_mut() {
        *last ^= 0x20;
    }
    let input = dir.path().join("judge.pcap");
    write_pcap(&input, 1, &[(1, 0, &good), (1, 1, &bad)]);
    assert_eq!(bad_frames(&input), vec![bad]);
}

/// pcapng as written by Wireshark's tools: each corpus file converted with `editcap -F
/// pcapng` replays under `off` to the same frames and timestamps as the original.
#[test]
fn real_corpus_as_pcapng_reproduces_frames() {
    let files = corpus();
    if files.is_empty() {
        return;
    }
    if Command::new("editcap").arg("-h").output().is_err() {
        println!("SKIP: editcap not installed (scripts/install-deps.sh installs tshark)");
        return;
    }
    let dir = tmpdir();
    let mut failures = Vec::new();
    for input in &files {
        let name = input.file_name().unwrap_or_default().to_string_lossy();
        let ng = dir.path().join(format!("{name}.pcapng"));
        let conv = Command::new("editcap")
            .args(["-F", "pcapng"])
            .arg(input)
            .arg(&ng)
            .output()
            .expect("run editcap");
        assert!(conv.status.success(), "editcap failed on {name}");
        let out = dir.path().join(format!("{name}.out.pcap"));
        let run = replay(&ng, &out, &["--profile", "off"]);
        if !run.status.success() {
            failures.push(format!(
                "{name}: {}",
                String::from_utf8_lossy(&run.stderr).trim()
            ));
            continue;
        }
        if let Err(e) = same_frames(&frames(input), &frames(&out)) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `mailguard replay /dev/stdin -o OUT < capture` through a pipe: the same output, exit
/// status and summary counts as the file itself, for pcap, pcapng and a capture cut inside
/// a record (a pipe cannot seek back over the magic number that told the format).
#[test]
fn a_piped_stdin_replays_like_the_file() {
    use std::io::Write as _;
    use std::process::Stdio;
    let dir = tmpdir();
    let frames_in: Vec<Vec<u8>> = (0..300)
        .map(|i| smtp_frame(format!("NOOP {}\r\n", "x".repeat(i % 1400)).as_bytes()))
        .collect();
    let pcap = dir.path().join("in.pcap");
    let records: Vec<(u32, u32, &[u8])> = frames_in
        .iter()
        .enumerate()
        .map(|(i, f)| (1 + i as u32, 0, f.as_slice()))
        .collect();
    write_pcap(&pcap, 1, &records);
    let ng = dir.path().join("in.pcapng");
    let ng_records: Vec<(u64, &[u8])> = frames_in
        .iter()
        .enumerate()
        .map(|(i, f)| (1_700_000_000_000_000_000 + i as u64, f.as_slice()))
        .collect();
    write_pcapng(&ng, 1, &ng_records);
    let cut = dir.path().join("cut.pcap");
    let bytes = std::fs::read(&pcap).expect("read");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("write");
    for (input, code) in [(&pcap, 0), (&ng, 0), (&cut, 3)] {
        let from_file = dir.path().join("file.pcap");
        let want = replay(input, &from_file, &["--profile", "off"]);
        let from_pipe = dir.path().join("pipe.pcap");
        let mut child = bin()
            .args(["replay", "/dev/stdin", "-o"])
            .arg(&from_pipe)
            .args(["--profile", "off"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mailguard");
        let data = std::fs::read(input).expect("read input");
        let mut stdin = child.stdin.take().expect("stdin");
        let feeder = std::thread::spawn(move || {
            // Small writes, so that the reader sees short reads across record boundaries.
            for chunk in data.chunks(1000) {
                if stdin.write_all(chunk).is_err() {
                    break;
                }
            }
        });
        let got = child.wait_with_output().expect("wait");
        feeder.join().expect("feeder");
        let name = input.display();
        assert_eq!(want.status.code(), Some(code), "{name}");
        assert_eq!(got.status.code(), Some(code), "{name}");
        let counts = |o: &Output| -> Vec<String> {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("frames in") || l.starts_with("  forwarded"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(counts(&got), counts(&want), "{name}");
        assert!(counts(&got).len() == 2, "{name}: {:?}", counts(&got));
        let a = std::fs::read(&from_file).expect("file output");
        let b = std::fs::read(&from_pipe).expect("pipe output");
        assert!(a == b, "{name}: outputs differ");
        // The error names the input, so compare it with the path replaced.
        let err = |o: &Output, path: &str| String::from_utf8_lossy(&o.stderr).replace(path, "IN");
        let file_err = err(&want, &input.display().to_string()).replace("file.pcap", "OUT");
        let pipe_err = err(&got, "/dev/stdin").replace("pipe.pcap", "OUT");
        assert_eq!(pipe_err, file_err, "{name}");
        assert!(!frames(&from_pipe).is_empty(), "{name}");
    }
}

/// A capture of `n` SMTP frames of about 1.4 KB: a few MB of output, many write buffers.
fn bulk_input(dir: &Path, n: usize) -> PathBuf {
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| smtp_frame(format!("{i:07} {}\r\n", "x".repeat(1400)).as_bytes()))
        .collect();
    let records: Vec<(u32, u32, &[u8])> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (1 + i as u32, 0, f.as_slice()))
        .collect();
    let path = dir.join("bulk.pcap");
    write_pcap(&path, 1, &records);
    path
}

/// `mailguard replay` pinned to one CPU (its writer then writes in line), if `taskset` runs.
fn replay_on_one_cpu(input: &Path, output: &Path) -> Option<Output> {
    let o = Command::new("taskset")
        .args(["-c", "0"])
        .arg(env!("CARGO_BIN_EXE_mailguard"))
        .arg("replay")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(["--profile", "off"])
        .output()
        .ok()?;
    // taskset's own failure (no such CPU, not permitted) is not mailguard's.
    (o.status.code() != Some(1) || !o.stderr.starts_with(b"taskset")).then_some(o)
}

/// The output written by the writer thread and in line (one CPU) is the same file, and a
/// full device is exit 4 with the path and the OS's reason either way.
#[test]
fn the_output_is_the_same_written_by_a_thread_or_in_line_and_a_full_disk_is_exit_4() {
    let dir = tmpdir();
    let input = bulk_input(dir.path(), 3000);
    let threaded = dir.path().join("threaded.pcap");
    let o = replay(&input, &threaded, &["--profile", "off"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read(&threaded).ok(),
        std::fs::read(&input).ok(),
        "off forwards every frame verbatim"
    );
    let full = Path::new("/dev/full");
    let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC).to_string();
    let full_threaded = full
        .exists()
        .then(|| replay(&input, full, &["--profile", "off"]));
    if let Some(o) = &full_threaded {
        assert_eq!(o.status.code(), Some(4));
        assert!(
            stderr_line(o).contains(&format!("cannot write /dev/full: {enospc}")),
            "{}",
            stderr_line(o)
        );
    }
    let Some(o) = replay_on_one_cpu(&input, &dir.path().join("inline.pcap")) else {
        println!("SKIP: taskset unavailable, the in-line writer not run");
        return;
    };
    assert_eq!(o.status.code(), Some(0));
    assert!(std::fs::read(dir.path().join("inline.pcap")).ok() == std::fs::read(&threaded).ok());
    if let Some(threaded) = &full_threaded {
        let inline = replay_on_one_cpu(&input, full).expect("taskset ran before");
        assert_eq!(inline.status.code(), Some(4));
        assert_eq!(stderr_line(&inline), stderr_line(threaded));
    }
}

/// A FIFO as output: read to the end, it carries the file's bytes; closed by its reader,
/// the replay ends with exit 4 and the broken pipe named. `/dev/null` is a success.
#[test]
fn a_fifo_or_dev_null_as_output() {
    use std::io::Read as _;
    let dir = tmpdir();
    let input = bulk_input(dir.path(), 3000);
    let o = replay(&input, Path::new("/dev/null"), &["--profile", "off"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("(3000 frames)"));
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        println!("SKIP: mkfifo unavailable");
        return;
    }
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        std::fs::File::open(reader_path)
            .and_then(|mut f| f.read_to_end(&mut got))
            .map(|_| got)
    });
    let o = replay(&input, &fifo, &["--profile", "off"]);
    let got = reader.join().expect("reader").expect("read the fifo");
    assert_eq!(o.status.code(), Some(0));
    assert!(
        got == std::fs::read(&input).expect("input"),
        "the fifo's bytes differ"
    );
    // The reader opens the FIFO and closes it at once: the replay's writes (megabytes, more
    // than a pipe holds) meet a closed pipe.
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || drop(std::fs::File::open(reader_path)));
    let o = replay(&input, &fifo, &["--profile", "off"]);
    reader.join().expect("reader");
    let epipe = std::io::Error::from_raw_os_error(libc::EPIPE).to_string();
    assert_eq!(o.status.code(), Some(4));
    let line = stderr_line(&o);
    assert!(
        line.contains(&format!("cannot write {}: {epipe}", fifo.display())),
        "{line}"
    );
}
