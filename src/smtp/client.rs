//! The client-to-server direction: command lines, AUTH continuations, DATA bodies, BDAT
//! chunks, and what is dropped after STARTTLS.

use super::data::DataLine;
use super::held::HeldBuf;
use super::ops;
use super::policy::MAX_VERB;
use super::session::{CmdKind, Expect, Session};
use super::{Event, Output, ResetReason, VerbName};

const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// RFC 5321 command line limit, CRLF included (asa, strict).
pub(crate) const MAX_COMMAND_LINE: usize = 512;
/// asa: more RCPT commands than this in one transaction reset the connection.
const MAX_RCPT: u32 = 100;
/// asa: a MAIL FROM address longer than this resets the connection.
const MAX_SENDER: usize = 320;

/// Where the client's stream is.
#[derive(Debug)]
pub(crate) enum ClientState {
    /// Command mode, inside (or at the start of) a command line.
    Command(CmdLine),
    /// Inside an AUTH continuation line (after a 334): copied to its LF.
    AuthContinuation,
    /// Inside a message body (after the server's 354).
    Data(DataLine),
    /// Inside a BDAT chunk: this many bytes still pass by length.
    Bdat(u64),
    /// STARTTLS sent, its reply not yet seen: everything is dropped.
    StartTlsWait { dropped: usize },
}

impl Default for ClientState {
    fn default() -> Self {
        ClientState::Command(CmdLine::default())
    }
}

impl ClientState {
    /// Heap bytes owned (O(1)): a command line's held verb, freed once the verb is decided.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            ClientState::Command(l) => l.head.heap_bytes(),
            _ => 0,
        }
    }

    /// Bytes held undecided.
    pub(crate) fn held(&self) -> usize {
        match self {
            ClientState::Command(l) => l.head.len() + usize::from(l.pending_cr),
            _ => 0,
        }
    }
}

/// What happens to the rest of a command line once its verb is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineAction {
    Copy,
    Mask,
    Delete,
}

/// The first word of a line, as typed (at most [`MAX_VERB`] + 1 bytes kept).
#[derive(Clone, Copy, Debug)]
struct VerbAcc {
    buf: [u8; MAX_VERB + 1],
    /// Bytes of `buf` used (at most `MAX_VERB + 1`, so a byte).
    len: u8,
    /// The word ended (at SP or LF).
    done: bool,
    /// It ended at the line's LF (so a CR just before it is the line end, not the verb's).
    ended_by_lf: bool,
}

impl Default for VerbAcc {
    fn default() -> Self {
        VerbAcc {
            buf: [0; MAX_VERB + 1],
            len: 0,
            done: false,
            ended_by_lf: false,
        }
    }
}

impl VerbAcc {
    fn push(&mut self, b: u8) {
        if self.done {
            return;
        }
        if b == b' ' || b == LF {
            self.done = true;
            self.ended_by_lf = b == LF;
        } else if let Some(slot) = self.buf.get_mut(usize::from(self.len)) {
            *slot = b;
            self.len += 1;
        }
    }

    /// The bytes typed so far (capped).
    fn raw(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The verb: the word, minus the CR of a CRLF line end.
    fn verb(&self) -> &[u8] {
        let raw = self.raw();
        match raw.split_last() {
            Some((&CR, rest)) if self.ended_by_lf => rest,
            _ => raw,
        }
    }

    fn name(&self) -> VerbName {
        VerbName::new(self.verb())
    }
}

/// Where a streamed MAIL/RCPT line is relative to its address (asa), mirroring the rule:
/// the address follows the first `:`, spaces skipped; it is `<...>` (brackets excluded, up
/// to `>` or the line end) or, without `<`, up to the next space or line end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddrPos {
    BeforeColon,
    AfterColon,
    /// Inside `<...>`, this many address bytes so far.
    Bracketed(usize),
    /// Inside an address without `<`, this many bytes so far.
    Bare(usize),
    Done,
}

/// asa's streamed MAIL/RCPT state: a few bytes, whatever the line's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AddrParse {
    pos: AddrPos,
    is_mail: bool,
    /// A `|` of this address was already replaced (one event per line).
    replaced: bool,
}

