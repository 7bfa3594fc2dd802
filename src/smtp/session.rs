//! The per-connection state shared by both directions, and the feed loop.
//!
//! Layout: a session between commands owns no heap memory beyond the operator's verbs
//! (see [`Session::heap_bytes`]): the reply queue keeps its first entries inline (a few
//! commands outstanding, the common case, allocate nothing) and frees what it spilled
//! whenever it empties (see [`ReplyQueue`]), and the held bytes of a line (client verb,
//! server code, EHLO reply) are freed once decided.

use std::collections::VecDeque;
use std::sync::Arc;

use super::client::ClientState;
use super::ops;
use super::policy::Policy;
use super::server::ServerSide;
use super::{Dir, Event, Output, PolicyConfig, Profile, ResetReason};

/// Bound on replies owed by the server (pipelined commands not yet answered). Past it the
/// connection is reset ([`ResetReason::HeldBytesLimit`]): memory per connection is bounded.
pub(crate) const MAX_OUTSTANDING: usize = 4096;

/// The reply pix40 sends in place of a blocked command.
pub(crate) const INJECTED_OK: &[u8] = b"250 OK\r\n";

/// Replies owed, oldest first: up to [`QUEUE_INLINE`] in a ring inside the session, more
/// (pipelining) in a ring on the heap, used until the queue empties again (order kept: the
/// inline entries move to the heap ring when it is started).
#[derive(Debug, Default)]
pub(crate) struct ReplyQueue {
    inline: [Option<Expect>; QUEUE_INLINE],
    /// Index of the oldest inline entry.
    head: u8,
    /// Inline entries used.
    len: u8,
    /// Every entry, while more than [`QUEUE_INLINE`] were owed since the queue was last
    /// empty (the inline ring is then unused).
    // Boxed on purpose: the spill is rare, and the inline ring is what most sessions use.
    #[allow(clippy::box_collection)]
    spill: Option<Box<VecDeque<Expect>>>,
}

/// Replies a session owes before its queue allocates (6: the ring and its two counters
/// then fill 8 bytes, and the queue takes 16 bytes instead of 24).
const QUEUE_INLINE: usize = 6;

impl ReplyQueue {
    /// Replies owed.
    pub(crate) fn len(&self) -> usize {
        self.spill
            .as_deref()
            .map_or(usize::from(self.len), VecDeque::len)
    }

    /// The oldest reply owed.
    pub(crate) fn front(&self) -> Option<&Expect> {
        match self.spill.as_deref() {
            Some(q) => q.front(),
            None if self.len == 0 => None,
            None => self
                .inline
                .get(usize::from(self.head))
                .and_then(Option::as_ref),
        }
    }

    /// Takes the oldest reply owed; the heap ring is freed when it empties.
    pub(crate) fn pop_front(&mut self) -> Option<Expect> {
        if let Some(q) = self.spill.as_deref_mut() {
            let e = q.pop_front();
            if q.is_empty() {
                self.spill = None;
            }
            return e;
        }
        if self.len == 0 {
            return None;
        }
        let e = self
            .inline
            .get_mut(usize::from(self.head))
            .and_then(Option::take);
        self.head = ((usize::from(self.head) + 1) % QUEUE_INLINE) as u8;
        self.len -= 1;
        e
    }

    /// Appends a reply owed.
    pub(crate) fn push_back(&mut self, e: Expect) {
        if let Some(q) = self.spill.as_deref_mut() {
            q.push_back(e);
            return;
        }
        let len = usize::from(self.len);
        if len < QUEUE_INLINE {
            let at = (usize::from(self.head) + len) % QUEUE_INLINE;
            if let Some(slot) = self.inline.get_mut(at) {
                *slot = Some(e);
                self.len += 1;
            }
            return;
        }
        let mut q = VecDeque::with_capacity(2 * QUEUE_INLINE);
        while let Some(old) = self.pop_front() {
            q.push_back(old);
        }
        q.push_back(e);
        self.spill = Some(Box::new(q));
    }

