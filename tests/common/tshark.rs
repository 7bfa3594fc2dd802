//! tshark as an independent judge of captures the binary writes: checksums verified, display
//! filters, TCP streams reassembled. Shared by the `gen` tests, which include this file on
//! its own (`#[path]`) rather than the whole `common` tree.
//!
//! tshark is required (scripts/install-deps.sh installs it).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// tshark's stdout for `pcap` with IP and TCP checksum validation on; panics with its
/// stderr if it fails.
pub fn tshark(pcap: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args(args)
        .output()
        .expect("tshark must be installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The numbers of the frames matching display filter `filter`.
pub fn frames_matching(pcap: &Path, filter: &str) -> Vec<u64> {
    tshark(pcap, &["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The two directions of TCP stream `stream` as tshark's `follow,tcp,raw` reassembles them:
/// (node 0 = client, node 1 = server).
pub fn follow_stream(pcap: &Path, stream: u32) -> (Vec<u8>, Vec<u8>) {
    let text = tshark(pcap, &["-q", "-z", &format!("follow,tcp,raw,{stream}")]);
    let (mut c, mut s) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let hex = line.trim();
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        if line.starts_with('\t') {
            s.extend_from_slice(&bytes);
        } else {
            c.extend_from_slice(&bytes);
        }
    }
    (c, s)
}
