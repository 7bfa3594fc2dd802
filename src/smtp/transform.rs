//! Whole-session helper: what each side receives for a scripted exchange.

use std::sync::Arc;

use super::{apply_ops, Dir, Event, Output, PolicyConfig, ResetReason, Session};

/// What each side of a scripted session receives (see [`transform`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    /// The bytes the server receives.
    pub to_server: Vec<u8>,
    /// The bytes the client receives.
    pub to_client: Vec<u8>,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Set if the policy reset the connection.
    pub reset: Option<ResetReason>,
    /// The most bytes held undecided in either direction after any chunk.
    pub max_held: usize,
}

/// Feeds a fresh [`Session`] the chunks of `script` in order, then finishes the client's and
/// the server's stream, and returns what each side receives. Other components use this to
/// compute expected streams.
pub fn transform(config: Arc<PolicyConfig>, script: &[(Dir, &[u8])]) -> Transcript {
    let mut session = Session::new(config);
    let mut input_c = Vec::new();
    let mut input_s = Vec::new();
    let mut ops_c = Vec::new();
    let mut ops_s = Vec::new();
    let mut t = Transcript::default();
    let mut out = Output::default();
    let mut drain = |out: &mut Output, t: &mut Transcript, s: &Session| {
        ops_c.append(&mut out.to_server);
        ops_s.append(&mut out.to_client);
        t.events.append(&mut out.events);
        if out.reset.is_some() {
            t.reset = out.reset;
        }
        out.clear();
        t.max_held = t
            .max_held
            .max(s.held(Dir::ClientToServer))
            .max(s.held(Dir::ServerToClient));
    };
    for (dir, chunk) in script {
        match dir {
            Dir::ClientToServer => input_c.extend_from_slice(chunk),
            Dir::ServerToClient => input_s.extend_from_slice(chunk),
        }
        session.feed(*dir, chunk, &mut out);
        drain(&mut out, &mut t, &session);
    }
    session.finish(Dir::ClientToServer, &mut out);
    drain(&mut out, &mut t, &session);
    session.finish(Dir::ServerToClient, &mut out);
    drain(&mut out, &mut t, &session);
    apply_ops(&input_c, &ops_c, &mut t.to_server);
    apply_ops(&input_s, &ops_s, &mut t.to_client);
    t
}
