//! `mailguard replay`: a capture in, the capture the box would have emitted out, and a report.
//!
//! Choices made where the spec is silent:
//! - **Sides.** A capture has no interfaces, so each frame's side is inferred: a TCP segment
//!   to a filtered port comes from the client (`Outside`), one from a filtered port comes
//!   from the server (`Inside`); anything else is given as `Outside` (the engine forwards it
//!   untouched anyway). Both sides go to the one output file.
//! - **Clock.** The engine's clock is the packet timestamp in nanoseconds since the Unix
//!   epoch, made monotonic (a timestamp earlier than the previous one is given to the engine
//!   as the previous one; the frame itself keeps its own). Engine timers due before a frame
//!   are run first, stamped with their due time. After the last frame, timers due within
//!   `--drain` seconds of the last timestamp are run (default 0: only those already due).
//! - **Output timestamps.** A forwarded frame keeps its record header verbatim; frames the
//!   engine emits while handling a frame get that frame's timestamp.
//! - **Truncated input.** Everything read before the damage is processed and written (the
//!   output is a valid pcap), the summary is printed, then the error is reported (exit 3).
//! - Exit codes: 1 input missing/unreadable, 2 not a capture or unsupported link type
//!   (also clap's code for bad options), 3 truncated input, 4 output not writable.

use super::{
    dropped_by_reason, evicted_by_class, forwarded_by_reason, join_counts, CliError, LimitArgs,
    PolicyArgs,
};
use crate::engine::{ConnectionReport, Engine, FrameSink, Side, Stats, Time, Verdict};
use crate::io::pcap::{CaptureError, CaptureReader, CaptureWriter, Format, LinkAdapter, Record};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of this subcommand.
#[derive(Clone, Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// The capture to replay (pcap or pcapng; Ethernet, Linux SLL/SLL2, loopback or raw IP).
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,
    /// Where to write what the filter would have emitted (pcap, same link type as INPUT).
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// Also write the summary as JSON, with one record per connection.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Keep the clock running this many seconds past the last frame, so that the filter's
    /// pending timers (retransmissions of injected replies) fire.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    pub drain: f64,
    /// The policy.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Resource bounds.
    #[command(flatten)]
    pub limits: LimitArgs,
}

const EXAMPLES: &str = "\
Examples:
  # What would a PIX 5.1 do to the bundled Microsoft KB 320027 session?
  mailguard replay pcaps/kb320027.pcap -o /tmp/kb.pix51.pcap --profile pix51

  # The KB article's exact banner masking, and a JSON report per connection:
  mailguard replay pcaps/kb320027.pcap -o /tmp/kb.pcap --profile pix51 --banner-mask kb \\
      --report /tmp/kb.json

  # Our ESMTP-friendly policy on submission and SMTP ports, letting Exchange's verbs through:
  mailguard replay mail.pcapng -o out.pcap --profile strict --ports 25,587 \\
      --allow-verb X-LINK2STATE --allow-verb XEXCH50

  # Compare what each side saw:
  tshark -r /tmp/kb.pix51.pcap -qz follow,tcp,ascii,0

The summary lists connections, commands seen and blocked by verb, banners and EHLO replies
masked, replies injected, resets, and what happened to every frame. Exit status: 0 ok,
1 missing input, 2 not a capture / unsupported link type, 3 truncated capture (output
holds what was read), 4 output not writable.";

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), CliError> {
    let started = Instant::now();
    let mut reader = CaptureReader::open(&args.input).map_err(cli_error)?;
    if same_file(&args.input, &args.output) {
        return Err(CliError {
            message: format!(
                "output {} is the input file; choose another -o",
                args.output.display()
            ),
            code: 4,
        });
    }
    let mut replay = Replay::new(args, &mut reader)?;
    let truncated = replay.run(&mut reader)?;
    let elapsed = started.elapsed();
    let summary = replay.summary(args, &reader, elapsed);
    print!("{summary}");
    if let Some(path) = &args.report {
        write_report(path, args, &replay, &reader, elapsed)?;
    }
    match truncated {
        Some(e) => Err(CliError {
            message: format!(
                "{e}; {} holds the {} frames emitted for them",
                args.output.display(),
                replay.frames_out
            ),
            code: 3,
        }),
        None => Ok(()),
    }
}

