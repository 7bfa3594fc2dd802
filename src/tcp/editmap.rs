//! The map between a direction's input (sender) offsets and output (receiver) offsets.
//!
//! The policy's ops become segments: linear (copy or same-length replace), delete (input
//! with no output) and insert (output with no input). Two views of an input position `i`:
//! - [`EditMap::lower`]: output produced by the input bytes before `i` (inserts placed at
//!   `i` not counted): what a receiver must have acknowledged before the sender may be told
//!   that the bytes before `i` arrived.
//! - [`EditMap::upper`]: output emitted before byte `i` is consumed (inserts at `i`
//!   counted): where byte `i`'s own output starts.
//!
//! [`EditMap::ack_for`] inverts `lower`: the highest input position whose output the
//! receiver has entirely acknowledged.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seg {
    in_start: u64,
    in_len: u64,
    out_start: u64,
    out_len: u64,
}

impl Seg {
    fn in_end(&self) -> u64 {
        self.in_start + self.in_len
    }
    fn out_end(&self) -> u64 {
        self.out_start + self.out_len
    }
    fn linear(&self) -> bool {
        self.in_len == self.out_len
    }
}

/// Too many edit records are in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EditMapFull;

/// Input ↔ output offsets of one direction (see the module docs).
///
/// The leading run: input from the base up to the first record kept (or to the consumed
/// input when none is) maps linearly, byte `i` to output `i + base_out - base_in`. It stands
/// for the record the linear edits there would have merged into, and is counted, trimmed
/// and answered as that record would be; so a stream of copies and same-length replaces,
/// the common case, keeps no record at all. Records are kept from the first delete or
/// insert on. Their storage is allocated when the first one is pushed and freed when
/// [`EditMap::trim`] forgets the last one (an idle connection holds none); the bound on
/// records is not stored but passed to each edit by the caller.
#[derive(Debug, Default)]
pub struct EditMap {
    /// Boxed so that an idle map costs one pointer, not a ring header.
    // The extra allocation is deliberate: it is made only while records are kept.
    #[allow(clippy::box_collection)]
    store: Option<Box<VecDeque<Seg>>>,
    base_in: u64,
    base_out: u64,
    in_end: u64,
    out_end: u64,
}

impl EditMap {
    /// An empty map.
    pub fn new() -> EditMap {
        EditMap::default()
    }

    /// The records kept (an empty ring while none is allocated).
    fn segs(&self) -> &VecDeque<Seg> {
        static NONE: VecDeque<Seg> = VecDeque::new();
        self.store.as_deref().unwrap_or(&NONE)
    }

    /// Heap bytes owned (O(1)): the records' storage.
    pub fn heap_bytes(&self) -> usize {
        self.store.as_deref().map_or(0, |d| {
            std::mem::size_of::<VecDeque<Seg>>() + d.capacity() * std::mem::size_of::<Seg>()
        })
    }

    /// Input consumed by ops so far.
    pub fn consumed(&self) -> u64 {
        self.in_end
    }

    /// Output produced so far.
    pub fn produced(&self) -> u64 {
        self.out_end
    }

    /// Records currently kept (the leading run counted as the record it stands for).
    pub fn records(&self) -> usize {
        self.segs().len() + usize::from(self.has_run())
    }

    /// Input end of the leading run (see [`EditMap`]).
    fn run_end(&self) -> u64 {
        self.segs().front().map_or(self.in_end, |s| s.in_start)
    }

    /// The leading run is not empty.
    fn has_run(&self) -> bool {
        self.run_end() > self.base_in
    }

    /// Output position of input `i` inside the leading run (`base_in <= i <= run_end`).
    fn run_out(&self, i: u64) -> u64 {
        self.base_out + (i - self.base_in)
    }

    /// True when every input byte so far maps to the same output position (no length change
    /// anywhere in the life of the connection).
    pub fn is_identity(&self) -> bool {
        self.in_end == self.out_end
            && self.base_in == self.base_out
            && self
                .segs()
                .iter()
                .all(|s| s.linear() && s.in_start == s.out_start)
    }

