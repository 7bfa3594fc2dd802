//! One direction of a tracked connection: the sender's input, the policy's output to the
//! receiver, and what each endpoint has been told.
//!
//! Layout (state per idle connection is budgeted, see the `size_of` tests in `conn.rs`):
//! every buffer (out-of-order pieces, held input, edit records, output log, SACK blocks) is
//! allocated when first used and freed, capacity included, when drained, so that an idle
//! direction owns no heap memory ([`Half::heap_bytes`]). The bounds on those buffers are the
//! engine's `Limits`, passed in where they are enforced rather than copied into each half.
//! Input in order while nothing is held is fed to the policy straight from the frame, and
//! other input through the engine's scratch buffer (see `Conn::take_input`), so the common
//! case (nothing held) allocates nothing per segment either.

use super::Time;
use crate::tcp::{EditMap, OutputLog, Reassembler, SeqSpace};
use crate::wire::SackBlocks;

/// Sender → receiver state of one direction.
#[derive(Debug)]
pub(super) struct Half {
    /// Sender's sequence space; the receiver sees output in the same space (same ISN).
    pub space: SeqSpace,
    /// The sender's SYN has been seen (`space` is meaningful).
    pub known: bool,
    /// In-order delivery of the sender's bytes.
    pub reasm: Reassembler,
    /// Bytes fed to the policy and not yet consumed by its ops (held, undecided).
    pub pending: Vec<u8>,
    /// Input offset of the sender's FIN, once seen.
    fin_at: Opt64,
    /// The policy was told that the sender finished.
    pub finished: bool,
    /// Input ↔ output offsets.
    pub map: EditMap,
    /// Some output differs from the input at the same position (replace, insert, delete).
    pub content_changed: bool,
    /// The ops of the latest policy call for this direction were all copies.
    pub last_ops_copy_only: bool,
    /// Output bytes not yet acknowledged by the receiver.
    pub log: OutputLog,
    /// Next output offset to transmit (go-back-N after a timeout).
    pub sent: u64,
    /// Highest output offset ever transmitted.
    pub sent_max: u64,
    /// Output offset of our FIN once the stream's end is known and emitted.
    fin_out: Opt64,
    /// The FIN is in flight (cleared when a timeout rewinds `sent`).
    pub fin_sent: bool,
    /// The receiver acknowledged our FIN.
    pub fin_acked: bool,
    /// Output acknowledged by the receiver.
    pub rcv_acked: u64,
    /// Receiver's window in bytes, from its latest segment (at most 0xffff << 14).
    pub rcv_wnd: u32,
    /// Shift of the window field in segments the receiver sends (its window scale).
    pub rcv_shift: u8,
    /// Receiver's MSS.
    pub rcv_mss: u16,
    /// SACK blocks of the receiver's latest segment (wire values, output space); boxed
    /// while the receiver reports any (only after loss), `None` otherwise.
    pub rcv_sack: Option<Box<SackBlocks>>,
    /// Input offset acknowledged to the sender.
    pub told_ack: u64,
    /// Held (undecided) input below this offset may be acknowledged once all output before
    /// it is: set when the sender retransmits held bytes, a sign that it cannot send more
    /// (congestion window full of one-byte segments, Nagle) until they are acknowledged.
    pub held_ack_upto: u64,
    /// Consumed offset at the latest retransmission of held bytes only (stall detection).
    stall_at: Opt64,
    /// Right window edge (input offset) advertised to the sender.
    pub told_edge: u64,
    /// Latest TCP timestamps option seen from the sender (put on frames to the receiver).
    pub ts: Option<(u32, u32)>,
    /// Retransmission deadline of the engine's own timer for unacknowledged output.
    rto_at: Opt64,
    /// Consecutive timeouts without progress (16 bits: with 15 others of a byte, a half
    /// fits in 216 bytes rather than 224; a limit above `u16::MAX` acts as `u16::MAX`).
    pub retries: u16,
}

impl Half {
    /// A direction whose sender's SYN has not been seen yet, holding nothing.
    pub fn new() -> Half {
        Half {
            space: SeqSpace::new(0),
            known: false,
            reasm: Reassembler::new(),
            pending: Vec::new(),
            fin_at: Opt64::NONE,
            finished: false,
            map: EditMap::new(),
            content_changed: false,
            last_ops_copy_only: true,
            log: OutputLog::new(),
            sent: 0,
            sent_max: 0,
            fin_out: Opt64::NONE,
            fin_sent: false,
            fin_acked: false,
            rcv_acked: 0,
            rcv_wnd: 0,
            rcv_shift: 0,
            rcv_mss: 536,
            rcv_sack: None,
            told_ack: 0,
            held_ack_upto: 0,
            stall_at: Opt64::NONE,
            told_edge: 0,
            ts: None,
            rto_at: Opt64::NONE,
            retries: 0,
        }
    }

