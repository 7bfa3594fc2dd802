//! The flow table: connections by [`FlowKey`], hashed.
//!
//! Each bucket holds only the pointer to a boxed connection record (8 bytes), not a copy of
//! its 40-byte key beside it: the record knows its own key ([`Keyed`]), so lookups compare
//! against the record and growth rehashes from it. A std `HashMap<FlowKey, Box<_>>` spent
//! 48 bytes a bucket, at most 7/8 and at least 7/16 of them full: some 70 bytes per
//! connection, against about 12 here. The hash is foldhash, seeded per process (a sender
//! cannot aim keys at one bucket). Nothing observable iterates the table in its own order:
//! the engine's timers, expiry and eviction go by ordered indices and reports are sorted.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use super::FlowKey;

/// A flow key as a record keeps it: an IPv4 key packed in 12 bytes inline (16 with the
/// tag, against 40 for a `FlowKey`), any other boxed.
#[derive(Debug)]
pub(super) enum StoredKey {
    /// Client address and port, server address and port, big-endian.
    V4([u8; 12]),
    Other(Box<FlowKey>),
}

impl StoredKey {
    /// `key`, packed if it can be.
    pub fn new(key: FlowKey) -> StoredKey {
        match (key.client.0, key.server.0) {
            (IpAddr::V4(c), IpAddr::V4(s)) => {
                let mut b = [0u8; 12];
                b[..4].copy_from_slice(&c.octets());
                b[4..6].copy_from_slice(&key.client.1.to_be_bytes());
                b[6..10].copy_from_slice(&s.octets());
                b[10..].copy_from_slice(&key.server.1.to_be_bytes());
                StoredKey::V4(b)
            }
            _ => StoredKey::Other(Box::new(key)),
        }
    }

    /// The key.
    pub fn get(&self) -> FlowKey {
        match self {
            StoredKey::V4(b) => {
                let [c0, c1, c2, c3, cp0, cp1, s0, s1, s2, s3, sp0, sp1] = *b;
                FlowKey {
                    client: (
                        IpAddr::V4(Ipv4Addr::new(c0, c1, c2, c3)),
                        u16::from_be_bytes([cp0, cp1]),
                    ),
                    server: (
                        IpAddr::V4(Ipv4Addr::new(s0, s1, s2, s3)),
                        u16::from_be_bytes([sp0, sp1]),
                    ),
                }
            }
            StoredKey::Other(k) => **k,
        }
    }

    /// Bytes a boxed key costs (with the allocator's header).
    pub const MAX_HEAP: usize = std::mem::size_of::<FlowKey>() + 16;
}

/// A record that carries its flow key.
pub(super) trait Keyed {
    /// The key the record is filed under.
    fn key(&self) -> FlowKey;
}

/// Boxed records of type `T`, by key.
pub(super) struct FlowTable<T: Keyed> {
    table: HashTable<Box<T>>,
    hasher: foldhash::fast::RandomState,
    /// The most records ever filed at once (see [`FlowTable::accounted_capacity`]).
    high_water: usize,
    /// `nominal_capacity(high_water)`, kept as `high_water` moves (the memory account asks
    /// for it every frame; working it out is a loop over the doublings).
    accounted: usize,
}

impl<T: Keyed> Default for FlowTable<T> {
    fn default() -> Self {
        FlowTable {
            table: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            high_water: 0,
            accounted: 0,
        }
    }
}

impl<T: Keyed> FlowTable<T> {
    /// Bytes of one bucket.
    pub const BUCKET_BYTES: usize = std::mem::size_of::<Box<T>>();

    fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The record filed under `key`.
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut T> {
        let h = self.hash(key);
        self.table
            .find_mut(h, |r| r.key() == *key)
            .map(|b| &mut **b)
    }