/// The BDAT chunk size as it streams: `BDAT`, SP, spaces, 1 to 19 digits (anything after
/// the digits, `LAST` included, does not matter to the filter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BdatParse {
    Spaces,
    Digits { value: u64, count: u8 },
    Done(Option<u64>),
}

/// Most digits a BDAT size may have (fits in a `u64`).
const MAX_BDAT_DIGITS: u8 = 19;

impl BdatParse {
    fn push(&mut self, b: u8) {
        *self = match *self {
            BdatParse::Spaces if b == b' ' => BdatParse::Spaces,
            BdatParse::Spaces if b.is_ascii_digit() => BdatParse::Digits {
                value: u64::from(b - b'0'),
                count: 1,
            },
            BdatParse::Spaces => BdatParse::Done(None),
            BdatParse::Digits { .. } if b.is_ascii_digit() => self.more_digits(b),
            BdatParse::Digits { value, .. } => BdatParse::Done(Some(value)),
            done @ BdatParse::Done(_) => done,
        };
    }

    fn more_digits(&self, b: u8) -> BdatParse {
        match *self {
            BdatParse::Digits { value, count } if count < MAX_BDAT_DIGITS => BdatParse::Digits {
                value: value.saturating_mul(10).saturating_add(u64::from(b - b'0')),
                count: count + 1,
            },
            _ => BdatParse::Done(None),
        }
    }

    /// The size, once the line has ended.
    fn size(&self) -> Option<u64> {
        match *self {
            BdatParse::Spaces => None,
            BdatParse::Digits { value, .. } => Some(value),
            BdatParse::Done(v) => v,
        }
    }
}

/// What one streamed argument byte becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArgStep {
    Copy,
    /// asa: a `|` in the address, sent as a space; `first`: the first one of this line.
    Pipe {
        first: bool,
    },
    /// asa: the sender address just outgrew [`MAX_SENDER`]; this byte is not sent.
    SenderTooLong,
}

/// The bounded parse state of an allowed line's arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ArgParse {
    /// Nothing in the arguments matters.
    #[default]
    None,
    Address(AddrParse),
    Bdat(BdatParse),
}

impl ArgParse {
    /// Takes the next argument byte.
    fn push(&mut self, b: u8) -> ArgStep {
        match self {
            ArgParse::None => ArgStep::Copy,
            ArgParse::Bdat(p) => {
                p.push(b);
                ArgStep::Copy
            }
            ArgParse::Address(a) => a.push(b),
        }
    }

    /// True if the remaining bytes of the line can be copied without looking at them.
    fn settled(&self) -> bool {
        match self {
            ArgParse::None => true,
            ArgParse::Bdat(p) => matches!(p, BdatParse::Done(_)),
            ArgParse::Address(a) => a.pos == AddrPos::Done,
        }
    }

    fn bdat_size(&self) -> Option<u64> {
        match self {
            ArgParse::Bdat(p) => p.size(),
            _ => None,
        }
    }
}

impl AddrParse {
    fn new(is_mail: bool) -> AddrParse {
        AddrParse {
            pos: AddrPos::BeforeColon,
            is_mail,
            replaced: false,
        }
    }

    fn push(&mut self, b: u8) -> ArgStep {
        let ends = |b: u8, end: u8| b == end || b == CR || b == LF;
        self.pos = match self.pos {
            AddrPos::BeforeColon if b == b':' => AddrPos::AfterColon,
            AddrPos::AfterColon if b == b' ' => AddrPos::AfterColon,
            AddrPos::AfterColon if b == b'<' => AddrPos::Bracketed(0),
            AddrPos::AfterColon if ends(b, b' ') => AddrPos::Done,
            AddrPos::AfterColon => return self.address_byte(b, AddrPos::Bare(0)),
            AddrPos::Bracketed(_) if ends(b, b'>') => AddrPos::Done,
            AddrPos::Bare(_) if ends(b, b' ') => AddrPos::Done,
            pos @ (AddrPos::Bracketed(_) | AddrPos::Bare(_)) => return self.address_byte(b, pos),
            pos => pos,
        };
        ArgStep::Copy
    }

