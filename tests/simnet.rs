//! Simulated network: two smoltcp TCP endpoints run an SMTP session through the engine over a
//! seeded link that drops, duplicates, reorders and delays frames in both directions.
//!
//! Topology: client (198.18.0.1, `Side::Outside`) ⇄ lossy lane ⇄ engine ⇄ lossy lane ⇄
//! server (198.18.0.2, `Side::Inside`, port 25). Every lane is impaired independently, so the
//! engine sees loss and reordering on its input and its own output is lost and reordered too.
//! The clock is simulated (microseconds); smoltcp and the engine are driven by it.
//!
//! For each seed a run must: complete (QUIT answered by 221, both sockets closed) within
//! [`SIM_LIMIT`]; deliver to each endpoint exactly the policy's transform of what its peer
//! wrote (`mailguard::smtp::transform`); and every frame the engine emitted must pass the
//! wire checks of `common::wirecheck` (DESIGN.md §3). Filtering profiles are also checked for what the
//! profile is for (the blocked verb never reaches the server, and so on).
//!
//! `SIMNET_SEEDS=N` runs N seeds per profile instead of [`SEEDS`]; `SIMNET_SEED=S` runs the
//! single seed S (to debug a failure); `SIMNET_DUMP=1` prints the trace of every failing
//! run; `SIMNET_SHOW=<category>` (e.g. `OverAck`, `incomplete`, `client stream`) lists the
//! first failing seeds of that category. A failing sweep reports how many seeds failed in
//! each category.
//!
//! Choices where the issue is silent, mostly to keep smoltcp 0.12's own gaps from being
//! blamed on the engine:
//! - ARP crosses the lanes unimpaired (only IPv4 frames are mistreated).
//! - Endpoints send TCP keep-alives every [`KEEP_ALIVE_MS`] while open: smoltcp has no
//!   persist timer, and a reordered stale zero-window ACK would otherwise deadlock a sender.
//!   Keep-alives (one garbage octet below the receiver's ACK) are valid traffic the engine
//!   must handle; the wire checks do not hold their octet to the identical-bytes rule.
//! - A session also counts as complete when the client's FIN was lost on a lane and smoltcp
//!   will never resend it ([`Ending::ClientFinLost`]), or when the server in CLOSING lost the
//!   ACK of its FIN and smoltcp will never resend the FIN ([`Ending::ServerFinAckLost`]);
//!   at most 10% of seeds may end either way.
//! - Variants by seed: lock-step, pipelined (RFC 2920), and typed (each command byte in its
//!   own segment, telnet in character mode). Every seed also draws MTUs (576..1500, so MSSs
//!   differ per side), receive buffers of 1-8 KiB (windows fill), Nagle, and per lane a loss,
//!   duplication, reordering rate and delay range.
//! - The scripted server answers VRFY with 252 (it knows the verb) and EXPN, like anything
//!   unknown or X-ed, with 500.

mod common;

use common::expect::{policy_ops, EditMap};
use common::middlebox::{Broken, Defect, EngineBox, Middlebox};
use common::simlink::{
    host_ip, Endpoint, EndpointParams, Impairment, Lane, LaneStats, Rng, SimTime,
};
use common::smtpscript::{client_script, Client, Dialogue, PolicyPipe, Server, Variant};
use common::wirecheck::{check, parse, Kind, Links, Tap, Trace, TraceEvent, Violation, ACK, FIN};
use mailguard::engine::{EngineConfig, FailMode, Side, Time};
use mailguard::smtp::{transform, Dir, PolicyConfig, Profile};
use smoltcp::socket::tcp::State;
use std::sync::Arc;

/// Seeds per profile in CI.
const SEEDS: u64 = 1000;
/// Simulated time a session may take, in microseconds.
const SIM_LIMIT: SimTime = 900_000_000;
/// Loop iterations a session may take (a guard against a simulation that stops advancing).
const MAX_STEPS: usize = 2_000_000;
/// Keep-alive interval of the endpoints (see `EndpointParams::keep_alive_ms`).
const KEEP_ALIVE_MS: u64 = 2_000;
/// Time between two typed bytes of [`Variant::Typed`], in microseconds.
const TYPE_INTERVAL: SimTime = 30_000;
/// The SMTP port.
const SMTP: u16 = 25;

/// The seeds to run: `SIMNET_SEED` alone, or `0..SIMNET_SEEDS` (default [`SEEDS`]).
fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("SIMNET_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("SIMNET_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SEEDS);
    (0..n).collect()
}

/// Everything that defines one run.
#[derive(Clone, Debug)]
struct Scenario {
    profile: Profile,
    variant: Variant,
    seed: u64,
    client: EndpointParams,
    server: EndpointParams,
    /// Lanes: client→engine, engine→client, server→engine, engine→server.
    lanes: [Impairment; 4],
    body_size: usize,
    client_port: u16,
}

impl Scenario {
    /// A random scenario for a seed: MTUs, buffers (windows), Nagle, body size and the four
    /// lanes' impairments all vary.
    fn random(profile: Profile, seed: u64) -> Scenario {
        let mut rng = Rng::new(seed);
        let mtus = [1500, 1280, 1000, 576];
        let endpoint = |host: u8, rng: &mut Rng| EndpointParams {
            host,
            ip_mtu: mtus[rng.below(mtus.len() as u64) as usize],
            rx_buf: rng.range(1024, 8192) as usize,
            tx_buf: rng.range(2048, 16384) as usize,
            nagle: rng.chance(500),
            seed: rng.next_u64(),
            keep_alive_ms: KEEP_ALIVE_MS,
        };
        let client = endpoint(1, &mut rng);
        let server = endpoint(2, &mut rng);
        let lanes = [
            Impairment::random(&mut rng),
            Impairment::random(&mut rng),
            Impairment::random(&mut rng),
            Impairment::random(&mut rng),
        ];
        Scenario {
            profile,
            variant: match seed % 3 {
                0 => Variant::LockStep,
                1 => Variant::Pipelined,
                _ => Variant::Typed,
            },
            seed,
            client,
            server,
            lanes,
            body_size: rng.range(1500, 6000) as usize,
            client_port: 49152 + rng.below(16000) as u16,
        }
    }

