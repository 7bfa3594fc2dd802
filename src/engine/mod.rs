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
//!
//! How a filtered connection is handled (see `conn.rs` and `half.rs`):
//! - The client is the sender of a SYN to a filtered port. Each direction ("half") has the
//!   sender's sequence space (the receiver sees output in the same space: same ISN), a
//!   [`crate::tcp::Reassembler`], the bytes held by the policy, a [`crate::tcp::EditMap`] and
//!   an [`crate::tcp::OutputLog`].
//! - In-order input is fed to the [`Policy`]; its ops append to the output log and the edit
//!   map. A segment whose bytes pass unchanged is forwarded as it is, or with only its
//!   sequence, ACK and window fields adjusted (RFC 1624 incremental checksum). Anything else
//!   is rebuilt from the log (so a retransmission carries, at every output position, the
//!   bytes emitted the first time), at most the receiver's MSS per segment and within its
//!   window.
//! - ACK, SACK and window fields are translated through the edit map of the direction they
//!   acknowledge and clamped to what the acknowledged endpoint sent (replay of recorded
//!   endpoints that never saw the rewrite). Deleted input is acknowledged by the
//!   filter itself (a pure ACK when nothing else carries it). Inserted bytes are the filter's:
//!   retransmitted on the engine's own timer, and the peer's ACKs of them absorbed. Output
//!   whose sender still has unacknowledged bytes is re-sent when the sender retransmits
//!   (the timer leaves it alone), so the engine adds no retransmissions of its own there.
//! - A FIN leaves after all output of its direction; an endpoint's RST after the data it
//!   follows; a reset decided by the filter (policy or bound) goes to both sides at the
//!   sequence number each expects next, and the connection's later frames are dropped.

mod conn;
mod half;
mod index;
pub mod policy;
mod table;

pub use policy::{Edit, Identity, Policy, PolicyFactory, Scripted, SessionFactory};

use crate::smtp::{Output, PolicyConfig, VerbName};
use crate::tcp::RingPool;
use crate::wire::{
    classify, strip_payload, verify_checksums, Classified, IpFragment, TcpFlags, TcpFrame,
};
use conn::{Conn, Ctx, State};
use index::TimeIndex;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use table::{FlowTable, Keyed, StoredKey};

