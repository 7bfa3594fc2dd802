//! asa and strict stream a command line once its verb is decided (issue 2: "hold back only
//! what is undecided"): a one-byte-per-segment client must never have more than a verb's
//! worth held, and the limits (512-byte line, asa's sender address and RCPT count, `|`) are
//! enforced on the streamed bytes, at the exact byte where they are crossed.

use std::sync::Arc;

use mailguard::smtp::{
    apply_ops, Dir, Event, Op, Output, PolicyConfig, Profile, ResetReason, Session, VerbName,
};

const C: Dir = Dir::ClientToServer;
const S: Dir = Dir::ServerToClient;
const GREET: &[u8] = b"220 mx ESMTP\r\n";

/// Drives a [`Session`] and records, per fed client byte, what is held and whether it reset.
struct Driver {
    session: Session,
    input_c: Vec<u8>,
    ops_c: Vec<Op>,
    events: Vec<Event>,
    /// Client bytes fed when the reset was asked for (the resetting byte included).
    reset_at: Option<(usize, ResetReason)>,
    /// The most client bytes held after any feed.
    max_held: usize,
}

impl Driver {
    fn new(profile: Profile) -> Driver {
        Driver {
            session: Session::new(Arc::new(PolicyConfig {
                profile,
                ..Default::default()
            })),
            input_c: Vec::new(),
            ops_c: Vec::new(),
            events: Vec::new(),
            reset_at: None,
            max_held: 0,
        }
    }

    /// Feeds `data` in chunks of `size` bytes.
    fn feed(&mut self, dir: Dir, data: &[u8], size: usize) {
        for chunk in data.chunks(size) {
            let mut out = Output::default();
            if dir == C {
                self.input_c.extend_from_slice(chunk);
            }
            self.session.feed(dir, chunk, &mut out);
            self.ops_c.append(&mut out.to_server);
            self.events.append(&mut out.events);
            if let (Some(r), None) = (out.reset, self.reset_at) {
                self.reset_at = Some((self.input_c.len(), r));
            }
            self.max_held = self.max_held.max(self.session.held(C));
        }
    }

    /// What the server has received so far.
    fn to_server(&self) -> Vec<u8> {
        let mut v = Vec::new();
        apply_ops(&self.input_c, &self.ops_c, &mut v);
        v
    }

    /// Client bytes consumed by ops so far.
    fn consumed(&self) -> usize {
        self.ops_c.iter().map(Op::consumed).sum()
    }

    /// Greeting, HELO and (if given) MAIL, each answered.
    fn open(profile: Profile, mail: Option<&[u8]>) -> Driver {
        let mut d = Driver::new(profile);
        d.feed(S, GREET, usize::MAX);
        d.feed(C, b"HELO c\r\n", usize::MAX);
        d.feed(S, b"250 ok\r\n", usize::MAX);
        if let Some(m) = mail {
            d.feed(C, m, usize::MAX);
            d.feed(S, b"250 ok\r\n", usize::MAX);
        }
        d
    }
}

fn allowed(verb: &str) -> Event {
    Event::CommandAllowed(VerbName::new(verb.as_bytes()))
}

/// `RCPT TO:<...>` of exactly `len` bytes, CRLF included.
fn long_rcpt(len: usize) -> Vec<u8> {
    let mut v = b"RCPT TO:<".to_vec();
    v.resize(len - 5, b'r');
    v.extend_from_slice(b"@x>\r\n");
    v
}

#[test]
fn long_allowed_line_one_byte_per_chunk_holds_only_the_verb() {
    let line = long_rcpt(400);
    for p in [Profile::Asa, Profile::Strict] {
        let mut d = Driver::open(p, Some(b"MAIL FROM:<a@x>\r\n"));
        let before = d.input_c.len();
        let mut held_after = Vec::new();
        for &b in &line {
            d.feed(C, &[b], 1);
            held_after.push(d.session.held(C));
            // Everything fed is either sent or held (and the held part is the verb).
            assert_eq!(d.consumed() + d.session.held(C), d.input_c.len(), "{p}");
        }
        // `R`, `RC`, `RCP`, `RCPT` held; the SP decides it, then nothing is held.
        assert_eq!(held_after[..5], [1, 2, 3, 4, 0], "{p}");
        assert!(
            held_after[5..].iter().all(|&h| h == 0),
            "{p}: {held_after:?}"
        );
        assert!(d.max_held <= 5, "{p}: held {}", d.max_held);
        assert_eq!(d.reset_at, None, "{p}");
        let sent = d.to_server();
        assert_eq!(sent.get(before..), Some(&line[..]), "{p}");
        assert_eq!(d.events.last(), Some(&allowed("RCPT")), "{p}");
    }
}

