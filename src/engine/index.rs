//! The engine's ordered indices of connections by time, stored compactly.
//!
//! A [`TimeIndex`] is an ordered set of `(Time, FlowKey)` that behaves exactly like a
//! `BTreeSet<(Time, FlowKey)>` (same order, ties broken by the key's order) but keeps an
//! IPv4 flow's key packed into 12 bytes instead of a 40-byte `FlowKey`: an entry is 20 bytes
//! instead of 48, and the B-tree nodes holding an idle connection's entries (the bulk of the
//! state per idle connection besides its record) shrink with it. IPv6 keys (and, should one
//! ever be built, a key mixing families) are kept whole in a second set; reading merges the
//! two by the full `(Time, FlowKey)` order, so nothing observable depends on the split.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use super::FlowKey;
use crate::engine::Time;

/// An IPv4 flow key packed so that the derived order of the fields (`a`, `b`, `c`) is the
/// order of the `FlowKey` it stands for: client address, client port, server address,
/// server port, as one 96-bit big-endian number. 32-bit fields: with a [`Time32`], an
/// index entry is 20 bytes aligned to 4, not 24 aligned to 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key4 {
    /// Client address.
    a: u32,
    /// Client port (16 bits), server address's high half (16).
    b: u32,
    /// Server address's low half (16 bits), server port (16).
    c: u32,
}

impl Key4 {
    /// The packed key, if both endpoints are IPv4.
    fn pack(k: &FlowKey) -> Option<Key4> {
        match (k.client.0, k.server.0) {
            (IpAddr::V4(c), IpAddr::V4(s)) => {
                let s = s.to_bits();
                Some(Key4 {
                    a: c.to_bits(),
                    b: u32::from(k.client.1) << 16 | s >> 16,
                    c: (s & 0xffff) << 16 | u32::from(k.server.1),
                })
            }
            _ => None,
        }
    }

    fn unpack(self) -> FlowKey {
        // Truncating casts pick the packed fields out.
        let server = Ipv4Addr::from_bits((self.b & 0xffff) << 16 | self.c >> 16);
        FlowKey {
            client: (
                IpAddr::V4(Ipv4Addr::from_bits(self.a)),
                (self.b >> 16) as u16,
            ),
            server: (IpAddr::V4(server), self.c as u16),
        }
    }

    #[cfg(test)]
    const MIN: Key4 = Key4 { a: 0, b: 0, c: 0 };
    const MAX: Key4 = Key4 {
        a: u32::MAX,
        b: u32::MAX,
        c: u32::MAX,
    };
}

/// A [`Time`] as two 32-bit halves, high first (same order, alignment 4).
type Time32 = [u32; 2];

fn split(t: Time) -> Time32 {
    // Truncating casts pick the halves out.
    [(t.0 >> 32) as u32, t.0 as u32]
}

fn join([hi, lo]: Time32) -> Time {
    Time(u64::from(hi) << 32 | u64::from(lo))
}

/// An ordered set of `(Time, FlowKey)`, IPv4 keys packed (see the module docs).
#[derive(Debug, Default)]
pub(super) struct TimeIndex {
    v4: BTreeSet<(Time32, Key4)>,
    other: BTreeSet<(Time, FlowKey)>,
}

impl TimeIndex {
    /// Adds `(t, key)`; false if it was there already.
    pub fn insert(&mut self, t: Time, key: FlowKey) -> bool {
        match Key4::pack(&key) {
            Some(k) => self.v4.insert((split(t), k)),
            None => self.other.insert((t, key)),
        }
    }

    /// Removes `(t, key)`; false if it was not there.
    pub fn remove(&mut self, t: Time, key: FlowKey) -> bool {
        match Key4::pack(&key) {
            Some(k) => self.v4.remove(&(split(t), k)),
            None => self.other.remove(&(t, key)),
        }
    }

