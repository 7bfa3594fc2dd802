//! The engine's ordered indices of connections by time, stored compactly.
//!
//! A [`TimeIndex`] is an ordered set of `(Time, FlowKey)` that behaves exactly like a
//! `BTreeSet<(Time, FlowKey)>` (same order, ties broken by the key's order) but keeps an
//! IPv4 flow's key packed into 12 bytes instead of a 40-byte `FlowKey`: an entry is 24 bytes
//! instead of 48, and the B-tree nodes holding an idle connection's entries (the bulk of the
//! state per idle connection besides its record) shrink with it. IPv6 keys (and, should one
//! ever be built, a key mixing families) are kept whole in a second set; reading merges the
//! two by the full `(Time, FlowKey)` order, so nothing observable depends on the split.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use super::FlowKey;
use crate::engine::Time;

/// An IPv4 flow key packed so that the derived order of the fields (`hi`, then `lo`) is the
/// order of the `FlowKey` it stands for: client address, client port, server address,
/// server port, as one 96-bit big-endian number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key4 {
    /// Client address (32 bits), client port (16), server address's high half (16).
    hi: u64,
    /// Server address's low half (16 bits), server port (16).
    lo: u32,
}

impl Key4 {
    /// The packed key, if both endpoints are IPv4.
    fn pack(k: &FlowKey) -> Option<Key4> {
        match (k.client.0, k.server.0) {
            (IpAddr::V4(c), IpAddr::V4(s)) => {
                let (c, s) = (u64::from(c.to_bits()), s.to_bits());
                Some(Key4 {
                    hi: c << 32 | u64::from(k.client.1) << 16 | u64::from(s >> 16),
                    lo: (s & 0xffff) << 16 | u32::from(k.server.1),
                })
            }
            _ => None,
        }
    }

    fn unpack(self) -> FlowKey {
        // Truncating casts pick the packed fields out.
        let client = Ipv4Addr::from_bits((self.hi >> 32) as u32);
        let client_port = (self.hi >> 16) as u16;
        let server = Ipv4Addr::from_bits(((self.hi & 0xffff) as u32) << 16 | self.lo >> 16);
        let server_port = self.lo as u16;
        FlowKey {
            client: (IpAddr::V4(client), client_port),
            server: (IpAddr::V4(server), server_port),
        }
    }

    #[cfg(test)]
    const MIN: Key4 = Key4 { hi: 0, lo: 0 };
    const MAX: Key4 = Key4 {
        hi: u64::MAX,
        lo: u32::MAX,
    };
}

/// An ordered set of `(Time, FlowKey)`, IPv4 keys packed (see the module docs).
#[derive(Debug, Default)]
pub(super) struct TimeIndex {
    v4: BTreeSet<(Time, Key4)>,
    other: BTreeSet<(Time, FlowKey)>,
}

impl TimeIndex {
    /// Adds `(t, key)`; false if it was there already.
    pub fn insert(&mut self, t: Time, key: FlowKey) -> bool {
        match Key4::pack(&key) {
            Some(k) => self.v4.insert((t, k)),
            None => self.other.insert((t, key)),
        }
    }

    /// Removes `(t, key)`; false if it was not there.
    pub fn remove(&mut self, t: Time, key: FlowKey) -> bool {
        match Key4::pack(&key) {
            Some(k) => self.v4.remove(&(t, k)),
            None => self.other.remove(&(t, key)),
        }
    }

    /// The least entry.
    pub fn first(&self) -> Option<(Time, FlowKey)> {
        let a = self.v4.first().map(|&(t, k)| (t, k.unpack()));
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
            .range(..=(now, Key4::MAX))
            .map(|&(t, k)| (t, k.unpack()))
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
    pub const ENTRY_BYTES: usize = std::mem::size_of::<(Time, Key4)>();
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
        assert_eq!(TimeIndex::ENTRY_BYTES, 24);
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
                let t = Time(t);
                if insert {
                    prop_assert_eq!(idx.insert(t, k), model.insert((t, k)));
                } else {
                    prop_assert_eq!(idx.remove(t, k), model.remove(&(t, k)));
                }
                prop_assert_eq!(idx.first(), model.first().copied());
                prop_assert_eq!(idx.len(), model.len());
                let due: Vec<FlowKey> = model.range(..=(Time(now), FlowKey::MAX)).map(|e| e.1).collect();
                prop_assert_eq!(idx.due(Time(now)), due);
            }
        }
    }
}
