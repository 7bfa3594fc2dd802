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
    add_folded(initial, sum_words(data))
}

/// The 64-bit sum of `data`'s 32-bit halves of 8-byte words, in the machine's byte order
/// (the tail padded with zeros), not folded: at most 2^33 per word, so no overflow below
/// 2^31 words. Built for AVX2 where the CPU has it (the same loop, 32 bytes a step
/// instead of 16), for the baseline otherwise; the two are the same source.
fn sum_words(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= 64 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { sum_words_avx2(data) };
    }
    sum_words_portable(data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_words_avx2(data: &[u8]) -> u64 {
    sum_words_portable(data)
}

#[inline(always)]
fn sum_words_portable(data: &[u8]) -> u64 {
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
    sum + (w & 0xffff_ffff) + (w >> 32)
}

/// `initial` plus a [`sum_words`] result, as a 32-bit one's complement sum of big-endian
/// 16-bit words.
fn add_folded(initial: u32, sum: u64) -> u32 {
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

/// A sum of big-endian 16-bit words (as a u64) folded to a 32-bit one's complement sum.
fn add_big_endian(mut sum: u64) -> u32 {
    while sum > 0xffff_ffff {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
    }
    sum as u32
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
            // The 12-byte pseudo-header as big-endian words, added without a fold between
            // them (six 16-bit words cannot overflow a u64).
            let (s, d) = (s.to_bits(), d.to_bits());
            let words = u64::from(s >> 16)
                + u64::from(s & 0xffff)
                + u64::from(d >> 16)
                + u64::from(d & 0xffff)
                + 6
                + u64::from(tcp_len as u16);
            sum = add_big_endian(words);
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

        /// The AVX2 build of the word loop and the baseline one give the same sum.
        #[test]
        fn avx2_and_baseline_word_sums_agree(
            data in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(0xff), any::<u8>()], 0..3000),
        ) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is there, checked just above.
                prop_assert_eq!(unsafe { sum_words_avx2(&data) }, sum_words_portable(&data));
            }
            prop_assert_eq!(sum_words(&data), sum_words_portable(&data));
        }

        /// The TCP checksum equals RFC 1071 over the pseudo-header written out as bytes
        /// (RFC 793 for IPv4, RFC 8200 section 8.1 for IPv6) followed by the segment.
        #[test]
        fn tcp_checksum_matches_pseudo_header_written_out(
            tcp in proptest::collection::vec(any::<u8>(), 0..1600),
            s in any::<[u8; 16]>(),
            d in any::<[u8; 16]>(),
            v6 in any::<bool>(),
        ) {
            let mut bytes = Vec::new();
            let (src, dst) = if v6 {
                bytes.extend_from_slice(&s);
                bytes.extend_from_slice(&d);
                bytes.extend_from_slice(&(tcp.len() as u32).to_be_bytes());
                bytes.extend_from_slice(&[0, 0, 0, 6]);
                (IpAddr::from(s), IpAddr::from(d))
            } else {
                let (s4, d4) = ([s[0], s[1], s[2], s[3]], [d[0], d[1], d[2], d[3]]);
                bytes.extend_from_slice(&s4);
                bytes.extend_from_slice(&d4);
                bytes.extend_from_slice(&[0, 6]);
                bytes.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
                (IpAddr::from(s4), IpAddr::from(d4))
            };
            bytes.extend_from_slice(&tcp);
            prop_assert_eq!(tcp_checksum(src, dst, &tcp), reference_checksum(&bytes, 0));
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