    /// A byte inside the address (`pos`: where it was before this byte).
    fn address_byte(&mut self, b: u8, pos: AddrPos) -> ArgStep {
        let (n, next): (usize, fn(usize) -> AddrPos) = match pos {
            AddrPos::Bracketed(n) => (n + 1, AddrPos::Bracketed),
            AddrPos::Bare(n) => (n + 1, AddrPos::Bare),
            _ => return ArgStep::Copy,
        };
        self.pos = next(n);
        if self.is_mail && n > MAX_SENDER {
            return ArgStep::SenderTooLong;
        }
        if b == b'|' {
            let first = !self.replaced;
            self.replaced = true;
            return ArgStep::Pipe { first };
        }
        ArgStep::Copy
    }
}

/// A command line in progress.
#[derive(Debug, Default)]
pub(crate) struct CmdLine {
    /// Held undecided bytes: the verb so far (at most [`MAX_VERB`] + 1 bytes).
    head: HeldBuf,
    /// Set once the verb is decided: how the rest streams.
    action: Option<LineAction>,
    /// Masking: a CR held until we know whether it ends the line.
    pending_cr: bool,
    verb: VerbAcc,
    /// Bytes of this line fed so far, held ones included (asa/strict's 512-byte limit).
    len: usize,
    /// What is parsed from the arguments of an allowed line as they stream.
    args: ArgParse,
}

impl CmdLine {
    fn at_start(&self) -> bool {
        self.head.is_empty() && self.action.is_none() && !self.pending_cr
    }
}

/// The verdict on a verb so far.
enum VerbVerdict {
    Undecided,
    Allowed,
    Blocked,
}

/// The kind of an allowed verb.
fn kind_of(verb: &[u8]) -> CmdKind {
    let is = |v: &str| verb.eq_ignore_ascii_case(v.as_bytes());
    if is("DATA") {
        CmdKind::Data
    } else if is("BDAT") {
        CmdKind::Bdat
    } else if is("STARTTLS") {
        CmdKind::StartTls
    } else if is("AUTH") {
        CmdKind::Auth
    } else if is("EHLO") {
        CmdKind::Ehlo
    } else {
        CmdKind::Other
    }
}

/// X for every byte of a line but its terminating LF or CRLF (`terminated`: the line ends
/// with LF).
fn mask_line(line: &[u8], terminated: bool) -> Vec<u8> {
    let keep = if !terminated {
        0
    } else if line.ends_with(b"\r\n") {
        2
    } else {
        1
    };
    let masked = line.len().saturating_sub(keep);
    let mut v = vec![b'X'; masked];
    v.extend_from_slice(line.get(masked..).unwrap_or(&[]));
    v
}

/// How the arguments of an allowed `verb` are parsed as they stream: BDAT's size (every
/// profile allowing BDAT), MAIL/RCPT's address under asa; nothing for other verbs.
fn args_of(verb: &[u8], asa: bool) -> ArgParse {
    let is = |v: &[u8]| verb.eq_ignore_ascii_case(v);
    if is(b"BDAT") {
        ArgParse::Bdat(BdatParse::Spaces)
    } else if asa && (is(b"MAIL") || is(b"RCPT")) {
        ArgParse::Address(AddrParse::new(is(b"MAIL")))
    } else {
        ArgParse::None
    }
}

impl Session {
    pub(crate) fn feed_client(&mut self, data: &[u8], out: &mut Output) {
        let mut i = 0;
        while i < data.len() && self.reset.is_none() && !self.tls {
            self.client_line_start_transitions();
            let rest = data.get(i..).unwrap_or(&[]);
            let n = match self.client {
                ClientState::Command(_) => self.command_bytes(rest, out),
                ClientState::AuthContinuation => self.auth_continuation_bytes(rest, out),
                ClientState::Data(_) => self.data_bytes(rest, out),
                ClientState::Bdat(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    ops::copy(&mut out.to_server, n);
                    let left = left - n as u64;
                    self.client = if left == 0 {
                        ClientState::default()
                    } else {
                        ClientState::Bdat(left)
                    };
                    n
                }
                ClientState::StartTlsWait { ref mut dropped } => {
                    *dropped += rest.len();
                    ops::delete(&mut out.to_server, rest.len());
                    rest.len()
                }
            };
            i += n;
        }
        if self.tls && i < data.len() {
            ops::copy(&mut out.to_server, data.len() - i);
        }
    }