/// True when both paths name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn cli_error(e: CaptureError) -> CliError {
    let code = match e {
        CaptureError::Open { .. } => 1,
        CaptureError::NotACapture { .. }
        | CaptureError::UnsupportedLinkType { .. }
        | CaptureError::MixedLinkTypes { .. } => 2,
        CaptureError::Truncated { .. } => 3,
        CaptureError::Write { .. } => 4,
    };
    CliError {
        message: e.to_string(),
        code,
    }
}

/// The state of one replay run.
struct Replay {
    engine: Engine,
    sink: FrameSink,
    adapter: Option<LinkAdapter>,
    writer: CaptureWriter,
    ports: Vec<u16>,
    /// The engine's (monotonic) clock.
    now: Option<u64>,
    reports: Vec<ConnectionReport>,
    record: bool,
    frames_out: u64,
    bytes_in: u64,
    timers_stuck: bool,
    progress: Option<Progress>,
    drain: Duration,
    /// Damage met while reading ahead (pcapng's first frame).
    damage: Option<CaptureError>,
}

impl Replay {
    /// Checks the link type, creates the output and the engine. pcapng announces its link
    /// type in a block before the first packet, so for pcapng the first frame is read here
    /// (and replayed at once).
    fn new(args: &Args, reader: &mut CaptureReader) -> Result<Replay, CliError> {
        let mut first = None;
        let mut damage = None;
        if reader.format() == Format::PcapNg {
            match reader.next_record() {
                Some(Ok(r)) => first = Some(r.to_frame()),
                Some(Err(e @ CaptureError::Truncated { .. })) => damage = Some(e),
                Some(Err(e)) => return Err(cli_error(e)),
                None => {}
            }
        }
        let adapter = match reader.linktype() {
            u32::MAX => None,
            lt => Some(LinkAdapter::new(lt).map_err(cli_error)?),
        };
        let writer =
            CaptureWriter::create(&args.output, reader.output_header()).map_err(cli_error)?;
        let mut config = args.policy.engine_config();
        let record = args.report.is_some();
        config.record_connections = record;
        let mut ports = args.policy.ports.clone();
        ports.sort_unstable();
        let mut replay = Replay {
            engine: Engine::new(config).with_limits(args.limits.limits(1)),
            sink: FrameSink::default(),
            adapter,
            writer,
            ports,
            now: None,
            reports: Vec::new(),
            record,
            frames_out: 0,
            bytes_in: 0,
            timers_stuck: false,
            progress: Progress::new(),
            drain: Duration::try_from_secs_f64(args.drain.max(0.0)).unwrap_or(Duration::ZERO),
            damage,
        };
        if let Some(frame) = first {
            replay.frame(&frame.as_record())?;
        }
        Ok(replay)
    }

    /// Replays every frame; returns the truncation error if the input ended inside a record.
    fn run(&mut self, reader: &mut CaptureReader) -> Result<Option<CaptureError>, CliError> {
        let mut damage = self.damage.take();
        while let Some(next) = reader.next_record() {
            match next {
                Ok(record) => self.frame(&record)?,
                Err(e @ CaptureError::Truncated { .. }) => {
                    damage = Some(e);
                    break;
                }
                Err(e) => return Err(cli_error(e)),
            }
            if let Some(p) = &mut self.progress {
                p.tick(reader);
            }
        }
        if let Some(p) = &mut self.progress {
            p.clear();
        }
        if let Some(now) = self.now {
            let end = Time(now).after(self.drain);
            self.run_timers(end)?;
        }
        if self.record {
            self.reports
                .extend(self.engine.take_connection_reports(true));
        }
        self.writer.flush().map_err(cli_error)?;
        Ok(damage)
    }

