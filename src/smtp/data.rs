//! The message body after the server's 354: copied up to the `.` line, with strict's bare
//! CR / bare LF normalisation and asa's line-length rules.

use super::client::ClientState;
use super::ops;
use super::session::{CmdKind, Expect, Session};
use super::{Event, Output, Profile, ResetReason};

const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// RFC 5322 line limit, CRLF excluded (asa: header lines reset, body lines logged).
const MAX_MESSAGE_LINE: usize = 998;

/// Position within a message body line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum BodyPhase {
    /// Nothing yet on this line.
    #[default]
    Start,
    /// Only a CR so far (a CRLF would make an empty line).
    StartCr,
    /// Only `.` so far.
    Dot,
    /// Only `.` CR so far.
    DotCr,
    /// Anything else.
    Other,
}

/// A message body line in progress.
#[derive(Debug, Default)]
pub(crate) struct DataLine {
    phase: BodyPhase,
    /// Bytes of the line so far, LF excluded.
    len: usize,
    last_cr: bool,
    /// strict: the last byte was a CR (already copied); the next says whether it is bare.
    pending_cr: bool,
    /// Still in the header section (before the first empty line).
    in_headers: bool,
    long_logged: bool,
}

impl DataLine {
    /// The start of a body (its header section).
    pub(crate) fn new() -> DataLine {
        DataLine {
            in_headers: true,
            ..Default::default()
        }
    }

    /// strict: the last byte was a CR, and the next says whether it is bare (the CR itself
    /// is already copied: an LF is inserted after it if it is).
    pub(crate) fn pending_cr(&self) -> bool {
        self.pending_cr
    }

    /// A body byte other than the line end.
    fn byte(&mut self, b: u8) {
        self.phase = match (self.phase, b) {
            (BodyPhase::Start, b'.') => BodyPhase::Dot,
            (BodyPhase::Start, CR) => BodyPhase::StartCr,
            (BodyPhase::Dot, CR) => BodyPhase::DotCr,
            _ => BodyPhase::Other,
        };
        self.len += 1;
        self.last_cr = b == CR;
    }

    /// A line that was neither empty nor `.` ended: what [`Session::body_line_end`] does
    /// then (the header section goes on; `phase` is `Other` or, after a whole run of
    /// ordinary lines, still `Start`).
    fn end_ordinary_line(&mut self) {
        self.phase = BodyPhase::Start;
        self.len = 0;
        self.last_cr = false;
        self.long_logged = false;
    }

    /// Length of the line so far, a CR that may be its line end excluded.
    fn content_len(&self) -> usize {
        self.len - usize::from(self.last_cr)
    }
}

/// Where each of the bytes the body scan looks at sits in one 64-byte block: bit `i` of a
/// mask is set when byte `i` of the block is that byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BlockMasks {
    cr: u64,
    lf: u64,
    dot: u64,
}

/// The masks of `block`, 16 bytes per compare with SSE2 (part of every x86-64 CPU).
#[cfg(target_arch = "x86_64")]
fn block_masks(block: &[u8; 64]) -> BlockMasks {
    // SAFETY: SSE2 is part of the x86-64 baseline: every CPU this code runs on has it.
    unsafe { block_masks_sse2(block) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn block_masks_avx2(block: &[u8; 64]) -> BlockMasks {
    use std::arch::x86_64::_mm256_set1_epi8;
    use std::arch::x86_64::{_mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8};
    let (cr, lf, dot) = (
        _mm256_set1_epi8(CR as i8),
        _mm256_set1_epi8(LF as i8),
        _mm256_set1_epi8(b'.' as i8),
    );
    let mut m = BlockMasks {
        cr: 0,
        lf: 0,
        dot: 0,
    };
    for (k, chunk) in block.chunks_exact(32).enumerate() {
        // SAFETY: `chunks_exact(32)` makes `chunk` 32 readable bytes; `loadu` needs no
        // alignment.
        let v = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
        let shift = 32 * k as u32;
        // movemask gives one bit per byte in 32 bits: the cast to u32 drops nothing.
        m.cr |= u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, cr)) as u32) << shift;
        m.lf |= u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, lf)) as u32) << shift;
        m.dot |= u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, dot)) as u32) << shift;
    }
    m
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn block_masks_sse2(block: &[u8; 64]) -> BlockMasks {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let (cr, lf, dot) = (
        _mm_set1_epi8(CR as i8),
        _mm_set1_epi8(LF as i8),
        _mm_set1_epi8(b'.' as i8),
    );
    let mut m = BlockMasks {
        cr: 0,
        lf: 0,
        dot: 0,
    };
    for (k, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: `chunks_exact(16)` makes `chunk` 16 readable bytes; `loadu` needs no
        // alignment.
        let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) };
        let shift = 16 * k as u32;
        // movemask sets only the low 16 bits: the cast to u16 drops nothing.
        m.cr |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, cr)) as u16) << shift;
        m.lf |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, lf)) as u16) << shift;
        m.dot |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, dot)) as u16) << shift;
    }
    m
}

