//! In-order reassembly with a bounded out-of-order buffer.

use std::collections::BTreeMap;

/// Why a segment could not be accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasmError {
    /// Holding it would exceed the out-of-order bound.
    OverLimit,
}

/// Per-direction reassembly: delivers bytes in order, holds out-of-order data (bounded),
/// never delivers ahead of a gap. On overlap the bytes accepted first win.
///
/// Layout: an in-order stream (the common case) costs one offset and one null pointer; the
/// out-of-order pieces live in a box allocated when the first piece is held and freed when
/// the last one is delivered. The bounds are not stored: the caller passes its
/// [`ReasmLimits`] to each [`Reassembler::insert`].
#[derive(Debug, Default)]
pub struct Reassembler {
    next: u64,
    ooo: Option<Box<Ooo>>,
}

/// The out-of-order pieces held (disjoint, keyed by offset) and their total length.
#[derive(Debug, Default)]
struct Ooo {
    pieces: BTreeMap<u64, Vec<u8>>,
    bytes: usize,
}

/// Bounds on what one direction may hold out of order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasmLimits {
    /// Out-of-order bytes.
    pub max_bytes: usize,
    /// Out-of-order pieces.
    pub max_segments: usize,
}

impl Reassembler {
    /// A reassembler expecting offset 0 next, holding nothing.
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    /// The next in-order offset expected (everything below was delivered).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Out-of-order bytes held.
    pub fn held(&self) -> usize {
        self.ooo.as_ref().map_or(0, |o| o.bytes)
    }

    /// Heap bytes owned (O(1)): the box, the pieces' bytes and an estimate of the B-tree's
    /// share per piece.
    pub fn heap_bytes(&self) -> usize {
        self.ooo.as_ref().map_or(0, |o| {
            std::mem::size_of::<Ooo>()
                + o.bytes
                + o.pieces.len() * std::mem::size_of::<(u64, Vec<u8>)>()
        })
    }

    /// Highest offset seen (in order or held).
    pub fn highest(&self) -> u64 {
        self.ooo
            .as_ref()
            .and_then(|o| o.pieces.iter().next_back())
            .map_or(self.next, |(o, d)| (*o + d.len() as u64).max(self.next))
    }

    /// Accepts `data` at offset `off`; every byte that becomes deliverable in order is passed
    /// to `deliver` (possibly in several calls), and `next` advances. Bytes already delivered
    /// or held are not replaced. Holding beyond `limits` is refused (nothing is stored then).
    pub fn insert(
        &mut self,
        off: u64,
        data: &[u8],
        limits: ReasmLimits,
        mut deliver: impl FnMut(&[u8]),
    ) -> Result<(), ReasmError> {
        let end = off + data.len() as u64;
        if end <= self.next {
            return Ok(());
        }
        if off > self.next {
            return self.store(off, data, limits);
        }
        let Some(ooo) = self.ooo.as_deref_mut() else {
            // Nothing held: the in-order bytes go straight through.
            if let Some(part) = data.get((self.next - off) as usize..) {
                deliver(part);
            }
            self.next = end;
            return Ok(());
        };
        // In order: walk from `next`, preferring held bytes where they exist.
        while self.next < end {
            if let Some(held_end) = ooo.take_held_at(self.next, &mut deliver) {
                self.next = held_end;
                continue;
            }
            let stop = ooo
                .pieces
                .range(self.next..)
                .next()
                .map_or(end, |(o, _)| (*o).min(end));
            let from = (self.next - off) as usize;
            let to = (stop - off) as usize;
            if let Some(part) = data.get(from..to) {
                deliver(part);
            }
            self.next = stop;
        }
        while let Some(held_end) = ooo.take_held_at(self.next, &mut deliver) {
            self.next = held_end;
        }
        if ooo.pieces.is_empty() {
            self.ooo = None;
        }
        Ok(())
    }

