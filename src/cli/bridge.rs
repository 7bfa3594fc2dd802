//! `mailguard bridge`: the live bump in the wire between two interfaces.
//!
//! The main thread opens every worker's ports (in worker order, so fanout indexes line up),
//! turns offloads off on AF_PACKET ports, starts the workers, then only aggregates their
//! reports: a one-line `log::info!` every `--stats-interval`, a summary on stdout at exit.
//! SIGINT and SIGTERM set a flag the main thread polls; workers get [`Control::Stop`], send
//! their last counters and exit; dropping the offload guards restores interface settings.

use super::{
    dropped_by_reason, evicted_by_class, forwarded_by_reason, join_counts, CliError, LimitArgs,
    PolicyArgs,
};
use crate::engine::{Side, Stats};
use crate::io::afpacket::{self, OffloadGuard};
use crate::io::backend::{check_interface_up, Backend, IoStats, MAX_FRAME};
use crate::io::tap;
use crate::io::worker::{self, CapturedFrame, Control, WorkerConfig, WorkerReport};
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest `--workers` accepted.
const MAX_WORKERS: usize = 64;
/// Frames queued for the `--pcap-out` writer before frames are left out (at most 64 MiB).
const CAPTURE_QUEUE: usize = 1024;

/// Options of this subcommand.
#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "What it does:
  Every frame read on one interface is written to the other; TCP connections to --ports are
  rewritten by the Mailguard --profile, everything else crosses untouched. mailguard has no
  address of its own: put it between a client-facing port (--outside) and a server-facing
  port (--inside): two NICs, two veth ends or two TAP devices. Needs root (CAP_NET_RAW and
  CAP_NET_ADMIN).

Examples:
  mailguard bridge --outside eth1 --inside eth2 --profile pix51
  RUST_LOG=info mailguard bridge --outside mgo1 --inside mgi1 --workers 2 --stats-interval 5
  mailguard bridge --backend tap --outside tap-out --inside tap-in --profile strict --allow-verb X-LINK2STATE

Notes:
  afpacket turns GRO/GSO/TSO/LRO and tx checksumming off on both ports while it runs and
  restores them at exit. Turn tx checksumming off on veth peers too (scripts/lab.sh does).
  tap attaches to existing TAP devices or creates them; with --workers > 1 they must be
  multi-queue (ip tuntap add mode tap multi_queue name NAME).
  Periodic stats are logged at info level: set RUST_LOG=info to see them.
  Stop with Ctrl-C or SIGTERM: a summary is printed and interface settings restored.
  Exit codes: 0 stopped by a signal, 69 interface missing or down, 77 no privilege, 1 other.
  scripts/lab.sh up|demo|down builds a namespace lab to try it.")]
pub struct Args {
    /// The interface on the untrusted (client) side.
    #[arg(long, value_name = "IF")]
    pub outside: String,
    /// The interface on the protected (server) side.
    #[arg(long, value_name = "IF")]
    pub inside: String,
    /// The policy.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Resource bounds (for the whole bridge: divided among the workers).
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Worker threads, each pinned to a core with its own engine and sockets; both
    /// directions of a connection always reach the same worker.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workers: usize,
    /// How frames are read and written.
    #[arg(long, value_enum, default_value = "afpacket")]
    pub backend: BackendArg,
    /// Seconds between one-line stats logs (0: none; logged at info level).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub stats_interval: u64,
    /// Also write every frame the bridge sends, both sides, to this file: pcapng (with the
    /// side as the interface) if it ends in .pcapng, else pcap.
    #[arg(long, value_name = "FILE")]
    pub pcap_out: Option<PathBuf>,
    /// afpacket: microseconds a worker spins on its receive rings after they run empty,
    /// before it sleeps (lower latency at light load for that much CPU after each burst;
    /// 0: never spin). Ignored by tap.
    #[arg(long, default_value_t = DEFAULT_BUSY_POLL_US, value_name = "MICROSECONDS",
          value_parser = clap::value_parser!(u64).range(0..=MAX_BUSY_POLL_US))]
    pub busy_poll_us: u64,
    /// afpacket: write frames into a transmit ring (`PACKET_TX_RING`) handed over with one
    /// `send` per batch, instead of `sendmmsg` from a queue per side. Off by default: on
    /// veth it measured slower (the kernel copies every ring frame again into the peer
    /// namespace; scripts/bench/notes.md). Ignored by tap.
    #[arg(long)]
    pub tx_ring: bool,
    /// afpacket: send straight to the driver (`PACKET_QDISC_BYPASS`) instead of through
    /// the interfaces' qdisc: skips traffic control and the taps on it (a capture on the
    /// bridge's own ports then shows only what it receives). Ignored by tap.
    #[arg(long)]
    pub qdisc_bypass: bool,
}

