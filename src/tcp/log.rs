//! The bytes emitted to a receiver, kept until acknowledged, and the engine's pool of spare
//! rings for them.
//!
//! A log's ring is allocated by its first append and leaves the log when everything is
//! acknowledged, so an idle connection keeps no buffer. A burst grows a fresh ring by
//! doublings (a `realloc` and a copy each); to keep that capacity across bursts, a drained
//! ring goes to a [`RingPool`] (bounded: [`RingPool::MAX_RINGS`] rings of at most
//! [`RingPool::MAX_RING_BYTES`] each, and at most its budget in all), and the next log to
//! need one takes the most recently returned. The pool's bytes are charged to its owner
//! (the engine), the ring in use to the connection that holds it, at its capacity: the
//! account stays what is allocated, and it stays deterministic because which ring a log
//! gets depends only on the order of events. The pool is not shared between engines (each
//! live worker has its own), so no lock is needed.

use std::collections::VecDeque;

/// One ring, boxed so that an idle log costs one pointer, not a ring header.
// The extra allocation is deliberate: it is made only while records are kept.
#[allow(clippy::box_collection)]
type Ring = Box<VecDeque<u8>>;

/// Heap bytes of one ring: its header (boxed) and its capacity.
fn ring_bytes(r: &VecDeque<u8>) -> usize {
    std::mem::size_of::<VecDeque<u8>>() + r.capacity()
}

/// Spare (empty) rings for output logs, kept for reuse, bounded in count, size and bytes.
#[derive(Debug)]
pub struct RingPool {
    rings: Vec<Ring>,
    bytes: usize,
    /// Most bytes the spare rings may hold together.
    budget: usize,
}

impl Default for RingPool {
    fn default() -> RingPool {
        RingPool {
            rings: Vec::new(),
            bytes: 0,
            budget: usize::MAX,
        }
    }
}

impl RingPool {
    /// Most spare rings kept.
    pub const MAX_RINGS: usize = 8;
    /// Largest ring capacity kept (a larger drained ring is freed).
    pub const MAX_RING_BYTES: usize = 256 << 10;

    /// An empty pool.
    pub fn new() -> RingPool {
        RingPool::default()
    }

    /// Limits the bytes the spare rings may hold together (the engine gives an eighth of its
    /// memory ceiling); rings over it are freed at once.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
        while self.bytes > self.budget {
            match self.rings.pop() {
                Some(r) => self.bytes -= ring_bytes(&r),
                None => break,
            }
        }
    }

    /// Heap bytes held by the spare rings (O(1)).
    pub fn heap_bytes(&self) -> usize {
        self.bytes
    }

    /// Spare rings held.
    pub fn len(&self) -> usize {
        self.rings.len()
    }

    /// True when no spare ring is held.
    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    /// Frees every spare ring (under memory pressure they go before any connection).
    pub fn release(&mut self) {
        self.rings = Vec::new();
        self.bytes = 0;
    }

    /// The most recently returned ring, or a new one.
    fn take(&mut self) -> Ring {
        match self.rings.pop() {
            Some(r) => {
                self.bytes -= ring_bytes(&r);
                r
            }
            None => Box::default(),
        }
    }

    /// Keeps `r` (emptied) if there is room for it, else frees it.
    fn put(&mut self, mut r: Ring) {
        let fits = self.bytes.saturating_add(ring_bytes(&r)) <= self.budget;
        if self.rings.len() < Self::MAX_RINGS && r.capacity() <= Self::MAX_RING_BYTES && fits {
            r.clear();
            self.bytes += ring_bytes(&r);
            self.rings.push(r);
        }
    }
}