    fn push(&mut self, in_len: u64, out_len: u64, max_segs: usize) -> Result<(), EditMapFull> {
        if in_len == 0 && out_len == 0 {
            return Ok(());
        }
        let kept = self.records();
        if in_len == out_len && self.segs().is_empty() {
            // Extends the leading run: merged into the record it stands for, or that
            // record started (which counts against the bound).
            if kept == 0 && max_segs == 0 {
                return Err(EditMapFull);
            }
            self.in_end += in_len;
            self.out_end += out_len;
            return Ok(());
        }
        let new = Seg {
            in_start: self.in_end,
            in_len,
            out_start: self.out_end,
            out_len,
        };
        self.in_end += in_len;
        self.out_end += out_len;
        if let Some(last) = self.store.as_deref_mut().and_then(VecDeque::back_mut) {
            let same_kind = (last.linear() && new.linear())
                || (last.out_len == 0 && new.out_len == 0)
                || (last.in_len == 0 && new.in_len == 0);
            if same_kind && last.in_end() == new.in_start && last.out_end() == new.out_start {
                last.in_len += in_len;
                last.out_len += out_len;
                return Ok(());
            }
        }
        if kept >= max_segs {
            self.in_end -= in_len;
            self.out_end -= out_len;
            return Err(EditMapFull);
        }
        self.store
            // The first record kept is often the only one: room for one, not four.
            .get_or_insert_with(|| Box::new(VecDeque::with_capacity(1)))
            .push_back(new);
        Ok(())
    }

    /// `n` input bytes emitted with the same length (copy or replace); at most `max_segs`
    /// records may be kept.
    pub fn linear(&mut self, n: u64, max_segs: usize) -> Result<(), EditMapFull> {
        self.push(n, n, max_segs)
    }

    /// `n` input bytes removed; at most `max_segs` records may be kept.
    pub fn delete(&mut self, n: u64, max_segs: usize) -> Result<(), EditMapFull> {
        self.push(n, 0, max_segs)
    }

    /// `n` output bytes inserted at the current input position; at most `max_segs` records
    /// may be kept.
    pub fn insert(&mut self, n: u64, max_segs: usize) -> Result<(), EditMapFull> {
        self.push(0, n, max_segs)
    }

    /// Output produced by the input bytes before `i` (inserts at `i` excluded). Positions
    /// beyond the consumed input (held, undecided bytes) map like the end of the consumed
    /// input; positions below the trimmed base map to the base.
    pub fn lower(&self, i: u64) -> u64 {
        if i <= self.base_in {
            return self.base_out;
        }
        let i = i.min(self.in_end);
        let k = self.segs().partition_point(|s| s.in_start < i);
        let Some(s) = k.checked_sub(1).and_then(|k| self.segs().get(k)) else {
            return self.run_out(i.min(self.run_end()));
        };
        if i >= s.in_end() {
            s.out_end()
        } else if s.linear() {
            s.out_start + (i - s.in_start)
        } else {
            s.out_start
        }
    }

    /// Output emitted before input byte `i` is consumed (inserts at `i` included); at or past
    /// the consumed input, all output produced.
    pub fn upper(&self, i: u64) -> u64 {
        if i >= self.in_end {
            return self.out_end;
        }
        if i < self.base_in {
            return self.base_out;
        }
        if i < self.run_end() {
            return self.run_out(i);
        }
        let k = self.segs().partition_point(|s| s.in_end() <= i);
        match self.segs().get(k) {
            Some(s) if s.linear() => s.out_start + (i - s.in_start),
            Some(s) => s.out_start,
            None => self.out_end,
        }
    }