/// Index of the client-to-server half of a connection.
const IDX_C2S: usize = 0;
/// Index of the server-to-client half of a connection.
const IDX_S2C: usize = 1;

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
    /// A filtered port, but the connection is not tracked (no SYN seen) and cannot be
    /// judged; only segments without payload, under fail-open.
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
    /// A segment on a filtered port of a connection not tracked: with payload always (it
    /// cannot be judged), without payload under fail-closed.
    Untracked,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 8] = [
        DropReason::Duplicate,
        DropReason::BadChecksum,
        DropReason::OutOfWindow,
        DropReason::Unparseable,
        DropReason::Fragment,
        DropReason::OverLimit,
        DropReason::ConnectionReset,
        DropReason::Untracked,
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
            DropReason::Untracked => "untracked",
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

    /// Appends a copy of `frame` for `side` and returns it to be changed in place (no
    /// zero fill first, unlike [`FrameSink::push_with_len`]).
    fn push_copy(&mut self, side: Side, frame: &[u8]) -> &mut [u8] {
        let start = self.buf.len();
        self.push(side, frame);
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
    /// Input frames not forwarded as they are but replaced by what the engine built from
    /// them (possibly nothing: bytes held or deleted).
    pub rewritten: u64,
    /// Frames the engine emitted in place of rewritten input frames: those going on in the
    /// input's direction while a frame judged [`Verdict::Rewritten`] is handled (its data
    /// rebuilt, re-segmented at the receiver's MSS, or re-sent from the output log).
    pub replacements: u64,
    /// Frames dropped, indexed by `DropReason as usize`.
    pub dropped: [u64; DropReason::ALL.len()],
    /// Frames the engine sent of its own accord: everything it emits that is not a
    /// replacement (ACKs for deleted bytes, injected replies, resets sent back to a sender,
    /// timer retransmissions, window probes). Frames out of an engine always number
    /// `forwarded_total() + replacements + originated`.
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
    /// Connections forgotten to make room (a new connection over [`Limits::max_connections`]
    /// or [`Limits::max_memory`]), by class, indexed by `EvictClass as usize`.
    pub evicted: [u64; EvictClass::ALL.len()],
    /// High-water mark of the memory accounted to connections, in bytes (see
    /// [`Limits::max_memory`]); [`Stats::merge`] sums the workers' marks (an upper bound).
    pub peak_memory: u64,
}

impl Stats {
    /// Adds `other` into `self` (workers' counters into a total).
    pub fn merge(&mut self, other: &Stats) {
        self.frames_in += other.frames_in;
        for (a, b) in self.forwarded.iter_mut().zip(other.forwarded) {
            *a += b;
        }
        self.rewritten += other.rewritten;
        self.replacements += other.replacements;
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
        for (a, b) in self.evicted.iter_mut().zip(other.evicted) {
            *a += b;
        }
        self.peak_memory += other.peak_memory;
    }

    /// Connections evicted, all classes.
    pub fn evicted_total(&self) -> u64 {
        self.evicted.iter().sum()
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
        let evicted: serde_json::Map<_, _> = EvictClass::ALL
            .iter()
            .map(|c| (c.name().to_string(), self.evicted[*c as usize].into()))
            .collect();
        serde_json::json!({
            "frames_in": self.frames_in,
            "forwarded": forwarded,
            "rewritten": self.rewritten,
            "replacements": self.replacements,
            "dropped": dropped,
            "originated": self.originated,
            "connections": self.connections,
            "commands": by_name(&self.commands),
            "blocked": by_name(&self.blocked),
            "banners_masked": self.banners_masked,
            "ehlo_rewritten": self.ehlo_rewritten,
            "replies_injected": self.replies_injected,
            "resets": self.resets,
            "evicted": evicted,
            "peak_memory": self.peak_memory,
        })
    }
}

/// Resource bounds and timers of an engine (per connection unless said otherwise).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections tracked at once (per engine). A SYN beyond this evicts a connection
    /// (see [`EvictClass`], [`Limits::evict_grace`]), or is dropped `over-limit` when
    /// none may go.
    pub max_connections: usize,
    /// Memory ceiling of the engine's connections, in bytes (see [`Engine::memory`]). New
    /// connections are admitted up to 7/8 of it (evicting as for `max_connections`); the
    /// rest is headroom for the buffers of the connections already tracked. A connection
    /// growing past the ceiling evicts others, and is reset by the filter
    /// (`memory-ceiling`) when none may go. The flow table grows only when the ceiling
    /// can hold the old and the new table at once (as they are while it grows).
    pub max_memory: usize,
    /// A connection that carried payload ([`EvictClass::Active`]) and was active within
    /// this time is never evicted. Finished and embryonic connections have no grace: under
    /// a SYN flood, keeping the youngest half-open entries would only refuse the next SYN,
    /// legitimate or not, while evicting the oldest lets every handshake that completes
    /// within (table size / SYN rate) go through.
    pub evict_grace: Duration,
    /// Out-of-order bytes held per direction.
    pub max_ooo_bytes: usize,
    /// Out-of-order pieces held per direction.
    pub max_ooo_segments: usize,
    /// Edit records in flight per direction.
    pub max_edits: usize,
    /// Output bytes kept until acknowledged, per direction.
    pub max_log_bytes: usize,
    /// Bytes the policy may hold undecided per direction.
    pub max_held: usize,
    /// How far (bytes) a segment may start from the next expected offset.
    pub max_ahead: u64,
    /// Idle time after which an established connection is forgotten.
    pub idle_timeout: Duration,
    /// Time a connection with only a SYN seen is kept.
    pub embryonic_timeout: Duration,
    /// Time a closed or reset connection is kept for late segments.
    pub closed_linger: Duration,
    /// Initial retransmission timeout of the engine's own output (doubles per retry).
    pub rto: Duration,
    /// Retransmissions of unacknowledged output before the engine gives up on it.
    pub max_retries: u32,
    /// Acknowledge bytes the policy holds undecided once their sender has retransmitted them
    /// twice with nothing new (it is stalled: a congestion window full of one-byte segments,
    /// or Nagle). Off by default: DESIGN.md §3.4 forbids acknowledging input whose output
    /// the receiver has not acknowledged. The policies hold only what is undecided (a
    /// command line's verb, a masked line's last CR, a reply line's head, an EHLO reply
    /// being rewritten; nothing of a message body), so a sender stalls only when one of
    /// its segments ends inside such a part and classic Nagle (RFC 896) keeps the rest
    /// back until that segment is acknowledged.
    pub ack_held_when_stalled: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_memory: DEFAULT_MAX_MEMORY,
            evict_grace: Duration::from_secs(1),
            max_ooo_bytes: 1 << 20,
            max_ooo_segments: 1024,
            max_edits: 4096,
            max_log_bytes: 8 << 20,
            max_held: crate::smtp::MAX_HELD,
            max_ahead: 1 << 30,
            idle_timeout: Duration::from_secs(3600),
            embryonic_timeout: Duration::from_secs(60),
            closed_linger: Duration::from_secs(30),
            rto: Duration::from_millis(250),
            max_retries: 8,
            ack_held_when_stalled: false,
        }
    }
}

/// Default [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 262_144;

/// Bytes the engine's spare output-log rings may hold together: an eighth of the memory
/// ceiling, so that under a tight ceiling they take little of it (they are freed first when
/// the account is over it).
fn ring_budget(limits: &Limits) -> usize {
    limits.max_memory / 8
}

/// Default [`Limits::max_memory`]: 1 GiB.
pub const DEFAULT_MAX_MEMORY: usize = 1 << 30;

/// What a connection is worth keeping, for eviction: lower classes go first, the connection
/// idle longest first within a class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EvictClass {
    /// Closed or reset, lingering only for late segments.
    Finished,
    /// No payload byte seen in either direction yet: a SYN, or a handshake that carried
    /// nothing (the engine does not track the handshake's last ACK, and a connection that
    /// carried no byte has no state worth keeping). A half-open flood is this class.
    Embryonic,
    /// Carrying a session.
    Active,
}

impl EvictClass {
    /// Every class, in eviction order.
    pub const ALL: [EvictClass; 3] = [
        EvictClass::Finished,
        EvictClass::Embryonic,
        EvictClass::Active,
    ];