#[test]
fn long_allowed_line_is_sent_before_its_line_end() {
    // The first 300 bytes of a 400-byte line, no LF yet: all of it already reaches the server.
    let line = long_rcpt(400);
    for p in [Profile::Asa, Profile::Strict] {
        let mut d = Driver::open(p, Some(b"MAIL FROM:<a@x>\r\n"));
        let before = d.input_c.len();
        d.feed(C, &line[..300], 7);
        assert_eq!(d.session.held(C), 0, "{p}");
        assert_eq!(d.to_server().get(before..), Some(&line[..300]), "{p}");
        assert!(
            !d.events.contains(&allowed("RCPT")),
            "{p}: line not ended yet"
        );
    }
}

/// A message body is never held, whatever the chunking, under any profile: a chunk that
/// ends with the CR of a CRLF (a segment boundary there is common, about one full segment in
/// eighty of a body) reaches the server whole. Holding that CR would stall a classic-Nagle
/// client (RFC 896): its next small segment waits for an ACK of the CR, which the server
/// cannot give for a byte it never got. strict's bare CR / bare LF normalisation still
/// applies, decided when the next byte comes.
#[test]
fn message_body_is_streamed_without_holding_a_byte() {
    let body: &[u8] = b"Subject: x\r\n\r\nline one\r\nbare\rcr and bare\nlf\r\n..dot\r\n.\r\n";
    for p in [Profile::Pix51, Profile::Asa, Profile::Strict] {
        for size in [1, 2, 3, 5, 11] {
            let mut d = Driver::open(p, Some(b"MAIL FROM:<a@x>\r\n"));
            d.feed(C, b"RCPT TO:<b@x>\r\n", usize::MAX);
            d.feed(S, b"250 ok\r\n", usize::MAX);
            d.feed(C, b"DATA\r\n", usize::MAX);
            d.feed(S, b"354 go\r\n", usize::MAX);
            let before = d.to_server().len();
            for chunk in body.chunks(size) {
                d.feed(C, chunk, usize::MAX);
                assert_eq!(d.session.held(C), 0, "{p} chunks of {size}");
                assert_eq!(d.consumed(), d.input_c.len(), "{p} chunks of {size}");
            }
            let want: &[u8] = if p == Profile::Strict {
                b"Subject: x\r\n\r\nline one\r\nbare\r\ncr and bare\r\nlf\r\n..dot\r\n.\r\n"
            } else {
                body
            };
            assert_eq!(
                d.to_server().get(before..),
                Some(want),
                "{p} chunks of {size}"
            );
            assert!(d.events.contains(&Event::DataEnded), "{p} chunks of {size}");
        }
    }
}

/// A 600-byte line resets when byte 513 arrives; the 512 bytes before it have been sent.
#[test]
fn line_of_600_resets_at_byte_513() {
    let allowed_line = long_rcpt(600);
    let mut blocked_line = b"EXPN ".to_vec();
    blocked_line.resize(598, b'e');
    blocked_line.extend_from_slice(b"\r\n");
    for p in [Profile::Asa, Profile::Strict] {
        for (line, expect) in [
            (&allowed_line, allowed_line[..512].to_vec()),
            (&blocked_line, vec![b'X'; 512]),
        ] {
            for size in [1, 5, 512, 600] {
                let mut d = Driver::open(p, Some(b"MAIL FROM:<a@x>\r\n"));
                let before = d.input_c.len();
                d.feed(C, line, size);
                // The reset comes with the chunk holding byte 513.
                let fed = 513usize.div_ceil(size).saturating_mul(size).min(600);
                assert_eq!(
                    d.reset_at,
                    Some((before + fed, ResetReason::CommandLineTooLong)),
                    "{p} chunk {size}"
                );
                assert_eq!(d.to_server().get(before..), Some(&expect[..]), "{p} {size}");
                assert!(d.max_held <= 5, "{p}: held {}", d.max_held);
            }
            // One byte per chunk: byte 512 is fine, byte 513 resets.
            let mut d = Driver::open(p, Some(b"MAIL FROM:<a@x>\r\n"));
            let before = d.input_c.len();
            d.feed(C, &line[..512], 1);
            assert_eq!(d.reset_at, None, "{p}");
            d.feed(C, &line[512..513], 1);
            assert_eq!(
                d.reset_at,
                Some((before + 513, ResetReason::CommandLineTooLong))
            );
            assert_eq!(
                d.events.last(),
                Some(&Event::Reset(ResetReason::CommandLineTooLong))
            );
        }
    }
}

/// 512 bytes CRLF included pass; a line whose LF is byte 513 is too long. Its CR (byte 512)
/// was already sent if the line was allowed, still held (so never sent) if it was masked.
#[test]
fn line_limit_counts_the_crlf() {
    for p in [Profile::Asa, Profile::Strict] {
        for verb in [&b"NOOP "[..], b"EXPN "] {
            let mut ok = verb.to_vec();
            ok.resize(510, b'a');
            ok.extend_from_slice(b"\r\n");
            let mut d = Driver::open(p, None);
            d.feed(C, &ok, 1);
            assert_eq!(d.reset_at, None, "{p}");

            let mut long = ok.clone();
            long.insert(5, b'a');
            let mut d = Driver::open(p, None);
            let before = d.input_c.len();
            d.feed(C, &long, 1);
            assert_eq!(
                d.reset_at,
                Some((before + 513, ResetReason::CommandLineTooLong)),
                "{p}"
            );
            let expect = if verb == b"NOOP " {
                long[..512].to_vec()
            } else {
                vec![b'X'; 511]
            };
            assert_eq!(d.to_server().get(before..), Some(&expect[..]), "{p}");
        }
    }
}