    /// A perfect link with fixed parameters (for the checker's own tests).
    fn clean(profile: Profile, variant: Variant, client_mtu: usize, server_mtu: usize) -> Scenario {
        let endpoint = |host: u8, ip_mtu: usize| EndpointParams {
            host,
            ip_mtu,
            rx_buf: 4096,
            tx_buf: 8192,
            nagle: false,
            seed: u64::from(host) * 7919,
            keep_alive_ms: KEEP_ALIVE_MS,
        };
        Scenario {
            profile,
            variant,
            seed: 0,
            client: endpoint(1, client_mtu),
            server: endpoint(2, server_mtu),
            lanes: [Impairment::CLEAN; 4],
            body_size: 4000,
            client_port: 50000,
        }
    }

    fn policy(&self) -> Arc<PolicyConfig> {
        Arc::new(PolicyConfig {
            profile: self.profile,
            ..PolicyConfig::default()
        })
    }

    fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            ports: vec![SMTP],
            policy: self.policy(),
            fail_mode: FailMode::Open,
            record_connections: false,
        }
    }

    fn links(&self) -> Links {
        Links {
            ip_mtu: [self.client.ip_mtu, self.server.ip_mtu],
        }
    }
}

/// What a run produced.
struct Run {
    scenario: Scenario,
    trace: Trace,
    dialogue: Dialogue,
    client: Client,
    server: Server,
    client_state: State,
    server_state: State,
    completed: bool,
    ending: Ending,
    end: SimTime,
    lane_stats: [LaneStats; 4],
}

/// The network between the endpoints and the middlebox.
struct Net {
    lanes: [Lane; 4],
    trace: Trace,
    /// The engine received a FIN from the client / the server.
    fin_in: [bool; 2],
    /// The engine emitted a FIN toward the client / the server.
    fin_out: [bool; 2],
}

const C2E: usize = 0;
const E2C: usize = 1;
const S2E: usize = 2;
const E2S: usize = 3;

impl Net {
    /// Puts what the middlebox emitted on the lanes toward the endpoints.
    fn route(&mut self, now: SimTime, emitted: &mut Vec<(Side, Vec<u8>)>) {
        for (side, frame) in emitted.drain(..) {
            let lane = match side {
                Side::Outside => E2C,
                Side::Inside => E2S,
            };
            let delivered = self.lanes[lane].push(now, &frame);
            self.fin_out[side_index(side)] |= has_fin(&frame);
            self.trace.push(TraceEvent {
                tap: Tap::EngineTx,
                side,
                frame,
            });
            self.note_loss(delivered, side);
        }
    }

    /// Hands frames due at `now` to the middlebox.
    fn deliver_to_middlebox(&mut self, now: SimTime, mb: &mut dyn Middlebox) {
        let mut emitted = Vec::new();
        for (lane, side) in [(C2E, Side::Outside), (S2E, Side::Inside)] {
            while let Some(frame) = self.lanes[lane].pop_due(now) {
                self.fin_in[side_index(side)] |= has_fin(&frame);
                mb.handle_frame(time(now), side, &frame, &mut emitted);
                // Recorded as received before anything it caused is recorded as emitted.
                self.trace.push(TraceEvent {
                    tap: Tap::EngineRx,
                    side,
                    frame,
                });
                self.route(now, &mut emitted);
            }
        }
        if mb.poll_timeout().is_some_and(|t| t <= time(now)) {
            mb.handle_timeout(time(now), &mut emitted);
            self.route(now, &mut emitted);
        }
    }

    /// Moves frames the endpoint transmitted onto its lane.
    fn collect_from_endpoint(&mut self, now: SimTime, ep: &mut Endpoint, side: Side) {
        let lane = match side {
            Side::Outside => C2E,
            Side::Inside => S2E,
        };
        for frame in ep.device.tx.drain(..) {
            let delivered = self.lanes[lane].push(now, &frame);
            self.trace.push(TraceEvent {
                tap: Tap::EndpointTx,
                side,
                frame,
            });
            self.note_loss(delivered, side);
        }
    }

    /// Delivers frames due at `now` to an endpoint.
    fn deliver_to_endpoint(&mut self, now: SimTime, ep: &mut Endpoint, side: Side) {
        let lane = match side {
            Side::Outside => E2C,
            Side::Inside => E2S,
        };
        while let Some(frame) = self.lanes[lane].pop_due(now) {
            ep.device.rx.push_back(frame);
        }
    }

    fn next_at(&self) -> Option<SimTime> {
        self.lanes.iter().filter_map(Lane::next_at).min()
    }

    /// Traces the loss of the frame just traced.
    fn note_loss(&mut self, delivered: bool, side: Side) {
        if !delivered {
            self.trace.push(TraceEvent {
                tap: Tap::Lost,
                side,
                frame: Vec::new(),
            });
        }
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Outside => 0,
        Side::Inside => 1,
    }
}

fn has_fin(frame: &[u8]) -> bool {
    matches!(parse(frame), Ok(Some(seg)) if seg.has(FIN))
}

fn time(t: SimTime) -> Time {
    Time(t * 1000)
}

/// How a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// Still running (or ran out of time).
    Open,
    /// Both FINs delivered.
    Closed,
    /// Everything delivered and both sides closed, but the client's FIN was lost on a lane and
    /// smoltcp will not retransmit it: in smoltcp 0.12 an ACK that does not cover the FIN,
    /// received in LAST-ACK, cancels the retransmission timer; and in CLOSING (the server's
    /// FIN arrived while the client's own was unacknowledged) it does not retransmit its FIN
    /// at all (a real stack would). Accepted only when nothing is
    /// in flight, no timer is pending anywhere, and the engine forwarded every FIN it got
    /// from the client (so the engine did not swallow it).
    ClientFinLost,
    /// Everything delivered and both sides closed, but the server, in CLOSING (simultaneous
    /// close: the client's FIN reached it before the ACK of its own FIN), never got that
    /// ACK: the engine forwarded an ACK covering the server's FIN towards the server and the
    /// lane lost it, and smoltcp 0.12 does not retransmit its FIN in CLOSING (a real stack
    /// would, and the client in TIME-WAIT would answer it). Accepted only when nothing is in
    /// flight, no timer is pending anywhere, the client is closed, and the engine's output
    /// towards the server holds such an ACK (so the engine did not swallow it). Counted with
    /// [`Ending::ClientFinLost`] against the same 10% bound.
    ServerFinAckLost,
}

