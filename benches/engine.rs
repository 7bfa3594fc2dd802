//! The engine alone, on one core, fed from memory (issue 6).
//!
//! Three traffic mixes, each generated once with [`mailguard::io::synth::write_bulk`] into a
//! `Vec` before anything is timed, each run under the `off`, `pix51` and `strict` profiles:
//!
//! - `bulk`: a few SMTP sessions carrying large base64 attachments, so nearly every frame
//!   is a full-MSS DATA segment (1380..1460 bytes of payload);
//! - `commands`: many short SMTP sessions (three mails each, no attachment, half of them
//!   pipelined): small segments, command and reply parsing, connection set-up and teardown;
//! - `passthrough`: the `bulk` frames with the engine filtering another port, so every frame
//!   is a TCP segment that is not the engine's concern and only crosses.
//!
//! One iteration is a fresh [`Engine`] fed every frame of the mix in capture order, with the
//! frame's capture time as the clock and the side inferred as `mailguard replay` does; the
//! engine's timers are polled after every batch of [`BATCH`] frames, as the live worker does
//! after every receive batch. The frames the engine emits are consumed (their lengths summed)
//! so the work cannot be optimised away. Each mix/profile pair is timed once, with
//! [`Throughput::Bytes`] (input frame bytes per second); each mix's frame and byte counts
//! are written to `target/criterion/engine-mixes.tsv`, from which `scripts/bench/report.py`
//! derives frames per second from the same timing. (Timed twice, once per unit, the two
//! figures of one pair disagreed by up to a third: two separate 2-second measurements.)
//!
//! Run: `cargo bench --bench engine` (about a minute and a half); `cargo bench --bench
//! engine -- strict` for one profile. `scripts/bench.sh` reads the results from
//! `target/criterion`.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mailguard::cli::replay::side_of;
use mailguard::engine::{Engine, EngineConfig, FrameSink, Time, Verdict};
use mailguard::io::synth::{write_bulk, BulkOptions, Frame};
use mailguard::smtp::{PolicyConfig, Profile};
use std::sync::Arc;
use std::time::Duration;

/// Frames handled between two polls of the engine's timers (the live worker's batch).
const BATCH: usize = 32;

/// The SMTP port of the generated sessions.
const SMTP_PORT: u16 = 25;

/// A port no generated frame uses: with it, every frame passes through unfiltered.
const OTHER_PORT: u16 = 2525;

/// One traffic mix, generated once.
struct Mix {
    /// Name in the benchmark id.
    name: &'static str,
    /// The frames, in capture order.
    frames: Vec<Frame>,
    /// The port the engine filters for this mix.
    port: u16,
}

impl Mix {
    fn bytes(&self) -> u64 {
        self.frames.iter().map(|f| f.data.len() as u64).sum()
    }
}

/// Frames of `opts` written by the synthesizer into memory.
fn generate(opts: &BulkOptions) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    if let Err(e) = write_bulk(opts, &mut frames) {
        panic!("generating benchmark frames: {e}");
    }
    frames
}

fn mixes() -> Vec<Mix> {
    let bulk = generate(&BulkOptions {
        sessions: 12,
        seed: 6,
        attachment_kb: 256,
        pipelining_ratio: 0.3,
        parallel: 4,
        ..BulkOptions::default()
    });
    let commands = generate(&BulkOptions {
        sessions: 400,
        seed: 7,
        attachment_kb: 0,
        pipelining_ratio: 0.5,
        mails_per_session: 3,
        parallel: 64,
        ..BulkOptions::default()
    });
    vec![
        Mix {
            name: "bulk",
            frames: bulk.clone(),
            port: SMTP_PORT,
        },
        Mix {
            name: "commands",
            frames: commands,
            port: SMTP_PORT,
        },
        Mix {
            name: "passthrough",
            frames: bulk,
            port: OTHER_PORT,
        },
    ]
}

fn config(profile: Profile, port: u16) -> EngineConfig {
    EngineConfig {
        ports: vec![port],
        policy: Arc::new(PolicyConfig {
            profile,
            ..PolicyConfig::default()
        }),
        ..EngineConfig::default()
    }
}

/// Feeds every frame of `frames` (sides precomputed) to `engine`; returns the bytes that
/// would be written out, so that nothing can be optimised away.
fn run(engine: &mut Engine, frames: &[(mailguard::engine::Side, &Frame)]) -> u64 {
    let mut sink = FrameSink::default();
    let mut out = 0u64;
    let mut now = 0u64;
    for batch in frames.chunks(BATCH) {
        for (side, f) in batch {
            now = now.max(f.ts_ns);
            sink.clear();
            if let Verdict::Forward(_) = engine.handle_frame(Time(now), *side, &f.data, &mut sink) {
                out += f.data.len() as u64;
            }
            out += sink.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
        }
        if engine.poll_timeout().is_some_and(|t| t.0 <= now) {
            sink.clear();
            engine.handle_timeout(Time(now), &mut sink);
            out += sink.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
        }
    }
    out
}

fn bench_engine(c: &mut Criterion) {
    let mut sizes = String::from("# mix\tframes\tbytes (benches/engine.rs)\n");
    for mix in mixes() {
        let sided: Vec<_> = mix
            .frames
            .iter()
            .map(|f| (side_of(&f.data, &[mix.port]), f))
            .collect();
        let bytes = mix.bytes();
        let count = mix.frames.len() as u64;
        eprintln!(
            "engine/{}: {count} frames, {bytes} bytes, {:.0} bytes/frame",
            mix.name,
            bytes as f64 / count.max(1) as f64
        );
        sizes.push_str(&format!("{}\t{count}\t{bytes}\n", mix.name));
        let mut group = c.benchmark_group(format!("engine/{}", mix.name));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Bytes(bytes));
        for profile in [Profile::Off, Profile::Pix51, Profile::Strict] {
            group.bench_function(profile.name(), |b| {
                b.iter_batched(
                    || Engine::new(config(profile, mix.port)),
                    |mut engine| black_box(run(&mut engine, black_box(&sided))),
                    BatchSize::PerIteration,
                )
            });
        }
        group.finish();
    }
    write_sizes(&sizes);
}

/// Writes the mixes' sizes next to criterion's results, where the report looks for them.
fn write_sizes(sizes: &str) {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = std::path::Path::new(&target).join("criterion");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("engine-mixes.tsv"), sizes));
    if let Err(e) = written {
        eprintln!("engine bench: cannot write {}: {e}", dir.display());
    }
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
