//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

use std::net::IpAddr;

/// One's complement sum of `data` as big-endian 16-bit words (odd tail padded with zero),
/// added to `initial`. Not folded: pass the result to [`checksum_fold`].
///
/// The words are added in the machine's byte order, eight bytes at a time, and the folded
/// sum swapped once at the end: one's complement addition commutes with swapping the bytes
/// of every word (RFC 1071 section 2(B)), so this is the big-endian sum without a byte swap
/// per word. 32-bit halves go into a u64, which cannot overflow for any frame.
pub fn ones_sum(data: &[u8], initial: u32) -> u32 {
    let mut sum = 0u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_ne_bytes(w.try_into().unwrap_or([0; 8]));
        sum += (w & 0xffff_ffff) + (w >> 32);
    }
    // The tail, padded with zeros at its end as RFC 1071 pads an odd byte.
    let mut tail = [0u8; 8];
    let rest = words.remainder();
    if let Some(t) = tail.get_mut(..rest.len()) {
        t.copy_from_slice(rest);
    }
    let w = u64::from_ne_bytes(tail);
    sum += (w & 0xffff_ffff) + (w >> 32);
    let mut folded = sum;
    while folded > 0xffff {
        folded = (folded & 0xffff) + (folded >> 16);
    }
    let be = if cfg!(target_endian = "little") {
        (folded as u16).swap_bytes()
    } else {
        folded as u16
    };
    let mut total = u64::from(initial) + u64::from(be);
    while total > 0xffff_ffff {
        total = (total & 0xffff_ffff) + (total >> 32);
    }
    total as u32
}

/// Folds a 32-bit one's complement sum to 16 bits and complements it: the checksum field.
pub fn checksum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv4 header checksum of `header` (with its checksum field counted as it is: pass a
/// header whose checksum field is zero to compute, or the received one to verify: 0 = valid).
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    checksum_fold(ones_sum(header, 0))
}

/// The pseudo-header sum for TCP over `src` → `dst` with `tcp_len` bytes of TCP.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, tcp_len: usize) -> u32 {
    let mut sum = 0u32;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum = ones_sum(&s.octets(), sum);
            sum = ones_sum(&d.octets(), sum);
            sum = ones_sum(&[0, 6], sum);
            sum = ones_sum(&(tcp_len as u16).to_be_bytes(), sum);
        }
        _ => {
            let s = match src {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            let d = match dst {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            sum = ones_sum(&s, sum);
            sum = ones_sum(&d, sum);
            sum = ones_sum(&(tcp_len as u32).to_be_bytes(), sum);
            sum = ones_sum(&[0, 0, 0, 6], sum);
        }
    }
    sum
}

/// The TCP checksum of segment `tcp` (header and payload) from `src` to `dst`. With the
/// checksum field as received, a valid segment gives 0; with it zeroed, the value to store.
pub fn tcp_checksum(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> u16 {
    checksum_fold(ones_sum(tcp, pseudo_header_sum(src, dst, tcp.len())))
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit field changes from `old` to `new`.
pub fn update_checksum_u16(check: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    checksum_fold(sum)
}

/// RFC 1624 for a 32-bit field (two 16-bit words).
pub fn update_checksum_u32(check: u16, old: u32, new: u32) -> u16 {
    let c = update_checksum_u16(check, (old >> 16) as u16, (new >> 16) as u16);
    update_checksum_u16(c, old as u16, new as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum_fold(ones_sum(&data, 0)), !0xddf2);
    }

    #[test]
    fn rfc1071_example_at_every_alignment_and_the_two_zeros() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        for lead in 0..8 {
            // Leading zero words change nothing, wherever the 8-byte blocks then fall.
            let mut padded = vec![0u8; 2 * lead];
            padded.extend_from_slice(&data);
            assert_eq!(checksum_fold(ones_sum(&padded, 0)), !0xddf2, "lead {lead}");
        }
        // All-zero data sums to +0 (checksum ffff); data summing to -0 gives checksum 0.
        assert_eq!(checksum_fold(ones_sum(&[0; 20], 0)), 0xffff);
        assert_eq!(checksum_fold(ones_sum(&[0xff, 0xff, 0, 0, 0], 0)), 0);
        assert_eq!(checksum_fold(ones_sum(&[0x12], 0)), !0x1200);
    }

    /// RFC 1071 as written: 16-bit words, one at a time.
    fn reference_checksum(data: &[u8], initial: u32) -> u16 {
        let mut sum = u64::from(initial);
        for pair in data.chunks(2) {
            let hi = u64::from(pair.first().copied().unwrap_or(0)) << 8;
            sum += hi | u64::from(pair.get(1).copied().unwrap_or(0));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    proptest! {
        /// The word-at-a-time sum gives exactly RFC 1071's checksum, whatever the length
        /// (every remainder of 4) and the running sum passed in.
        #[test]
        fn ones_sum_matches_16_bit_reference(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            initial in any::<u32>(),
        ) {
            prop_assert_eq!(checksum_fold(ones_sum(&data, initial)), reference_checksum(&data, initial));
        }

        /// The same at frame sizes, with bytes biased to 0x00 and 0xff (carries, and sums
        /// that fold to 0xffff, the one's complement zero that is not all-zero data), and as
        /// a running sum over two pieces whose split keeps the first one even.
        #[test]
        fn ones_sum_matches_reference_on_frames_and_chained(
            data in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(0xff), any::<u8>()], 0..3000),
            initial in prop_oneof![Just(0u32), Just(u32::MAX), Just(0xffff), any::<u32>()],
            split in any::<usize>(),
        ) {
            let want = reference_checksum(&data, initial);
            prop_assert_eq!(checksum_fold(ones_sum(&data, initial)), want);
            let at = (split % (data.len() + 1)) & !1;
            let (a, b) = data.split_at(at);
            prop_assert_eq!(checksum_fold(ones_sum(b, ones_sum(a, initial))), want);
        }

        /// Incremental update of a 32-bit field equals recomputing the checksum in full.
        #[test]
        fn incremental_equals_full(mut data in proptest::collection::vec(any::<u8>(), 12..64),
                                   pos in 0usize..4, new in any::<u32>()) {
            let at = pos * 2;
            data[0] = 0; data[1] = 0; // checksum field at 0..2
            let full_before = checksum_fold(ones_sum(&data, 0));
            let old = u32::from_be_bytes([data[at+2], data[at+3], data[at+4], data[at+5]]);
            data[at+2..at+6].copy_from_slice(&new.to_be_bytes());
            let full_after = checksum_fold(ones_sum(&data, 0));
            let inc = update_checksum_u32(full_before, old, new);
            // Both are valid encodings of the same sum: verify by summing with the field set.
            let mut a = data.clone();
            a[0..2].copy_from_slice(&inc.to_be_bytes());
            prop_assert_eq!(checksum_fold(ones_sum(&a, 0)), 0);
            let mut b = data.clone();
            b[0..2].copy_from_slice(&full_after.to_be_bytes());
            prop_assert_eq!(checksum_fold(ones_sum(&b, 0)), 0);
        }
    }
}