/// The masks of `block`, one byte at a time (targets without the SSE2 path).
#[cfg(any(not(target_arch = "x86_64"), test))]
fn block_masks_portable(block: &[u8; 64]) -> BlockMasks {
    let mut m = BlockMasks {
        cr: 0,
        lf: 0,
        dot: 0,
    };
    for (i, &b) in block.iter().enumerate() {
        m.cr |= u64::from(b == CR) << i;
        m.lf |= u64::from(b == LF) << i;
        m.dot |= u64::from(b == b'.') << i;
    }
    m
}

#[cfg(not(target_arch = "x86_64"))]
fn block_masks(block: &[u8; 64]) -> BlockMasks {
    block_masks_portable(block)
}

/// The length of the run of complete ordinary lines at the start of `rest`: lines that pass
/// unchanged and end nothing, so that after one the body is at a line start again. An
/// ordinary line does not start with `.`, CR or LF (so it is neither the terminator nor the
/// empty line ending the headers), ends at its first LF and, under strict, its only CR is
/// the one of its CRLF. The run stops before the first line that is not ordinary or not
/// complete in `rest`; those go through the byte loop of [`Session::data_bytes`].
///
/// Bulk bodies are mostly such runs (base64 lines of 76 bytes), so this is the policy's hot
/// loop. It looks at 64 bytes at a time with bit masks (AVX2 or SSE2 compares), one pass
/// whatever the line length (a search per line cost a call per 76 bytes): line starts are
/// the bits after LFs; a start on `.`, CR or LF ends the run, and under strict so does any
/// CR not followed by LF or LF not preceded by CR (`(cr << 1) ^ lf`). The run ends at the
/// last line start at or before the first such bit, or at the last line start in `rest`.
fn ordinary_lines(rest: &[u8], strict: bool) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (just checked; the standard library caches the answer).
        return unsafe { ordinary_lines_avx2(rest, strict) };
    }
    scan_lines(rest, strict, block_masks)
}

/// [`ordinary_lines`] with AVX2: 32 bytes per compare, the whole loop compiled for it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn ordinary_lines_avx2(rest: &[u8], strict: bool) -> usize {
    scan_lines(rest, strict, |b| block_masks_avx2(b))
}

/// The scan of [`ordinary_lines`], with the masks of each block from `masks`.
#[inline(always)]
fn scan_lines(rest: &[u8], strict: bool, masks: impl Fn(&[u8; 64]) -> BlockMasks) -> usize {
    let mut scan = LineScan {
        strict,
        // Position 0 is a line start; later, bit 0 of a block is one after an LF at bit 63.
        start_carry: 1,
        cr_carry: 0,
        last_starts: (0, 1),
    };
    let mut blocks = rest.chunks_exact(64);
    let mut base = 0usize;
    let mut ended = false;
    for block in &mut blocks {
        let Ok(block) = <&[u8; 64]>::try_from(block) else {
            break;
        };
        if scan.block(base, masks(block)) {
            ended = true;
            break;
        }
        base += 64;
    }
    if !ended {
        // One block past the last full one, zero-padded (zero is none of the bytes looked
        // at), so that the position just after the last byte is looked at too.
        let mut padded = [0u8; 64];
        let part = blocks.remainder();
        if let Some(dst) = padded.get_mut(..part.len()) {
            dst.copy_from_slice(part);
        }
        scan.block(base, masks(&padded));
    }
    let (at, starts) = scan.last_starts;
    (at + (63 - starts.leading_zeros()) as usize).min(rest.len())
}