    /// Handles one input frame (a forwarded one is written from the reader's buffer).
    fn frame(&mut self, frame: &Record) -> Result<(), CliError> {
        self.bytes_in += frame.data.len() as u64;
        let now = self.now.map_or(frame.ts_ns, |n| n.max(frame.ts_ns));
        self.now = Some(now);
        self.run_timers(Time(now))?;
        let Some(adapter) = &mut self.adapter else {
            return Ok(());
        };
        self.sink.clear();
        let eth = adapter.to_ethernet(frame.data);
        let side = side_of(eth, &self.ports);
        let verdict = self
            .engine
            .handle_frame(Time(now), side, eth, &mut self.sink);
        if let Verdict::Forward(_) = verdict {
            self.writer.write_record(frame).map_err(cli_error)?;
            self.frames_out += 1;
        }
        self.emit_sink(frame.ts_ns)?;
        if self.record {
            self.reports
                .extend(self.engine.take_connection_reports(false));
        }
        Ok(())
    }

    /// Runs the engine's timers due up to `until`, stamping what they emit with their due time.
    fn run_timers(&mut self, until: Time) -> Result<(), CliError> {
        while let Some(due) = self.engine.poll_timeout() {
            if due > until {
                break;
            }
            self.sink.clear();
            self.engine.handle_timeout(due, &mut self.sink);
            self.emit_sink(due.0)?;
            if self.engine.poll_timeout().is_some_and(|next| next <= due) {
                // The engine did not move its timer forward: stop rather than spin.
                self.timers_stuck = true;
                log::warn!("engine timer at {} ns did not advance; skipped", due.0);
                break;
            }
        }
        Ok(())
    }

    /// Writes the frames in the sink, stamped `ts_ns`.
    fn emit_sink(&mut self, ts_ns: u64) -> Result<(), CliError> {
        let Some(adapter) = &mut self.adapter else {
            return Ok(());
        };
        for (_, eth) in self.sink.iter() {
            let data = adapter.from_ethernet(eth);
            self.writer.write_frame(ts_ns, data).map_err(cli_error)?;
            self.frames_out += 1;
        }
        Ok(())
    }

    fn summary(&self, args: &Args, reader: &CaptureReader, elapsed: Duration) -> String {
        render_summary(&SummaryInput {
            input: &args.input,
            output: &args.output,
            format: reader.format(),
            linktype: reader.linktype(),
            policy: &args.policy,
            limits: &args.limits,
            stats: self.engine.stats(),
            frames_out: self.frames_out,
            bytes_in: self.bytes_in,
            elapsed,
            timers_stuck: self.timers_stuck,
        })
    }
}

/// The side a frame is taken to come from (see the module docs).
pub fn side_of(eth: &[u8], ports: &[u16]) -> Side {
    // A plain loop: the port list is a handful of entries, and `<[u16]>::contains` sets up
    // a vectorised search that cost more than the whole frame's header parse here.
    #[allow(clippy::manual_contains)]
    let filtered = |p: u16| ports.iter().any(|&f| f == p);
    match tcp_ports(eth) {
        Some((_, dst)) if filtered(dst) => Side::Outside,
        Some((src, _)) if filtered(src) => Side::Inside,
        _ => Side::Outside,
    }
}

/// TCP source and destination ports of an Ethernet frame (VLAN tags skipped, first IPv4
/// fragment or IPv6 without extension headers), if it is one.
fn tcp_ports(eth: &[u8]) -> Option<(u16, u16)> {
    let be16 = |b: &[u8], i: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
    };
    let mut off = 12;
    let mut ethertype = be16(eth, off)?;
    for _ in 0..2 {
        if ethertype == 0x8100 || ethertype == 0x88a8 {
            off += 4;
            ethertype = be16(eth, off)?;
        }
    }
    let ip = eth.get(off + 2..)?;
    let tcp = match ethertype {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let frag_off = be16(ip, 6)? & 0x1fff;
            if *ip.get(9)? != 6 || frag_off != 0 || ihl < 20 {
                return None;
            }
            ip.get(ihl..)?
        }
        0x86dd if *ip.get(6)? == 6 => ip.get(40..)?,
        _ => return None,
    };
    Some((be16(tcp, 0)?, be16(tcp, 2)?))
}