/// The session is over when the client got the reply to QUIT and the server's FIN (and read
/// everything), the server answered QUIT, closed and had its FIN acknowledged, and the
/// client's FIN reached the server (or see [`Ending::ClientFinLost`]).
fn ending(
    now: SimTime,
    client: &Client,
    server: &Server,
    client_ep: &mut Endpoint,
    server_ep: &mut Endpoint,
    net: &Net,
    mb: &dyn Middlebox,
) -> Ending {
    let client_state = client_ep.socket().state();
    let client_done = client.closed && !client_ep.socket().may_recv();
    let s = server_ep.socket().state();
    let server_done = server.closed
        && matches!(
            s,
            State::FinWait2 | State::TimeWait | State::Closed | State::Closing
        );
    if !(client_done && server_done) {
        return Ending::Open;
    }
    if matches!(s, State::TimeWait | State::Closed) {
        return Ending::Closed;
    }
    let quiescent = net.next_at().is_none()
        && mb.poll_timeout().is_none()
        && client_ep.poll_at(now).is_none()
        && server_ep.poll_at(now).is_none();
    let engine_forwarded_fin = !net.fin_in[0] || net.fin_out[1];
    // A server in CLOSING still waits for the ACK of its FIN: only the second allowance.
    if quiescent
        && s == State::FinWait2
        && matches!(client_state, State::LastAck | State::Closing)
        && engine_forwarded_fin
    {
        Ending::ClientFinLost
    } else if quiescent
        && s == State::Closing
        && matches!(client_state, State::TimeWait | State::Closed)
        && engine_acked_server_fin(&net.trace)
    {
        Ending::ServerFinAckLost
    } else {
        Ending::Open
    }
}

/// The engine emitted towards the server an ACK covering the server's FIN.
fn engine_acked_server_fin(trace: &[TraceEvent]) -> bool {
    let segs = |tap: Tap| {
        trace
            .iter()
            .filter(move |e| e.tap == tap && e.side == Side::Inside)
            .filter_map(|e| parse(&e.frame).ok().flatten())
    };
    let Some(fin_end) = segs(Tap::EndpointTx)
        .filter(|seg| seg.has(FIN))
        .map(|seg| seg.seq.wrapping_add(seg.payload_len as u32).wrapping_add(1))
        .next_back()
    else {
        return false;
    };
    segs(Tap::EngineTx).any(|seg| seg.has(ACK) && (seg.ack.wrapping_sub(fin_end) as i32) >= 0)
}

/// Runs one SMTP session through `mb`.
fn run(scenario: Scenario, mb: &mut dyn Middlebox) -> Run {
    let mut rng = Rng::new(scenario.seed ^ 0x5eed_1a4e);
    let mut net = Net {
        lanes: scenario.lanes.map(|imp| Lane::new(rng.fork(), imp)),
        trace: Vec::new(),
        fin_in: [false; 2],
        fin_out: [false; 2],
    };
    let mut now: SimTime = 1_000;
    let mut client_ep = Endpoint::new(scenario.client, now);
    let mut server_ep = Endpoint::new(scenario.server, now);
    server_ep.socket().listen(SMTP).expect("listen");
    let remote = (host_ip(scenario.server.host), SMTP);
    let cx = client_ep.iface.context();
    client_ep
        .sockets
        .get_mut::<smoltcp::socket::tcp::Socket>(client_ep.handle)
        .connect(cx, remote, scenario.client_port)
        .expect("connect");
    let salt = scenario.seed;
    let mut client = Client::new(client_script(scenario.variant, scenario.body_size, salt))
        .typing(scenario.variant == Variant::Typed);
    let mut server = Server::new();
    let mut dialogue = Dialogue::new();
    let mut ended = Ending::Open;
    for _ in 0..MAX_STEPS {
        net.deliver_to_middlebox(now, mb);
        net.deliver_to_endpoint(now, &mut client_ep, Side::Outside);
        net.deliver_to_endpoint(now, &mut server_ep, Side::Inside);
        client_ep.poll(now);
        server_ep.poll(now);
        client.step(client_ep.socket(), &mut dialogue);
        server.step(server_ep.socket(), &mut dialogue);
        client_ep.poll(now);
        server_ep.poll(now);
        net.collect_from_endpoint(now, &mut client_ep, Side::Outside);
        net.collect_from_endpoint(now, &mut server_ep, Side::Inside);
        ended = ending(
            now,
            &client,
            &server,
            &mut client_ep,
            &mut server_ep,
            &net,
            mb,
        );
        if ended != Ending::Open {
            break;
        }
        let next = [
            net.next_at(),
            mb.poll_timeout().map(|t| t.0.div_ceil(1000)),
            client_ep.poll_at(now),
            server_ep.poll_at(now),
            client.is_typing().then_some(now + TYPE_INTERVAL),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(SIM_LIMIT);
        now = next.max(now + 1);
        if now > SIM_LIMIT {
            break;
        }
    }
    // Whatever arrived last (the 221 with the FIN) is read here.
    client.step(client_ep.socket(), &mut dialogue);
    server.step(server_ep.socket(), &mut dialogue);
    Run {
        client_state: client_ep.socket().state(),
        server_state: server_ep.socket().state(),
        lane_stats: net.lanes.each_ref().map(|l| l.stats),
        scenario,
        trace: net.trace,
        dialogue,
        client,
        server,
        completed: ended != Ending::Open,
        ending: ended,
        end: now,
    }
}

/// A run through the real engine.
fn run_engine(scenario: Scenario) -> Run {
    let mut mb = EngineBox::new(scenario.engine_config());
    run(scenario, &mut mb)
}

impl Run {
    fn script(&self) -> Vec<(Dir, &[u8])> {
        self.dialogue
            .iter()
            .map(|(d, b)| (*d, b.as_slice()))
            .collect()
    }

    /// The wire checks over this run's trace.
    fn violations(&self) -> Vec<Violation> {
        let ops = policy_ops(self.scenario.policy(), &self.script());
        let c2s = EditMap::from_ops(&ops.to_server);
        let s2c = EditMap::from_ops(&ops.to_client);
        check(&self.trace, [&c2s, &s2c], self.scenario.links())
    }

    /// Every failed expectation of a run through a correct engine, as text.
    fn failures(&self) -> Vec<String> {
        self.classified_failures()
            .into_iter()
            .map(|(_, text)| text)
            .collect()
    }

    /// Every failed expectation with its category (for the sweep's tally): `incomplete`,
    /// `server stream`, `client stream`, `profile`, or the wire check's kind.
    fn classified_failures(&self) -> Vec<(String, String)> {
        let mut f = Vec::new();
        if !self.completed {
            f.push((
                "incomplete".to_string(),
                format!(
                    "session did not complete by {} µs: client {:?} (closed {}), server {:?} \
                     (closed {}), client got {:?}",
                    self.end,
                    self.client_state,
                    self.client.closed,
                    self.server_state,
                    self.server.closed,
                    self.client.codes()
                ),
            ));
        }
        let expected = transform(self.scenario.policy(), &self.script());
        if self.server.received != expected.to_server {
            let diff = stream_diff("server", &self.server.received, &expected.to_server);
            f.push(("server stream".to_string(), diff));
        }
        if self.client.received != expected.to_client {
            let diff = stream_diff("client", &self.client.received, &expected.to_client);
            f.push(("client stream".to_string(), diff));
        }
        let violations = self.violations();
        let mut kinds: Vec<Kind> = violations.iter().map(|v| v.kind).collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            let first = violations.iter().filter(|v| v.kind == kind);
            let count = first.clone().count();
            let text = first.take(2).map(|v| v.to_string()).collect::<Vec<_>>();
            f.push((
                format!("{kind:?}"),
                format!("{} ({count} frames)", text.join("; ")),
            ));
        }
        let profile = profile_failures(self.scenario.profile, &self.client, &self.server);
        f.extend(profile.into_iter().map(|p| ("profile".to_string(), p)));
        f
    }

    /// True if the lane toward the client lost an engine frame whose payload contains
    /// `needle`.
    fn lost_toward_client(&self, needle: &[u8]) -> bool {
        self.trace.windows(2).any(|w| {
            w[1].tap == Tap::Lost
                && w[0].tap == Tap::EngineTx
                && w[0].side == Side::Outside
                && matches!(parse(&w[0].frame), Ok(Some(seg))
                    if w[0].frame[seg.payload_off..seg.payload_off + seg.payload_len]
                        .windows(needle.len())
                        .any(|x| x == needle))
        })
    }

    fn describe(&self) -> String {
        format!(
            "seed {} {:?} {:?}: client mtu {} rx {} nagle {}, server mtu {} rx {} nagle {}, \
             body {}, lanes {:?}, {} frames traced, ended {:?} at {} µs",
            self.scenario.seed,
            self.scenario.profile,
            self.scenario.variant,
            self.scenario.client.ip_mtu,
            self.scenario.client.rx_buf,
            self.scenario.client.nagle,
            self.scenario.server.ip_mtu,
            self.scenario.server.rx_buf,
            self.scenario.server.nagle,
            self.scenario.body_size,
            self.lane_stats,
            self.trace.len(),
            self.ending,
            self.end,
        )
    }
}

