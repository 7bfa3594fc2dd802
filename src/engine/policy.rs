//! What the engine needs from a policy, so that it can run the SMTP [`Session`] in
//! production and simpler policies in tests.

use crate::smtp::{Dir, Op, Output, PolicyConfig, Profile, Session};
use std::sync::Arc;

/// A per-connection stream transducer (the contract of [`crate::smtp`]'s module docs).
pub trait Policy {
    /// Feeds the next in-order bytes of `dir`; decisions are appended to `out`.
    fn feed(&mut self, dir: Dir, data: &[u8], out: &mut Output);
    /// The sender of `dir` closed its stream: decide whatever is still held.
    fn finish(&mut self, dir: Dir, out: &mut Output);
    /// True once nothing more will ever be rewritten in either direction.
    fn is_passthrough(&self) -> bool;
    /// Heap bytes the policy owns (O(1)), for the engine's memory accounting.
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// Makes one [`Policy`] per connection.
pub trait PolicyFactory {
    /// The per-connection policy.
    type Policy: Policy;
    /// A policy for a new connection.
    fn session(&self) -> Self::Policy;
    /// True if every connection passes untouched (profile `off`): the engine then forwards
    /// every frame byte for byte without tracking anything.
    fn forwards_everything(&self) -> bool {
        false
    }
}

impl Policy for Session {
    fn feed(&mut self, dir: Dir, data: &[u8], out: &mut Output) {
        Session::feed(self, dir, data, out)
    }
    fn finish(&mut self, dir: Dir, out: &mut Output) {
        Session::finish(self, dir, out)
    }
    fn is_passthrough(&self) -> bool {
        Session::is_passthrough(self)
    }
    fn heap_bytes(&self) -> usize {
        Session::heap_bytes(self)
    }
}

/// The production factory: one [`Session`] per connection.
#[derive(Clone, Debug)]
pub struct SessionFactory(pub Arc<PolicyConfig>);

impl PolicyFactory for SessionFactory {
    type Policy = Session;
    fn session(&self) -> Session {
        Session::new(self.0.clone())
    }
    fn forwards_everything(&self) -> bool {
        self.0.profile == Profile::Off
    }
}

/// A policy that copies every byte but is not pass-through, so the engine runs its full
/// machinery (for tests of the engine itself).
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl Policy for Identity {
    fn feed(&mut self, dir: Dir, data: &[u8], out: &mut Output) {
        if !data.is_empty() {
            out.ops_mut(dir).push(Op::Copy(data.len()));
        }
    }
    fn finish(&mut self, _dir: Dir, _out: &mut Output) {}
    fn is_passthrough(&self) -> bool {
        false
    }
}

impl PolicyFactory for Identity {
    type Policy = Identity;
    fn session(&self) -> Identity {
        Identity
    }
}

/// One scripted edit of [`Scripted`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Remove `n` input bytes.
    Delete(usize),
    /// Emit these bytes, consuming nothing.
    Insert(Vec<u8>),
    /// Replace input bytes with these (same length).
    Replace(Vec<u8>),
    /// Emit these bytes into the *other* direction's stream (as pix40's injected reply).
    InsertOther(Vec<u8>),
    /// Ask for a reset of the connection.
    Reset,
}

/// A test policy applying [`Edit`]s at chosen input offsets of each direction and copying
/// everything else. Edits are `(direction, input offset, edit)`, applied in offset order
/// when the input reaches that offset.
#[derive(Clone, Debug, Default)]
pub struct Scripted {
    edits: Arc<Vec<(Dir, u64, Edit)>>,
}

impl Scripted {
    /// A factory applying `edits` on every connection.
    pub fn new(mut edits: Vec<(Dir, u64, Edit)>) -> Scripted {
        edits.sort_by_key(|(_, at, _)| *at);
        Scripted {
            edits: Arc::new(edits),
        }
    }
}

/// The per-connection state of [`Scripted`].
#[derive(Clone, Debug)]
pub struct ScriptedSession {
    edits: Arc<Vec<(Dir, u64, Edit)>>,
    /// Input offset reached per direction (ClientToServer, ServerToClient).
    pos: [u64; 2],
    /// Bytes of the current Delete/Replace still to consume per direction.
    busy: [Option<(usize, Edit)>; 2],
    /// Next edit index per direction.
    next: [usize; 2],
    reset: bool,
}

fn idx(dir: Dir) -> usize {
    match dir {
        Dir::ClientToServer => 0,
        Dir::ServerToClient => 1,
    }
}

impl PolicyFactory for Scripted {
    type Policy = ScriptedSession;
    fn session(&self) -> ScriptedSession {
        ScriptedSession {
            edits: self.edits.clone(),
            pos: [0; 2],
            busy: [None, None],
            next: [0; 2],
            reset: false,
        }
    }
}

impl ScriptedSession {
    fn next_edit(&self, dir: Dir) -> Option<(usize, u64)> {
        let d = idx(dir);
        self.edits
            .iter()
            .enumerate()
            .skip(self.next[d])
            .find(|(_, (e_dir, _, _))| *e_dir == dir)
            .map(|(i, (_, at, _))| (i, *at))
    }
}

impl Policy for ScriptedSession {
    fn feed(&mut self, dir: Dir, mut data: &[u8], out: &mut Output) {
        let d = idx(dir);
        while !self.reset {
            if self.busy[d].is_some() && data.is_empty() {
                break;
            }
            if let Some((left, edit)) = self.busy[d].take() {
                let n = left.min(data.len());
                match &edit {
                    Edit::Replace(b) => {
                        let done = b.len() - left;
                        out.ops_mut(dir)
                            .push(Op::Replace(b[done..done + n].to_vec()));
                    }
                    _ => out.ops_mut(dir).push(Op::Delete(n)),
                }
                if left > n {
                    self.busy[d] = Some((left - n, edit));
                }
                data = &data[n..];
                self.pos[d] += n as u64;
                continue;
            }
            match self.next_edit(dir) {
                Some((i, at)) if at <= self.pos[d] => {
                    self.next[d] = i + 1;
                    let edit = self.edits[i].2.clone();
                    match edit {
                        Edit::Delete(n) => self.busy[d] = Some((n, Edit::Delete(n))),
                        Edit::Replace(b) => self.busy[d] = Some((b.len(), Edit::Replace(b))),
                        Edit::Insert(b) => out.ops_mut(dir).push(Op::Insert(b)),
                        Edit::InsertOther(b) => out.ops_mut(dir.reverse()).push(Op::Insert(b)),
                        Edit::Reset => {
                            self.reset = true;
                            out.reset = Some(crate::smtp::ResetReason::CommandLineTooLong);
                            out.events.push(crate::smtp::Event::Reset(
                                crate::smtp::ResetReason::CommandLineTooLong,
                            ));
                        }
                    }
                }
                _ if data.is_empty() => break,
                next => {
                    let until = next.map_or(u64::MAX, |(_, at)| at);
                    let n = (until - self.pos[d]).min(data.len() as u64) as usize;
                    out.ops_mut(dir).push(Op::Copy(n));
                    data = &data[n..];
                    self.pos[d] += n as u64;
                }
            }
        }
    }

    fn finish(&mut self, _dir: Dir, _out: &mut Output) {}

    fn is_passthrough(&self) -> bool {
        false
    }
}