/// Default of `--busy-poll-us`: 50 µs took the added median latency of a request/response
/// exchange from about 38 to 23 µs in the bench's lab (200 µs gained nothing more); an idle
/// bridge does not spin at all, a busy one spins at most 50 µs after each burst
/// (scripts/bench/notes.md has the measurements).
pub const DEFAULT_BUSY_POLL_US: u64 = 50;
/// Largest `--busy-poll-us` accepted (the afpacket backend's limit).
const MAX_BUSY_POLL_US: u64 = afpacket::MAX_BUSY_POLL.as_micros() as u64;

/// `--backend` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// AF_PACKET raw sockets on existing interfaces (NICs, veth), fanout for workers.
    Afpacket,
    /// TAP devices, attached or created by name, one queue per worker.
    Tap,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> Result<(), CliError> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain old data; the handler only stores to an atomic, which
        // is async-signal-safe.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(CliError::new(format!(
                "cannot install signal handler: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

fn io_error(e: std::io::Error) -> CliError {
    let code = match e.kind() {
        std::io::ErrorKind::PermissionDenied => 77,
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotConnected => 69,
        _ => 1,
    };
    CliError {
        message: e.to_string(),
        code,
    }
}

fn validate(args: &Args) -> Result<(), CliError> {
    if args.outside == args.inside {
        return Err(CliError::new(
            "--outside and --inside must be different interfaces",
        ));
    }
    if args.workers == 0 || args.workers > MAX_WORKERS {
        return Err(CliError::new(format!(
            "--workers must be between 1 and {MAX_WORKERS}"
        )));
    }
    if args.policy.ports.is_empty() || args.policy.ports.contains(&0) {
        return Err(CliError::new(
            "--ports needs at least one port, none of them 0",
        ));
    }
    Ok(())
}

/// Everything that must stay alive while the bridge runs and be undone after.
struct Running {
    handles: Vec<JoinHandle<()>>,
    controls: Vec<Sender<Control>>,
    reports: Receiver<WorkerReport>,
    capture: Option<JoinHandle<Result<u64, String>>>,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), CliError> {
    validate(args)?;
    // Fail early and clearly on a missing or down interface (TAP devices may be created).
    if args.backend == BackendArg::Afpacket {
        for name in [&args.outside, &args.inside] {
            check_interface_up(name).map_err(io_error)?;
        }
    }
    let _offloads: Vec<OffloadGuard> = match args.backend {
        BackendArg::Afpacket => [&args.outside, &args.inside]
            .iter()
            .map(|name| OffloadGuard::disable(name))
            .collect::<Result<_, _>>()
            .map_err(io_error)?,
        BackendArg::Tap => Vec::new(),
    };
    install_signal_handlers()?;
    let running = match args.backend {
        BackendArg::Afpacket => {
            let backends = open_afpacket(args)?;
            start(args, backends)?
        }
        BackendArg::Tap => {
            let backends =
                tap::open_workers(&args.outside, &args.inside, args.workers).map_err(io_error)?;
            start(args, backends)?
        }
    };
    log::info!(
        "bridging {} (outside) <-> {} (inside): {:?} backend, {} worker(s), profile {:?}, ports {:?}",
        args.outside,
        args.inside,
        args.backend,
        args.workers,
        args.policy.profile,
        args.policy.ports
    );
    supervise(args, running)
}

