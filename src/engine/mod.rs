//! The sans-IO filter engine: frames in, frames out, no sockets, threads or clock inside.
//!
//! - [`Engine::handle_frame`] takes one frame read from a [`Side`] at time `now`, returns a
//!   [`Verdict`] for it and appends to a [`FrameSink`] the frames to emit (the rewritten frame
//!   and any frames the engine originates: ACKs for deleted input, injected replies, resets).
//! - [`Engine::poll_timeout`] / [`Engine::handle_timeout`] drive the engine's own timers
//!   (retransmission of injected bytes, idle expiry).
//!
//! Live mode feeds a monotonic clock, replay feeds pcap timestamps, tests a simulated clock:
//! the same inputs at the same times always give the same outputs.

use crate::smtp::{PolicyConfig, VerbName};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A point in time, in nanoseconds since an arbitrary epoch chosen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    /// `self + d`, saturating.
    pub fn after(self, d: std::time::Duration) -> Time {
        Time(
            self.0
                .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        )
    }
}

/// The interface a frame was read from (or is to be written to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The untrusted side.
    Outside,
    /// The protected side.
    Inside,
}

impl Side {
    /// The other interface.
    pub fn other(self) -> Side {
        match self {
            Side::Outside => Side::Inside,
            Side::Inside => Side::Outside,
        }
    }
}

/// What happens to a frame that enters the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the input frame byte for byte to the other side.
    Forward(ForwardReason),
    /// The input frame is not forwarded as is: what replaces it (possibly nothing) is in the sink.
    Rewritten,
    /// The input frame is dropped.
    Drop(DropReason),
}

/// Why a frame was forwarded untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ForwardReason {
    /// Not IP (ARP, LLDP, ...).
    NotIp,
    /// IP but not TCP.
    NotTcp,
    /// TCP, but neither port is filtered.
    OtherPort,
    /// Could not be parsed (truncated, bad lengths) and fail-mode is open.
    Unparseable,
    /// A segment of a filtered connection whose content needs no change.
    Unchanged,
    /// A filtered port, but the connection is not tracked (no SYN seen) and cannot be judged.
    Untracked,
}

impl ForwardReason {
    /// Every reason, in index order.
    pub const ALL: [ForwardReason; 6] = [
        ForwardReason::NotIp,
        ForwardReason::NotTcp,
        ForwardReason::OtherPort,
        ForwardReason::Unparseable,
        ForwardReason::Unchanged,
        ForwardReason::Untracked,
    ];

    /// Stable name for summaries and reports.
    pub fn name(self) -> &'static str {
        match self {
            ForwardReason::NotIp => "not-ip",
            ForwardReason::NotTcp => "not-tcp",
            ForwardReason::OtherPort => "other-port",
            ForwardReason::Unparseable => "unparseable",
            ForwardReason::Unchanged => "unchanged",
            ForwardReason::Untracked => "untracked",
        }
    }
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Its bytes were already sent (retransmission of data the engine already emitted).
    Duplicate,
    /// Bad TCP or IP checksum.
    BadChecksum,
    /// Out of the receiver's window.
    OutOfWindow,
    /// Could not be parsed and fail-mode is closed.
    Unparseable,
    /// An IP fragment of a filtered connection.
    Fragment,
    /// A resource limit was hit.
    OverLimit,
    /// The connection was reset by the filter.
    ConnectionReset,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 7] = [
        DropReason::Duplicate,
        DropReason::BadChecksum,
        DropReason::OutOfWindow,
        DropReason::Unparseable,
        DropReason::Fragment,
        DropReason::OverLimit,
        DropReason::ConnectionReset,
    ];

    /// Stable name for summaries and reports.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Duplicate => "duplicate",
            DropReason::BadChecksum => "bad-checksum",
            DropReason::OutOfWindow => "out-of-window",
            DropReason::Unparseable => "unparseable",
            DropReason::Fragment => "fragment",
            DropReason::OverLimit => "over-limit",
            DropReason::ConnectionReset => "connection-reset",
        }
    }
}

/// Frames the engine wants emitted, in order, each with the side it goes out on.
/// Reused across calls so the hot path does not allocate.
#[derive(Default, Debug)]
pub struct FrameSink {
    buf: Vec<u8>,
    frames: Vec<(Side, std::ops::Range<usize>)>,
}

impl FrameSink {
    /// Empties the sink, keeping its allocations.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.frames.clear();
    }

    /// Appends a frame to emit on `side`.
    pub fn push(&mut self, side: Side, frame: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(frame);
        self.frames.push((side, start..self.buf.len()));
    }

    /// Appends a zeroed frame of `len` bytes for `side` and returns it to be filled in place.
    pub fn push_with_len(&mut self, side: Side, len: usize) -> &mut [u8] {
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        self.frames.push((side, start..start + len));
        &mut self.buf[start..]
    }

    /// Number of frames queued.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The queued frames in order.
    pub fn iter(&self) -> impl Iterator<Item = (Side, &[u8])> + '_ {
        self.frames
            .iter()
            .map(move |(side, r)| (*side, &self.buf[r.clone()]))
    }
}

/// What to do with traffic the engine cannot judge (unparseable, over a limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Forward it untouched.
    #[default]
    Open,
    /// Drop it (or reset the connection it belongs to).
    Closed,
}