/// The state [`scan_lines`] carries from one 64-byte block to the next.
struct LineScan {
    strict: bool,
    start_carry: u64,
    cr_carry: u64,
    /// The latest block with a line start, as its offset and its starts: the position of
    /// the highest is worked out once at the end, not per block.
    last_starts: (usize, u64),
}

impl LineScan {
    /// Takes in the masks of the block at `base`; true when the run ends in it.
    #[inline(always)]
    fn block(&mut self, base: usize, m: BlockMasks) -> bool {
        let mut starts = (m.lf << 1) | self.start_carry;
        let mut bad = starts & (m.cr | m.lf | m.dot);
        if self.strict {
            bad |= ((m.cr << 1) | self.cr_carry) ^ m.lf;
        }
        if bad != 0 {
            // Only the starts at or before the first bad bit count.
            starts &= u64::MAX >> (63 - bad.trailing_zeros());
        }
        if starts != 0 {
            self.last_starts = (base, starts);
        }
        self.start_carry = m.lf >> 63;
        self.cr_carry = m.cr >> 63;
        bad != 0
    }
}

/// What one body byte did.
enum Step {
    /// The body goes on.
    More,
    /// The terminating line ended with this byte.
    Ended,
    /// The terminating line ended just before this byte (strict, bare CR): the byte is the
    /// first of the next command line and is not consumed.
    EndedBefore,
    /// The connection was reset.
    Reset,
}

impl Session {
    /// Message body: copied (strict: bare CR / LF normalised to CRLF) up to the `.` line;
    /// returns how many bytes were consumed.
    pub(crate) fn data_bytes(&mut self, data: &[u8], out: &mut Output) -> usize {
        let strict = self.policy.profile == Profile::Strict;
        let asa = self.policy.profile == Profile::Asa;
        let mut k = 0;
        // Set just after a run of ordinary lines: the line after it is known not to be one
        // (the run takes every complete ordinary line), so it is not scanned again.
        let mut after_run = false;
        while let Some(rest) = data.get(k..).filter(|r| !r.is_empty()) {
            let ClientState::Data(d) = &mut self.client else {
                return k;
            };
            let scan = !std::mem::take(&mut after_run);
            // A whole ordinary line at a line start passes as one run, and so does the middle
            // of a line (not under asa, whose line limits are checked byte by byte).
            if d.phase == BodyPhase::Start && !d.pending_cr && !asa && scan {
                let n = ordinary_lines(rest, strict);
                if n > 0 {
                    ops::copy(&mut out.to_server, n);
                    // What `body_line_end` does after a line that was neither empty nor `.`.
                    d.end_ordinary_line();
                    k += n;
                    after_run = true;
                    continue;
                }
            }
            if d.phase == BodyPhase::Other && !d.pending_cr && !asa {
                // memchr scans with SIMD: this loop is most of a bulk transfer's policy time.
                let run = if strict {
                    memchr::memchr2(LF, CR, rest)
                } else {
                    memchr::memchr(LF, rest)
                }
                .unwrap_or(rest.len());
                // The line end right after the run (strict: CRLF; else LF) is taken in the
                // same step: it ends a line that is neither empty nor `.`, which only resets
                // the line's state (a bare CR or a lone CR at the input's end still goes
                // byte by byte).
                let eol = if strict {
                    rest.get(run..run + 2) == Some(b"\r\n")
                } else {
                    rest.get(run) == Some(&LF)
                };
                let n = run + if eol { 1 + usize::from(strict) } else { 0 };
                if n > 0 {
                    ops::copy(&mut out.to_server, n);
                    if eol {
                        d.end_ordinary_line();
                    } else {
                        d.len += run;
                        d.last_cr = rest.get(run - 1) == Some(&CR);
                    }
                    k += n;
                    continue;
                }
            }
            let Some(&b) = rest.first() else {
                break;
            };
            k += 1;
            let step = if strict {
                self.strict_body_byte(b, out)
            } else {
                self.body_byte(b, asa, out)
            };
            match step {
                Step::More => {}
                Step::Ended | Step::Reset => return k,
                Step::EndedBefore => return k - 1,
            }
        }
        data.len()
    }