/// Output bytes of one direction from `base` (the lowest offset still kept) to `end`.
///
/// The ring comes from a [`RingPool`] at the first append and goes back to it when
/// everything is acknowledged (an idle connection keeps no buffer).
#[derive(Debug, Default)]
pub struct OutputLog {
    base: u64,
    store: Option<Ring>,
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
        self.store.as_deref().map_or(0, ring_bytes)
    }

    /// Appends output bytes, taking a ring from `pool` if none is held.
    pub fn append(&mut self, data: &[u8], pool: &mut RingPool) {
        if data.is_empty() {
            return;
        }
        self.store.get_or_insert_with(|| pool.take()).extend(data);
    }

    /// Forgets bytes below `off` (acknowledged by the receiver); once everything is
    /// acknowledged the ring leaves the log for `pool`.
    pub fn trim_to(&mut self, off: u64, pool: &mut RingPool) {
        if let Some(r) = self.trim(off) {
            pool.put(r);
        }
    }

    /// Forgets bytes below `off`; returns the ring once everything is acknowledged.
    fn trim(&mut self, off: u64) -> Option<Ring> {
        let n = off.saturating_sub(self.base).min(self.bytes().len() as u64) as usize;
        self.base += n as u64;
        if n == self.bytes().len() {
            // All acknowledged: the ring leaves the log, not just its contents.
            return self.store.take();
        }
        if let Some(d) = self.store.as_deref_mut() {
            d.drain(..n);
        }
        None
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
        let mut pool = RingPool::new();
        let mut l = OutputLog::new();
        l.append(b"hello ", &mut pool);
        l.trim_to(3, &mut pool);
        l.append(b"world", &mut pool);
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
        l.trim_to(1000, &mut pool);
        assert_eq!(l.base(), 11);
        assert!(l.is_empty());
        assert_eq!(l.heap_bytes(), 0, "a drained log keeps no buffer");
        l.append(b"again", &mut pool);
        assert_eq!(l.range(11, 16).1, b"again");
    }

    #[test]
    fn a_drained_ring_is_reused_with_its_capacity() {
        let mut pool = RingPool::new();
        let mut a = OutputLog::new();
        a.append(&[7; 5000], &mut pool);
        let cap = a.heap_bytes();
        assert!(cap >= 5000);
        a.trim_to(2000, &mut pool);
        assert!(pool.is_empty(), "a partly acknowledged log keeps its ring");
        a.trim_to(5000, &mut pool);
        assert_eq!((a.heap_bytes(), a.len()), (0, 0), "the ring left the log");
        assert_eq!(
            (pool.len(), pool.heap_bytes()),
            (1, cap),
            "charged to the pool"
        );
        let mut b = OutputLog::new();
        b.append(b"x", &mut pool);
        assert_eq!(
            b.heap_bytes(),
            cap,
            "the next log gets the ring, capacity kept"
        );
        assert_eq!((pool.len(), pool.heap_bytes()), (0, 0));
        assert_eq!(b.range(0, 10).1, b"x", "and none of the old bytes");
    }

    #[test]
    fn the_pool_is_bounded_in_count_and_size() {
        let mut pool = RingPool::new();
        // Every log below gets a new ring (this pool never gets one back).
        let mut fresh = RingPool::new();
        for _ in 0..RingPool::MAX_RINGS + 3 {
            let mut l = OutputLog::new();
            l.append(&[1; 100], &mut fresh);
            l.trim_to(100, &mut pool);
        }
        assert_eq!(pool.len(), RingPool::MAX_RINGS);
        pool.release();
        assert_eq!((pool.len(), pool.heap_bytes()), (0, 0));
        let mut big = OutputLog::new();
        big.append(&vec![0; RingPool::MAX_RING_BYTES + 1], &mut fresh);
        big.trim_to(u64::MAX, &mut pool);
        assert!(pool.is_empty(), "a ring over the size bound is freed");
        let mut fits = OutputLog::new();
        fits.append(&[0; RingPool::MAX_RING_BYTES / 2], &mut fresh);
        fits.trim_to(u64::MAX, &mut pool);
        assert_eq!(pool.len(), 1);
        let held = pool.heap_bytes();
        pool.set_budget(held + 10);
        assert_eq!(pool.len(), 1, "within the budget");
        let mut over = OutputLog::new();
        over.append(&[0; 100], &mut fresh);
        over.trim_to(u64::MAX, &mut pool);
        assert_eq!(pool.heap_bytes(), held, "a ring over the budget is freed");
        pool.set_budget(held - 1);
        assert!(
            pool.is_empty(),
            "a lower budget frees what it no longer covers"
        );
    }
}