    /// Stable name for summaries and reports.
    pub fn name(self) -> &'static str {
        match self {
            EvictClass::Finished => "finished",
            EvictClass::Embryonic => "embryonic",
            EvictClass::Active => "active",
        }
    }

    fn of<P: Policy>(c: &Conn<P>) -> EvictClass {
        match c.state {
            State::Closed | State::Reset => EvictClass::Finished,
            State::SynSent => EvictClass::Embryonic,
            State::Established
                if c.halves
                    .iter()
                    .all(|h| h.reasm.next() == 0 && h.reasm.held() == 0) =>
            {
                EvictClass::Embryonic
            }
            State::Established => EvictClass::Active,
        }
    }
}

/// The engine's ordered indices of its connections and its memory account: everything
/// that files a connection besides the flow table, kept apart from it so that a slot
/// borrowed from the table is filed without a second lookup ([`Books::file`]).
struct Books {
    /// Retransmission deadlines, ordered: `handle_timeout` costs O(log n).
    timers: TimeIndex,
    /// The earliest time in `timers` (what `poll_timeout` answers, asked once a frame by
    /// the I/O loops): kept up to date by [`Books::add_timer`] and [`Books::remove_timer`].
    first_timer: Option<Time>,
    /// Expiry times, ordered. Expiry is not a timer the caller must run: expired
    /// connections are swept by `handle_frame` and `handle_timeout` as they come due.
    expiries: TimeIndex,
    /// At or before the earliest time filed in `expiries` (`u64::MAX` when it is empty):
    /// lowered by every insertion, raised to the real first entry by `Engine::sweep`, so a
    /// sweep before it returns at once without walking the index (removals only raise the
    /// real first time, so a floor stays valid).
    expiry_floor: Time,
    /// Eviction candidates of each class (indexed by `EvictClass as usize`), by last
    /// activity (filed at or before the real one).
    idle: [TimeIndex; 3],
    /// Bytes charged to the connections now, besides the table (see [`Engine::memory`]).
    memory: usize,
    /// [`fixed_charge`] of this engine's connections.
    fixed_charge: usize,
}

impl Books {
    /// Files `(t, key)` in the timer index.
    fn add_timer(&mut self, t: Time, key: FlowKey) {
        self.timers.insert(t, key);
        self.first_timer = Some(self.first_timer.map_or(t, |f| f.min(t)));
    }

    /// Removes `(t, key)` from the timer index.
    fn remove_timer(&mut self, t: Time, key: FlowKey) {
        self.timers.remove(t, key);
        if self.first_timer == Some(t) {
            self.first_timer = self.timers.first().map(|(t, _)| t);
        }
    }

    /// Files `(t, key)` in the expiry index.
    fn file_expiry(&mut self, t: Time, key: FlowKey) {
        self.expiries.insert(t, key);
        self.expiry_floor = self.expiry_floor.min(t);
    }

    /// Files the connection of `slot` (under `key`) in the timer and expiry indices under
    /// its current times, and in the idle index under its class. Charges it to the memory
    /// account under its current size.
    fn file<P: Policy>(&mut self, slot: &mut Slot<P>, key: FlowKey, limits: &Limits) {
        let conn = &mut slot.conn;
        let rto = conn.rto_deadline();
        if conn.indexed_rto() != rto {
            if let Some(old) = conn.replace_indexed_rto(rto) {
                self.remove_timer(old, key);
            }
            if let Some(t) = rto {
                self.add_timer(t, key);
            }
        }
        // Filed at or before the real expiry: an expiry that moves later (every segment moves
        // the idle deadline) leaves the entry where it is, and `sweep` looks at the real one
        // when the entry comes due. Only an earlier expiry (a close) files it again.
        let exp = conn.expiry(limits);
        if conn.indexed_exp().is_none_or(|old| exp < old) {
            if let Some(old) = conn.replace_indexed_exp(Some(exp)) {
                self.expiries.remove(old, key);
            }
            self.file_expiry(exp, key);
        }
        // The class is filed again at once (it changes at most a few times in a life), the
        // activity time lazily (see `evict_one`).
        let class = EvictClass::of(conn);
        if slot.idle_class != class {
            self.idle[slot.idle_class as usize].remove(slot.idle_time, key);
            let last_seen = conn.last_seen;
            slot.set_idle_at((class, last_seen));
            self.idle[class as usize].insert(last_seen, key);
        }
        let charge = self.fixed_charge.saturating_add(slot.conn.heap_bytes());
        let charge = u32::try_from(charge).unwrap_or(u32::MAX);
        self.memory = self.memory.saturating_sub(slot.charged as usize) + charge as usize;
        slot.charged = charge;
    }
}

/// A tracked connection with the engine's bookkeeping of it.
struct Slot<P: Policy> {
    conn: Conn<P>,
    /// The connection's addresses (the flow table files the slot under them).
    key: StoredKey,
    /// Last activity under which the idle index files it: at or before the real one
    /// (filed again lazily, see `evict_one`).
    idle_time: Time,
    /// Bytes charged to the engine's memory account (a connection's buffers are bounded
    /// far below 4 GiB; the account saturates rather than wraps).
    charged: u32,
    /// Class under which the idle index files it: always the real one.
    idle_class: EvictClass,
}

impl<P: Policy> Slot<P> {
    fn set_idle_at(&mut self, (class, time): (EvictClass, Time)) {
        self.idle_class = class;
        self.idle_time = time;
    }
}