    /// Heap bytes owned (O(1)).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.spill.as_deref().map_or(0, |q| {
            std::mem::size_of::<VecDeque<Expect>>() + q.capacity() * std::mem::size_of::<Expect>()
        })
    }
}

/// What a reply in the server's queue answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// The greeting (the first reply of the connection).
    Greeting,
    /// A command line the filter forwarded (allowed or masked).
    Cmd(CmdKind),
    /// A command pix40 removed: the filter answers it itself, in this slot.
    Injected,
}

/// The kind of a forwarded command, as far as reply handling cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmdKind {
    Data,
    Bdat,
    StartTls,
    Auth,
    AuthContinuation,
    Ehlo,
    EndOfMessage,
    Other,
}

/// The policy state of one SMTP connection.
#[derive(Debug)]
pub struct Session {
    pub(crate) config: Arc<PolicyConfig>,
    pub(crate) policy: Policy,
    /// Replies owed to the client, oldest first.
    pub(crate) queue: ReplyQueue,
    pub(crate) client: ClientState,
    pub(crate) server: ServerSide,
    /// The server accepted DATA (354): the client's next line starts the body.
    pub(crate) data_accepted: bool,
    /// The server answered 334 to AUTH: the client's next line is a continuation.
    pub(crate) auth_continuation: bool,
    /// RCPT commands in the current transaction (asa limit).
    pub(crate) rcpt_count: u32,
    pub(crate) tls: bool,
    pub(crate) reset: Option<ResetReason>,
    pub(crate) client_closed: bool,
    pub(crate) server_closed: bool,
    pub(crate) client_not_smtp: bool,
    pub(crate) server_not_smtp: bool,
    /// Heap bytes of `policy` (constant for the session).
    policy_heap: u32,
}

impl Session {
    /// A new connection, before the server's greeting.
    pub fn new(config: Arc<PolicyConfig>) -> Session {
        let policy = Policy::new(&config);
        let policy_heap = u32::try_from(policy.heap_bytes()).unwrap_or(u32::MAX);
        let mut queue = ReplyQueue::default();
        queue.push_back(Expect::Greeting);
        Session {
            config,
            policy,
            queue,
            client: ClientState::default(),
            server: ServerSide::default(),
            data_accepted: false,
            auth_continuation: false,
            rcpt_count: 0,
            tls: false,
            reset: None,
            client_closed: false,
            server_closed: false,
            client_not_smtp: false,
            server_not_smtp: false,
            policy_heap,
        }
    }

    /// Heap bytes this session owns (O(1)): its buffers' capacities (reply queue, held
    /// bytes of each direction) and the operator's verbs compiled for it.
    pub fn heap_bytes(&self) -> usize {
        self.queue.heap_bytes()
            + self.client.heap_bytes()
            + self.server.heap_bytes()
            + self.policy_heap as usize
    }

    /// The profile this session applies.
    pub fn profile(&self) -> Profile {
        self.config.profile
    }

    /// Feeds the next in-order bytes of `dir`; decisions are appended to `out`.
    pub fn feed(&mut self, dir: Dir, data: &[u8], out: &mut Output) {
        if self.reset.is_some() || data.is_empty() {
            return;
        }
        if self.is_passthrough() {
            ops::copy(out.ops_mut(dir), data.len());
            return;
        }
        match dir {
            Dir::ClientToServer => self.feed_client(data, out),
            Dir::ServerToClient => self.feed_server(data, out),
        }
    }

    /// The sender of `dir` closed its stream (FIN): decide whatever is still held.
    pub fn finish(&mut self, dir: Dir, out: &mut Output) {
        if self.reset.is_some() {
            return;
        }
        match dir {
            Dir::ClientToServer if !self.client_closed => {
                self.client_closed = true;
                if !self.is_passthrough() {
                    self.finish_client(out);
                }
            }
            Dir::ServerToClient if !self.server_closed => {
                self.server_closed = true;
                if !self.is_passthrough() {
                    self.finish_server(out);
                }
            }
            _ => {}
        }
    }

    /// True once nothing more will ever be rewritten in either direction (profile `off`, or
    /// after STARTTLS): the engine may stop feeding the session and pass bytes through.
    pub fn is_passthrough(&self) -> bool {
        self.config.profile == Profile::Off || self.tls
    }

