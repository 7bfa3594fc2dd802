//! The policy's ops for a dialogue and the edit map between a sender's and a receiver's
//! byte offsets, computed with the policy alone (no TCP).
//!
//! What each endpoint should receive comes from `mailguard::smtp::transform`; this module
//! keeps what that does not give: [`policy_ops`] returns the ops themselves, from which
//! [`EditMap`] is built for the wire checks that need to relate an ACK to a sender's bytes.
#![allow(dead_code)]

use mailguard::smtp::{Dir, Event, Op, Output, PolicyConfig, ResetReason, Session};
use std::sync::Arc;

/// The ops of both directions for a dialogue, plus the inputs they apply to.
#[derive(Clone, Debug, Default)]
pub struct PolicyOps {
    /// Ops over the client's stream.
    pub to_server: Vec<Op>,
    /// Ops over the server's stream.
    pub to_client: Vec<Op>,
    /// The client's stream as written.
    pub client_input: Vec<u8>,
    /// The server's stream as written.
    pub server_input: Vec<u8>,
    /// Policy events.
    pub events: Vec<Event>,
    /// Reset requested by the policy.
    pub reset: Option<ResetReason>,
}

impl PolicyOps {
    /// The ops over `dir`'s input.
    pub fn ops(&self, dir: Dir) -> &[Op] {
        match dir {
            Dir::ClientToServer => &self.to_server,
            Dir::ServerToClient => &self.to_client,
        }
    }

    /// `dir`'s input as its sender wrote it.
    pub fn input(&self, dir: Dir) -> &[u8] {
        match dir {
            Dir::ClientToServer => &self.client_input,
            Dir::ServerToClient => &self.server_input,
        }
    }
}

/// Feeds the dialogue to a fresh [`Session`] in order, then finishes both directions.
pub fn policy_ops(config: Arc<PolicyConfig>, script: &[(Dir, &[u8])]) -> PolicyOps {
    let mut session = Session::new(config);
    let mut out = Output::default();
    let mut result = PolicyOps::default();
    for (dir, bytes) in script {
        match dir {
            Dir::ClientToServer => result.client_input.extend_from_slice(bytes),
            Dir::ServerToClient => result.server_input.extend_from_slice(bytes),
        }
        session.feed(*dir, bytes, &mut out);
    }
    session.finish(Dir::ClientToServer, &mut out);
    session.finish(Dir::ServerToClient, &mut out);
    result.to_server = out.to_server;
    result.to_client = out.to_client;
    result.events = out.events;
    result.reset = out.reset;
    result
}

/// Sender offsets to receiver offsets for one direction.
///
/// `needed(k)` is how many output bytes the receiver must hold before the first `k` input
/// bytes count as delivered: for copied bytes the position right after their copy, for
/// deleted bytes the output before them, for replaced bytes the matching position in the
/// replacement (capped at its length), and inserts count where they stand. It is
/// non-decreasing. Input past the end of the dialogue is treated as copied.
#[derive(Clone, Debug)]
pub struct EditMap {
    needed: Vec<u64>,
    /// Output bytes the whole input produces.
    pub out_len: u64,
    /// Output bytes beyond input bytes (inserts and longer replacements): slack a filter
    /// that buffers grown output may legitimately take from the receiver's window.
    pub growth: u64,
}

impl EditMap {
    /// The identity over an input of `len` bytes.
    pub fn identity(len: usize) -> EditMap {
        EditMap::from_ops(&[Op::Copy(len)])
    }

    /// The map of an op list.
    pub fn from_ops(ops: &[Op]) -> EditMap {
        let mut needed = vec![0u64];
        let mut out = 0u64;
        let mut growth = 0u64;
        for op in ops {
            match op {
                Op::Copy(n) => {
                    for j in 1..=*n as u64 {
                        needed.push(out + j);
                    }
                    out += *n as u64;
                }
                Op::Delete(n) => needed.extend(std::iter::repeat_n(out, *n)),
                Op::Replace(b) => {
                    let len = b.len() as u64;
                    for j in 1..=len {
                        needed.push(out + j.min(len));
                    }
                    out += len;
                }
                Op::Insert(b) => {
                    out += b.len() as u64;
                    growth += b.len() as u64;
                }
            }
        }
        EditMap {
            needed,
            out_len: out,
            growth,
        }
    }

    /// Input bytes the map covers.
    pub fn in_len(&self) -> u64 {
        self.needed.len() as u64 - 1
    }

    /// Output bytes the receiver must hold before the first `k` input bytes are delivered.
    pub fn needed(&self, k: u64) -> u64 {
        match self.needed.get(k as usize) {
            Some(v) => *v,
            None => self.out_len + (k - self.in_len()),
        }
    }
}
