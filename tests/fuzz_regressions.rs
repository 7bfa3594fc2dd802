//! Replays every saved fuzz input through the same code the cargo-fuzz targets run
//! (`fuzz/src/harness.rs`), on the stable toolchain, without cargo-fuzz:
//! - `fuzz/regressions/<target>/*`: inputs that once crashed a target (kept by
//!   `scripts/fuzz.sh`), so a fixed bug stays fixed;
//! - `fuzz/seeds/<target>/*`: the hand-written corpus seeds (a realistic session per target),
//!   so the seeds themselves keep passing.
//!
//! A short deterministic random run of each target follows, so the targets are exercised
//! even where cargo-fuzz cannot run.

#[path = "common/evasion.rs"]
mod lab;

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// A fuzz target's body.
type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [
    ("frame", harness::frame),
    ("policy", harness::policy),
    ("engine", harness::engine),
];

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && n != "README.md")
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    let mut n = 0;
    for (name, run) in TARGETS {
        for f in files(&root.join(name)) {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(result.is_ok(), "{name} fails on {}", f.display());
            n += 1;
        }
    }
    n
}

#[test]
fn regressions_replay() {
    let n = replay("regressions");
    eprintln!("replayed {n} regression inputs");
}

/// The engine regressions and seeds again, with the §3.2 check on (the pass-through stubs
/// violate it, so this waits for the real engine).
#[test]
fn engine_inputs_replay_with_contract_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for kind in ["regressions", "seeds"] {
        for f in files(&root.join(kind).join("engine")) {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let result = std::panic::catch_unwind(|| harness::engine_checked(&data, true));
            assert!(result.is_ok(), "engine (contract) fails on {}", f.display());
        }
    }
}

#[test]
fn seeds_replay() {
    let n = replay("seeds");
    assert!(n >= 3, "expected seeds for every target, found {n}");
}

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next() as usize) % (max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Random inputs, plus seeds with random bytes flipped, through every target.
#[test]
fn random_inputs_through_every_target() {
    let mut rng = Rng(0x6d61_696c_6775_6172);
    let seeds_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (name, run) in TARGETS {
        let seeds: Vec<Vec<u8>> = files(&seeds_root.join(name))
            .iter()
            .filter_map(|f| std::fs::read(f).ok())
            .collect();
        for i in 0..60 {
            let data = match seeds.get(i % seeds.len().max(1)) {
                Some(seed) if i % 2 == 0 => {
                    let mut d = seed.clone();
                    for _ in 0..1 + rng.next() % 4 {
                        if d.is_empty() {
                            break;
                        }
                        let at = (rng.next() as usize) % d.len();
                        d[at] ^= rng.next() as u8 | 1;
                    }
                    d
                }
                _ => rng.bytes(300),
            };
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(
                result.is_ok(),
                "{name} fails on random input {i}: {:?}",
                data
            );
        }
    }
}