    /// Input offset of the sender's FIN, once seen.
    pub fn fin_at(&self) -> Option<u64> {
        self.fin_at.get()
    }

    /// Sets [`Half::fin_at`].
    pub fn set_fin_at(&mut self, v: Option<u64>) {
        self.fin_at = Opt64::new(v);
    }

    /// Output offset of our FIN once the stream's end is known and emitted.
    pub fn fin_out(&self) -> Option<u64> {
        self.fin_out.get()
    }

    /// Sets [`Half::fin_out`].
    pub fn set_fin_out(&mut self, v: Option<u64>) {
        self.fin_out = Opt64::new(v);
    }

    /// Consumed offset at the latest retransmission of held bytes only (stall detection).
    pub fn stall_at(&self) -> Option<u64> {
        self.stall_at.get()
    }

    /// Sets [`Half::stall_at`].
    pub fn set_stall_at(&mut self, v: Option<u64>) {
        self.stall_at = Opt64::new(v);
    }

    /// Retransmission deadline of the engine's own timer for unacknowledged output.
    pub fn rto_at(&self) -> Option<Time> {
        self.rto_at.get().map(Time)
    }

    /// Sets [`Half::rto_at`].
    pub fn set_rto_at(&mut self, v: Option<Time>) {
        self.rto_at = Opt64::new(v.map(|t| t.0));
    }