/// The flow table ([`table`]) files each slot under its connection's own addresses.
/// Connections are boxed: the table's buckets stay small (a pointer), so its spare buckets
/// (up to 9/16 of them just after it doubled) cost 8 bytes each rather than a whole
/// connection record.
impl<P: Policy> Keyed for Slot<P> {
    fn key(&self) -> FlowKey {
        self.key.get()
    }
}

/// Fixed bytes charged per connection besides its table entry: its record (boxed, with
/// the allocator's overhead, and its key if that is boxed) and its entries in the three
/// ordered indices (B-tree nodes at half fill, counted as if keys were never packed). What
/// it allocates (buffers, the policy's) is `Conn::heap_bytes`.
fn fixed_charge<P: Policy>() -> usize {
    let record = std::mem::size_of::<Slot<P>>() + 16 + StoredKey::MAX_HEAP;
    let index = 2 * std::mem::size_of::<(Time, FlowKey)>() * 2
        + 2 * std::mem::size_of::<(EvictClass, Time, FlowKey)>();
    record + index
}

/// Bytes of a flow table's allocation holding `capacity` entries of `slot` bytes (the
/// layout of std's hash table: a power-of-two number of buckets at most 7/8 full, one
/// control byte per bucket and a group of 16 more).
fn table_bytes(capacity: usize, slot: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity.saturating_mul(8) / 7).next_power_of_two()
    };
    buckets.saturating_mul(slot + 1).saturating_add(16)
}

/// A set of TCP ports: one bit per port.
struct PortSet(Box<[u64; 1024]>);

impl PortSet {
    fn new(ports: &[u16]) -> PortSet {
        let mut bits = Box::new([0u64; 1024]);
        for &p in ports {
            if let Some(w) = bits.get_mut(usize::from(p >> 6)) {
                *w |= 1 << (p & 63);
            }
        }
        PortSet(bits)
    }

    fn contains(&self, p: u16) -> bool {
        self.0
            .get(usize::from(p >> 6))
            .is_some_and(|w| w & (1 << (p & 63)) != 0)
    }
}

/// A connection's identity, client first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FlowKey {
    client: (IpAddr, u16),
    server: (IpAddr, u16),
}

/// Hashed as whole words, not field by field: an IPv4 key (the common one) is one 128-bit
/// word, which the flow table's seeded foldhash mixes in one multiply; any other key is
/// three words. Equal keys write equal words, as `Eq` requires.
impl std::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let ports = (u32::from(self.client.1) << 16) | u32::from(self.server.1);
        match (self.client.0, self.server.0) {
            (IpAddr::V4(c), IpAddr::V4(s)) => state.write_u128(
                (u128::from(c.to_bits()) << 96)
                    | (u128::from(s.to_bits()) << 64)
                    | (u128::from(ports) << 32),
            ),
            (c, s) => {
                // A tag bit on IPv4 addresses, so that a.b.c.d and ::a.b.c.d hash apart.
                let word = |a: IpAddr| match a {
                    IpAddr::V4(a) => (1 << 127) | u128::from(a.to_bits()),
                    IpAddr::V6(a) => a.to_bits(),
                };
                state.write_u128(word(c));
                state.write_u128(word(s));
                state.write_u32(ports);
            }
        }
    }
}

impl FlowKey {
    /// The greatest key (bounds ranges of the timer index).
    const MAX: FlowKey = FlowKey {
        client: (
            IpAddr::V6(std::net::Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )),
            u16::MAX,
        ),
        server: (
            IpAddr::V6(std::net::Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )),
            u16::MAX,
        ),
    };
}

/// The filter engine of one worker, generic over the policy (the SMTP [`crate::smtp::Session`]
/// by default; tests use [`Identity`] or [`Scripted`]).
///
/// Choices where the spec is silent:
/// - Fail-closed drops what the engine cannot judge (unparseable frames, untracked
///   mid-stream segments on a filtered port); frames that are simply not its concern
///   (not IP, not TCP, other ports) are forwarded in both modes.
/// - A segment carrying payload on a filtered port of a connection that is not tracked
///   (no SYN seen, or state forgotten: expired, evicted, closed) is dropped in both modes
///   (`DropReason::Untracked`): forwarding it would let a blocked verb cross unjudged
///   whenever the engine's state and an endpoint's disagree. Picking the connection up
///   mid-stream was rejected: the engine cannot know where a command line starts, nor
///   the SMTP state (a body line would be taken as a command). Untracked segments without
///   payload follow the fail mode (open: forwarded, so endpoints can still close).
/// - An endpoint's RST closes the connection only when it is exactly at the sender's next
///   sequence number, as its receiver would accept it (RFC 5961); another RST is passed on
///   translated and the connection stays tracked.
/// - IP fragments of TCP are dropped when the first fragment names a filtered port, or when a
///   later fragment is between two addresses with a tracked connection; other fragments are
///   forwarded (fail-open) or dropped (fail-closed) as unparseable.
/// - A SYN carrying data (TCP Fast Open) to a filtered port goes on without its data; the
///   client sends the data again after the handshake. Data on a RST is never delivered.
/// - A segment with URG set is always rebuilt without it (receivers disagree on urgent data).
/// - Bytes the policy holds undecided (a partial verb) are not acknowledged until their
///   output is decided and acknowledged by the receiver (DESIGN.md §3.4). A client sending
///   one byte per segment can fill its congestion window before a held line completes; a
///   policy that holds more than a few bytes then stalls it, unless
///   [`Limits::ack_held_when_stalled`] is set.
/// - Connections are kept in a hash table; timers, expiry and eviction go by ordered
///   indices of `(time, key)`, so they run in a deterministic order whatever the hash seed.
/// - Eviction (a SYN over [`Limits::max_connections`] or [`Limits::max_memory`]) takes the
///   connection idle longest of the lowest [`EvictClass`] (finished, then embryonic, then
///   active), never an active one within [`Limits::evict_grace`] of its last segment;
///   evicted state is forgotten silently (no RST: the endpoints may be gone, and the
///   connection's later payload is dropped as untracked). Memory is accounted at frame
///   boundaries and when the table grows; [`Stats::peak_memory`] is its high-water mark.
pub struct Engine<F: PolicyFactory = SessionFactory> {
    config: EngineConfig,
    /// `config.ports` as a set (looked up two or three times a frame).
    ports: PortSet,
    stats: Stats,
    factory: F,
    limits: Limits,
    conns: FlowTable<Slot<F::Policy>>,
    out: Output,
    /// Input fed to a policy and not yet consumed, lent to each connection for one segment
    /// (connections hold no buffer of their own unless bytes stay undecided).
    scratch: Vec<u8>,
    /// Spare output-log rings, kept across bursts (bounded; charged in [`Engine::memory`]).
    rings: RingPool,
    reports: Vec<ConnectionReport>,
    /// The time indices and the memory account (apart from the table, so that a slot
    /// borrowed from the table can be filed without looking it up again).
    books: Books,
    /// Bytes of one flow-table bucket.
    slot_bytes: usize,
}