fn stream_diff(who: &str, got: &[u8], want: &[u8]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let show = |s: &[u8]| {
        String::from_utf8_lossy(s.get(at..(at + 60).min(s.len())).unwrap_or_default()).into_owned()
    };
    format!(
        "{who} received {} bytes, expected {}; first difference at {at}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    )
}

/// Checks of what a profile is for, independent of `transform`: a filtering profile must keep
/// the blocked verbs (`VRFY`, `EXPN`) away from the server, and the client must get the
/// answer the profile gives to a blocked verb.
fn profile_failures(profile: Profile, client: &Client, server: &Server) -> Vec<String> {
    let mut f = Vec::new();
    let verbs = &server.verbs;
    let codes = client.codes();
    let blocked = |v: &String| v == "VRFY" || v == "EXPN";
    // Reply index of the blocked command: greeting, EHLO, MAIL, RCPT, then VRFY/EXPN.
    let blocked_reply = codes.get(4).copied();
    match profile {
        Profile::Off if !verbs.iter().any(blocked) => {
            f.push(format!("off: the server never got VRFY/EXPN: {verbs:?}"));
        }
        Profile::Pix40 => {
            if verbs.iter().any(|v| blocked(v) || v == "EHLO") {
                f.push(format!(
                    "pix40: a blocked verb reached the server: {verbs:?}"
                ));
            }
            if blocked_reply != Some(250) {
                f.push(format!(
                    "pix40: blocked verb answered {blocked_reply:?}, want 250"
                ));
            }
            if !client.received.starts_with(b"220 SMTP/cmap") {
                f.push("pix40: greeting not replaced".into());
            }
        }
        Profile::Strict => {
            if verbs.iter().any(blocked) {
                f.push(format!(
                    "strict: a blocked verb reached the server: {verbs:?}"
                ));
            }
            if blocked_reply != Some(500) {
                f.push(format!(
                    "strict: blocked verb answered {blocked_reply:?}, want 500"
                ));
            }
            let got = String::from_utf8_lossy(&client.received);
            for ext in ["250-VRFY", "250-ETRN", "250-X-LINK2STATE"] {
                if got.contains(ext) {
                    f.push(format!("strict: EHLO reply still advertises {ext}"));
                }
            }
        }
        Profile::Pix44 | Profile::Pix51 if verbs.iter().any(|v| blocked(v) || v == "EHLO") => {
            f.push(format!(
                "{profile}: a blocked verb reached the server: {verbs:?}"
            ));
        }
        Profile::Asa if verbs.iter().any(|v| v == "EXPN") => {
            f.push(format!("asa: EXPN reached the server: {verbs:?}"));
        }
        _ => {}
    }
    f
}

/// Runs every seed for a profile and fails with the first few failing seeds.
fn sweep(profile: Profile) {
    let seeds = seeds();
    let mut failed = Vec::new();
    let mut fin_lost = 0usize;
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    let mut injected_lost = 0usize;
    for &seed in &seeds {
        let run = run_engine(Scenario::random(profile, seed));
        fin_lost += usize::from(matches!(
            run.ending,
            Ending::ClientFinLost | Ending::ServerFinAckLost
        ));
        injected_lost += usize::from(run.lost_toward_client(INJECTED_REPLY));
        let classified = run.classified_failures();
        for (category, _) in &classified {
            *tally.entry(category.clone()).or_default() += 1;
        }
        let shown = std::env::var("SIMNET_SHOW")
            .map_or(true, |want| classified.iter().any(|(c, _)| *c == want));
        let f: Vec<String> = classified.into_iter().map(|(_, t)| t).collect();
        if !f.is_empty() && std::env::var_os("SIMNET_DUMP").is_some() {
            eprintln!(
                "{}\n{}",
                run.describe(),
                common::wirecheck::dump(&run.trace)
            );
        }
        if !f.is_empty() {
            let text = format!("{}\n    {}", run.describe(), f.join("\n    "));
            failed.push((shown, text));
        }
    }
    eprintln!(
        "{profile}: {} seeds, {} failed, {fin_lost} ended with the client's FIN or the ACK of the server's FIN lost (smoltcp), \
         {injected_lost} lost an injected reply",
        seeds.len(),
        failed.len()
    );
    // The smoltcp allowance must stay an exception, not the way sessions end.
    assert!(
        fin_lost * 10 <= seeds.len().max(10),
        "{profile}: {fin_lost} of {} sessions ended with the client's FIN lost",
        seeds.len()
    );
    assert!(
        failed.is_empty(),
        "{profile}: {} of {} seeds failed; seeds per failure: {tally:?}; first ones:\n{}",
        failed.len(),
        seeds.len(),
        failed
            .iter()
            .filter(|(shown, _)| *shown)
            .take(5)
            .map(|(_, text)| text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Coverage: pix40's injected replies belong to the engine, which must retransmit them
    // itself; the sweep must have lost some on the way to the client to test that.
    if profile == Profile::Pix40 && seeds.len() >= 200 {
        assert!(
            injected_lost > 0,
            "no injected reply was ever lost: the engine's own retransmission is untested"
        );
    }
}

/// pix40's injected reply.
const INJECTED_REPLY: &[u8] = b"250 OK\r\n";

#[test]
fn off_profile_over_a_bad_network_delivers_the_identity_for_every_seed() {
    sweep(Profile::Off);
}

#[test]
fn pix40_profile_over_a_bad_network_delivers_its_transform_for_every_seed() {
    sweep(Profile::Pix40);
}

#[test]
fn strict_profile_over_a_bad_network_delivers_its_transform_for_every_seed() {
    sweep(Profile::Strict);
}

/// Seeds beyond the default sweep where strict once left a session stuck: a body segment
/// ended with the CR of a CRLF, strict held that CR until the LF came, and the client
/// (smoltcp, classic Nagle) held the LF and the rest of the body until the CR was
/// acknowledged, which the server could not do. Strict now copies the CR at once.
#[test]
fn strict_never_stalls_a_nagle_client_on_a_held_cr() {
    for seed in [2248, 4392, 4810] {
        let run = run_engine(Scenario::random(Profile::Strict, seed));
        let f = run.failures();
        assert!(
            f.is_empty(),
            "seed {seed}: {}\n{}",
            run.describe(),
            f.join("\n")
        );
    }
}

/// The masking profiles keep lengths, except that asa and pix51 mask banners and asa
/// rewrites the EHLO reply in place: beyond the issue's three, for depth.
#[test]
fn pix44_pix51_asa_profiles_over_a_bad_network_deliver_their_transform_for_every_seed() {
    for profile in [Profile::Pix44, Profile::Pix51, Profile::Asa] {
        sweep(profile);
    }
}

/// A clean link, both client variants: the harness itself works end to end.
#[test]
fn off_profile_over_a_clean_link_completes_with_the_expected_replies() {
    for variant in [Variant::LockStep, Variant::Pipelined, Variant::Typed] {
        let run = run_engine(Scenario::clean(Profile::Off, variant, 1500, 1500));
        let f = run.failures();
        assert!(f.is_empty(), "{}\n{}", run.describe(), f.join("\n"));
        let want: &[u16] = match variant {
            // greeting, EHLO, MAIL, RCPT, VRFY, RCPT, NOOP, DATA, body, QUIT
            Variant::LockStep | Variant::Typed => {
                &[220, 250, 250, 250, 252, 250, 250, 354, 250, 221]
            }
            // greeting, EHLO, MAIL, RCPT, EXPN, RCPT, DATA, body, NOOP, QUIT
            Variant::Pipelined => &[220, 250, 250, 250, 500, 250, 354, 250, 250, 221],
        };
        assert_eq!(run.client.codes(), want, "{variant:?}");
        assert!(run.server.received.len() > 4000, "the body was delivered");
        if variant == Variant::Typed {
            // Every command byte left the client in a segment of its own.
            let one_byte = run
                .trace
                .iter()
                .filter(|e| e.tap == Tap::EndpointTx && e.side == Side::Outside)
                .filter(|e| matches!(parse(&e.frame), Ok(Some(s)) if s.payload_len == 1))
                .count();
            assert!(one_byte >= 100, "only {one_byte} one-byte segments");
        }
    }
}

/// The impairments really happen: across a few seeds every kind of mistreatment occurs on
/// every lane, and sessions still complete.
#[test]
fn the_link_drops_duplicates_and_reorders_on_every_lane() {
    let mut total = [LaneStats::default(); 4];
    for seed in 0..20 {
        let run = run_engine(Scenario::random(Profile::Off, seed));
        assert!(run.completed, "{}", run.describe());
        for (t, s) in total.iter_mut().zip(run.lane_stats) {
            t.sent += s.sent;
            t.dropped += s.dropped;
            t.duplicated += s.duplicated;
            t.reordered += s.reordered;
        }
    }
    for (lane, t) in total.iter().enumerate() {
        assert!(
            t.dropped > 0 && t.duplicated > 0 && t.reordered > 0,
            "lane {lane}: {t:?}"
        );
    }
}

/// Same seed, same run: the simulation is deterministic.
#[test]
fn a_seed_reproduces_its_run_exactly() {
    let a = run_engine(Scenario::random(Profile::Off, 7));
    let b = run_engine(Scenario::random(Profile::Off, 7));
    assert_eq!(a.trace.len(), b.trace.len());
    assert!(a
        .trace
        .iter()
        .zip(&b.trace)
        .all(|(x, y)| x.frame == y.frame && x.tap == y.tap));
    assert_eq!(a.end, b.end);
}

// ---- The scripts against the policy alone (no TCP): the expectations above are consistent
// with the policy, so a failing sweep means the engine, not the harness. ----

/// Runs the scripted endpoints through the policy only.
fn policy_only(profile: Profile, variant: Variant) -> (Client, Server, Dialogue) {
    let config = Arc::new(PolicyConfig {
        profile,
        ..PolicyConfig::default()
    });
    let mut pipe = PolicyPipe::new(config);
    let mut client = Client::new(client_script(variant, 3000, 1)).typing(variant == Variant::Typed);
    let mut server = Server::new();
    let mut log = Dialogue::new();
    for _ in 0..10_000 {
        client.step(&mut pipe.end(Dir::ClientToServer), &mut log);
        server.step(&mut pipe.end(Dir::ServerToClient), &mut log);
        if client.closed && server.closed {
            break;
        }
    }
    // The last bytes written before closing.
    client.step(&mut pipe.end(Dir::ClientToServer), &mut log);
    server.step(&mut pipe.end(Dir::ServerToClient), &mut log);
    assert!(
        client.closed && server.closed && !pipe.reset,
        "{profile} {variant:?}: session did not finish; client got {:?}",
        client.codes()
    );
    (client, server, log)
}

/// The reply codes the client must see.
fn expected_codes(profile: Profile, variant: Variant) -> Vec<u16> {
    // The answer to EHLO and to the blocked verb depend on the profile.
    // pix40 answers blocked verbs itself; pix44/pix51 X out EHLO; asa and off pass VRFY.
    let ehlo = match profile {
        Profile::Pix44 | Profile::Pix51 => 500,
        _ => 250,
    };
    let blocked = match (profile, variant) {
        (Profile::Pix40, _) => 250,
        (Profile::Off | Profile::Asa, Variant::LockStep | Variant::Typed) => 252,
        _ => 500,
    };
    match variant {
        Variant::LockStep | Variant::Typed => {
            vec![220, ehlo, 250, 250, blocked, 250, 250, 354, 250, 221]
        }
        Variant::Pipelined => vec![220, ehlo, 250, 250, blocked, 250, 354, 250, 250, 221],
    }
}

fn check_policy_only(profile: Profile) {
    for variant in [Variant::LockStep, Variant::Pipelined, Variant::Typed] {
        let (client, server, log) = policy_only(profile, variant);
        assert_eq!(
            client.codes(),
            expected_codes(profile, variant),
            "{profile} {variant:?}"
        );
        let f = profile_failures(profile, &client, &server);
        assert!(f.is_empty(), "{profile} {variant:?}: {f:?}");
        let script: Vec<(Dir, &[u8])> = log.iter().map(|(d, b)| (*d, b.as_slice())).collect();
        let expected = transform(
            Arc::new(PolicyConfig {
                profile,
                ..PolicyConfig::default()
            }),
            &script,
        );
        assert_eq!(server.received, expected.to_server, "{profile} {variant:?}");
        assert_eq!(client.received, expected.to_client, "{profile} {variant:?}");
    }
}

#[test]
fn scripts_through_the_off_policy_alone_meet_the_expectations() {
    check_policy_only(Profile::Off);
}

#[test]
fn scripts_through_the_pix40_policy_alone_meet_the_expectations() {
    check_policy_only(Profile::Pix40);
}

#[test]
fn scripts_through_the_strict_policy_alone_meet_the_expectations() {
    check_policy_only(Profile::Strict);
}

#[test]
fn scripts_through_the_pix44_pix51_asa_policies_alone_meet_the_expectations() {
    for profile in [Profile::Pix44, Profile::Pix51, Profile::Asa] {
        check_policy_only(profile);
    }
}

// ---- Tests of the checker: a broken engine must be caught. ----

/// Runs scenarios through the engine broken by `defect` until it was applied, and returns
/// the run and its violations.
fn broken_run(
    defect: Defect,
    scenarios: impl IntoIterator<Item = Scenario>,
) -> (Run, Vec<Violation>) {
    for scenario in scenarios {
        let mut mb = Broken::new(EngineBox::new(scenario.engine_config()), defect);
        let run = run(scenario, &mut mb);
        if mb.applied > 0 {
            let v = run.violations();
            return (run, v);
        }
    }
    panic!("{defect:?} was never applied: the checker test proves nothing");
}

fn assert_caught(defect: Defect, kind: Kind, scenarios: impl IntoIterator<Item = Scenario>) {
    let (run, v) = broken_run(defect, scenarios);
    assert!(
        v.iter().any(|v| v.kind == kind),
        "{defect:?} not reported as {kind:?}; {}; got {:?}",
        run.describe(),
        v.iter().map(|v| v.to_string()).collect::<Vec<_>>()
    );
}

fn clean() -> Vec<Scenario> {
    vec![Scenario::clean(Profile::Off, Variant::LockStep, 1500, 1500)]
}

fn lossy() -> impl Iterator<Item = Scenario> {
    (0..200).map(|s| Scenario::random(Profile::Off, s))
}

#[test]
fn checker_passes_the_unbroken_engine_on_a_clean_link() {
    let run = run_engine(clean().remove(0));
    assert!(run.violations().is_empty());
    assert!(run.trace.iter().any(|e| e.tap == Tap::EngineTx));
}

#[test]
fn checker_catches_a_bad_tcp_checksum() {
    assert_caught(Defect::CorruptTcpChecksum, Kind::BadTcpChecksum, clean());
}

#[test]
fn checker_catches_a_bad_ip_checksum() {
    assert_caught(Defect::CorruptIpChecksum, Kind::BadIpChecksum, clean());
}

#[test]
fn checker_catches_a_retransmission_with_different_bytes() {
    assert_caught(
        Defect::ResendDifferentBytes,
        Kind::RetransmissionMismatch,
        clean(),
    );
}

#[test]
fn checker_catches_an_ack_before_the_receiver_acknowledged() {
    assert_caught(Defect::EarlyAckToClient, Kind::OverAck, clean());
}

#[test]
fn checker_catches_an_ack_beyond_what_was_sent() {
    assert_caught(Defect::AckBeyondSent, Kind::OverAck, clean());
}

#[test]
fn checker_catches_a_segment_over_the_receivers_mss() {
    // The server announces 536; the client, told 1460, sends bigger body segments.
    let s = Scenario::clean(Profile::Off, Variant::LockStep, 1500, 576);
    assert_caught(Defect::InflateMss, Kind::OverMss, vec![s]);
}

#[test]
fn checker_catches_a_window_beyond_the_receivers() {
    assert_caught(Defect::InflateWindow, Kind::WindowBeyondReceiver, clean());
}

#[test]
fn checker_catches_data_beyond_the_receivers_window() {
    // With a window inflated to 64 KiB and a 1 KiB server buffer, the client sends the body
    // past what the server offered, and the engine forwards it.
    let mut s = Scenario::clean(Profile::Off, Variant::LockStep, 1500, 1500);
    s.server.rx_buf = 1024;
    s.body_size = 6000;
    assert_caught(Defect::InflateWindow, Kind::OutOfWindow, vec![s]);
}

#[test]
fn checker_catches_a_shrinking_window() {
    assert_caught(Defect::ShrinkWindow, Kind::WindowShrunk, clean());
}

#[test]
fn checker_catches_a_sack_block_beyond_what_was_sent() {
    assert_caught(Defect::StretchSack, Kind::BadSack, lossy());
}

#[test]
fn harness_catches_a_corrupted_stream() {
    let scenario = clean().remove(0);
    let mut mb = Broken::new(
        EngineBox::new(scenario.engine_config()),
        Defect::FlipPayloadByte,
    );
    let run = run(scenario, &mut mb);
    assert_eq!(mb.applied, 1);
    let expected = transform(run.scenario.policy(), &run.script());
    assert_ne!(run.server.received, expected.to_server);
    assert!(!run.failures().is_empty());
}

/// The checker on hand-built traces with edit maps that are not the identity (deleted
/// client bytes, bytes inserted toward the client), where the real sweeps cannot reach
/// until the engine and the policy are merged.
mod synthetic {
    use super::common::expect::EditMap;
    use super::common::wirecheck::{
        build_frame, check, Kind, Links, Tap, Trace, TraceEvent, ACK, FIN, SYN,
    };
    use mailguard::engine::Side;
    use mailguard::smtp::Op;

    const CISN: u32 = 0xffff_fff0; // wraps past 2^32 within the test
    const SISN: u32 = 1_000;
    const PORT: u16 = 40000;
    const MSS_1460: [u8; 4] = [2, 4, 0x05, 0xb4];

    /// A trace under construction, with the frame helpers of one connection.
    struct Conn {
        trace: Trace,
    }

    impl Conn {
        /// SYN, SYN-ACK and ACK, each forwarded unchanged by the "engine".
        fn new() -> Conn {
            let mut c = Conn { trace: Vec::new() };
            let syn = build_frame(true, PORT, CISN, 0, SYN, 4000, &MSS_1460, b"");
            c.client_sends(&syn);
            c.emit_to_server(&syn);
            let syn_ack = build_frame(false, PORT, SISN, CISN + 1, SYN | ACK, 50, &MSS_1460, b"");
            c.server_sends(&syn_ack);
            c.emit_to_client(&syn_ack);
            let ack = c.client(1, 1, b"");
            c.client_sends(&ack);
            c.emit_to_server(&ack);
            c
        }

        fn push(&mut self, tap: Tap, side: Side, frame: &[u8]) {
            self.trace.push(TraceEvent {
                tap,
                side,
                frame: frame.to_vec(),
            });
        }

        fn client_sends(&mut self, f: &[u8]) {
            self.push(Tap::EndpointTx, Side::Outside, f);
            self.push(Tap::EngineRx, Side::Outside, f);
        }

        fn server_sends(&mut self, f: &[u8]) {
            self.push(Tap::EndpointTx, Side::Inside, f);
            self.push(Tap::EngineRx, Side::Inside, f);
        }

        fn emit_to_server(&mut self, f: &[u8]) {
            self.push(Tap::EngineTx, Side::Inside, f);
        }

        fn emit_to_client(&mut self, f: &[u8]) {
            self.push(Tap::EngineTx, Side::Outside, f);
        }

        /// A client frame: relative seq and ack, window 4000.
        fn client(&self, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
            build_frame(
                true,
                PORT,
                CISN.wrapping_add(seq),
                SISN.wrapping_add(ack),
                ACK,
                4000,
                &[],
                payload,
            )
        }

        /// A server frame: relative seq and ack, window `win`.
        fn server(&self, seq: u32, ack: u32, win: u16, payload: &[u8]) -> Vec<u8> {
            build_frame(
                false,
                PORT,
                SISN.wrapping_add(seq),
                CISN.wrapping_add(ack),
                ACK,
                win,
                &[],
                payload,
            )
        }

        fn kinds(&self, c2s: &EditMap, s2c: &EditMap) -> Vec<Kind> {
            check(
                &self.trace,
                [c2s, s2c],
                Links {
                    ip_mtu: [1500, 1500],
                },
            )
            .into_iter()
            .map(|v| v.kind)
            .collect()
        }
    }

    /// The client's 12 bytes lose 4 in the middle: "HELO\r" kept, "VRFY" deleted, "x\r\n" kept.
    fn deleting() -> EditMap {
        EditMap::from_ops(&[Op::Copy(5), Op::Delete(4), Op::Copy(3)])
    }

    /// The client's 12 bytes sent, the 8 remaining forwarded; the server acknowledged `acked`.
    fn client_data_acked(acked: u32) -> Conn {
        let mut c = Conn::new();
        let data = c.client(1, 1, b"HELO\rVRFYx\r\n");
        c.client_sends(&data);
        let out = c.client(1, 1, b"HELO\rx\r\n");
        c.emit_to_server(&out);
        let ack = c.server(1, 1 + acked, 100, b"");
        c.server_sends(&ack);
        c
    }

    #[test]
    fn deleted_bytes_may_be_acknowledged_once_the_output_before_them_is() {
        let mut c = client_data_acked(5);
        // 5 copied + 4 deleted input bytes need 5 output bytes acknowledged: fine.
        let ack = c.server(1, 1 + 9, 90, b"");
        c.emit_to_client(&ack);
        assert_eq!(c.kinds(&deleting(), &EditMap::identity(0)), []);
        // One more input byte needs output byte 6, which the server has not acknowledged.
        let ack = c.server(1, 1 + 10, 90, b"");
        c.emit_to_client(&ack);
        assert_eq!(c.kinds(&deleting(), &EditMap::identity(0)), [Kind::OverAck]);
    }

    #[test]
    fn all_client_bytes_may_be_acknowledged_when_the_server_has_all_output() {
        let mut c = client_data_acked(8);
        let ack = c.server(1, 13, 90, b"");
        c.emit_to_client(&ack);
        assert_eq!(c.kinds(&deleting(), &EditMap::identity(0)), []);
        // But never beyond what the client sent.
        let ack = c.server(1, 14, 90, b"");
        c.emit_to_client(&ack);
        assert_eq!(c.kinds(&deleting(), &EditMap::identity(0)), [Kind::OverAck]);
    }

    #[test]
    fn a_fin_must_follow_the_transformed_stream_not_the_input() {
        let mut c = client_data_acked(8);
        let good = build_frame(
            true,
            PORT,
            CISN.wrapping_add(9),
            SISN + 1,
            ACK | FIN,
            4000,
            &[],
            b"",
        );
        let bad = build_frame(
            true,
            PORT,
            CISN.wrapping_add(13),
            SISN + 1,
            ACK | FIN,
            4000,
            &[],
            b"",
        );
        c.emit_to_server(&good);
        assert_eq!(c.kinds(&deleting(), &EditMap::identity(0)), []);
        c.emit_to_server(&bad);
        assert_eq!(
            c.kinds(&deleting(), &EditMap::identity(0)),
            [Kind::FinMisplaced]
        );
    }

    #[test]
    fn sack_blocks_are_judged_through_the_edit_map() {
        let mut c = Conn::new();
        // Only the tail "x\r\n" (input 9..12, output 5..8) reached the server.
        let data = c.client(1, 1, b"HELO\rVRFYx\r\n");
        c.client_sends(&data);
        let tail = c.client(6, 1, b"x\r\n");
        c.emit_to_server(&tail);
        let sack = |l: u32, r: u32| {
            let mut o = vec![1, 1, 5, 10];
            o.extend_from_slice(&l.to_be_bytes());
            o.extend_from_slice(&r.to_be_bytes());
            o
        };
        let s = sack(CISN.wrapping_add(6), CISN.wrapping_add(9));
        let srv = build_frame(
            false,
            PORT,
            SISN + 1,
            CISN.wrapping_add(1),
            ACK,
            4000,
            &s,
            b"",
        );
        c.server_sends(&srv);
        // Toward the client: input [10, 13) maps to output [6, 9): acknowledged.
        let s = sack(CISN.wrapping_add(10), CISN.wrapping_add(13));
        let ok = build_frame(
            false,
            PORT,
            SISN + 1,
            CISN.wrapping_add(1),
            ACK,
            4000,
            &s,
            b"",
        );
        c.emit_to_client(&ok);
        assert_eq!(c.kinds(&deleting(), &EditMap::identity(0)), []);
        // Input [5, 13) includes input byte 5 (output 5), which the server does not have.
        let s = sack(CISN.wrapping_add(5), CISN.wrapping_add(13));
        let bad = build_frame(
            false,
            PORT,
            SISN + 1,
            CISN.wrapping_add(1),
            ACK,
            4000,
            &s,
            b"",
        );
        c.emit_to_client(&bad);
        assert_eq!(c.kinds(&deleting(), &EditMap::identity(0)), [Kind::BadSack]);
    }

    #[test]
    fn bytes_inserted_toward_the_client_must_be_acknowledged_by_it_first() {
        // The server's "250 A\r\n" (7 bytes) reaches the client as "250 " + "250 OK\r\n" +
        // "A\r\n" (15 bytes): an insert after the 4th byte.
        let s2c =
            EditMap::from_ops(&[Op::Copy(4), Op::Insert(b"250 OK\r\n".to_vec()), Op::Copy(3)]);
        let mut c = Conn::new();
        let data = c.server(1, 1, 4000, b"250 A\r\n");
        c.server_sends(&data);
        let out = c.server(1, 1, 4000, b"250 250 OK\r\nA\r\n");
        c.emit_to_client(&out);
        // The client acknowledged the first 4 bytes and the insert (12 output bytes).
        let ack = c.client(1, 1 + 12, b"");
        c.client_sends(&ack);
        let to_server = |n: u32| c.client(1, 1 + n, b"");
        let (ok, over) = (to_server(4), to_server(5));
        c.emit_to_server(&ok);
        assert_eq!(c.kinds(&EditMap::identity(0), &s2c), []);
        c.emit_to_server(&over);
        assert_eq!(c.kinds(&EditMap::identity(0), &s2c), [Kind::OverAck]);
    }

    #[test]
    fn a_translated_window_may_not_reach_past_the_receivers() {
        // The server's right edge: 9 + 100 = 109 (output space). Input 12 bytes = output 8, so
        // an ACK of 13 may offer 100 more input bytes, not 101.
        let mut c = client_data_acked(8);
        let ok = c.server(1, 13, 100, b"");
        c.emit_to_client(&ok);
        assert_eq!(c.kinds(&deleting(), &EditMap::identity(0)), []);
        let over = c.server(1, 13, 101, b"");
        c.emit_to_client(&over);
        assert_eq!(
            c.kinds(&deleting(), &EditMap::identity(0)),
            [Kind::WindowBeyondReceiver]
        );
    }

    #[test]
    fn an_ack_the_receiver_drops_for_its_stale_sequence_number_is_reported() {
        let mut c = client_data_acked(8);
        // The client's FIN after its 12 bytes reaches the server at output 9; the server
        // acknowledges it (10) and sends its own FIN, which the client acknowledges.
        let fin = build_frame(
            true,
            PORT,
            CISN.wrapping_add(13),
            SISN + 1,
            ACK | FIN,
            4000,
            &[],
            b"",
        );
        c.client_sends(&fin);
        let fin_out = build_frame(
            true,
            PORT,
            CISN.wrapping_add(9),
            SISN + 1,
            ACK | FIN,
            4000,
            &[],
            b"",
        );
        c.emit_to_server(&fin_out);
        let srv_fin = build_frame(
            false,
            PORT,
            SISN + 1,
            CISN.wrapping_add(10),
            ACK | FIN,
            100,
            &[],
            b"",
        );
        c.server_sends(&srv_fin);
        c.emit_to_client(&srv_fin);
        let ack = c.client(14, 2, b"");
        c.client_sends(&ack);
        // The ACK of the server's FIN at the FIN's own sequence number: the server drops it.
        let stale = c.client(9, 2, b"");
        c.emit_to_server(&stale);
        assert_eq!(
            c.kinds(&deleting(), &EditMap::identity(0)),
            [Kind::UnacceptableSeq]
        );
        let mut good = client_data_acked(8);
        good.trace = c.trace[..c.trace.len() - 1].to_vec();
        let ack = good.client(10, 2, b"");
        good.emit_to_server(&ack);
        assert_eq!(good.kinds(&deleting(), &EditMap::identity(0)), []);
    }

    #[test]
    fn edit_map_needed_bytes() {
        let m = deleting();
        let needed: Vec<u64> = (0..=14).map(|k| m.needed(k)).collect();
        assert_eq!(needed, [0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 6, 7, 8, 9, 10]);
        assert_eq!((m.out_len, m.growth, m.in_len()), (8, 0, 12));
    }
}
