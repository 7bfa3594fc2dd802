//! The bodies of the fuzz targets, shared by the cargo-fuzz binaries (`fuzz/fuzz_targets/`)
//! and by `tests/fuzz_regressions.rs`, which replays saved inputs through exactly this code on
//! the stable toolchain.
//!
//! - [`frame`]: arbitrary bytes as one frame into [`Engine::handle_frame`], then the timers.
//! - [`policy`]: arbitrary bytes as `(direction, chunk)` steps into [`Session::feed`] /
//!   [`Session::finish`] under every profile, checking the contract of `mailguard::smtp` and
//!   segmentation invariance (the same steps fed one byte at a time give the same output).
//! - [`engine`]: a random TCP session (valid frames, fuzzer-chosen offsets, flags, payloads,
//!   directions, retransmissions, overlaps, fragments) through the engine in a [`Lab`].
//!
//! Every check panics on violation (that is how libFuzzer learns of it). The harness itself
//! never panics on any input: it reads the input through [`Input`], which yields defaults once
//! the bytes run out.
//!
//! Set `MAILGUARD_FUZZ_CONTRACT=1` to also require of [`engine`] that no byte position of
//! either stream is ever emitted with two different values (DESIGN.md §3.2). It is off by
//! default because the skeleton's pass-through stub violates it by design.

use crate::lab::{
    build, check_checksums, corrupt_ip_checksum, corrupt_tcp_checksum, fragment, Lab, Seg,
};
use mailguard::engine::{Engine, EngineConfig, FailMode, FrameSink, Side, Time};
use mailguard::smtp::{Dir, Op, Output, PolicyConfig, Profile, Session, MAX_HELD};
use std::sync::Arc;

/// Reads fuzzer bytes; past the end every read yields zero.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps fuzzer bytes.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next two bytes as a big-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` next bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

fn engine_config(profile: Profile, fail_mode: FailMode) -> EngineConfig {
    EngineConfig {
        ports: vec![25, 587],
        policy: Arc::new(PolicyConfig {
            profile,
            ..PolicyConfig::default()
        }),
        fail_mode,
        record_connections: true,
    }
}

/// Issue 7's accounting: every frame in is forwarded, rewritten or dropped, exactly once.
fn check_accounting(engine: &Engine) {
    let s = engine.stats();
    assert_eq!(
        s.frames_in,
        s.forwarded_total() + s.rewritten + s.dropped_total(),
        "frames in != forwarded + rewritten + dropped: {:?}",
        s
    );
}