/// What the summary is made from.
struct SummaryInput<'a> {
    input: &'a Path,
    output: &'a Path,
    format: Format,
    linktype: u32,
    policy: &'a PolicyArgs,
    limits: &'a LimitArgs,
    stats: &'a Stats,
    frames_out: u64,
    bytes_in: u64,
    elapsed: Duration,
    timers_stuck: bool,
}

/// The human summary. Lines that depend on the run rather than on the input and options
/// start with `output:` or `rate:` (the golden tests leave them out).
fn render_summary(s: &SummaryInput) -> String {
    use std::fmt::Write as _;
    let st = s.stats;
    let mut out = String::new();
    let fmt = match s.format {
        Format::Pcap => "pcap",
        Format::PcapNg => "pcapng",
    };
    let link = if s.linktype == u32::MAX {
        "no interface".to_string()
    } else {
        crate::io::pcap::linktype_name(s.linktype)
    };
    let _ = writeln!(
        out,
        "input:  {} ({fmt}, {link}, {} frames)",
        s.input.display(),
        st.frames_in
    );
    let _ = writeln!(
        out,
        "output: {} ({} frames)",
        s.output.display(),
        s.frames_out
    );
    let p = s.policy;
    let ports: Vec<String> = p.ports.iter().map(u16::to_string).collect();
    let mut policy = format!(
        "{:?}, ports {}, banner mask {:?}, fail {:?}",
        p.profile,
        ports.join(","),
        p.banner_mask,
        p.fail_mode
    )
    .to_lowercase();
    if !p.allow_verbs.is_empty() {
        policy.push_str(&format!(", also allowing {}", p.allow_verbs.join(" ")));
    }
    let _ = writeln!(out, "policy: {policy}");
    let _ = writeln!(out, "connections:          {}", st.connections);
    let _ = writeln!(out, "commands seen:        {}", by_name(&st.commands));
    let _ = writeln!(out, "commands blocked:     {}", by_name(&st.blocked));
    let _ = writeln!(out, "banners masked:       {}", st.banners_masked);
    let _ = writeln!(out, "EHLO replies masked:  {}", st.ehlo_rewritten);
    let _ = writeln!(out, "replies injected:     {}", st.replies_injected);
    let _ = writeln!(out, "resets:               {}", by_name(&st.resets));
    let _ = writeln!(out, "frames in:            {}", st.frames_in);
    let _ = writeln!(
        out,
        "  forwarded unchanged: {}{}",
        st.forwarded_total(),
        reasons(&forwarded_by_reason(st))
    );
    let _ = writeln!(
        out,
        "  rewritten:           {} (replaced by {} frames)",
        st.rewritten, st.replacements
    );
    let _ = writeln!(
        out,
        "  dropped:             {}{}",
        st.dropped_total(),
        reasons(&dropped_by_reason(st))
    );
    let _ = writeln!(out, "frames originated:    {}", st.originated);
    // Its own line, left out of the golden summaries: the bytes depend on the build.
    let _ = writeln!(
        out,
        "memory: peak {} bytes accounted to connections (ceiling {}, at most {} connections), evicted: {}",
        st.peak_memory,
        s.limits.max_memory,
        s.limits.max_connections,
        join_counts(evicted_by_class(st), " ", ", ", true).unwrap_or_else(|| "none".into())
    );
    if s.timers_stuck {
        let _ = writeln!(
            out,
            "warning: an engine timer did not advance and was skipped"
        );
    }
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let _ = writeln!(
        out,
        "rate:   {} frames, {:.1} MB in {:.3} s = {:.0} frames/s, {:.1} Mbit/s",
        st.frames_in,
        s.bytes_in as f64 / 1e6,
        s.elapsed.as_secs_f64(),
        st.frames_in as f64 / secs,
        s.bytes_in as f64 * 8.0 / 1e6 / secs
    );
    out
}

/// `EHLO 1, MAIL 2` or `none`.
fn by_name<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    join_counts(m.iter().map(|(k, n)| (k, *n)), " ", ", ", false).unwrap_or_else(|| "none".into())
}