/// Opens the AF_PACKET ports of every worker, with `--busy-poll-us`.
fn open_afpacket(args: &Args) -> Result<Vec<afpacket::AfPacketBackend>, CliError> {
    let tx = afpacket::TxOptions {
        ring: args.tx_ring,
        qdisc_bypass: args.qdisc_bypass,
    };
    let mut backends = afpacket::open_workers_with(&args.outside, &args.inside, args.workers, tx)
        .map_err(io_error)?;
    for b in &mut backends {
        b.set_busy_poll(Duration::from_micros(args.busy_poll_us));
    }
    let rx = if backends.iter().all(|b| b.uses_rings()) {
        "receive rings (TPACKET_V2)"
    } else {
        "recvmsg per frame (no ring)"
    };
    let send = if backends.iter().all(|b| b.uses_tx_rings()) {
        "transmit rings (TPACKET_V2)"
    } else {
        "sendmmsg"
    };
    let qdisc = if tx.qdisc_bypass {
        "qdisc bypass"
    } else {
        "through the qdisc"
    };
    log::info!(
        "afpacket: {rx}, {send}, {qdisc}, busy-poll {} us",
        args.busy_poll_us
    );
    Ok(backends)
}

/// Starts the workers (and the capture writer) on the opened backends.
fn start<B: Backend + 'static>(args: &Args, backends: Vec<B>) -> Result<Running, CliError> {
    let (capture_tx, capture) = match &args.pcap_out {
        Some(path) => {
            let (tx, rx) = bounded(CAPTURE_QUEUE);
            let file = std::fs::File::create(path)
                .map_err(|e| CliError::new(format!("cannot create {}: {e}", path.display())))?;
            let handle = std::thread::Builder::new()
                .name("mg-pcap-out".into())
                .spawn({
                    let path = path.clone();
                    let names = [args.outside.clone(), args.inside.clone()];
                    move || write_capture(&path, file, names, rx)
                })
                .map_err(|e| CliError::new(format!("cannot start the pcap writer: {e}")))?;
            (Some(tx), Some(handle))
        }
        None => (None, None),
    };
    let cpus = worker::allowed_cpus();
    let (report_tx, reports) = unbounded();
    let epoch = Instant::now();
    let engine = args.policy.engine_config();
    let limits = args.limits.limits(args.workers);
    let report_every = (args.stats_interval > 0).then(|| Duration::from_secs(1));
    let mut handles = Vec::new();
    let mut controls = Vec::new();
    for (index, backend) in backends.into_iter().enumerate() {
        let (control_tx, control_rx) = unbounded();
        let config = WorkerConfig {
            index,
            cpu: (!cpus.is_empty()).then(|| cpus.get(index % cpus.len()).copied().unwrap_or(0)),
            engine: engine.clone(),
            limits: limits.clone(),
            report_every,
            epoch,
        };
        let handle = worker::spawn(
            config,
            backend,
            control_rx,
            report_tx.clone(),
            capture_tx.clone(),
        )
        .map_err(|e| CliError::new(format!("cannot start worker {index}: {e}")))?;
        handles.push(handle);
        controls.push(control_tx);
    }
    Ok(Running {
        handles,
        controls,
        reports,
        capture,
    })
}