    /// The in-order case of [`Reassembler::insert`] without a callback: when nothing is held
    /// out of order and `data` (at `off`) does not start beyond `next`, returns the part of
    /// it not delivered yet (empty when all of it was) and advances `next` past it, exactly
    /// as `insert` would deliver it. Otherwise returns `None` and changes nothing (use
    /// `insert`).
    pub fn take_in_order<'a>(&mut self, off: u64, data: &'a [u8]) -> Option<&'a [u8]> {
        if self.ooo.is_some() || off > self.next {
            return None;
        }
        let end = off + data.len() as u64;
        if end <= self.next {
            return Some(&[]);
        }
        let part = data.get(usize::try_from(self.next - off).ok()?..)?;
        self.next = end;
        Some(part)
    }

    /// Stores the parts of `[off, off+len)` not already held.
    fn store(&mut self, off: u64, data: &[u8], limits: ReasmLimits) -> Result<(), ReasmError> {
        let ooo = self.ooo.get_or_insert_with(Box::default);
        let r = ooo.store(off, data, limits);
        if ooo.pieces.is_empty() {
            self.ooo = None;
        }
        r
    }
}

impl Ooo {
    /// Delivers and removes the held piece covering `at` (there is at most one, pieces are
    /// disjoint); returns its end.
    fn take_held_at(&mut self, at: u64, deliver: &mut impl FnMut(&[u8])) -> Option<u64> {
        let (&start, piece) = self.pieces.range(..=at).next_back()?;
        let piece_end = start + piece.len() as u64;
        if piece_end <= at {
            // Entirely below `at`: stale, drop it.
            let len = piece.len();
            self.pieces.remove(&start);
            self.bytes -= len;
            return None;
        }
        let piece = self.pieces.remove(&start)?;
        self.bytes -= piece.len();
        if let Some(part) = piece.get((at - start) as usize..) {
            deliver(part);
        }
        Some(piece_end)
    }