    /// Bytes of `dir` fed but not yet consumed by an op (held undecided). Never more than
    /// [`super::MAX_HELD`].
    pub fn held(&self, dir: Dir) -> usize {
        match dir {
            Dir::ClientToServer => self.client.held(),
            Dir::ServerToClient => self.server.held(),
        }
    }

    /// Why the policy reset the connection, if it did.
    pub fn reset_reason(&self) -> Option<ResetReason> {
        self.reset
    }

    /// Asks for a reset of both sides; nothing more is decided afterwards.
    pub(crate) fn do_reset(&mut self, reason: ResetReason, out: &mut Output) {
        if self.reset.is_some() {
            return;
        }
        log::warn!("smtp: reset ({})", reason.name());
        self.reset = Some(reason);
        // Nothing held will ever be emitted: free it.
        self.client = ClientState::default();
        self.server = ServerSide::default();
        self.queue = ReplyQueue::default();
        out.reset = Some(reason);
        out.events.push(Event::Reset(reason));
    }

    /// Queues a reply the server owes; resets past [`MAX_OUTSTANDING`].
    pub(crate) fn expect(&mut self, e: Expect, out: &mut Output) {
        if self.queue.len() >= MAX_OUTSTANDING {
            self.do_reset(ResetReason::HeldBytesLimit, out);
            return;
        }
        self.queue.push_back(e);
        self.flush_injected(out);
    }

    /// Emits pix40's `250 OK` for every injected slot at the head of the queue, provided the
    /// server's stream is between replies (so the insert lands at a reply boundary).
    /// Frees the queue once it is empty.
    pub(crate) fn flush_injected(&mut self, out: &mut Output) {
        if self.server.between_replies() {
            self.inject_due(out);
        }
    }

    /// The injecting loop of [`Session::flush_injected`].
    fn inject_due(&mut self, out: &mut Output) {
        while self.queue.front() == Some(&Expect::Injected) {
            self.queue.pop_front();
            if self.server_closed {
                // Nothing can follow the server's FIN on the client's side.
                log::info!("smtp: server closed, no reply injected for a removed command");
                continue;
            }
            ops::insert(&mut out.to_client, INJECTED_OK);
            out.events.push(Event::ReplyInjected);
            log::info!("smtp: injected 250 OK for a removed command");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn expect(n: u8) -> Expect {
        match n % 3 {
            0 => Expect::Greeting,
            1 => Expect::Injected,
            _ => Expect::Cmd(CmdKind::Other),
        }
    }

    #[test]
    fn few_replies_owed_allocate_nothing() {
        let mut q = ReplyQueue::default();
        for round in 0..3u8 {
            for n in 0..QUEUE_INLINE as u8 {
                q.push_back(expect(n + round));
                assert_eq!(q.heap_bytes(), 0);
            }
            assert_eq!(q.len(), QUEUE_INLINE);
            for n in 0..QUEUE_INLINE as u8 {
                assert_eq!(q.pop_front(), Some(expect(n + round)));
            }
            assert_eq!((q.len(), q.front()), (0, None));
        }
        for n in 0..=QUEUE_INLINE as u8 {
            q.push_back(expect(n));
        }
        assert!(
            q.heap_bytes() > 0,
            "past the inline ring, the entries spill"
        );
        while q.pop_front().is_some() {}
        assert_eq!(q.heap_bytes(), 0, "an emptied queue frees its spill");
    }

    proptest! {
        /// Pushes and pops in any order answer as a plain FIFO does.
        #[test]
        fn reply_queue_is_fifo(steps in proptest::collection::vec(0u8..8, 0..200)) {
            let mut q = ReplyQueue::default();
            let mut model = VecDeque::new();
            for (i, s) in steps.into_iter().enumerate() {
                if s < 4 {
                    let e = expect(i as u8);
                    q.push_back(e);
                    model.push_back(e);
                } else {
                    prop_assert_eq!(q.pop_front(), model.pop_front());
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.front(), model.front());
            }
        }
    }
}