    /// Files `record` under its key, replacing (and returning) one filed there before.
    pub fn insert(&mut self, record: Box<T>) -> Option<Box<T>> {
        let key = record.key();
        let h = self.hash(&key);
        let hasher = &self.hasher;
        match self
            .table
            .entry(h, |r| r.key() == key, |r| hasher.hash_one(r.key()))
        {
            Entry::Occupied(mut e) => Some(std::mem::replace(e.get_mut(), record)),
            Entry::Vacant(e) => {
                e.insert(record);
                if self.table.len() > self.high_water {
                    self.high_water = self.table.len();
                    self.accounted = nominal_capacity(self.high_water);
                }
                None
            }
        }
    }

    /// Takes the record filed under `key` out.
    pub fn remove(&mut self, key: &FlowKey) -> Option<Box<T>> {
        let h = self.hash(key);
        match self.table.find_entry(h, |r| r.key() == *key) {
            Ok(e) => Some(e.remove().0),
            Err(_) => None,
        }
    }

    /// Records filed.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Records the table holds without growing, as the memory account sees it: the
    /// capacity of a table that only ever grew by inserts, at the most records held at
    /// once. The real table's capacity also depends on where removals left tombstones,
    /// i.e. on the per-process hash seed; counting it would make the account, and the
    /// evictions it drives, differ from run to run on the same capture (DESIGN.md §3,
    /// rule 9). The real table has at most twice these buckets (it grows early only past
    /// half of them).
    pub fn accounted_capacity(&self) -> usize {
        self.accounted
    }

    /// Every record, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.table.iter().map(|b| &**b)
    }

    /// Every record, in no particular order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.table.iter_mut().map(|b| &mut **b)
    }
}