    /// The highest input position `i` (at most the consumed input) with `lower(i) <= o`:
    /// how far the sender may be acknowledged once the receiver acknowledged output `o`.
    pub fn ack_for(&self, o: u64) -> u64 {
        let k = self.segs().partition_point(|s| s.out_start <= o);
        for s in self.segs().range(..k).rev() {
            if s.in_len == 0 {
                continue;
            }
            return if s.linear() {
                s.in_end().min(s.in_start + (o - s.out_start))
            } else {
                s.in_end()
            };
        }
        if self.has_run() && o >= self.base_out {
            return self.run_end().min(self.base_in + (o - self.base_out));
        }
        self.base_in
    }

    /// Forgets records wholly below input `in_below` and output `out_below` (both sides
    /// acknowledged); queries below the new base answer the base.
    pub fn trim(&mut self, in_below: u64, out_below: u64) {
        if self.has_run() {
            let end = self.run_end();
            let end_out = self.run_out(end);
            if end > in_below || end_out > out_below {
                return;
            }
            self.base_in = end;
            self.base_out = end_out;
        }
        let Some(segs) = self.store.as_deref_mut() else {
            return;
        };
        while let Some(s) = segs.front() {
            if s.in_end() > in_below || s.out_end() > out_below {
                break;
            }
            self.base_in = s.in_end();
            self.base_out = s.out_end();
            segs.pop_front();
        }
        if segs.is_empty() {
            self.store = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum E {
        Lin(u64),
        Del(u64),
        Ins(u64),
    }

    fn edit() -> impl Strategy<Value = E> {
        prop_oneof![
            (0u64..6).prop_map(E::Lin),
            (0u64..6).prop_map(E::Del),
            (0u64..6).prop_map(E::Ins),
        ]
    }

    /// Brute-force model: lower[i], upper[i] for every input position.
    fn model(edits: &[E]) -> (Vec<u64>, Vec<u64>, u64) {
        let (mut lower, mut upper) = (vec![0u64], Vec::new());
        let mut out = 0;
        for e in edits {
            match *e {
                E::Lin(n) => {
                    for _ in 0..n {
                        upper.push(out);
                        out += 1;
                        lower.push(out);
                    }
                }
                E::Del(n) => {
                    for _ in 0..n {
                        upper.push(out);
                        lower.push(out);
                    }
                }
                E::Ins(n) => out += n,
            }
        }
        upper.push(out);
        (lower, upper, out)
    }

    /// Records the map stands for: the edits merged as each record absorbs the next one of
    /// its kind (linear, delete or insert) that starts where it ends.
    fn model_records(edits: &[E]) -> usize {
        let mut kinds: Vec<u8> = Vec::new();
        for e in edits {
            let kind = match *e {
                E::Lin(0) | E::Del(0) | E::Ins(0) => continue,
                E::Lin(_) => 0,
                E::Del(_) => 1,
                E::Ins(_) => 2,
            };
            if kinds.last() != Some(&kind) {
                kinds.push(kind);
            }
        }
        kinds.len()
    }

    fn build(edits: &[E]) -> EditMap {
        let mut m = EditMap::new();
        for e in edits {
            match *e {
                E::Lin(n) => m.linear(n, 10_000).unwrap(),
                E::Del(n) => m.delete(n, 10_000).unwrap(),
                E::Ins(n) => m.insert(n, 10_000).unwrap(),
            }
        }
        m
    }

    #[test]
    fn pix40_like_delete_and_insert() {
        // Client stream: "EHLO x\r\n" deleted, "MAIL ...\r\n" (10 bytes) copied.
        let mut m = EditMap::new();
        let maxm = 16;
        m.delete(8, maxm).unwrap();
        m.linear(10, maxm).unwrap();
        assert_eq!(m.lower(8), 0);
        assert_eq!(
            m.ack_for(0),
            8,
            "deleted input is acknowledged by the filter"
        );
        assert_eq!(m.ack_for(4), 12);
        // Server stream: 250 OK injected before the server's 12-byte reply.
        let mut s = EditMap::new();
        let maxs = 16;
        s.insert(8, maxs).unwrap();
        s.linear(12, maxs).unwrap();
        assert_eq!(s.ack_for(5), 0, "acks of injected bytes are absorbed");
        assert_eq!(s.ack_for(8), 0);
        assert_eq!(s.ack_for(20), 12);
        assert_eq!(s.upper(0), 8);
        assert_eq!(s.lower(0), 0);
    }

    #[test]
    fn copies_keep_no_record() {
        let mut m = EditMap::new();
        m.linear(35, 1).unwrap();
        m.linear(100, 1).unwrap();
        assert_eq!(
            (m.records(), m.heap_bytes()),
            (1, 0),
            "one run, nothing allocated"
        );
        assert_eq!((m.lower(10), m.upper(10), m.ack_for(20)), (10, 10, 20));
        assert_eq!(
            m.delete(4, 1),
            Err(EditMapFull),
            "the run counts against the bound"
        );
        m.delete(4, 2).unwrap();
        m.linear(6, 3).unwrap();
        assert_eq!(m.records(), 3);
        assert_eq!(
            (m.lower(137), m.upper(139), m.ack_for(138)),
            (135, 135, 142)
        );
        m.trim(137, 135);
        assert_eq!(
            m.records(),
            2,
            "the run is trimmed like the record it stands for"
        );
        assert_eq!((m.lower(139), m.ack_for(135)), (135, 139));
        m.trim(145, 141);
        assert_eq!((m.records(), m.heap_bytes()), (0, 0));
    }

    #[test]
    fn bound_is_enforced() {
        let mut m = EditMap::new();
        let maxm = 2;
        m.linear(1, maxm).unwrap();
        m.delete(1, maxm).unwrap();
        assert_eq!(m.insert(1, maxm), Err(EditMapFull));
        assert_eq!((m.consumed(), m.produced()), (2, 1));
    }

    proptest! {
        /// map (lower/upper) and unmap (ack_for) agree with a brute-force model at every
        /// boundary, and round-trip.
        #[test]
        fn matches_model(edits in proptest::collection::vec(edit(), 0..40)) {
            let m = build(&edits);
            let (lower, upper, out_end) = model(&edits);
            prop_assert_eq!(m.produced(), out_end);
            prop_assert_eq!(m.records(), model_records(&edits));
            for (i, (&lo, &up)) in lower.iter().zip(&upper).enumerate() {
                let i = i as u64;
                prop_assert_eq!(m.lower(i), lo, "lower({})", i);
                prop_assert_eq!(m.upper(i), up, "upper({})", i);
                prop_assert!(lo <= up);
                let back = m.ack_for(lo);
                prop_assert!(back >= i, "ack_for(lower({})) = {}", i, back);
                prop_assert_eq!(m.lower(back), lo);
            }
            for o in 0..=out_end + 2 {
                let brute = lower.iter().rposition(|&f| f <= o).unwrap_or(0) as u64;
                prop_assert_eq!(m.ack_for(o), brute, "ack_for({})", o);
            }
        }

        /// Trimming acknowledged records changes no answer at or above the trim point.
        #[test]
        fn trim_keeps_answers(edits in proptest::collection::vec(edit(), 0..40), cut in 0u64..100) {
            let full = build(&edits);
            let mut m = build(&edits);
            let cut_in = cut.min(m.consumed());
            let cut_out = full.lower(cut_in);
            m.trim(cut_in, cut_out);
            for i in cut_in..=m.consumed() {
                if i > m.base_in {
                    prop_assert_eq!(m.lower(i), full.lower(i));
                }
                if i >= m.base_in && i > cut_in {
                    prop_assert_eq!(m.upper(i), full.upper(i));
                }
            }
            for o in cut_out..=m.produced() {
                prop_assert_eq!(m.ack_for(o).max(cut_in), full.ack_for(o).max(cut_in));
            }
        }
    }
}