    /// At a line start, the server's 354 or 334 decides what the next line is.
    fn client_line_start_transitions(&mut self) {
        let ClientState::Command(line) = &self.client else {
            return;
        };
        if !line.at_start() {
            return;
        }
        if self.data_accepted {
            self.data_accepted = false;
            self.client = ClientState::Data(DataLine::new());
        } else if self.auth_continuation {
            self.auth_continuation = false;
            self.client = ClientState::AuthContinuation;
        }
    }

    /// Command mode: consumes bytes up to and including a line end; returns how many.
    fn command_bytes(&mut self, data: &[u8], out: &mut Output) -> usize {
        let ClientState::Command(line) = &mut self.client else {
            return 0;
        };
        if let Some(action) = line.action {
            return self.stream_command(action, data, out);
        }
        // The verb's bytes are read where they lie and held (pushed to `line.head`) only if
        // the input ends before the verb is decided: a whole verb costs no allocation.
        for (k, &b) in data.iter().enumerate() {
            let ClientState::Command(line) = &mut self.client else {
                return k;
            };
            if k == 0 && line.head.is_empty() && !self.client_not_smtp {
                let binary = !(b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | CR | LF));
                let before_greeting = self.queue.front() == Some(&Expect::Greeting);
                if binary || before_greeting {
                    self.client_not_smtp = true;
                    out.events.push(Event::NotSmtp);
                    log::info!(
                        "smtp: client {}",
                        if binary {
                            "sends non-SMTP bytes"
                        } else {
                            "talks before the greeting"
                        }
                    );
                }
            }
            let ClientState::Command(line) = &mut self.client else {
                return k;
            };
            // The head is at most MAX_VERB + 1 bytes (then the verb is decided), well within
            // the 512-byte line limit, which is therefore checked only as the line streams.
            line.verb.push(b);
            line.len += 1;
            match self.verb_verdict() {
                VerbVerdict::Undecided => {}
                verdict => {
                    let allowed = matches!(verdict, VerbVerdict::Allowed);
                    let fresh = data.get(..=k).unwrap_or_default();
                    let line_done = self.decide_head(allowed, fresh, out);
                    if line_done {
                        return k + 1;
                    }
                    let rest = data.get(k + 1..).unwrap_or(&[]);
                    return k + 1 + self.stream_command_after_decision(rest, out);
                }
            }
        }
        if let ClientState::Command(line) = &mut self.client {
            // Byte by byte, as if each had been held as it came (the same capacity).
            for &b in data {
                line.head.push(b);
            }
        }
        data.len()
    }

    fn stream_command_after_decision(&mut self, rest: &[u8], out: &mut Output) -> usize {
        match &self.client {
            ClientState::Command(CmdLine {
                action: Some(a), ..
            }) => {
                let a = *a;
                self.stream_command(a, rest, out)
            }
            _ => 0,
        }
    }

    /// The verdict on the verb held so far.
    fn verb_verdict(&self) -> VerbVerdict {
        let ClientState::Command(line) = &self.client else {
            return VerbVerdict::Undecided;
        };
        let acc = &line.verb;
        if acc.done {
            return if usize::from(acc.len) <= MAX_VERB && self.policy.verb_allowed(acc.verb()) {
                VerbVerdict::Allowed
            } else {
                VerbVerdict::Blocked
            };
        }
        let raw = acc.raw();
        if raw.len() > MAX_VERB {
            return VerbVerdict::Blocked;
        }
        match raw.split_last() {
            // A CR: the line end if LF follows, else a bare CR inside the verb.
            Some((&CR, before)) if !before.contains(&CR) && self.policy.verb_allowed(before) => {
                VerbVerdict::Undecided
            }
            Some((&CR, _)) => VerbVerdict::Blocked,
            _ if self.policy.verb_prefix_possible(raw) => VerbVerdict::Undecided,
            _ => VerbVerdict::Blocked,
        }
    }

    /// Emits the line's head (the held bytes, then `fresh`, the bytes of this input up to
    /// the one that decided the verb) and sets up how the rest of the line streams; returns
    /// true if the line ended with it or the connection was reset.
    fn decide_head(&mut self, allowed: bool, fresh: &[u8], out: &mut Output) -> bool {
        let was_reset = self.reset.is_some();
        if allowed && !self.count_rcpt(out) {
            // A new reset freed what was held; one already there left the head held.
            if let (true, ClientState::Command(line)) = (was_reset, &mut self.client) {
                for &b in fresh {
                    line.head.push(b);
                }
            }
            return true;
        }
        let deletes = self.policy.deletes_blocked();
        let asa = self.policy.profile == super::Profile::Asa;
        let ClientState::Command(line) = &mut self.client else {
            return false;
        };
        let held = std::mem::take(&mut line.head);
        let joined: Vec<u8>;
        let head: &[u8] = if held.is_empty() {
            fresh
        } else {
            joined = [&held[..], fresh].concat();
            &joined
        };
        let ended = head.last() == Some(&LF);
        let action = if allowed {
            LineAction::Copy
        } else if deletes {
            LineAction::Delete
        } else {
            LineAction::Mask
        };
        line.action = Some(action);
        if allowed {
            line.args = args_of(line.verb.verb(), asa);
        }
        match action {
            LineAction::Copy => ops::copy(&mut out.to_server, head.len()),
            LineAction::Delete => ops::delete(&mut out.to_server, head.len()),
            LineAction::Mask => {
                // A trailing CR stays held: it is the line end if LF follows.
                let (body, cr) = match head.split_last() {
                    Some((&CR, body)) if !ended => (body, true),
                    _ => (head, false),
                };
                ops::same_len(&mut out.to_server, body, &mask_line(body, ended));
                line.pending_cr = cr;
            }
        }
        if ended {
            self.command_line_end(allowed, out);
        }
        ended
    }

    /// asa: an allowed RCPT counts against the transaction's limit as soon as its verb is
    /// known; false if this one is over it (the connection was reset, nothing of it sent).
    fn count_rcpt(&mut self, out: &mut Output) -> bool {
        let ClientState::Command(line) = &self.client else {
            return true;
        };
        if self.policy.profile != super::Profile::Asa
            || !line.verb.verb().eq_ignore_ascii_case(b"RCPT")
        {
            return true;
        }
        self.rcpt_count += 1;
        if self.rcpt_count > MAX_RCPT {
            self.do_reset(ResetReason::TooManyRecipients, out);
            return false;
        }
        true
    }

    /// The rest of a decided line streams (asa/strict: up to the 512-byte limit); returns
    /// bytes consumed.
    fn stream_command(&mut self, action: LineAction, data: &[u8], out: &mut Output) -> usize {
        let limited = self.policy.limits_command_lines();
        let ClientState::Command(line) = &mut self.client else {
            return 0;
        };
        let lf = data.iter().position(|&b| b == LF);
        let mut upto = lf.map_or(data.len(), |p| p + 1);
        // asa/strict: byte 513 of a line (LF not among the first 512) resets the connection;
        // the 512 bytes before it have been sent, the server holds them as an unterminated
        // line it never executes.
        let room = MAX_COMMAND_LINE.saturating_sub(line.len);
        let over = limited && upto > room;
        if over {
            upto = room;
        }
        let chunk = data.get(..upto).unwrap_or(&[]);
        line.len += chunk.len();
        for &b in chunk {
            line.verb.push(b);
        }
        match action {
            LineAction::Copy => self.copy_args(chunk, out),
            LineAction::Delete => ops::delete(&mut out.to_server, chunk.len()),
            LineAction::Mask => self.mask_stream(chunk, out),
        }
        if self.reset.is_some() {
            return upto;
        }
        if over {
            self.do_reset(ResetReason::CommandLineTooLong, out);
            return upto + 1;
        }
        if lf.is_some() {
            self.command_line_end(action == LineAction::Copy, out);
        }
        upto
    }

    /// The bytes of an allowed line after its verb: copied, except what its argument parse
    /// rewrites (asa's `|`) or refuses (asa's sender limit: reset, the byte not sent).
    fn copy_args(&mut self, chunk: &[u8], out: &mut Output) {
        for (k, &b) in chunk.iter().enumerate() {
            let ClientState::Command(line) = &mut self.client else {
                return;
            };
            if line.args.settled() {
                ops::copy(&mut out.to_server, chunk.len() - k);
                return;
            }
            match line.args.push(b) {
                ArgStep::Copy => ops::copy(&mut out.to_server, 1),
                ArgStep::Pipe { first } => {
                    ops::replace(&mut out.to_server, b" ");
                    if first {
                        out.events.push(Event::PipeReplaced);
                        log::info!("smtp: '|' in a MAIL/RCPT address replaced by a space");
                    }
                }
                ArgStep::SenderTooLong => {
                    self.do_reset(ResetReason::SenderAddressTooLong, out);
                    return;
                }
            }
        }
    }

    /// Masks the bytes of a blocked line as they come, keeping the CRLF / LF line end.
    fn mask_stream(&mut self, chunk: &[u8], out: &mut Output) {
        let ClientState::Command(line) = &mut self.client else {
            return;
        };
        for &b in chunk {
            if line.pending_cr {
                line.pending_cr = false;
                if b == LF {
                    ops::copy(&mut out.to_server, 2);
                    continue;
                }
                ops::replace(&mut out.to_server, b"X");
            }
            match b {
                CR => line.pending_cr = true,
                LF => ops::copy(&mut out.to_server, 1),
                _ => ops::replace(&mut out.to_server, b"X"),
            }
        }
    }

    /// A complete command line was decided: count it, queue its reply, change state.
    fn command_line_end(&mut self, allowed: bool, out: &mut Output) {
        let ClientState::Command(line) = &mut self.client else {
            return;
        };
        let acc = line.verb;
        let bdat = line.args.bdat_size();
        let name = acc.name();
        self.client = ClientState::default();
        if !allowed {
            log::info!("smtp: blocked verb {name}");
            out.events.push(Event::VerbBlocked(name));
            if self.policy.deletes_blocked() {
                self.expect(Expect::Injected, out);
            } else {
                self.expect(Expect::Cmd(CmdKind::Other), out);
            }
            return;
        }
        log::debug!("smtp: allowed verb {name}");
        out.events.push(Event::CommandAllowed(name));
        let verb = acc.verb();
        let kind = kind_of(verb);
        if [&b"MAIL"[..], b"RSET", b"HELO", b"EHLO"]
            .iter()
            .any(|v| verb.eq_ignore_ascii_case(v))
        {
            self.rcpt_count = 0;
        }
        self.expect(Expect::Cmd(kind), out);
        match kind {
            CmdKind::StartTls => self.client = ClientState::StartTlsWait { dropped: 0 },
            CmdKind::Bdat => {
                if let Some(n) = bdat.filter(|&n| n > 0) {
                    out.events.push(Event::BdatChunk(n));
                    self.client = ClientState::Bdat(n);
                }
            }
            _ => {}
        }
    }

    /// An AUTH continuation line (after a 334): not a command, copied to its LF.
    fn auth_continuation_bytes(&mut self, data: &[u8], out: &mut Output) -> usize {
        match data.iter().position(|&b| b == LF) {
            Some(p) => {
                ops::copy(&mut out.to_server, p + 1);
                self.client = ClientState::default();
                self.expect(Expect::Cmd(CmdKind::AuthContinuation), out);
                p + 1
            }
            None => {
                ops::copy(&mut out.to_server, data.len());
                data.len()
            }
        }
    }

    /// FIN from the client: decide a held partial line (no reply is expected for it).
    pub(crate) fn finish_client(&mut self, out: &mut Output) {
        match std::mem::take(&mut self.client) {
            ClientState::Command(line) => {
                if let Some(action) = line.action {
                    if line.pending_cr {
                        match action {
                            LineAction::Mask => ops::replace(&mut out.to_server, b"X"),
                            LineAction::Delete => ops::delete(&mut out.to_server, 1),
                            LineAction::Copy => ops::copy(&mut out.to_server, 1),
                        }
                    }
                    let name = line.verb.name();
                    if action == LineAction::Copy {
                        out.events.push(Event::CommandAllowed(name));
                    } else {
                        out.events.push(Event::VerbBlocked(name));
                    }
                } else if !line.head.is_empty() {
                    let acc = line.verb;
                    let allowed =
                        usize::from(acc.len) <= MAX_VERB && self.policy.verb_allowed(acc.verb());
                    if allowed {
                        ops::copy(&mut out.to_server, line.head.len());
                        out.events.push(Event::CommandAllowed(acc.name()));
                    } else {
                        if self.policy.deletes_blocked() {
                            ops::delete(&mut out.to_server, line.head.len());
                        } else {
                            ops::same_len(
                                &mut out.to_server,
                                &line.head,
                                &mask_line(&line.head, false),
                            );
                        }
                        out.events.push(Event::VerbBlocked(acc.name()));
                    }
                }
            }
            ClientState::Data(d) if d.pending_cr() => ops::insert(&mut out.to_server, b"\n"),
            ClientState::StartTlsWait { dropped } if dropped > 0 => {
                out.events.push(Event::DroppedAfterStartTls(dropped));
            }
            _ => {}
        }
    }

    /// The server's reply to STARTTLS arrived: report what was dropped; `accepted`: 220.
    pub(crate) fn starttls_answered(&mut self, accepted: bool, out: &mut Output) {
        if let ClientState::StartTlsWait { dropped } = self.client {
            if dropped > 0 {
                out.events.push(Event::DroppedAfterStartTls(dropped));
                log::info!("smtp: dropped {dropped} client bytes sent after STARTTLS");
            }
            self.client = ClientState::default();
        }
        if accepted {
            self.tls = true;
            out.events.push(Event::TlsPassthrough);
            log::info!("smtp: STARTTLS accepted, passing through");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The BDAT size parsed from the bytes after `BDAT `, fed one at a time.
    fn bdat_size(args: &[u8]) -> Option<u64> {
        let mut p = BdatParse::Spaces;
        args.iter().for_each(|&b| p.push(b));
        p.size()
    }

    #[test]
    fn bdat_sizes() {
        assert_eq!(bdat_size(b"12 LAST\r\n"), Some(12));
        assert_eq!(bdat_size(b" 7\r\n"), Some(7));
        assert_eq!(bdat_size(b"7"), Some(7));
        assert_eq!(bdat_size(b"x\r\n"), None);
        assert_eq!(bdat_size(b"\r\n"), None);
        assert_eq!(
            bdat_size(b"9999999999999999999\r\n"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(bdat_size(b"99999999999999999999999\r\n"), None);
    }

    /// The steps of an address parse over the bytes after the verb's SP.
    fn addr_steps(args: &[u8], is_mail: bool) -> Vec<(usize, ArgStep)> {
        let mut p = AddrParse::new(is_mail);
        let steps = args.iter().map(|&b| p.push(b)).enumerate();
        steps.filter(|(_, s)| *s != ArgStep::Copy).collect()
    }

    #[test]
    fn pipes_replaced_only_inside_the_address() {
        let pipe = |first| ArgStep::Pipe { first };
        let steps = addr_steps(b"FROM:<a|b|@x> SIZE=1|\r\n", true);
        assert_eq!(steps, vec![(7, pipe(true)), (9, pipe(false))]);
        let steps = addr_steps(b"TO: c|d |\r\n", false);
        assert_eq!(steps, vec![(5, pipe(true))]);
        assert_eq!(addr_steps(b"|\r\n", false), vec![]);
        assert_eq!(addr_steps(b"TO:<a\r|b>\r\n", false), vec![]);
    }

    #[test]
    fn sender_limit_counts_address_bytes_only() {
        let line = |n: usize| [&b"FROM:<"[..], &vec![b'a'; n], b">\r\n"].concat();
        assert_eq!(addr_steps(&line(MAX_SENDER), true), vec![]);
        let too_long = addr_steps(&line(MAX_SENDER + 1), true);
        assert_eq!(too_long, vec![(6 + MAX_SENDER, ArgStep::SenderTooLong)]);
        // RCPT addresses have no such limit.
        assert_eq!(addr_steps(&line(MAX_SENDER + 1), false), vec![]);
    }

    #[test]
    fn masks_keep_line_end() {
        assert_eq!(mask_line(b"EXPN a\r\n", true), b"XXXXXX\r\n");
        assert_eq!(mask_line(b"EXPN\n", true), b"XXXX\n");
        assert_eq!(mask_line(b"EX", false), b"XX");
    }
}
