//! [`HeldBuf`]: a byte buffer that costs one pointer while empty.
//!
//! A session holds a few bytes undecided only now and then (a verb split across segments,
//! a reply line's head, a reply held for the EHLO rewrite), and an idle session holds none.
//! A `Vec<u8>` field costs 24 bytes inline whether used or not; a `HeldBuf` costs 8 and
//! allocates its vector (boxed) on the first byte. It offers the few `Vec` methods the
//! session uses, with the same results, and reads as a slice.

use std::ops::Deref;

/// A byte buffer, unallocated until the first byte (see the module docs).
// The extra allocation is the point: it is made only while bytes are held.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub(crate) struct HeldBuf(Option<Box<Vec<u8>>>);

impl HeldBuf {
    /// Appends `b`.
    pub(crate) fn push(&mut self, b: u8) {
        self.0.get_or_insert_default().push(b);
    }

    /// Appends `bytes` (allocates nothing when `bytes` is empty).
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.0.get_or_insert_default().extend_from_slice(bytes);
        }
    }

    /// Heap bytes owned: the vector's header and its capacity, once allocated.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |v| std::mem::size_of::<Vec<u8>>() + v.capacity())
    }
}

impl Deref for HeldBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl<'a> IntoIterator for &'a HeldBuf {
    type Item = &'a u8;
    type IntoIter = std::slice::Iter<'a, u8>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_the_bytes_pushed_and_costs_nothing_empty() {
        let mut b = HeldBuf::default();
        assert_eq!(std::mem::size_of::<HeldBuf>(), 8);
        assert!(b.is_empty());
        assert_eq!(b.heap_bytes(), 0);
        b.extend_from_slice(&[]);
        assert_eq!(b.heap_bytes(), 0, "no allocation for nothing");
        b.push(b'E');
        b.extend_from_slice(b"HLO");
        assert_eq!(&*b, b"EHLO");
        assert_eq!(b.len(), 4);
        assert_eq!(b.get(1..3), Some(&b"HL"[..]));
        assert_eq!((&b).into_iter().count(), 4);
        assert!(b.heap_bytes() >= std::mem::size_of::<Vec<u8>>() + 4);
        let taken = std::mem::take(&mut b);
        assert_eq!(&*taken, b"EHLO");
        assert_eq!(b.heap_bytes(), 0);
    }
}