    /// One body byte, copied as is (asa: line lengths checked).
    fn body_byte(&mut self, b: u8, asa: bool, out: &mut Output) -> Step {
        ops::copy(&mut out.to_server, 1);
        if b == LF {
            return self.body_line_end(out);
        }
        let ClientState::Data(d) = &mut self.client else {
            return Step::More;
        };
        d.byte(b);
        if asa && d.content_len() > MAX_MESSAGE_LINE {
            if d.in_headers {
                self.do_reset(ResetReason::HeaderLineTooLong, out);
                return Step::Reset;
            }
            if !d.long_logged {
                d.long_logged = true;
                out.events.push(Event::LongBodyLine);
                log::info!("smtp: body line longer than {MAX_MESSAGE_LINE} bytes");
            }
        }
        Step::More
    }

    /// One body byte under strict: a bare CR or bare LF becomes CRLF.
    fn strict_body_byte(&mut self, b: u8, out: &mut Output) -> Step {
        let ClientState::Data(d) = &mut self.client else {
            return Step::More;
        };
        if d.pending_cr {
            d.pending_cr = false;
            if b == LF {
                ops::copy(&mut out.to_server, 1);
                return self.body_line_end(out);
            }
            // A bare CR: CRLF instead, and `b` begins the next line.
            ops::insert(&mut out.to_server, b"\n");
            if let Step::Ended = self.body_line_end(out) {
                return Step::EndedBefore;
            }
            return self.strict_body_byte(b, out);
        }
        match b {
            // Copied at once: a CR stays a CR whether LF follows or not (a bare one gets an
            // LF after it). Holding it would keep a classic-Nagle sender (RFC 896) whose
            // segment ended with it from ever sending the rest: the receiver cannot
            // acknowledge a byte it never got.
            CR => {
                ops::copy(&mut out.to_server, 1);
                d.pending_cr = true;
            }
            LF => {
                ops::insert(&mut out.to_server, b"\r");
                ops::copy(&mut out.to_server, 1);
                return self.body_line_end(out);
            }
            _ => {
                ops::copy(&mut out.to_server, 1);
                d.byte(b);
            }
        }
        Step::More
    }