    /// The least entry.
    pub fn first(&self) -> Option<(Time, FlowKey)> {
        let a = self.v4.first().map(|&(t, k)| (join(t), k.unpack()));
        let b = self.other.first().copied();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The keys of the entries at or before `now`, in order.
    pub fn due(&self, now: Time) -> Vec<FlowKey> {
        let mut a = self
            .v4
            .range(..=(split(now), Key4::MAX))
            .map(|&(t, k)| (join(t), k.unpack()))
            .peekable();
        let mut b = self.other.range(..=(now, FlowKey::MAX)).copied().peekable();
        let mut keys = Vec::new();
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x <= y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, _) => b.next(),
            };
            match next {
                Some((_, k)) => keys.push(k),
                None => return keys,
            }
        }
    }

    /// Entries in the set.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.v4.len() + self.other.len()
    }

    /// Bytes of one entry of the packed set.
    #[cfg(test)]
    pub const ENTRY_BYTES: usize = std::mem::size_of::<(Time32, Key4)>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    fn key(c: u32, cp: u16, s: u32, sp: u16) -> FlowKey {
        FlowKey {
            client: (IpAddr::V4(Ipv4Addr::from_bits(c)), cp),
            server: (IpAddr::V4(Ipv4Addr::from_bits(s)), sp),
        }
    }

    fn key6(c: u128, cp: u16, s: u128, sp: u16) -> FlowKey {
        FlowKey {
            client: (IpAddr::V6(Ipv6Addr::from_bits(c)), cp),
            server: (IpAddr::V6(Ipv6Addr::from_bits(s)), sp),
        }
    }

    #[test]
    fn entries_are_half_a_full_key() {
        assert_eq!(TimeIndex::ENTRY_BYTES, 20);
        assert_eq!(std::mem::size_of::<(Time, FlowKey)>(), 48);
    }

    proptest! {
        /// Packing round-trips and keeps the order of `FlowKey`.
        #[test]
        fn packing_keeps_order(a in any::<(u32, u16, u32, u16)>(), b in any::<(u32, u16, u32, u16)>()) {
            let (ka, kb) = (key(a.0, a.1, a.2, a.3), key(b.0, b.1, b.2, b.3));
            let (pa, pb) = (Key4::pack(&ka).unwrap(), Key4::pack(&kb).unwrap());
            prop_assert_eq!(pa.unpack(), ka);
            prop_assert_eq!(pa.cmp(&pb), ka.cmp(&kb));
            prop_assert!(Key4::MIN <= pa && pa <= Key4::MAX);
        }

        /// Times split in halves round-trip and keep their order.
        #[test]
        fn split_times_keep_order(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(join(split(Time(a))), Time(a));
            prop_assert_eq!(split(Time(a)).cmp(&split(Time(b))), a.cmp(&b));
        }

        /// Any sequence of inserts and removes, IPv4 and IPv6 keys mixed, with many ties in
        /// time and in key: the index answers as a `BTreeSet<(Time, FlowKey)>` would.
        #[test]
        fn behaves_as_an_ordered_set(ops in proptest::collection::vec(
            (any::<bool>(), 0u64..6, any::<bool>(), 0u32..4, 0u16..3, 0u64..8), 0..200)
        ) {
            let mut idx = TimeIndex::default();
            let mut model = BTreeSet::new();
            for (insert, t, v6, addr, port, now) in ops {
                let k = if v6 {
                    key6(u128::from(addr), port, u128::from(addr) << 64, 25)
                } else {
                    key(addr, port, addr.wrapping_mul(0x0101_0101), 25)
                };
                // Spread over both 32-bit halves (monotone: the ties stay ties).
                let t = Time(t * 0x9_0000_0007);
                if insert {
                    prop_assert_eq!(idx.insert(t, k), model.insert((t, k)));
                } else {
                    prop_assert_eq!(idx.remove(t, k), model.remove(&(t, k)));
                }
                prop_assert_eq!(idx.first(), model.first().copied());
                prop_assert_eq!(idx.len(), model.len());
                let now = Time(now * 0x9_0000_0007);
                let due: Vec<FlowKey> = model.range(..=(now, FlowKey::MAX)).map(|e| e.1).collect();
                prop_assert_eq!(idx.due(now), due);
            }
        }
    }
}