/// Writes captured frames until every sender is gone; returns frames written. A `.pcapng`
/// file records the side each frame was sent on as its interface (0 outside, 1 inside,
/// named after the real interfaces); any other name gets a classic pcap.
fn write_capture(
    path: &std::path::Path,
    file: std::fs::File,
    names: [String; 2],
    rx: Receiver<CapturedFrame>,
) -> Result<u64, String> {
    let out = std::io::BufWriter::new(file);
    let err = |e: pcap_file::PcapError| format!("pcap-out: {e}");
    let mut written = 0u64;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pcapng"))
    {
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::{
            InterfaceDescriptionBlock, InterfaceDescriptionOption,
        };
        use pcap_file::pcapng::PcapNgWriter;
        let mut writer = PcapNgWriter::new(out).map_err(err)?;
        for name in names {
            writer
                .write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: pcap_file::DataLink::ETHERNET,
                    snaplen: MAX_FRAME as u32,
                    options: vec![InterfaceDescriptionOption::IfName(name.into())],
                })
                .map_err(err)?;
        }
        for frame in rx {
            writer
                .write_pcapng_block(EnhancedPacketBlock {
                    interface_id: match frame.side {
                        Side::Outside => 0,
                        Side::Inside => 1,
                    },
                    timestamp: frame.when,
                    original_len: frame.data.len() as u32,
                    data: frame.data.into(),
                    options: Vec::new(),
                })
                .map_err(err)?;
            written += 1;
        }
        let mut inner = writer.into_inner();
        std::io::Write::flush(&mut inner).map_err(|e| format!("pcap-out: {e}"))?;
    } else {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let header = PcapHeader {
            snaplen: MAX_FRAME as u32,
            ..PcapHeader::default()
        };
        let mut writer = PcapWriter::with_header(out, header).map_err(err)?;
        for frame in rx {
            let len = frame.data.len() as u32;
            writer
                .write_packet(&PcapPacket::new(frame.when, len, &frame.data))
                .map_err(err)?;
            written += 1;
        }
        let mut inner = writer.into_writer();
        std::io::Write::flush(&mut inner).map_err(|e| format!("pcap-out: {e}"))?;
    }
    Ok(written)
}

/// Totals over every worker's latest report.
#[derive(Default)]
struct Totals {
    latest: Vec<Option<WorkerReport>>,
}

impl Totals {
    fn update(&mut self, r: WorkerReport) {
        if self.latest.len() <= r.worker {
            self.latest.resize(r.worker + 1, None);
        }
        if let Some(slot) = self.latest.get_mut(r.worker) {
            *slot = Some(r);
        }
    }

    fn sum(&self) -> (Stats, IoStats, u64) {
        let mut stats = Stats::default();
        let mut io = IoStats::default();
        let mut capture_dropped = 0;
        for r in self.latest.iter().flatten() {
            stats.merge(&r.engine);
            io.merge(&r.io);
            capture_dropped += r.capture_dropped;
        }
        (stats, io, capture_dropped)
    }
}

/// One line of counters.
fn stats_line(stats: &Stats, io: &IoStats) -> String {
    let blocked: u64 = stats.blocked.values().sum();
    let resets: u64 = stats.resets.values().sum();
    format!(
        "rx out={} in={} | tx out={} in={} | forwarded={} rewritten={} dropped={} originated={} | smtp conns={} blocked={} banners={} injected={} resets={} | truncated={} tx-errors={} tx-retries={} tx-copied={}",
        io.rx_frames[0],
        io.rx_frames[1],
        io.tx_frames[0],
        io.tx_frames[1],
        stats.forwarded_total(),
        stats.rewritten,
        stats.dropped_total(),
        stats.originated,
        stats.connections,
        blocked,
        stats.banners_masked,
        stats.replies_injected,
        resets,
        io.rx_truncated,
        io.tx_errors,
        io.tx_retries,
        io.tx_copied,
    )
}

/// The multi-line summary printed at exit.
fn summary(elapsed: Duration, stats: &Stats, io: &IoStats, capture_dropped: u64) -> String {
    let mut out = format!(
        "mailguard bridge: stopped after {:.1} s\n  {}\n",
        elapsed.as_secs_f64(),
        stats_line(stats, io)
    );
    let nonzero = |counts: Vec<(&str, u64)>| -> String {
        join_counts(counts, "=", " ", true).unwrap_or_else(|| "none".to_string())
    };
    out += &format!(
        "  forwarded: {}\n  dropped: {}\n",
        nonzero(forwarded_by_reason(stats)),
        nonzero(dropped_by_reason(stats))
    );
    let by_verb = |m: &std::collections::BTreeMap<crate::smtp::VerbName, u64>| -> String {
        join_counts(m.iter().map(|(k, n)| (k, *n)), "=", " ", false)
            .unwrap_or_else(|| "none".to_string())
    };
    out += &format!(
        "  evicted: {}  peak memory accounted: {} bytes (sum over workers)\n",
        nonzero(evicted_by_class(stats)),
        stats.peak_memory
    );
    out += &format!(
        "  commands: {}\n  blocked: {}\n",
        by_verb(&stats.commands),
        by_verb(&stats.blocked)
    );
    if io.rx_csum_partial > 0 {
        out += &format!(
            "  frames read with partial checksums: {} (turn tx checksum offload off on local peers)\n",
            io.rx_csum_partial
        );
    }
    if io.rx_own_outgoing > 0 || capture_dropped > 0 {
        out += &format!(
            "  own frames re-read: {}  frames left out of --pcap-out: {capture_dropped}\n",
            io.rx_own_outgoing
        );
    }
    out
}