impl Engine<SessionFactory> {
    /// A new engine with no connections, running the SMTP policy of `config`.
    pub fn new(config: EngineConfig) -> Engine {
        let factory = SessionFactory(config.policy.clone());
        Engine::with_policy(config, factory)
    }
}

impl<F: PolicyFactory> Engine<F> {
    /// A new engine running policies made by `factory` (`config.policy` is then unused).
    pub fn with_policy(config: EngineConfig, factory: F) -> Engine<F> {
        Engine {
            ports: PortSet::new(&config.ports),
            config,
            stats: Stats::default(),
            factory,
            limits: Limits::default(),
            conns: FlowTable::default(),
            out: Output::default(),
            scratch: Vec::new(),
            rings: {
                let mut pool = RingPool::new();
                pool.set_budget(ring_budget(&Limits::default()));
                pool
            },
            reports: Vec::new(),
            books: Books {
                timers: TimeIndex::default(),
                first_timer: None,
                expiries: TimeIndex::default(),
                expiry_floor: Time(u64::MAX),
                idle: Default::default(),
                memory: 0,
                fixed_charge: fixed_charge::<F::Policy>(),
            },
            slot_bytes: FlowTable::<Slot<F::Policy>>::BUCKET_BYTES,
        }
    }

    /// Replaces the resource bounds and timers.
    pub fn with_limits(mut self, limits: Limits) -> Engine<F> {
        self.rings.set_budget(ring_budget(&limits));
        self.limits = limits;
        self
    }

    /// The configuration this engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Connections currently tracked.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Bytes accounted to the connections now (what [`Limits::max_memory`] bounds): the
    /// flow table's allocation (buckets for the most connections it has held, see
    /// `FlowTable::accounted_capacity`), and per
    /// connection its index entries and its buffers (`Conn::heap_bytes`), and the spare
    /// output-log rings the engine keeps for reuse (`RingPool`, bounded; freed first when
    /// the account is over the ceiling).
    pub fn memory(&self) -> usize {
        self.books
            .memory
            .saturating_add(table_bytes(
                self.conns.accounted_capacity(),
                self.slot_bytes,
            ))
            .saturating_add(self.rings.heap_bytes())
    }

    /// Handles one frame read from `side` at `now`. Frames to emit are appended to `sink`
    /// (the caller writes the input frame first if the verdict is `Forward`).
    pub fn handle_frame(
        &mut self,
        now: Time,
        side: Side,
        frame: &[u8],
        sink: &mut FrameSink,
    ) -> Verdict {
        self.stats.frames_in += 1;
        let emitted_before = sink.len();
        // Expired connections go as time passes; a few per frame keeps the cost bounded.
        self.sweep(now, 4);
        let class = classify(frame);
        let verdict = if self.factory.forwards_everything() {
            Verdict::Forward(match class {
                Classified::NotIp => ForwardReason::NotIp,
                Classified::NotTcp | Classified::Fragment(_) => ForwardReason::NotTcp,
                Classified::Unparseable => ForwardReason::Unparseable,
                Classified::Tcp(t) if self.filtered(&t) => ForwardReason::Unchanged,
                Classified::Tcp(_) => ForwardReason::OtherPort,
            })
        } else {
            match class {
                Classified::NotIp => Verdict::Forward(ForwardReason::NotIp),
                Classified::NotTcp => Verdict::Forward(ForwardReason::NotTcp),
                Classified::Unparseable => {
                    self.cannot_judge(ForwardReason::Unparseable, DropReason::Unparseable)
                }
                Classified::Fragment(f) => self.on_fragment(&f),
                Classified::Tcp(t) => self.on_tcp(now, side, frame, &t, sink),
            }
        };
        match verdict {
            Verdict::Forward(r) => self.stats.forwarded[r as usize] += 1,
            Verdict::Rewritten => self.stats.rewritten += 1,
            Verdict::Drop(r) => self.stats.dropped[r as usize] += 1,
        }
        self.count_emitted(side, verdict, sink, emitted_before);
        verdict
    }