/// Engine configuration.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// TCP server ports whose connections are filtered.
    pub ports: Vec<u16>,
    /// The SMTP policy applied to them.
    pub policy: Arc<PolicyConfig>,
    /// Traffic the engine cannot judge.
    pub fail_mode: FailMode,
    /// Keep one [`ConnectionReport`] per connection (replay `--report`).
    pub record_connections: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ports: vec![25],
            policy: Arc::new(PolicyConfig::default()),
            fail_mode: FailMode::Open,
            record_connections: false,
        }
    }
}

/// Per-connection summary kept when [`EngineConfig::record_connections`] is set.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ConnectionReport {
    /// `ip:port` of the client (SYN sender).
    pub client: String,
    /// `ip:port` of the server.
    pub server: String,
    /// Policy actions in order, as short human-readable strings.
    pub actions: Vec<String>,
}

/// Counters kept by an engine (one per worker; [`Stats::merge`] sums them).
/// Indexed by reason enums so that counting on the hot path never allocates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to [`Engine::handle_frame`].
    pub frames_in: u64,
    /// Frames forwarded byte for byte, indexed by `ForwardReason as usize`.
    pub forwarded: [u64; ForwardReason::ALL.len()],
    /// Frames replaced by rewritten frames.
    pub rewritten: u64,
    /// Frames dropped, indexed by `DropReason as usize`.
    pub dropped: [u64; DropReason::ALL.len()],
    /// Frames the engine originated (ACKs, injected replies, resets, retransmissions).
    pub originated: u64,
    /// Filtered connections seen (SYN to a filtered port).
    pub connections: u64,
    /// Allowed commands seen, by verb.
    pub commands: BTreeMap<VerbName, u64>,
    /// Blocked commands, by verb.
    pub blocked: BTreeMap<VerbName, u64>,
    /// Banners masked or replaced.
    pub banners_masked: u64,
    /// EHLO replies rewritten.
    pub ehlo_rewritten: u64,
    /// Replies injected by the filter (pix40).
    pub replies_injected: u64,
    /// Connections reset by the filter, by reason.
    pub resets: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Adds `other` into `self` (workers' counters into a total).
    pub fn merge(&mut self, other: &Stats) {
        self.frames_in += other.frames_in;
        for (a, b) in self.forwarded.iter_mut().zip(other.forwarded) {
            *a += b;
        }
        self.rewritten += other.rewritten;
        for (a, b) in self.dropped.iter_mut().zip(other.dropped) {
            *a += b;
        }
        self.originated += other.originated;
        self.connections += other.connections;
        for (k, v) in &other.commands {
            *self.commands.entry(*k).or_default() += v;
        }
        for (k, v) in &other.blocked {
            *self.blocked.entry(*k).or_default() += v;
        }
        self.banners_masked += other.banners_masked;
        self.ehlo_rewritten += other.ehlo_rewritten;
        self.replies_injected += other.replies_injected;
        for (k, v) in &other.resets {
            *self.resets.entry(k).or_default() += v;
        }
    }

    /// Frames forwarded untouched, all reasons.
    pub fn forwarded_total(&self) -> u64 {
        self.forwarded.iter().sum()
    }

    /// Frames dropped, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// The counters as JSON (names as in the text summary).
    pub fn to_json(&self) -> serde_json::Value {
        let by_name = |m: &BTreeMap<VerbName, u64>| -> serde_json::Map<String, serde_json::Value> {
            m.iter()
                .map(|(k, v)| (k.to_string(), (*v).into()))
                .collect()
        };
        let forwarded: serde_json::Map<_, _> = ForwardReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), self.forwarded[*r as usize].into()))
            .collect();
        let dropped: serde_json::Map<_, _> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), self.dropped[*r as usize].into()))
            .collect();
        serde_json::json!({
            "frames_in": self.frames_in,
            "forwarded": forwarded,
            "rewritten": self.rewritten,
            "dropped": dropped,
            "originated": self.originated,
            "connections": self.connections,
            "commands": by_name(&self.commands),
            "blocked": by_name(&self.blocked),
            "banners_masked": self.banners_masked,
            "ehlo_rewritten": self.ehlo_rewritten,
            "replies_injected": self.replies_injected,
            "resets": self.resets,
        })
    }
}

/// The filter engine of one worker.
pub struct Engine {
    config: EngineConfig,
    stats: Stats,
}

impl Engine {
    /// A new engine with no connections.
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            stats: Stats::default(),
        }
    }

    /// The configuration this engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Handles one frame read from `side` at `now`. Frames to emit are appended to `sink`.
    pub fn handle_frame(
        &mut self,
        now: Time,
        side: Side,
        frame: &[u8],
        sink: &mut FrameSink,
    ) -> Verdict {
        let _ = (now, side, frame, sink);
        self.stats.frames_in += 1;
        self.stats.forwarded[ForwardReason::Unchanged as usize] += 1;
        Verdict::Forward(ForwardReason::Unchanged)
    }

    /// When [`Engine::handle_timeout`] next needs to run, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        None
    }

    /// Runs the timers due at `now`; frames to emit are appended to `sink`.
    pub fn handle_timeout(&mut self, now: Time, sink: &mut FrameSink) {
        let _ = (now, sink);
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Takes the reports of connections recorded so far (closed ones and, at `flush`, all).
    pub fn take_connection_reports(&mut self, flush: bool) -> Vec<ConnectionReport> {
        let _ = flush;
        Vec::new()
    }
}