    /// Heap bytes this direction owns (O(1)): the capacities of its buffers.
    pub fn heap_bytes(&self) -> usize {
        self.reasm.heap_bytes()
            + self.pending.capacity()
            + self.map.heap_bytes()
            + self.log.heap_bytes()
            + self
                .rcv_sack
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<SackBlocks>())
    }

    /// Records the SACK blocks of the receiver's latest segment (the box is kept while
    /// blocks keep coming, freed when a segment has none).
    pub fn set_rcv_sack(&mut self, sack: &SackBlocks) {
        if sack.len == 0 {
            self.rcv_sack = None;
        } else if let Some(b) = self.rcv_sack.as_deref_mut() {
            *b = *sack;
        } else {
            self.rcv_sack = Some(Box::new(*sack));
        }
    }

    /// The policy has decided the whole stream, and the FIN may follow the output.
    pub fn fin_ready(&self) -> bool {
        self.finished && self.fin_at().is_some() && self.pending.is_empty()
    }

    /// The sequence offset following everything sent (the FIN counted): where pure ACKs
    /// and resets towards the receiver sit.
    pub fn snd_nxt(&self) -> u64 {
        match self.fin_out() {
            Some(f) => f + 1,
            None => self.sent_max,
        }
    }

    /// The sender has data it has not been told arrived: it will retransmit it, which makes
    /// the engine re-send the matching output. Output beyond that (inserted bytes once the
    /// sender's data is all acknowledged) and a FIN alone are the engine's to retransmit (a
    /// FIN costs one small segment, and some stacks do not retransmit theirs in CLOSING).
    pub fn sender_will_retransmit(&self) -> bool {
        self.ack_in() < self.reasm.next()
    }

    /// Output (or our FIN) sent and not yet acknowledged.
    pub fn outstanding(&self) -> bool {
        self.sent_max > self.rcv_acked || (self.fin_out().is_some() && !self.fin_acked)
    }

    /// How far the sender may be acknowledged (input offset): up to the input whose output
    /// the receiver has acknowledged; deleted input counts as acknowledged once everything
    /// before it is. Input held undecided by the policy is not acknowledged (its output is
    /// not known yet) unless the sender has shown it is stalled on it (`held_ack_upto`).
    /// Never below what was told.
    pub fn ack_in(&self) -> u64 {
        let o = self.rcv_acked;
        let mut i = self.map.ack_for(o);
        let consumed = self.map.consumed();
        if i >= consumed && o >= self.map.lower(consumed) {
            // Held bytes the sender has shown it is stalled on (see `held_ack_upto`).
            i = i.max(self.held_ack_upto.min(self.reasm.next()));
        }
        i.max(self.told_ack)
    }

    /// The acknowledgement number, window field and SACK blocks to tell the sender now.
    /// Returns the input offset acknowledged and the right edge advertised too.
    pub fn peek(&self) -> Told {
        let i = self.ack_in();
        let fin = self.fin_acked && self.fin_at() == Some(i);
        let shift = u32::from(self.rcv_shift);
        // The receiver's right edge in output space, carried back to input space: decided
        // input through the map, input not yet decided as if it will pass one for one.
        let e_out = self.rcv_acked.saturating_add(u64::from(self.rcv_wnd));
        let (consumed, produced) = (self.map.consumed(), self.map.produced());
        let e_in = if e_out >= produced {
            consumed + (e_out - produced)
        } else {
            self.map.ack_for(e_out)
        };
        let edge = e_in.max(i).max(self.told_edge);
        let mut raw = ((edge - i) >> shift).min(0xffff);
        if i + (raw << shift) < self.told_edge && raw < 0xffff {
            raw += 1;
        }
        Told {
            ack_off: i,
            ack: self.space.seq(i).wrapping_add(u32::from(fin)),
            window: raw as u16,
            edge: i + (raw << shift),
            sack: self.translate_sack(i),
        }
    }

    /// Records what was told to the sender.
    pub fn commit(&mut self, t: &Told) {
        self.told_ack = self.told_ack.max(t.ack_off);
        self.told_edge = self.told_edge.max(t.edge);
        if self.told_ack >= self.map.consumed() && self.rcv_acked >= self.map.produced() {
            // Everything decided is acknowledged both ways: the edit records (trimmed when
            // the receiver acknowledged, before the sender was told) go now, so an idle
            // direction keeps none.
            self.map.trim(self.told_ack, self.rcv_acked);
        }
    }

    /// The receiver's SACK blocks (output space) as input-space blocks above `ack`: an input
    /// range is reported only if all of its output lies inside a reported block.
    fn translate_sack(&self, ack: u64) -> SackBlocks {
        let mut out = SackBlocks::default();
        let Some(sack) = self.rcv_sack.as_deref() else {
            return out;
        };
        for &(l, r) in sack.as_slice() {
            let lo = self.space.offset(l, self.rcv_acked);
            let hi = self.space.offset(r, self.rcv_acked);
            if lo < 0 || hi <= lo {
                continue;
            }
            let (lo, hi) = (lo as u64, hi as u64);
            if lo <= self.rcv_acked || hi > self.sent_max {
                continue;
            }
            let in_hi = self.map.ack_for(hi);
            // Smallest input position whose output starts at or after `lo`.
            let (mut a, mut b) = (ack, in_hi);
            while a < b {
                let mid = a + (b - a) / 2;
                if self.map.upper(mid) >= lo {
                    b = mid;
                } else {
                    a = mid + 1;
                }
            }
            if a > ack && a < in_hi {
                out.push((self.space.seq(a), self.space.seq(in_hi)));
            }
        }
        out
    }
}

/// An optional 64-bit offset or time in 8 bytes instead of 16: `u64::MAX` stands for none.
/// Offsets are byte counts of one stream and times are nanoseconds since the epoch, so
/// neither reaches it (a time saturated at `u64::MAX`, centuries away, would read as none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Opt64(u64);

impl Opt64 {
    /// A time, or none.
    pub(super) fn time(t: Option<Time>) -> Opt64 {
        Opt64::new(t.map(|t| t.0))
    }

    /// [`Opt64::get`] as a time.
    pub(super) fn get_time(self) -> Option<Time> {
        self.get().map(Time)
    }

    pub(super) const NONE: Opt64 = Opt64(u64::MAX);

    pub(super) fn new(v: Option<u64>) -> Opt64 {
        Opt64(v.unwrap_or(u64::MAX))
    }

    pub(super) fn get(self) -> Option<u64> {
        (self.0 != u64::MAX).then_some(self.0)
    }
}

/// What one acknowledgement tells a sender.
#[derive(Clone, Copy, Debug)]
pub(super) struct Told {
    /// Input offset acknowledged.
    pub ack_off: u64,
    /// Wire acknowledgement number (FIN counted).
    pub ack: u32,
    /// Raw window field.
    pub window: u16,
    /// Right edge advertised (input offset).
    pub edge: u64,
    /// Translated SACK blocks.
    pub sack: SackBlocks,
}