    /// Counts the frames queued in `sink` from index `from` on while handling a frame read
    /// from `side`: those going on in its direction replace it if it was rewritten; all
    /// others are the engine's own.
    fn count_emitted(&mut self, side: Side, verdict: Verdict, sink: &FrameSink, from: usize) {
        let new = sink.frames.get(from..).unwrap_or_default();
        let replacements = if verdict == Verdict::Rewritten {
            new.iter().filter(|(s, _)| *s == side.other()).count()
        } else {
            0
        };
        self.stats.replacements += replacements as u64;
        self.stats.originated += (new.len() - replacements) as u64;
    }

    fn filtered(&self, t: &TcpFrame) -> bool {
        self.ports.contains(t.seg.dst_port) || self.ports.contains(t.seg.src_port)
    }

    fn cannot_judge(&self, open: ForwardReason, closed: DropReason) -> Verdict {
        match self.config.fail_mode {
            FailMode::Open => Verdict::Forward(open),
            FailMode::Closed => Verdict::Drop(closed),
        }
    }

    /// A segment on a filtered port of a connection not tracked (no SYN seen, or forgotten).
    /// Payload is never forwarded unjudged, whatever the fail mode: it could be a blocked
    /// command of a connection whose state the engine lost (a stateful PIX drops packets
    /// without a connection the same way). Segments without payload (ACKs, FINs, RSTs)
    /// follow the fail mode.
    fn untracked(&self, t: &TcpFrame) -> Verdict {
        if t.payload_len() > 0 {
            Verdict::Drop(DropReason::Untracked)
        } else {
            self.cannot_judge(ForwardReason::Untracked, DropReason::Untracked)
        }
    }

    fn on_fragment(&self, f: &IpFragment) -> Verdict {
        match f.ports {
            Some((sp, dp)) if self.ports.contains(sp) || self.ports.contains(dp) => {
                Verdict::Drop(DropReason::Fragment)
            }
            Some(_) => Verdict::Forward(ForwardReason::OtherPort),
            None => {
                // Rare (a later fragment of a TCP datagram): a scan of the table.
                let tracked = self.conns.values().map(Keyed::key).any(|k| {
                    (k.client.0 == f.src && k.server.0 == f.dst)
                        || (k.client.0 == f.dst && k.server.0 == f.src)
                });
                if tracked {
                    Verdict::Drop(DropReason::Fragment)
                } else {
                    self.cannot_judge(ForwardReason::Unparseable, DropReason::Unparseable)
                }
            }
        }
    }

    fn on_tcp(
        &mut self,
        now: Time,
        side: Side,
        frame: &[u8],
        t: &TcpFrame,
        sink: &mut FrameSink,
    ) -> Verdict {
        if !self.filtered(t) {
            return Verdict::Forward(ForwardReason::OtherPort);
        }
        if !verify_checksums(frame, t) {
            return Verdict::Drop(DropReason::BadChecksum);
        }
        let as_client = FlowKey {
            client: (t.src, t.seg.src_port),
            server: (t.dst, t.seg.dst_port),
        };
        let as_server = FlowKey {
            client: (t.dst, t.seg.dst_port),
            server: (t.src, t.seg.src_port),
        };
        let is_syn = t.seg.flags.has(TcpFlags::SYN) && !t.seg.flags.has(TcpFlags::ACK);
        if is_syn && self.ports.contains(t.seg.dst_port) {
            return self.on_syn(now, side, frame, t, as_client, sink);
        }
        // One lookup for the client's segments, two for the server's (the client's key first,
        // as a flow between two filtered ports may be tracked both ways).
        let (key, d, slot) = match self.conns.get_mut(&as_client) {
            Some(slot) => (as_client, IDX_C2S, slot),
            None => match self.conns.get_mut(&as_server) {
                Some(slot) => (as_server, IDX_S2C, slot),
                None => return self.untracked(t),
            },
        };
        let expected_side = if d == IDX_C2S {
            slot.conn.client_side
        } else {
            slot.conn.client_side.other()
        };
        if side != expected_side {
            // The same flow seen on the wrong interface: not something a bump in the wire
            // should see; leave it alone.
            return Verdict::Forward(ForwardReason::Untracked);
        }
        let mut ctx = Ctx {
            now,
            sink,
            stats: &mut self.stats,
            limits: &self.limits,
            out: &mut self.out,
            scratch: &mut self.scratch,
            rings: &mut self.rings,
            pushed: [0; 2],
        };
        let v = slot.conn.on_segment(&mut ctx, d, frame, t);
        self.books.file(slot, key, &self.limits);
        self.enforce_ceiling(now, Some(key), sink);
        v
    }

    /// Files connection `key` in the timer and expiry indices under its current times.
    /// Charges it to the memory account under its current size.
    fn reindex(&mut self, key: FlowKey) {
        if let Some(slot) = self.conns.get_mut(&key) {
            self.books.file(slot, key, &self.limits);
        }
    }