    /// A body line ended: the terminating `.` line returns to command mode.
    fn body_line_end(&mut self, out: &mut Output) -> Step {
        let ClientState::Data(d) = &mut self.client else {
            return Step::More;
        };
        match d.phase {
            BodyPhase::Dot | BodyPhase::DotCr => {
                self.client = ClientState::default();
                self.rcpt_count = 0;
                out.events.push(Event::DataEnded);
                log::debug!("smtp: end of message");
                self.expect(Expect::Cmd(CmdKind::EndOfMessage), out);
                Step::Ended
            }
            phase => {
                if matches!(phase, BodyPhase::Start | BodyPhase::StartCr) {
                    d.in_headers = false;
                }
                d.phase = BodyPhase::Start;
                d.len = 0;
                d.last_cr = false;
                d.long_logged = false;
                Step::More
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{block_masks, block_masks_portable, ordinary_lines, scan_lines, CR, LF};
    #[cfg(target_arch = "x86_64")]
    use super::{block_masks_avx2, block_masks_sse2};
    use proptest::prelude::*;

    /// The reference model of one ordinary line (the scan before the block masks, one
    /// memchr per line): its length if the line at the start of `rest` is ordinary and
    /// complete.
    fn ordinary_line(rest: &[u8], strict: bool) -> Option<usize> {
        let (&first, tail) = rest.split_first()?;
        if matches!(first, b'.' | CR | LF) {
            return None;
        }
        if strict {
            let at = memchr::memchr2(LF, CR, tail)? + 1;
            (rest.get(at) == Some(&CR) && rest.get(at + 1) == Some(&LF)).then_some(at + 2)
        } else {
            Some(memchr::memchr(LF, tail)? + 2)
        }
    }

    /// The reference model of a run: line after line.
    fn reference_lines(rest: &[u8], strict: bool) -> usize {
        let mut n = 0;
        while let Some(len) = rest.get(n..).and_then(|r| ordinary_line(r, strict)) {
            n += len;
        }
        n
    }

    #[test]
    fn ordinary_lines_pass_whole_and_everything_else_goes_byte_by_byte() {
        // strict: a line whose only CR is its CRLF's.
        assert_eq!(ordinary_lines(b"abc\r\nnext", true), 5);
        assert_eq!(ordinary_lines(b"a\r\n", true), 3);
        // strict: bare CR, bare LF, CR at the end of what we have: byte by byte.
        assert_eq!(ordinary_lines(b"ab\rc\r\n", true), 0);
        assert_eq!(ordinary_lines(b"abc\nx", true), 0);
        assert_eq!(ordinary_lines(b"abc\r", true), 0);
        // Other profiles: any line up to its LF, a CR inside is just a byte.
        assert_eq!(ordinary_lines(b"ab\rc\n.", false), 5);
        assert_eq!(ordinary_lines(b"abc\r\n", false), 5);
        // Never the terminator, an empty line, or an incomplete line.
        for strict in [true, false] {
            for line in [&b".\r\n"[..], b"..x\r\n", b"\r\n", b"\n", b"abc", b""] {
                assert_eq!(ordinary_lines(line, strict), 0, "{line:?}");
            }
        }
    }

    #[test]
    fn a_run_of_ordinary_lines_stops_before_the_first_line_that_is_not() {
        let body = b"abc\r\nde\r\n.\r\nfg\r\n";
        assert_eq!(ordinary_lines(body, true), 9);
        assert_eq!(ordinary_lines(b"a\r\nb\rc\r\n", true), 3);
        assert_eq!(ordinary_lines(b"a\r\nb\nc\n\r\n", false), 7);
        // An incomplete line ends the run; nothing at all is 0.
        assert_eq!(ordinary_lines(b"abc\r\ndef", true), 5);
        assert_eq!(ordinary_lines(b"\r\nabc\r\n", true), 0);
        assert_eq!(ordinary_lines(b"", false), 0);
    }

    #[test]
    fn runs_across_block_edges_match_the_line_by_line_model() {
        // Base64-like lines of 76 bytes: CRLFs, starts and a CR/LF pair split at every
        // offset around the 64-byte block edges.
        let line = |n: usize| {
            let mut l = vec![b'Q'; n];
            l.extend_from_slice(b"\r\n");
            l
        };
        for n in 1..140 {
            for tail in [
                &b""[..],
                b"\r",
                b"\r\n",
                b".",
                b".\r\n",
                b"x\ry",
                b"x\ny",
                b"ab",
            ] {
                let mut body = line(n);
                body.extend(line(76));
                body.extend_from_slice(tail);
                for strict in [true, false] {
                    assert_eq!(
                        ordinary_lines(&body, strict),
                        reference_lines(&body, strict),
                        "n {n} tail {tail:?} strict {strict}"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn block_scan_equals_the_line_by_line_model(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a'), Just(0u8)],
                0..400,
            ),
            strict in any::<bool>(),
        ) {
            let want = reference_lines(&bytes, strict);
            prop_assert_eq!(ordinary_lines(&bytes, strict), want);
            // Whichever masks the CPU gets: the portable ones and SSE2's too.
            prop_assert_eq!(scan_lines(&bytes, strict, block_masks_portable), want);
            prop_assert_eq!(scan_lines(&bytes, strict, block_masks), want);
        }

        #[test]
        fn simd_and_portable_masks_agree(bytes in proptest::collection::vec(any::<u8>(), 64)) {
            let block: [u8; 64] = bytes.as_slice().try_into().unwrap_or([0; 64]);
            prop_assert_eq!(block_masks(&block), block_masks_portable(&block));
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: SSE2 is x86-64 baseline; AVX2 only where the CPU has it.
                prop_assert_eq!(unsafe { block_masks_sse2(&block) }, block_masks_portable(&block));
                if std::arch::is_x86_feature_detected!("avx2") {
                    prop_assert_eq!(
                        unsafe { block_masks_avx2(&block) },
                        block_masks_portable(&block)
                    );
                }
            }
        }

        #[test]
        fn mostly_ordinary_bodies_equal_the_model(
            lines in proptest::collection::vec((1usize..120, 0u8..12), 0..40),
            strict in any::<bool>(),
        ) {
            // Long runs of ordinary lines with an occasional oddity, as real bodies are.
            let mut body = Vec::new();
            for (len, odd) in lines {
                body.extend(std::iter::repeat_n(b'x', len));
                body.extend_from_slice(match odd {
                    0 => &b"\n"[..],
                    1 => b"\r",
                    2 => b"\r\n.",
                    3 => b"\r\n\r\n",
                    _ => b"\r\n",
                });
            }
            prop_assert_eq!(ordinary_lines(&body, strict), reference_lines(&body, strict));
        }
    }
}