/// Frames the engine built itself must carry valid checksums.
fn check_sink(sink: &FrameSink) {
    for (side, f) in sink.iter() {
        if let Err(e) = check_checksums(f) {
            panic!("engine emitted a frame to {side:?} with {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// frame

/// Target `frame`: the first byte picks the profile, the side and the fail mode; the rest is
/// one frame, classified both ways (the fast path must agree with etherparse), handed to
/// the engine twice (once per side), then the timers run.
pub fn frame(data: &[u8]) {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let profile = Profile::ALL[usize::from(sel) % Profile::ALL.len()];
    let side = if sel & 0x40 == 0 {
        Side::Outside
    } else {
        Side::Inside
    };
    let fail_mode = if sel & 0x80 == 0 {
        FailMode::Open
    } else {
        FailMode::Closed
    };
    // The hand-written fast path of `classify` answers as etherparse does, or not at all.
    assert_eq!(
        mailguard::wire::classify(frame),
        mailguard::wire::classify_sliced(frame),
        "classify's fast path and etherparse disagree"
    );
    let mut engine = Engine::new(engine_config(profile, fail_mode));
    let mut sink = FrameSink::default();
    let mut now = Time(1_000_000_000);
    for s in [side, side.other()] {
        sink.clear();
        let _ = engine.handle_frame(now, s, frame, &mut sink);
        check_sink(&sink);
        now = now.after(std::time::Duration::from_millis(1));
    }
    let later = engine
        .poll_timeout()
        .unwrap_or(now)
        .max(now.after(std::time::Duration::from_secs(3600)));
    sink.clear();
    engine.handle_timeout(later, &mut sink);
    check_sink(&sink);
    check_accounting(&engine);
    let _ = engine.take_connection_reports(true);
}

// ---------------------------------------------------------------------------------------------
// policy

/// One step of a policy run.
#[derive(Clone, Debug)]
enum Step {
    Feed(Dir, Vec<u8>),
    Finish(Dir),
}

/// Decodes steps: a header byte (bit 0: direction; 0xfe/0xff: finish that direction;
/// otherwise bits 1..7: chunk length) then the chunk.
fn policy_steps(data: &[u8]) -> Vec<Step> {
    let mut input = Input::new(data);
    let mut steps = Vec::new();
    while !input.is_empty() && steps.len() < 256 {
        let h = input.byte();
        let dir = if h & 1 == 0 {
            Dir::ClientToServer
        } else {
            Dir::ServerToClient
        };
        if h >= 0xfe {
            steps.push(Step::Finish(dir));
        } else {
            let len = usize::from(h >> 1) + 1;
            steps.push(Step::Feed(dir, input.take(len).to_vec()));
        }
    }
    steps
}

/// What a policy run produced: each direction's output bytes and the reset, if any.
#[derive(Debug, PartialEq, Eq)]
struct PolicyRun {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    reset: Option<mailguard::smtp::ResetReason>,
}

/// Per-direction bookkeeping of a run.
#[derive(Default)]
struct DirState {
    input: Vec<u8>,
    consumed: usize,
    output: Vec<u8>,
    finished: bool,
}

impl DirState {
    /// Applies ops, checking that they consume only bytes that were fed.
    fn apply(&mut self, ops: &[Op], profile: Profile, dir: Dir) {
        for op in ops {
            let end = self.consumed + op.consumed();
            assert!(
                end <= self.input.len(),
                "{profile} {dir:?}: {op:?} consumes past what was fed ({end} > {})",
                self.input.len()
            );
            match op {
                Op::Copy(n) => self
                    .output
                    .extend_from_slice(&self.input[self.consumed..self.consumed + n]),
                Op::Delete(_) => {}
                Op::Replace(b) | Op::Insert(b) => self.output.extend_from_slice(b),
            }
            self.consumed = end;
        }
    }
}

/// Runs `steps` under `profile`; with `bytewise`, every chunk is fed one byte at a time.
/// Both directions are finished at the end. Checks the contract after every call.
fn run_policy(profile: Profile, steps: &[Step], bytewise: bool) -> PolicyRun {
    let mut session = Session::new(Arc::new(PolicyConfig {
        profile,
        ..PolicyConfig::default()
    }));
    let mut c2s = DirState::default();
    let mut s2c = DirState::default();
    let mut reset = None;
    let mut out = Output::default();
    let finish_all = [
        Step::Finish(Dir::ClientToServer),
        Step::Finish(Dir::ServerToClient),
    ];
    for step in steps.iter().chain(&finish_all) {
        let calls: Vec<(Dir, Option<&[u8]>)> = match step {
            Step::Feed(dir, chunk) if bytewise => {
                chunk.chunks(1).map(|c| (*dir, Some(c))).collect()
            }
            Step::Feed(dir, chunk) => vec![(*dir, Some(chunk.as_slice()))],
            Step::Finish(dir) => vec![(*dir, None)],
        };
        for (dir, chunk) in calls {
            let st = match dir {
                Dir::ClientToServer => &mut c2s,
                Dir::ServerToClient => &mut s2c,
            };
            if st.finished {
                continue; // the sender closed: nothing more comes from it
            }
            out.clear();
            match chunk {
                Some(c) => {
                    st.input.extend_from_slice(c);
                    session.feed(dir, c, &mut out);
                }
                None => {
                    st.finished = true;
                    session.finish(dir, &mut out);
                }
            }
            check_call(profile, &out, reset.is_some());
            c2s.apply(&out.to_server, profile, Dir::ClientToServer);
            s2c.apply(&out.to_client, profile, Dir::ServerToClient);
            if reset.is_none() {
                reset = out.reset;
            }
            if reset.is_none() {
                for (d, st) in [(Dir::ClientToServer, &c2s), (Dir::ServerToClient, &s2c)] {
                    let held = st.input.len() - st.consumed;
                    assert!(
                        held <= MAX_HELD,
                        "{profile} {d:?}: {held} bytes held, more than MAX_HELD"
                    );
                    if st.finished {
                        assert_eq!(held, 0, "{profile} {d:?}: bytes still held after finish");
                    }
                }
            }
        }
    }
    if profile == Profile::Off {
        assert_eq!(c2s.output, c2s.input, "off must copy the client stream");
        assert_eq!(s2c.output, s2c.input, "off must copy the server stream");
        assert_eq!(reset, None, "off never resets");
    }
    PolicyRun {
        to_server: c2s.output,
        to_client: s2c.output,
        reset,
    }
}

/// Contract of one call: no op once the connection was reset in an earlier call.
fn check_call(profile: Profile, out: &Output, already_reset: bool) {
    if already_reset {
        assert!(
            out.to_server.is_empty() && out.to_client.is_empty(),
            "{profile}: ops after a reset: {out:?}"
        );
    }
}

/// Target `policy`: the same steps under every profile, chunked as given and byte by byte.
pub fn policy(data: &[u8]) {
    let steps = policy_steps(data);
    for profile in Profile::ALL {
        let whole = run_policy(profile, &steps, false);
        let bytewise = run_policy(profile, &steps, true);
        assert_eq!(
            whole, bytewise,
            "{profile}: output depends on segmentation for steps {steps:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// engine

fn contract_checks() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("MAILGUARD_FUZZ_CONTRACT").is_some_and(|v| v != "0"))
}

/// A client segment at a fuzzer-chosen offset around what was sent so far.
fn fuzz_client_seg(lab: &Lab, input: &mut Input<'_>) -> Seg {
    let delta = i64::from(input.u16() as i16);
    let len = usize::from(input.byte() % 96);
    let flags = input.byte();
    let payload = input.take(len).to_vec();
    let off = (lab.client_sent as i64 + delta).max(-64);
    let mut seg = lab.client_seg(0, &payload);
    seg.seq = lab.client_seq(0).wrapping_add(off as u32);
    apply_flags(&mut seg, flags, input);
    seg
}

/// A server segment at a fuzzer-chosen offset around what the server sent so far.
fn fuzz_server_seg(lab: &Lab, input: &mut Input<'_>) -> Seg {
    let delta = i64::from(input.byte() as i8);
    let len = usize::from(input.byte() % 96);
    let flags = input.byte();
    let payload = input.take(len).to_vec();
    let off = (lab.server_sent() as i64 + delta).max(0);
    let mut seg = lab.server_seg(off as usize, &payload);
    apply_flags(&mut seg, flags, input);
    seg
}

fn apply_flags(seg: &mut Seg, flags: u8, input: &mut Input<'_>) {
    seg.fin = flags & 0x01 != 0;
    seg.rst = flags & 0x02 != 0 && flags & 0x10 != 0;
    if flags & 0x04 != 0 {
        seg.urg = Some(u16::from(input.byte()));
    }
    if flags & 0x08 != 0 {
        seg.ack = None;
    }
    if flags & 0x20 != 0 {
        seg.window = input.u16();
    }
}

/// Target `engine`: byte 0 picks the profile and IP version; then a handshake, greeting and
/// HELO; then up to 64 fuzzer-chosen steps. Every frame the engine emits must have valid
/// checksums (unless it is an invalid input forwarded untouched).
pub fn engine(data: &[u8]) {
    engine_checked(data, contract_checks());
}

/// [`engine`] with the DESIGN.md §3.2 check (no byte position emitted with two values) on or
/// off, whatever the environment says.
pub fn engine_checked(data: &[u8], contract: bool) {
    let mut input = Input::new(data);
    let sel = input.byte();
    let profile = Profile::ALL[usize::from(sel) % Profile::ALL.len()];
    let mut lab = Lab::new(profile, sel & 0x80 != 0);
    lab.connect();
    let mut idle_secs = 0;
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        idle_secs += engine_step(&mut lab, &mut input);
    }
    lab.settle();
    lab.drain_timers();
    assert!(
        lab.bad_emitted.is_empty(),
        "{profile}: emitted frames with bad checksums: {:?}",
        lab.bad_emitted
    );
    // Past the time an SMTP server waits for a command (RFC 5321: 5 minutes) the engine may
    // have expired the connection, and what it forwards afterwards is no longer one
    // connection's stream: §3.2 holds only for the connection's life.
    if contract && profile != Profile::Off && idle_secs <= 300 {
        assert_eq!(
            lab.server.conflicts, 0,
            "{profile}: conflicting bytes to the server"
        );
        assert_eq!(
            lab.client.conflicts, 0,
            "{profile}: conflicting bytes to the client"
        );
    }
    check_accounting(&lab.engine);
}

/// One fuzzer-chosen move of a session.
/// Returns the simulated seconds it let pass.
fn engine_step(lab: &mut Lab, input: &mut Input<'_>) -> u64 {
    let mut idle_secs = 0;
    match input.byte() % 9 {
        0 | 1 => {
            let seg = fuzz_client_seg(lab, input);
            lab.push_client(&seg);
        }
        2 => {
            let seg = fuzz_server_seg(lab, input);
            let f = build(lab.flow, &seg);
            lab.inject(Side::Inside, &f);
        }
        3 => lab.settle(),
        4 => {
            // The client's segment in IP fragments, possibly overlapping, in either order.
            let seg = fuzz_client_seg(lab, input);
            let f = build(lab.flow, &seg);
            let len = 20 + seg.payload.len();
            let cut = (usize::from(input.byte()) * 8).min(len / 8 * 8);
            let back = usize::from(input.byte() % 3) * 8;
            let second = cut.saturating_sub(back);
            let mut frags = fragment(&f, &[(0, cut), (second, len)], u32::from(input.u16()));
            if input.byte() & 1 != 0 {
                frags.reverse();
            }
            for fr in frags {
                lab.inject(Side::Outside, &fr);
            }
        }
        5 => {
            // A segment with a broken checksum, from either side.
            let from_client = input.byte() & 1 == 0;
            let seg = if from_client {
                fuzz_client_seg(lab, input)
            } else {
                fuzz_server_seg(lab, input)
            };
            let mut f = build(lab.flow, &seg);
            if input.byte() & 1 == 0 || lab.flow.v6 {
                corrupt_tcp_checksum(&mut f);
            } else {
                corrupt_ip_checksum(&mut f);
            }
            let side = if from_client {
                Side::Outside
            } else {
                Side::Inside
            };
            lab.inject(side, &f);
        }
        6 => {
            // Time passes: timers and idle expiry.
            let secs = u64::from(input.byte());
            lab.now = lab.now.after(std::time::Duration::from_secs(secs));
            lab.drain_timers();
            idle_secs += secs;
        }
        7 => {
            // A byte of a valid frame changed (and the frame possibly truncated).
            let seg = fuzz_client_seg(lab, input);
            let mut f = build(lab.flow, &seg);
            let at = usize::from(input.u16()) % f.len().max(1);
            let x = input.byte();
            if let Some(b) = f.get_mut(at) {
                *b ^= x;
            }
            let keep = f.len() - usize::from(input.byte()) % 8;
            f.truncate(keep);
            lab.inject(Side::Outside, &f);
        }
        _ => {
            // A SYN in the middle of the connection (or a new one reusing the ports).
            let mut seg = fuzz_client_seg(lab, input);
            seg.syn = true;
            lab.push_client(&seg);
        }
    }
    idle_secs
}