    /// Evicts the connection idle longest of the lowest class that was not active within
    /// [`Limits::evict_grace`] (nor is `protect`); false when there is none. Entries of
    /// the idle index that come first but were active since are filed again under their
    /// real time: amortised over the segments that moved it, O(log n) per call.
    fn evict_one(&mut self, now: Time, protect: Option<FlowKey>) -> bool {
        let grace = u64::try_from(self.limits.evict_grace.as_nanos()).unwrap_or(u64::MAX);
        let latest_active = Time(now.0.saturating_sub(grace));
        for class in EvictClass::ALL {
            let c = class as usize;
            while let Some((filed, key)) = self.books.idle[c].first() {
                let Some(slot) = self.conns.get_mut(&key) else {
                    self.books.idle[c].remove(filed, key);
                    continue;
                };
                let real = (EvictClass::of(&slot.conn), slot.conn.last_seen);
                if real != (class, filed) {
                    self.books.idle[c].remove(filed, key);
                    self.books.idle[real.0 as usize].insert(real.1, key);
                    slot.set_idle_at(real);
                    continue;
                }
                let latest = match class {
                    EvictClass::Active => latest_active,
                    EvictClass::Finished | EvictClass::Embryonic => now,
                };
                if filed > latest || protect == Some(key) {
                    // Everything after it in this class was active at least as recently.
                    break;
                }
                log::debug!(
                    "evicting {} connection {:?} -> {:?} (idle since {} ns)",
                    class.name(),
                    key.client,
                    key.server,
                    filed.0
                );
                self.forget(key);
                self.stats.evicted[class as usize] += 1;
                return true;
            }
        }
        false
    }

    /// Room for a new connection: evicts until one more fits under `max_connections` and
    /// 7/8 of `max_memory` (with the table's growth, old and new table at once, when it is
    /// full); false when it cannot (nothing may be evicted). Records the high-water mark of
    /// a growth.
    fn make_room(&mut self, now: Time) -> bool {
        let budget = self.limits.max_memory / 8 * 7;
        loop {
            let len = self.conns.len();
            let cap = self.conns.accounted_capacity();
            let table = table_bytes(cap, self.slot_bytes);
            let grown = if len < cap {
                0
            } else {
                table_bytes(cap.saturating_mul(2).max(len + 1), self.slot_bytes)
            };
            let need = self
                .books
                .memory
                .saturating_add(table)
                .saturating_add(grown)
                .saturating_add(self.books.fixed_charge);
            if len < self.limits.max_connections && need <= budget {
                // While it grows, the old and the new table are both allocated.
                self.stats.peak_memory = self.stats.peak_memory.max(need as u64);
                return true;
            }
            if !self.evict_one(now, None) {
                return false;
            }
        }
    }

    /// Brings the memory account back under the ceiling after connection `current` (if
    /// any) grew: idle connections are evicted; when none may go, `current` is reset by the
    /// filter and forgotten. Then records the high-water mark.
    fn enforce_ceiling(&mut self, now: Time, current: Option<FlowKey>, sink: &mut FrameSink) {
        let memory = self.memory();
        if memory <= self.limits.max_memory {
            // The common case: under the ceiling, only the high-water mark moves.
            self.stats.peak_memory = self.stats.peak_memory.max(memory as u64);
            return;
        }
        // Spare rings go before any connection.
        self.rings.release();
        while self.memory() > self.limits.max_memory {
            if self.evict_one(now, current) {
                continue;
            }
            if let Some(key) = current {
                if let Some(slot) = self.conns.get_mut(&key) {
                    let mut ctx = Ctx {
                        now,
                        sink: &mut *sink,
                        stats: &mut self.stats,
                        limits: &self.limits,
                        out: &mut self.out,
                        scratch: &mut self.scratch,
                        rings: &mut self.rings,
                        pushed: [0; 2],
                    };
                    slot.conn.filter_reset(&mut ctx, "memory-ceiling");
                }
                self.forget(key);
            }
            break;
        }
        self.stats.peak_memory = self.stats.peak_memory.max(self.memory() as u64);
    }

    /// Forgets up to `max` connections whose expiry is due at `now`; a connection filed
    /// early (active since) is filed again at its real expiry, without counting.
    fn sweep(&mut self, now: Time, max: usize) {
        if now < self.books.expiry_floor {
            // Nothing is filed before the floor: nothing is due (the common case, O(1)).
            return;
        }
        let mut forgotten = 0;
        while forgotten < max {
            let Some((t, key)) = self.books.expiries.first() else {
                self.books.expiry_floor = Time(u64::MAX);
                break;
            };
            if t > now {
                self.books.expiry_floor = t;
                break;
            }
            match self.conns.get_mut(&key) {
                Some(slot) => {
                    let real = slot.conn.expiry(&self.limits);
                    if real > now {
                        slot.conn.replace_indexed_exp(Some(real));
                        self.books.expiries.remove(t, key);
                        self.books.file_expiry(real, key);
                    } else {
                        self.forget(key);
                        forgotten += 1;
                    }
                }
                None => {
                    self.books.expiries.remove(t, key);
                }
            }
        }
    }

    fn forget(&mut self, key: FlowKey) {
        if let Some(slot) = self.conns.remove(&key) {
            let slot = *slot;
            let c = slot.conn;
            if let Some(t) = c.indexed_rto() {
                self.books.remove_timer(t, key);
            }
            if let Some(t) = c.indexed_exp() {
                self.books.expiries.remove(t, key);
            }
            self.books.idle[slot.idle_class as usize].remove(slot.idle_time, key);
            self.books.memory = self.books.memory.saturating_sub(slot.charged as usize);
            self.retire(c);
        }
    }

