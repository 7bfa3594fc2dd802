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

    /// Length of the line so far, a CR that may be its line end excluded.
    fn content_len(&self) -> usize {
        self.len - usize::from(self.last_cr)
    }
}

/// The length of the complete line at the start of `rest` if it passes unchanged and ends
/// nothing: it does not start with `.`, CR or LF (so it is neither the terminator nor the
/// empty line ending the headers) and, under strict, its only CR is the one of its CRLF.
/// `None` when the line is not complete in `rest` or needs the byte-by-byte path.
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

/// The length of the run of complete ordinary lines (see [`ordinary_line`]) at the start of
/// `rest`: after one, the body is at a line start again, so the next is checked at once
/// rather than through the byte loop of [`Session::data_bytes`] (bulk bodies are mostly runs
/// of such lines).
fn ordinary_lines(rest: &[u8], strict: bool) -> usize {
    let mut n = 0;
    while let Some(len) = rest.get(n..).and_then(|r| ordinary_line(r, strict)) {
        n += len;
    }
    n
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
        while let Some(rest) = data.get(k..).filter(|r| !r.is_empty()) {
            let ClientState::Data(d) = &mut self.client else {
                return k;
            };
            // A whole ordinary line at a line start passes as one run, and so does the middle
            // of a line (not under asa, whose line limits are checked byte by byte).
            if d.phase == BodyPhase::Start && !d.pending_cr && !asa {
                let n = ordinary_lines(rest, strict);
                if n > 0 {
                    ops::copy(&mut out.to_server, n);
                    // What `body_line_end` does after a line that was neither empty nor `.`.
                    d.len = 0;
                    d.last_cr = false;
                    d.long_logged = false;
                    k += n;
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
                if run > 0 {
                    ops::copy(&mut out.to_server, run);
                    d.len += run;
                    d.last_cr = rest.get(run - 1) == Some(&CR);
                    k += run;
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
    use super::{ordinary_line, ordinary_lines};

    #[test]
    fn ordinary_lines_pass_whole_and_everything_else_goes_byte_by_byte() {
        // strict: a line whose only CR is its CRLF's.
        assert_eq!(ordinary_line(b"abc\r\nnext", true), Some(5));
        assert_eq!(ordinary_line(b"a\r\n", true), Some(3));
        // strict: bare CR, bare LF, CR at the end of what we have: byte by byte.
        assert_eq!(ordinary_line(b"ab\rc\r\n", true), None);
        assert_eq!(ordinary_line(b"abc\nx", true), None);
        assert_eq!(ordinary_line(b"abc\r", true), None);
        // Other profiles: any line up to its LF, a CR inside is just a byte.
        assert_eq!(ordinary_line(b"ab\rc\n.", false), Some(5));
        assert_eq!(ordinary_line(b"abc\r\n", false), Some(5));
        // Never the terminator, an empty line, or an incomplete line.
        for strict in [true, false] {
            assert_eq!(ordinary_line(b".\r\n", strict), None);
            assert_eq!(ordinary_line(b"..x\r\n", strict), None);
            assert_eq!(ordinary_line(b"\r\n", strict), None);
            assert_eq!(ordinary_line(b"\n", strict), None);
            assert_eq!(ordinary_line(b"abc", strict), None);
            assert_eq!(ordinary_line(b"", strict), None);
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
}
