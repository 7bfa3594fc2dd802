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
#[derive(Debug)]
pub struct Reassembler {
    next: u64,
    ooo: BTreeMap<u64, Vec<u8>>,
    ooo_bytes: usize,
    max_bytes: usize,
    max_segments: usize,
}

impl Reassembler {
    /// A reassembler expecting offset 0 next, holding at most `max_bytes` out-of-order bytes
    /// in at most `max_segments` pieces.
    pub fn new(max_bytes: usize, max_segments: usize) -> Reassembler {
        Reassembler {
            next: 0,
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            max_bytes,
            max_segments,
        }
    }

    /// The next in-order offset expected (everything below was delivered).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Out-of-order bytes held.
    pub fn held(&self) -> usize {
        self.ooo_bytes
    }

    /// Highest offset seen (in order or held).
    pub fn highest(&self) -> u64 {
        self.ooo
            .iter()
            .next_back()
            .map_or(self.next, |(o, d)| (*o + d.len() as u64).max(self.next))
    }

    /// Accepts `data` at offset `off`; every byte that becomes deliverable in order is passed
    /// to `deliver` (possibly in several calls), and `next` advances. Bytes already delivered
    /// or held are not replaced.
    pub fn insert(
        &mut self,
        off: u64,
        data: &[u8],
        mut deliver: impl FnMut(&[u8]),
    ) -> Result<(), ReasmError> {
        let end = off + data.len() as u64;
        if end <= self.next {
            return Ok(());
        }
        if off > self.next {
            return self.store(off, data);
        }
        // In order: walk from `next`, preferring held bytes where they exist.
        while self.next < end {
            if let Some(held_end) = self.take_held_at(self.next, &mut deliver) {
                self.next = held_end;
                continue;
            }
            let stop = self
                .ooo
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
        while let Some(held_end) = self.take_held_at(self.next, &mut deliver) {
            self.next = held_end;
        }
        Ok(())
    }

    /// Delivers and removes the held piece covering `at` (there is at most one, pieces are
    /// disjoint); returns its end.
    fn take_held_at(&mut self, at: u64, deliver: &mut impl FnMut(&[u8])) -> Option<u64> {
        let (&start, piece) = self.ooo.range(..=at).next_back()?;
        let piece_end = start + piece.len() as u64;
        if piece_end <= at {
            // Entirely below `at`: stale, drop it.
            let len = piece.len();
            self.ooo.remove(&start);
            self.ooo_bytes -= len;
            return None;
        }
        let piece = self.ooo.remove(&start)?;
        self.ooo_bytes -= piece.len();
        if let Some(part) = piece.get((at - start) as usize..) {
            deliver(part);
        }
        Some(piece_end)
    }

    /// Stores the parts of `[off, off+len)` not already held.
    fn store(&mut self, off: u64, data: &[u8]) -> Result<(), ReasmError> {
        let end = off + data.len() as u64;
        let mut cur = off;
        if let Some((o, d)) = self.ooo.range(..off).next_back() {
            cur = cur.max(o + d.len() as u64);
        }
        // Gaps in [off, end) not covered by held pieces (out-of-order path only).
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        for (&o, d) in self.ooo.range(off..end) {
            if o > cur {
                gaps.push((cur, o));
            }
            cur = cur.max(o + d.len() as u64);
        }
        if cur < end {
            gaps.push((cur, end));
        }
        let new_bytes: u64 = gaps.iter().map(|(a, b)| b - a).sum();
        if self.ooo_bytes as u64 + new_bytes > self.max_bytes as u64
            || self.ooo.len() + gaps.len() > self.max_segments
        {
            return Err(ReasmError::OverLimit);
        }
        for (a, b) in gaps {
            let piece = data
                .get((a - off) as usize..(b - off) as usize)
                .unwrap_or_default();
            self.ooo_bytes += piece.len();
            self.ooo.insert(a, piece.to_vec());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(r: &mut Reassembler, off: u64, data: &[u8], out: &mut Vec<u8>) {
        r.insert(off, data, |b| out.extend_from_slice(b)).unwrap();
    }

    #[test]
    fn gap_holds_then_fills() {
        let mut r = Reassembler::new(1000, 16);
        let mut out = Vec::new();
        collect(&mut r, 5, b"FGH", &mut out);
        assert!(out.is_empty());
        collect(&mut r, 0, b"ABCDE", &mut out);
        assert_eq!(out, b"ABCDEFGH");
        assert_eq!(r.next(), 8);
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn first_accepted_wins() {
        let mut r = Reassembler::new(1000, 16);
        let mut out = Vec::new();
        collect(&mut r, 2, b"cd", &mut out);
        collect(&mut r, 1, b"XYZW", &mut out); // overlaps held "cd" at 2..4
        collect(&mut r, 0, b"aQQQQQ", &mut out);
        assert_eq!(out, b"aXcdWQ");
    }

    #[test]
    fn bound_enforced() {
        let mut r = Reassembler::new(4, 16);
        assert_eq!(r.insert(10, b"12345", |_| {}), Err(ReasmError::OverLimit));
        assert!(r.insert(10, b"1234", |_| {}).is_ok());
        assert_eq!(r.insert(20, b"1", |_| {}), Err(ReasmError::OverLimit));
    }

    proptest! {
        /// Any delivery order of any segmentation (with duplicates) yields the stream.
        #[test]
        fn any_order_gives_stream(stream in proptest::collection::vec(any::<u8>(), 1..200),
                                  cuts in proptest::collection::vec((0usize..200, 1usize..40), 1..60)) {
            let mut r = Reassembler::new(10_000, 1000);
            let mut out = Vec::new();
            for (start, len) in cuts {
                let s = start % stream.len();
                let e = (s + len).min(stream.len());
                collect(&mut r, s as u64, &stream[s..e], &mut out);
                prop_assert_eq!(&out[..], &stream[..out.len()]);
            }
            collect(&mut r, 0, &stream, &mut out);
            prop_assert_eq!(out, stream);
        }
    }
}
