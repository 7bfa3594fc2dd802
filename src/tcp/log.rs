//! The bytes emitted to a receiver, kept until acknowledged.

use std::collections::VecDeque;

/// Output bytes of one direction from `base` (the lowest offset still kept) to `end`.
///
/// The ring is allocated by the first append and freed when everything is acknowledged
/// (an idle connection keeps no buffer).
#[derive(Debug, Default)]
pub struct OutputLog {
    base: u64,
    /// Boxed so that an idle log costs one pointer, not a ring header.
    // The extra allocation is deliberate: it is made only while records are kept.
    #[allow(clippy::box_collection)]
    store: Option<Box<VecDeque<u8>>>,
}

impl OutputLog {
    /// An empty log starting at offset 0.
    pub fn new() -> OutputLog {
        OutputLog::default()
    }

    /// The bytes kept (an empty ring while none is allocated).
    fn bytes(&self) -> &VecDeque<u8> {
        static NONE: VecDeque<u8> = VecDeque::new();
        self.store.as_deref().unwrap_or(&NONE)
    }

    /// Lowest offset still kept.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Offset after the last byte appended.
    pub fn end(&self) -> u64 {
        self.base + self.bytes().len() as u64
    }

    /// Bytes kept.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// Heap bytes owned (O(1)): the ring's capacity.
    pub fn heap_bytes(&self) -> usize {
        self.store
            .as_deref()
            .map_or(0, |d| std::mem::size_of::<VecDeque<u8>>() + d.capacity())
    }

    /// Appends output bytes.
    pub fn append(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.store.get_or_insert_with(Box::default).extend(data);
    }

    /// Forgets bytes below `off` (acknowledged by the receiver).
    pub fn trim_to(&mut self, off: u64) {
        let n = off.saturating_sub(self.base).min(self.bytes().len() as u64) as usize;
        self.base += n as u64;
        if n == self.bytes().len() {
            // All acknowledged: release the ring, not just its contents.
            self.store = None;
        } else if let Some(d) = self.store.as_deref_mut() {
            d.drain(..n);
        }
    }

    /// The bytes of `[start, end)` clipped to what is kept, as two slices (ring halves),
    /// and the offset the first returned byte has.
    pub fn range(&self, start: u64, end: u64) -> (u64, &[u8], &[u8]) {
        let s = start.clamp(self.base, self.end());
        let e = end.clamp(s, self.end());
        let (a, b) = self.bytes().as_slices();
        let lo = (s - self.base) as usize;
        let hi = (e - self.base) as usize;
        let part = |x: &'_ [u8], from: usize, to: usize| -> (usize, usize) {
            (from.min(x.len()), to.min(x.len()))
        };
        let (a0, a1) = part(a, lo, hi);
        let blo = lo.saturating_sub(a.len());
        let bhi = hi.saturating_sub(a.len());
        let (b0, b1) = part(b, blo, bhi);
        (s, &a[a0..a1], &b[b0..b1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_and_trim() {
        let mut l = OutputLog::new();
        l.append(b"hello ");
        l.trim_to(3);
        l.append(b"world");
        assert_eq!(l.base(), 3);
        assert_eq!(l.end(), 11);
        let (s, a, b) = l.range(0, 100);
        assert_eq!(s, 3);
        assert_eq!([a, b].concat(), b"lo world");
        let (s, a, b) = l.range(5, 8);
        assert_eq!(s, 5);
        assert_eq!([a, b].concat(), b" wo");
        let (_, a, b) = l.range(20, 30);
        assert!(a.is_empty() && b.is_empty());
        assert!(l.heap_bytes() >= 8);
        l.trim_to(1000);
        assert_eq!(l.base(), 11);
        assert!(l.is_empty());
        assert_eq!(l.heap_bytes(), 0, "a drained log keeps no buffer");
        l.append(b"again");
        assert_eq!(l.range(11, 16).1, b"again");
    }
}