/// ` (unchanged 3, other-port 2)` for the non-zero reasons, or nothing.
fn reasons(r: &[(&str, u64)]) -> String {
    join_counts(r.iter().copied(), " ", ", ", true)
        .map(|s| format!(" ({s})"))
        .unwrap_or_default()
}

fn write_report(
    path: &Path,
    args: &Args,
    replay: &Replay,
    reader: &CaptureReader,
    elapsed: Duration,
) -> Result<(), CliError> {
    let p = &args.policy;
    let json = serde_json::json!({
        "input": args.input.display().to_string(),
        "output": args.output.display().to_string(),
        "linktype": reader.linktype(),
        "policy": {
            "profile": format!("{:?}", p.profile).to_lowercase(),
            "ports": p.ports,
            "banner_mask": format!("{:?}", p.banner_mask).to_lowercase(),
            "allow_verbs": p.allow_verbs,
            "fail_mode": format!("{:?}", p.fail_mode).to_lowercase(),
        },
        "limits": {
            "max_connections": args.limits.max_connections,
            "max_memory": args.limits.max_memory,
            "max_ooo_bytes": args.limits.max_ooo_bytes,
            "max_log_bytes": args.limits.max_log_bytes,
            "idle_timeout_secs": args.limits.idle_timeout,
            "embryonic_timeout_secs": args.limits.embryonic_timeout,
        },
        "stats": replay.engine.stats().to_json(),
        "frames_out": replay.frames_out,
        "connections": replay.reports,
        "elapsed_secs": elapsed.as_secs_f64(),
    });
    let text = serde_json::to_string_pretty(&json).unwrap_or_else(|_| "{}".into());
    std::fs::write(path, text + "\n").map_err(|e| CliError {
        message: format!("cannot write report {}: {e}", path.display()),
        code: 4,
    })
}

/// A progress line on stderr, only when stderr is a terminal.
struct Progress {
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new() -> Option<Progress> {
        std::io::stderr().is_terminal().then(|| Progress {
            last: Instant::now(),
            shown: false,
        })
    }

    fn tick(&mut self, reader: &CaptureReader) {
        if !reader.packets().is_multiple_of(1024)
            || self.last.elapsed() < Duration::from_millis(250)
        {
            return;
        }
        self.last = Instant::now();
        let (done, size) = reader.progress();
        let pct = if size > 0 {
            done as f64 * 100.0 / size as f64
        } else {
            0.0
        };
        eprint!("\rreplay: {} frames, {pct:.0}%   ", reader.packets());
        let _ = std::io::stderr().flush();
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r{:40}\r", "");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth_ipv4_tcp(src: u16, dst: u16, vlan: bool) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x7d]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[9] = 6;
        f.extend_from_slice(&ip);
        f.extend_from_slice(&src.to_be_bytes());
        f.extend_from_slice(&dst.to_be_bytes());
        f.extend_from_slice(&[0u8; 16]);
        f
    }

    #[test]
    fn client_segments_are_outside_server_segments_inside() {
        assert_eq!(
            side_of(&eth_ipv4_tcp(40000, 25, false), &[25]),
            Side::Outside
        );
        assert_eq!(
            side_of(&eth_ipv4_tcp(25, 40000, false), &[25]),
            Side::Inside
        );
        assert_eq!(
            side_of(&eth_ipv4_tcp(587, 40000, true), &[25, 587]),
            Side::Inside
        );
        assert_eq!(
            side_of(&eth_ipv4_tcp(25, 40000, false), &[587]),
            Side::Outside
        );
    }

    #[test]
    fn short_or_odd_frames_do_not_panic() {
        let f = eth_ipv4_tcp(25, 40000, false);
        for n in 0..f.len() {
            let _ = side_of(&f[..n], &[25]);
        }
        assert_eq!(tcp_ports(&f[..36]), None);
        assert_eq!(tcp_ports(&f), Some((25, 40000)));
    }

    #[test]
    fn reasons_lists_only_non_zero() {
        let r = vec![("a", 0), ("b", 2), ("c", 1)];
        assert_eq!(reasons(&r), " (b 2, c 1)");
        assert_eq!(reasons(&r[..1]), "");
    }
}
