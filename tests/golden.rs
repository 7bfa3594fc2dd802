//! Golden files: the bundled captures `pcaps/*.pcap` replayed under every variant listed in
//! `scripts/regen-golden.sh` must give exactly `pcaps/golden/NAME.VARIANT.pcap` (bit for bit)
//! and the summary `pcaps/golden/NAME.VARIANT.txt` (without its `output:`, `rate:` and
//! `memory:` lines).
//!
//! A capture without its goldens, or a golden without its capture or variant, fails the test:
//! regenerate with `scripts/regen-golden.sh` and review the diff.

use mailguard::io::pcap::CaptureReader;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `(name, replay options)` from the `variant NAME OPTIONS...` lines of the regen script.
fn variants() -> Vec<(String, Vec<String>)> {
    let script = root().join("scripts/regen-golden.sh");
    let text = std::fs::read_to_string(&script).expect("read scripts/regen-golden.sh");
    let v: Vec<(String, Vec<String>)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("variant "))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace().map(str::to_string);
            Some((words.next()?, words.collect()))
        })
        .collect();
    assert!(
        v.iter().any(|(n, _)| n == "off"),
        "no `variant` lines found in {}",
        script.display()
    );
    v
}

fn captures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("pcaps"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    name.strip_suffix(".pcap").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The summary lines that depend only on the input and the options.
fn stable_summary(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("output:") && !l.starts_with("rate:") && !l.starts_with("memory:")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Where two pcaps first differ, for the failure message.
fn first_difference(a: &Path, b: &Path) -> String {
    let read = |p: &Path| -> Vec<Vec<u8>> {
        let Ok(mut r) = CaptureReader::open(p) else {
            return Vec::new();
        };
        let mut v = Vec::new();
        while let Some(Ok(f)) = r.next_frame() {
            v.push(f.data.clone());
        }
        v
    };
    let (x, y) = (read(a), read(b));
    match x.iter().zip(&y).position(|(p, q)| p != q) {
        Some(i) => format!("frame {} differs", i + 1),
        None if x.len() != y.len() => format!("{} frames vs {} in the golden", x.len(), y.len()),
        None => "same frames; file header, timestamps or trailing bytes differ".into(),
    }
}

#[test]
fn bundled_captures_match_their_goldens() {
    let variants = variants();
    let captures = captures();
    if captures.is_empty() {
        println!("SKIP: no bundled captures in pcaps/ yet (scripts/make-pcaps.sh makes them)");
        return;
    }
    let golden = root().join("pcaps/golden");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for name in &captures {
        for (variant, opts) in &variants {
            let want_pcap = golden.join(format!("{name}.{variant}.pcap"));
            let want_txt = golden.join(format!("{name}.{variant}.txt"));
            if !want_pcap.is_file() || !want_txt.is_file() {
                failures.push(format!(
                    "missing golden {} (or its .txt) for pcaps/{name}.pcap: run \
                     scripts/regen-golden.sh and review the result",
                    want_pcap.display()
                ));
                continue;
            }
            let got_pcap = tmp.path().join(format!("{name}.{variant}.pcap"));
            let run = Command::new(env!("CARGO_BIN_EXE_mailguard"))
                .current_dir(root())
                .arg("replay")
                .arg(format!("pcaps/{name}.pcap"))
                .arg("-o")
                .arg(&got_pcap)
                .args(opts)
                .output()
                .expect("run mailguard");
            if !run.status.success() {
                failures.push(format!(
                    "{name} {variant}: exit {:?}: {}",
                    run.status.code(),
                    String::from_utf8_lossy(&run.stderr).trim()
                ));
                continue;
            }
            if std::fs::read(&got_pcap).ok() != std::fs::read(&want_pcap).ok() {
                failures.push(format!(
                    "{name} {variant}: output differs from {} ({})",
                    want_pcap.display(),
                    first_difference(&got_pcap, &want_pcap)
                ));
            }
            let want = std::fs::read_to_string(&want_txt).unwrap_or_default();
            if stable_summary(&run.stdout) != want {
                failures.push(format!(
                    "{name} {variant}: summary differs from {}:\n{}",
                    want_txt.display(),
                    stable_summary(&run.stdout)
                ));
            }
        }
    }
    failures.extend(orphans(&golden, &captures, &variants));
    assert!(
        failures.is_empty(),
        "{} golden failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Golden files whose capture or variant no longer exists.
fn orphans(golden: &Path, captures: &[String], variants: &[(String, Vec<String>)]) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(golden) else {
        return Vec::new();
    };
    let expected: Vec<String> = captures
        .iter()
        .flat_map(|c| {
            variants
                .iter()
                .flat_map(move |(v, _)| [format!("{c}.{v}.pcap"), format!("{c}.{v}.txt")])
        })
        .collect();
    rd.filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| (n.ends_with(".pcap") || n.ends_with(".txt")) && !expected.contains(n))
        .map(|n| format!("orphan golden pcaps/golden/{n}: no capture or variant produces it"))
        .collect()
}

/// The machinery's helpers: the summary filter drops only run-dependent lines, and a golden
/// without a capture is reported as an orphan.
#[test]
fn summary_filter_keeps_only_stable_lines() {
    let s = b"input:  pcaps/a.pcap (pcap, ETHERNET, 3 frames)\noutput: /tmp/x (3 frames)\n\
              connections:          1\nrate:   3 frames\n";
    assert_eq!(
        stable_summary(s),
        "input:  pcaps/a.pcap (pcap, ETHERNET, 3 frames)\nconnections:          1\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.off.pcap"), b"").expect("write");
    std::fs::write(dir.path().join("gone.off.pcap"), b"").expect("write");
    let v = vec![("off".to_string(), vec![])];
    let o = orphans(dir.path(), &["a".to_string()], &v);
    assert_eq!(o.len(), 1, "{o:?}");
    assert!(o[0].contains("gone.off.pcap"));
}