/// Waits for a signal or a worker failure, logging stats; then stops everything.
fn supervise(args: &Args, running: Running) -> Result<(), CliError> {
    let started = Instant::now();
    let interval = Duration::from_secs(args.stats_interval);
    let mut next_log = started + interval;
    let mut totals = Totals::default();
    let mut failure: Option<String> = None;
    let mut finished = 0;
    let workers = running.handles.len();
    while !STOP.load(Ordering::SeqCst) && failure.is_none() {
        match running.reports.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => {
                if r.last {
                    finished += 1;
                    failure = Some(format!(
                        "worker {} stopped: {}",
                        r.worker,
                        r.error.clone().unwrap_or_else(|| "no reason".into())
                    ));
                }
                totals.update(r);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                failure = Some("every worker is gone".into());
            }
        }
        if args.stats_interval > 0 && Instant::now() >= next_log {
            let (stats, io, _) = totals.sum();
            log::info!("stats: {}", stats_line(&stats, &io));
            next_log += interval;
        }
    }
    for c in &running.controls {
        let _ = c.send(Control::Stop);
    }
    // Collect the last report of every worker still running (each exits within MAX_WAIT).
    let deadline = Instant::now() + Duration::from_secs(5);
    while finished < workers {
        let left = deadline.saturating_duration_since(Instant::now());
        match running.reports.recv_timeout(left) {
            Ok(r) => {
                if r.last {
                    finished += 1;
                }
                totals.update(r);
            }
            Err(_) => break,
        }
    }
    drop(running.controls);
    for h in running.handles {
        let _ = h.join();
    }
    if let Some(h) = running.capture {
        match h.join() {
            Ok(Ok(n)) => log::info!("pcap-out: {n} frames written"),
            Ok(Err(e)) => log::error!("{e}"),
            Err(_) => log::error!("pcap-out writer panicked"),
        }
    }
    let (stats, io, capture_dropped) = totals.sum();
    print!(
        "{}",
        summary(started.elapsed(), &stats, &io, capture_dropped)
    );
    match failure {
        Some(f) => Err(CliError::new(f)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ForwardReason;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("bridge").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn options_parse_with_defaults() {
        let a = parse(&["--outside", "a0", "--inside", "b0"]).expect("parse");
        assert_eq!(
            (a.workers, a.backend, a.stats_interval),
            (1, BackendArg::Afpacket, 10)
        );
        assert!(a.pcap_out.is_none());
        let a = parse(&[
            "--outside",
            "a0",
            "--inside",
            "b0",
            "--workers",
            "2",
            "--backend",
            "tap",
            "--profile",
            "pix40",
            "--pcap-out",
            "x.pcap",
            "--stats-interval",
            "0",
        ])
        .expect("parse");
        assert_eq!(
            (a.workers, a.backend, a.stats_interval),
            (2, BackendArg::Tap, 0)
        );
        assert_eq!(a.policy.profile, crate::cli::ProfileArg::Pix40);
        assert!(parse(&["--outside", "a0"]).is_err());
    }

    #[test]
    fn transmit_ring_and_qdisc_bypass_are_off_unless_asked_for() {
        let a = parse(&["--outside", "a0", "--inside", "b0"]).expect("parse");
        assert!(!a.tx_ring && !a.qdisc_bypass);
        let a = parse(&[
            "--outside",
            "a0",
            "--inside",
            "b0",
            "--tx-ring",
            "--qdisc-bypass",
        ])
        .expect("parse");
        assert!(a.tx_ring && a.qdisc_bypass);
        let io = IoStats {
            tx_errors: 1,
            tx_retries: 2,
            tx_copied: 3,
            ..IoStats::default()
        };
        let line = stats_line(&Stats::default(), &io);
        assert!(
            line.ends_with("| truncated=0 tx-errors=1 tx-retries=2 tx-copied=3"),
            "{line}"
        );
    }

    #[test]
    fn busy_poll_defaults_and_is_bounded() {
        let a = parse(&["--outside", "a0", "--inside", "b0"]).expect("parse");
        assert_eq!(a.busy_poll_us, DEFAULT_BUSY_POLL_US);
        let a =
            parse(&["--outside", "a0", "--inside", "b0", "--busy-poll-us", "250"]).expect("parse");
        assert_eq!(a.busy_poll_us, 250);
        let max = MAX_BUSY_POLL_US.to_string();
        assert!(parse(&["--outside", "a0", "--inside", "b0", "--busy-poll-us", &max]).is_ok());
        let over = (MAX_BUSY_POLL_US + 1).to_string();
        for bad in [over.as_str(), "-1", "soon"] {
            assert!(
                parse(&["--outside", "a0", "--inside", "b0", "--busy-poll-us", bad]).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn nonsense_is_refused_before_touching_interfaces() {
        let same = parse(&["--outside", "a0", "--inside", "a0"]).expect("parse");
        assert!(validate(&same).is_err());
        let none = parse(&["--outside", "a0", "--inside", "b0", "--workers", "0"]).expect("parse");
        assert!(validate(&none).is_err());
        let many = parse(&["--outside", "a0", "--inside", "b0", "--workers", "65"]).expect("parse");
        assert!(validate(&many).is_err());
        let port0 = parse(&["--outside", "a0", "--inside", "b0", "--ports", "0"]).expect("parse");
        assert!(validate(&port0).is_err());
        let ok = parse(&["--outside", "a0", "--inside", "b0", "--workers", "64"]).expect("parse");
        assert!(validate(&ok).is_ok());
    }

    #[test]
    fn missing_interface_fails_with_one_line_and_code_69() {
        let a = parse(&["--outside", "mg-nosuch0", "--inside", "mg-nosuch1"]).expect("parse");
        let e = run(&a).expect_err("no such interface");
        assert_eq!(e.message, "interface mg-nosuch0 does not exist");
        assert_eq!(e.code, 69);
    }

    fn report(worker: usize, frames: u64, last: bool) -> WorkerReport {
        let mut engine = Stats {
            frames_in: frames,
            ..Stats::default()
        };
        engine.forwarded[ForwardReason::NotIp as usize] = frames;
        let io = IoStats {
            rx_frames: [frames, 0],
            tx_frames: [0, frames],
            ..IoStats::default()
        };
        WorkerReport {
            worker,
            engine,
            io,
            capture_dropped: 0,
            last,
            error: None,
        }
    }

    #[test]
    fn totals_keep_the_latest_report_of_each_worker() {
        let mut t = Totals::default();
        t.update(report(1, 5, false));
        t.update(report(0, 2, false));
        t.update(report(1, 7, true));
        let (stats, io, _) = t.sum();
        assert_eq!(stats.frames_in, 9);
        assert_eq!(io.rx_frames, [9, 0]);
        let line = stats_line(&stats, &io);
        assert!(
            line.starts_with("rx out=9 in=0 | tx out=0 in=9 | forwarded=9 "),
            "{line}"
        );
        let s = summary(Duration::from_millis(1500), &stats, &io, 0);
        assert!(
            s.starts_with("mailguard bridge: stopped after 1.5 s\n"),
            "{s}"
        );
        assert!(s.contains("  forwarded: not-ip=9\n"), "{s}");
        assert!(s.contains("  dropped: none\n"), "{s}");
    }
}