/// asa's `|` → space, with the `|` at every position of a chunk boundary.
#[test]
fn asa_pipe_replaced_across_chunk_boundaries() {
    let mail: &[u8] = b"MAIL FROM:<a|b@x> BODY=8BIT|\r\n";
    let rcpt: &[u8] = b"RCPT TO:c|d|e@x\r\n";
    let want: &[u8] = b"MAIL FROM:<a b@x> BODY=8BIT|\r\nRCPT TO:c d e@x\r\n";
    for split in 1..mail.len() + rcpt.len() {
        let all = [mail, rcpt].concat();
        let (a, b) = all.split_at(split);
        for size in [1, 2, 3, usize::MAX] {
            let mut d = Driver::open(Profile::Asa, None);
            let before = d.input_c.len();
            d.feed(C, a, size);
            d.feed(C, b, size);
            assert_eq!(
                d.to_server().get(before..),
                Some(want),
                "split {split} size {size}"
            );
            let pipes = d.events.iter().filter(|e| **e == Event::PipeReplaced);
            assert_eq!(pipes.count(), 2, "one event per line, split {split}");
            assert!(d.max_held <= 5);
        }
    }
    // Other profiles leave `|` alone.
    let mut d = Driver::open(Profile::Strict, None);
    let before = d.input_c.len();
    d.feed(C, mail, 1);
    assert_eq!(d.to_server().get(before..), Some(mail));
}

/// asa: the sender address resets at its 321st byte, everything before it sent.
#[test]
fn asa_sender_limit_resets_at_the_321st_address_byte() {
    let mut mail = b"MAIL FROM:<".to_vec();
    mail.resize(11 + 400, b's');
    mail.extend_from_slice(b">\r\n");
    for size in [1, 13, usize::MAX] {
        let mut d = Driver::open(Profile::Asa, None);
        let before = d.input_c.len();
        d.feed(C, &mail, size);
        let (at, reason) = d.reset_at.expect("reset");
        assert_eq!(reason, ResetReason::SenderAddressTooLong);
        if size == 1 {
            assert_eq!(at, before + 11 + 321);
        }
        assert_eq!(d.to_server().get(before..), Some(&mail[..11 + 320]));
        assert!(d.max_held <= 5);
    }
}

/// asa: the 101st RCPT resets as soon as its verb is known; none of it reaches the server.
#[test]
fn asa_101st_rcpt_resets_at_its_verb() {
    let mut d = Driver::open(Profile::Asa, Some(b"MAIL FROM:<a@x>\r\n"));
    for i in 0..100 {
        d.feed(C, format!("RCPT TO:<u{i}@x>\r\n").as_bytes(), 1);
        d.feed(S, b"250 ok\r\n", usize::MAX);
    }
    assert_eq!(d.reset_at, None);
    let sent = d.to_server().len();
    let before = d.input_c.len();
    d.feed(C, b"RCPT", 1);
    assert_eq!(d.reset_at, None, "RCPT alone is not yet a verb");
    d.feed(C, b" TO:<z@x>\r\n", 1);
    assert_eq!(
        d.reset_at,
        Some((before + 5, ResetReason::TooManyRecipients))
    );
    assert_eq!(d.to_server().len(), sent);
}

/// strict: BDAT's size is parsed from the streamed bytes however they are split.
#[test]
fn strict_bdat_size_parsed_while_streaming() {
    let cmd: &[u8] = b"BDAT 12 LAST\r\n";
    let chunk: &[u8] = b"EXPN x\r\n.\r\n\r\n";
    let script = [cmd, &chunk[..12], b"NOOP\r\n"].concat();
    for size in [1, 2, 6, usize::MAX] {
        let mut d = Driver::open(Profile::Strict, Some(b"MAIL FROM:<a@x>\r\n"));
        d.feed(C, b"RCPT TO:<b@x>\r\n", usize::MAX);
        d.feed(S, b"250 ok\r\n", usize::MAX);
        let before = d.input_c.len();
        d.feed(C, &script, size);
        assert!(d.events.contains(&Event::BdatChunk(12)), "size {size}");
        // The chunk passes by length (EXPN inside it is data), NOOP after it is a command.
        assert_eq!(
            d.to_server().get(before..),
            Some(&script[..]),
            "size {size}"
        );
        assert_eq!(d.events.last(), Some(&allowed("NOOP")), "size {size}");
        assert!(d.max_held <= 5);
    }
}
