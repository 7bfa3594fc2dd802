//! Sequence numbers at the wire, 64-bit offsets inside.

/// The sequence space of one direction: maps u32 sequence numbers to signed 64-bit offsets
/// from the first data byte (offset 0 = ISN + 1) and back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqSpace {
    isn: u32,
}

impl SeqSpace {
    /// The space of a direction whose SYN carried `isn`.
    pub fn new(isn: u32) -> SeqSpace {
        SeqSpace { isn }
    }

    /// The initial sequence number.
    pub fn isn(&self) -> u32 {
        self.isn
    }

    /// The sequence number of offset `off` (wraps past 2^32).
    pub fn seq(&self, off: u64) -> u32 {
        self.isn.wrapping_add(1).wrapping_add(off as u32)
    }

    /// The offset of `seq` nearest to `near` (the unwrapping reference, usually the next
    /// expected offset). May be negative (the SYN itself is -1) or far from `near` if `seq`
    /// is garbage; callers bound what they accept.
    pub fn offset(&self, seq: u32, near: u64) -> i64 {
        let rel = seq.wrapping_sub(self.isn.wrapping_add(1));
        let near_lo = near as u32;
        // Signed distance from near's low 32 bits, in -2^31..2^31.
        let delta = rel.wrapping_sub(near_lo) as i32;
        (near as i64).wrapping_add(i64::from(delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_past_2_32() {
        let s = SeqSpace::new(0xffff_fff0);
        assert_eq!(s.seq(0), 0xffff_fff1);
        assert_eq!(s.seq(15), 0);
        assert_eq!(s.offset(0, 10), 15);
        assert_eq!(s.offset(5, (1u64 << 32) + 3), (1i64 << 32) + 20);
        assert_eq!(s.offset(0xffff_fff0, 0), -1);
        let far = 3u64 << 32;
        assert_eq!(s.offset(s.seq(far + 7), far), (far + 7) as i64);
    }

    proptest! {
        #[test]
        fn round_trip(isn in any::<u32>(), off in 0u64..(1u64 << 40), d in -(1i64 << 30)..(1i64 << 30)) {
            let s = SeqSpace::new(isn);
            let near = (off as i64 + d).max(0) as u64;
            prop_assert_eq!(s.offset(s.seq(off), near), off as i64);
        }
    }
}