    fn on_syn(
        &mut self,
        now: Time,
        side: Side,
        frame: &[u8],
        t: &TcpFrame,
        key: FlowKey,
        sink: &mut FrameSink,
    ) -> Verdict {
        if let Some(slot) = self.conns.get_mut(&key) {
            if slot.conn.same_syn(t) {
                slot.conn.last_seen = now;
                self.reindex(key);
                return Verdict::Forward(ForwardReason::Unchanged);
            }
            // A new connection reusing the addresses.
            self.forget(key);
        }
        if !self.make_room(now) {
            return Verdict::Drop(DropReason::OverLimit);
        }
        let conn = Conn::new(
            self.factory.session(),
            side,
            frame,
            t,
            now,
            self.config.record_connections,
        );
        let idle_at = (EvictClass::of(&conn), now);
        self.books.idle[idle_at.0 as usize].insert(idle_at.1, key);
        let slot = Slot {
            conn,
            key: StoredKey::new(key),
            idle_time: idle_at.1,
            charged: 0,
            idle_class: idle_at.0,
        };
        debug_assert!(slot.key() == key, "a connection is filed under its own key");
        self.conns.insert(Box::new(slot));
        self.reindex(key);
        self.enforce_ceiling(now, Some(key), sink);
        self.stats.connections += 1;
        if t.payload_len() > 0 {
            // Data on a SYN (TCP Fast Open) is never delivered: the SYN goes on without it and
            // the client sends the data again once the handshake did not acknowledge it.
            let out = sink.push_with_len(side.other(), t.payload_off);
            if strip_payload(frame, t, out).is_none() {
                log::error!("internal: could not strip a SYN's data");
            }
            return Verdict::Rewritten;
        }
        Verdict::Forward(ForwardReason::Unchanged)
    }

    fn retire(&mut self, conn: Conn<F::Policy>) {
        if let Some(r) = conn.report {
            self.reports.push(*r);
        }
    }

    /// When [`Engine::handle_timeout`] next needs to run, if ever: the next retransmission
    /// of the engine's own output. Idle and closed connections are forgotten as frames and
    /// timers come, without a deadline of their own (a caller may still call
    /// `handle_timeout` at any time to sweep them).
    pub fn poll_timeout(&self) -> Option<Time> {
        self.books.first_timer
    }

    /// Runs the timers due at `now`; frames to emit are appended to `sink`.
    pub fn handle_timeout(&mut self, now: Time, sink: &mut FrameSink) {
        let emitted_before = sink.len();
        let due = self.books.timers.due(now);
        for key in due {
            let Some(conn) = self.conns.get_mut(&key).map(|s| &mut s.conn) else {
                continue;
            };
            let mut ctx = Ctx {
                now,
                sink,
                stats: &mut self.stats,
                limits: &self.limits,
                out: &mut self.out,
                scratch: &mut self.scratch,
                rings: &mut self.rings,
                pushed: [0; 2],
            };
            conn.on_timeout(&mut ctx);
            self.reindex(key);
        }
        self.sweep(now, usize::MAX);
        self.enforce_ceiling(now, None, sink);
        // Everything a timer sends is the engine's own.
        self.stats.originated += sink.len().saturating_sub(emitted_before) as u64;
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Takes the reports of connections recorded so far (closed ones and, at `flush`, all).
    pub fn take_connection_reports(&mut self, flush: bool) -> Vec<ConnectionReport> {
        if flush {
            // In key order, whatever the table's hash order.
            let mut live: Vec<&mut Slot<F::Policy>> = self.conns.values_mut().collect();
            live.sort_unstable_by_key(|s| s.key());
            for slot in live {
                if let Some(r) = &mut slot.conn.report {
                    self.reports.push(ConnectionReport {
                        client: r.client.clone(),
                        server: r.server.clone(),
                        actions: std::mem::take(&mut r.actions),
                    });
                }
            }
        }
        std::mem::take(&mut self.reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::Session;
    use std::mem::size_of;

    /// What an idle connection costs the engine besides its buffers (none when idle): its
    /// boxed slot, its flow-table bucket, its entries in the expiry and idle indices. Bounded
    /// so that a regression shows (issue 6: state per idle connection).
    #[test]
    fn slot_layout_within_budget() {
        let slot = size_of::<Slot<Session>>();
        let bucket = FlowTable::<Slot<Session>>::BUCKET_BYTES;
        eprintln!("size_of: Slot<Session> {slot}, table bucket {bucket}");
        assert!(slot <= 840, "Slot<Session> is {slot} bytes");
        assert_eq!(bucket, 8);
        assert!(
            fixed_charge::<Session>() >= slot + 16,
            "the charge covers the record"
        );
    }

    /// The port set answers as `config.ports.contains` did, at both ends of the range.
    #[test]
    fn port_set_is_the_list() {
        let list = [0u16, 25, 63, 64, 587, 65535];
        let set = PortSet::new(&list);
        for p in 0..=u16::MAX {
            assert_eq!(set.contains(p), list.contains(&p), "port {p}");
        }
        assert!(!PortSet::new(&[]).contains(25));
    }
}