    /// Stores the parts of `[off, off+len)` not already held.
    fn store(&mut self, off: u64, data: &[u8], limits: ReasmLimits) -> Result<(), ReasmError> {
        let end = off + data.len() as u64;
        let mut cur = off;
        if let Some((o, d)) = self.pieces.range(..off).next_back() {
            cur = cur.max(o + d.len() as u64);
        }
        // Gaps in [off, end) not covered by held pieces (out-of-order path only).
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        for (&o, d) in self.pieces.range(off..end) {
            if o > cur {
                gaps.push((cur, o));
            }
            cur = cur.max(o + d.len() as u64);
        }
        if cur < end {
            gaps.push((cur, end));
        }
        let new_bytes: u64 = gaps.iter().map(|(a, b)| b - a).sum();
        if self.bytes as u64 + new_bytes > limits.max_bytes as u64
            || self.pieces.len() + gaps.len() > limits.max_segments
        {
            return Err(ReasmError::OverLimit);
        }
        for (a, b) in gaps {
            let piece = data
                .get((a - off) as usize..(b - off) as usize)
                .unwrap_or_default();
            self.bytes += piece.len();
            self.pieces.insert(a, piece.to_vec());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lim(max_bytes: usize, max_segments: usize) -> ReasmLimits {
        ReasmLimits {
            max_bytes,
            max_segments,
        }
    }

    fn collect(r: &mut Reassembler, off: u64, data: &[u8], out: &mut Vec<u8>) {
        r.insert(off, data, lim(10_000, 1000), |b| out.extend_from_slice(b))
            .unwrap();
    }

    #[test]
    fn gap_holds_then_fills() {
        let mut r = Reassembler::new();
        let mut out = Vec::new();
        collect(&mut r, 5, b"FGH", &mut out);
        assert!(out.is_empty());
        assert!(r.heap_bytes() >= 3);
        collect(&mut r, 0, b"ABCDE", &mut out);
        assert_eq!(out, b"ABCDEFGH");
        assert_eq!(r.next(), 8);
        assert_eq!(r.held(), 0);
        assert_eq!(
            r.heap_bytes(),
            0,
            "the out-of-order box is freed once drained"
        );
    }

    #[test]
    fn first_accepted_wins() {
        let mut r = Reassembler::new();
        let mut out = Vec::new();
        collect(&mut r, 2, b"cd", &mut out);
        collect(&mut r, 1, b"XYZW", &mut out); // overlaps held "cd" at 2..4
        collect(&mut r, 0, b"aQQQQQ", &mut out);
        assert_eq!(out, b"aXcdWQ");
    }

    #[test]
    fn bound_enforced() {
        let mut r = Reassembler::new();
        let l = lim(4, 16);
        assert_eq!(
            r.insert(10, b"12345", l, |_| {}),
            Err(ReasmError::OverLimit)
        );
        assert_eq!(
            r.heap_bytes(),
            0,
            "a refused piece leaves nothing allocated"
        );
        assert!(r.insert(10, b"1234", l, |_| {}).is_ok());
        assert_eq!(r.insert(20, b"1", l, |_| {}), Err(ReasmError::OverLimit));
        assert_eq!(r.held(), 4);
    }

    proptest! {
        /// Any delivery order of any segmentation (with duplicates) yields the stream.
        #[test]
        fn any_order_gives_stream(stream in proptest::collection::vec(any::<u8>(), 1..200),
                                  cuts in proptest::collection::vec((0usize..200, 1usize..40), 1..60)) {
            let mut r = Reassembler::new();
            let mut out = Vec::new();
            for (start, len) in cuts {
                let s = start % stream.len();
                let e = (s + len).min(stream.len());
                collect(&mut r, s as u64, &stream[s..e], &mut out);
                prop_assert_eq!(&out[..], &stream[..out.len()]);
            }
            collect(&mut r, 0, &stream, &mut out);
            prop_assert_eq!(out, stream);
            prop_assert_eq!(r.heap_bytes(), 0);
        }

        /// `take_in_order` is `insert` without the callback wherever it answers: the same
        /// bytes delivered, the same `next`, nothing held; where it declines (something held,
        /// or data beyond `next`) it changes nothing.
        #[test]
        fn take_in_order_is_insert(stream in proptest::collection::vec(any::<u8>(), 1..200),
                                   cuts in proptest::collection::vec((0usize..200, 0usize..40), 1..60)) {
            let (mut a, mut b) = (Reassembler::new(), Reassembler::new());
            let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
            for (start, len) in cuts {
                let s = start % stream.len();
                let e = (s + len).min(stream.len());
                let data = &stream[s..e];
                let (next, held) = (b.next(), b.held());
                match b.take_in_order(s as u64, data) {
                    Some(part) => {
                        prop_assert_eq!(held, 0);
                        out_b.extend_from_slice(part);
                    }
                    None => {
                        prop_assert!(held > 0 || s as u64 > next);
                        prop_assert_eq!((b.next(), b.held()), (next, held));
                        collect(&mut b, s as u64, data, &mut out_b);
                    }
                }
                collect(&mut a, s as u64, data, &mut out_a);
                prop_assert_eq!(&out_a, &out_b);
                prop_assert_eq!((a.next(), a.held()), (b.next(), b.held()));
            }
        }
    }

    #[test]
    fn take_in_order_cases() {
        let mut r = Reassembler::new();
        assert_eq!(r.take_in_order(0, b"abc"), Some(&b"abc"[..]));
        assert_eq!(
            r.take_in_order(1, b"bcde"),
            Some(&b"de"[..]),
            "overlap delivered once"
        );
        assert_eq!(
            r.take_in_order(2, b"cd"),
            Some(&b""[..]),
            "a retransmission"
        );
        assert_eq!(r.next(), 5);
        assert_eq!(r.take_in_order(6, b"g"), None, "beyond next: for insert");
        assert_eq!(r.next(), 5);
        collect(&mut r, 6, b"g", &mut Vec::new());
        assert_eq!(r.take_in_order(5, b"f"), None, "something held: for insert");
        assert_eq!((r.next(), r.held()), (5, 1));
    }
}