/// The smallest capacity a hashbrown table reaches, growing from empty by inserts only,
/// that holds `n` records: 3 in 4 buckets, 7 in 8, then 7/8 of a power of two.
fn nominal_capacity(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let mut buckets = 4usize;
    loop {
        let cap = if buckets < 8 {
            buckets - 1
        } else {
            buckets / 8 * 7
        };
        if cap >= n || buckets > usize::MAX / 4 {
            return cap;
        }
        buckets *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[derive(Debug, PartialEq)]
    struct Rec(FlowKey, u32);

    impl Keyed for Rec {
        fn key(&self) -> FlowKey {
            self.0
        }
    }

    fn key(i: u32) -> FlowKey {
        let ip = |n: u32| {
            if n.is_multiple_of(3) {
                IpAddr::V6(Ipv6Addr::from_bits(u128::from(n)))
            } else {
                IpAddr::V4(Ipv4Addr::from_bits(n))
            }
        };
        FlowKey {
            client: (ip(i), (i % 7) as u16),
            server: (ip(i), 25),
        }
    }

    /// Stored keys give back what they were given, IPv4 packed and inline.
    #[test]
    fn stored_keys_round_trip() {
        assert_eq!(std::mem::size_of::<StoredKey>(), 16);
        for i in 0..3000u32 {
            let n = i.wrapping_mul(0x9e37_79b9);
            let k = key(n);
            let s = StoredKey::new(k);
            assert_eq!(s.get(), k);
            assert_eq!(matches!(s, StoredKey::V4(_)), !n.is_multiple_of(3));
        }
    }

    /// Keys that differ in any one field (either address, either port, the address
    /// family) hash differently: the word-wise `Hash` of `FlowKey` drops no field.
    #[test]
    fn every_field_of_a_key_reaches_its_hash() {
        let t: FlowTable<Rec> = FlowTable::default();
        let v4 = |n: u32| IpAddr::V4(Ipv4Addr::from_bits(n));
        let v6 = |n: u32| IpAddr::V6(Ipv6Addr::from_bits(u128::from(n)));
        let base = FlowKey {
            client: (v4(0xc612_0001), 40000),
            server: (v4(0xc612_0002), 25),
        };
        let mut keys = vec![base];
        for bit in 0..32 {
            let flip = |a: IpAddr| match a {
                IpAddr::V4(a) => v4(a.to_bits() ^ (1 << bit)),
                IpAddr::V6(a) => v6(a.to_bits() as u32 ^ (1 << bit)),
            };
            let mut k = base;
            k.client.0 = flip(k.client.0);
            keys.push(k);
            let mut k = base;
            k.server.0 = flip(k.server.0);
            keys.push(k);
            if bit < 16 {
                let mut k = base;
                k.client.1 ^= 1 << bit;
                keys.push(k);
                let mut k = base;
                k.server.1 ^= 1 << bit;
                keys.push(k);
            }
        }
        let six: Vec<FlowKey> = keys
            .iter()
            .map(|k| {
                let six = |a: IpAddr| match a {
                    IpAddr::V4(a) => v6(a.to_bits()),
                    other => other,
                };
                FlowKey {
                    client: (six(k.client.0), k.client.1),
                    server: (six(k.server.0), k.server.1),
                }
            })
            .collect();
        keys.extend(six);
        keys.push(FlowKey {
            client: (v6(0xc612_0001), 40000),
            server: (v4(0xc612_0002), 25),
        });
        let hashes: std::collections::HashSet<u64> = keys.iter().map(|k| t.hash(k)).collect();
        let distinct: std::collections::HashSet<FlowKey> = keys.iter().copied().collect();
        assert_eq!(hashes.len(), distinct.len());
        assert_eq!(distinct.len(), 2 * (1 + 2 * 32 + 2 * 16) + 1);
    }

    /// The capacity the memory account uses is hashbrown's own while records are only
    /// added (so the account charges what a real table of that size holds), and with
    /// removals it depends only on the most records held, not on the hash seed.
    #[test]
    fn nominal_capacity_is_hashbrowns_on_inserts() {
        let mut t: FlowTable<Rec> = FlowTable::default();
        assert_eq!(t.accounted_capacity(), 0);
        for i in 0..5000u32 {
            t.insert(Box::new(Rec(key(i), i)));
            assert_eq!(
                t.accounted_capacity(),
                t.table.capacity(),
                "after {} inserts",
                i + 1
            );
        }
        let mut u: FlowTable<Rec> = FlowTable::default();
        for i in 0..5000u32 {
            u.insert(Box::new(Rec(key(i), i)));
            if i % 3 == 0 {
                u.remove(&key(i / 2));
            }
        }
        for i in 0..2000u32 {
            u.remove(&key(i));
        }
        assert!(u.high_water > u.len(), "records were removed");
        assert_eq!(u.accounted_capacity(), nominal_capacity(u.high_water));
        assert!(u.accounted_capacity() >= u.high_water && u.high_water >= u.len());
    }

    /// Inserts, replacements, lookups and removals agree with a std `HashMap` through
    /// several growths.
    #[test]
    fn behaves_as_a_map() {
        let mut t: FlowTable<Rec> = FlowTable::default();
        let mut m: HashMap<FlowKey, u32> = HashMap::new();
        for i in 0..5000u32 {
            let k = key(i % 1500);
            match i % 5 {
                0..=2 => {
                    let old = t.insert(Box::new(Rec(k, i))).map(|r| r.1);
                    assert_eq!(old, m.insert(k, i));
                }
                3 => assert_eq!(t.remove(&k).map(|r| r.1), m.remove(&k)),
                _ => {
                    if let Some(r) = t.get_mut(&k) {
                        r.1 += 1;
                    }
                    if let Some(v) = m.get_mut(&k) {
                        *v += 1;
                    }
                }
            }
            assert_eq!(t.len(), m.len());
            assert!(t.accounted_capacity() >= t.len());
        }
        for (k, v) in &m {
            assert_eq!(t.get_mut(k).map(|r| r.1), Some(*v));
        }
        assert_eq!(t.values().count(), m.len());
        assert_eq!(t.values_mut().count(), m.len());
        assert_eq!(FlowTable::<Rec>::BUCKET_BYTES, 8);
    }
}
