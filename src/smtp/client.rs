//! The client-to-server direction: command lines, AUTH continuations, DATA bodies, BDAT
//! chunks, and what is dropped after STARTTLS.

use super::data::DataLine;
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
    /// Bytes held undecided.
    pub(crate) fn held(&self) -> usize {
        match self {
            ClientState::Command(l) => l.head.len() + usize::from(l.pending_cr),
            ClientState::Data(d) => usize::from(d.pending_cr()),
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
    len: usize,
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
        } else if self.len < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        } else {
            self.len = self.buf.len();
        }
    }

    /// The bytes typed so far (capped).
    fn raw(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
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

/// A command line in progress.
#[derive(Debug, Default)]
pub(crate) struct CmdLine {
    /// Held undecided bytes (the verb so far; asa/strict: the whole line so far).
    head: Vec<u8>,
    /// Set once the verb is decided (PIX profiles): how the rest streams.
    action: Option<LineAction>,
    /// Masking: a CR held until we know whether it ends the line.
    pending_cr: bool,
    verb: VerbAcc,
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

/// The BDAT chunk size, if the line has a valid one.
fn bdat_size(line: &[u8]) -> Option<u64> {
    let rest = line.get(5..)?;
    let digits: &[u8] = {
        let start = rest.iter().position(|&b| b != b' ')?;
        let rest = rest.get(start..)?;
        let end = rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        rest.get(..end)?
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The byte range of the address in a MAIL/RCPT line: after the first `:`, spaces skipped,
/// `<...>` (brackets excluded) or up to the next space / line end.
fn address_range(line: &[u8]) -> Option<(usize, usize)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let mut start = colon + 1;
    while line.get(start) == Some(&b' ') {
        start += 1;
    }
    if line.get(start) == Some(&b'<') {
        start += 1;
        let len = line
            .get(start..)?
            .iter()
            .position(|&b| b == b'>' || b == CR || b == LF);
        let end = start + len.unwrap_or(line.len() - start);
        Some((start, end))
    } else {
        let len = line
            .get(start..)?
            .iter()
            .position(|&b| b == b' ' || b == CR || b == LF);
        Some((start, start + len.unwrap_or(line.len() - start)))
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
        let holds = self.policy.holds_command_lines();
        for (k, &b) in data.iter().enumerate() {
            let ClientState::Command(line) = &mut self.client else {
                return k;
            };
            if line.head.is_empty() && !self.client_not_smtp {
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
            line.head.push(b);
            line.verb.push(b);
            if holds {
                if line.head.len() > MAX_COMMAND_LINE {
                    self.do_reset(ResetReason::CommandLineTooLong, out);
                    return k + 1;
                }
                if b == LF {
                    self.whole_line(out);
                    return k + 1;
                }
                continue;
            }
            match self.verb_verdict() {
                VerbVerdict::Undecided => {}
                verdict => {
                    let allowed = matches!(verdict, VerbVerdict::Allowed);
                    let ended = self.decide_head(allowed, out);
                    if ended {
                        return k + 1;
                    }
                    let rest = data.get(k + 1..).unwrap_or(&[]);
                    return k + 1 + self.stream_command_after_decision(rest, out);
                }
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

    /// PIX profiles: the verdict on the verb held so far.
    fn verb_verdict(&self) -> VerbVerdict {
        let ClientState::Command(line) = &self.client else {
            return VerbVerdict::Undecided;
        };
        let acc = &line.verb;
        if acc.done {
            return if acc.len <= MAX_VERB && self.policy.verb_allowed(acc.verb()) {
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

    /// PIX profiles: emits the held head once the verb is decided; returns true if the line
    /// ended with it.
    fn decide_head(&mut self, allowed: bool, out: &mut Output) -> bool {
        let deletes = self.policy.deletes_blocked();
        let ClientState::Command(line) = &mut self.client else {
            return false;
        };
        let head = std::mem::take(&mut line.head);
        let ended = head.last() == Some(&LF);
        let action = if allowed {
            LineAction::Copy
        } else if deletes {
            LineAction::Delete
        } else {
            LineAction::Mask
        };
        line.action = Some(action);
        match action {
            LineAction::Copy => ops::copy(&mut out.to_server, head.len()),
            LineAction::Delete => ops::delete(&mut out.to_server, head.len()),
            LineAction::Mask => {
                // A trailing CR stays held: it is the line end if LF follows.
                let (body, cr) = match head.split_last() {
                    Some((&CR, body)) if !ended => (body, true),
                    _ => (&head[..], false),
                };
                ops::same_len(&mut out.to_server, body, &mask_line(body, ended));
                line.pending_cr = cr;
            }
        }
        if ended {
            self.command_line_end(allowed, None, out);
        }
        ended
    }

    /// PIX profiles: the rest of a decided line streams; returns bytes consumed.
    fn stream_command(&mut self, action: LineAction, data: &[u8], out: &mut Output) -> usize {
        let allowed = action == LineAction::Copy;
        let lf = data.iter().position(|&b| b == LF);
        let upto = lf.map_or(data.len(), |p| p + 1);
        let chunk = data.get(..upto).unwrap_or(&[]);
        if let ClientState::Command(line) = &mut self.client {
            for &b in chunk {
                line.verb.push(b);
            }
        }
        match action {
            LineAction::Copy => ops::copy(&mut out.to_server, chunk.len()),
            LineAction::Delete => ops::delete(&mut out.to_server, chunk.len()),
            LineAction::Mask => self.mask_stream(chunk, out),
        }
        if lf.is_some() {
            self.command_line_end(allowed, None, out);
        }
        upto
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

    /// asa / strict: the whole line is held; decide and emit it.
    fn whole_line(&mut self, out: &mut Output) {
        let ClientState::Command(line) = &mut self.client else {
            return;
        };
        let head = std::mem::take(&mut line.head);
        let acc = line.verb;
        let ended = head.last() == Some(&LF);
        let allowed = acc.len <= MAX_VERB && self.policy.verb_allowed(acc.verb());
        if !allowed {
            ops::same_len(&mut out.to_server, &head, &mask_line(&head, ended));
        } else {
            let kind = kind_of(acc.verb());
            let verb = acc.verb();
            let is_mail = verb.eq_ignore_ascii_case(b"MAIL");
            let is_rcpt = verb.eq_ignore_ascii_case(b"RCPT");
            let mut line_out = head.clone();
            if self.policy.profile == super::Profile::Asa
                && (is_mail || is_rcpt)
                && !self.asa_address(&mut line_out, is_mail, is_rcpt, out)
            {
                return;
            }
            ops::same_len(&mut out.to_server, &head, &line_out);
            if ended {
                let bdat = (kind == CmdKind::Bdat).then(|| bdat_size(&head)).flatten();
                self.command_line_end(true, bdat, out);
            }
            return;
        }
        if ended {
            self.command_line_end(false, None, out);
        }
    }

    /// asa's MAIL/RCPT rules on a held line: limits (false: the connection was reset) and
    /// `|` → space in the address.
    fn asa_address(
        &mut self,
        line: &mut [u8],
        is_mail: bool,
        is_rcpt: bool,
        out: &mut Output,
    ) -> bool {
        let range = address_range(line);
        if is_mail && range.is_some_and(|(s, e)| e - s > MAX_SENDER) {
            self.do_reset(ResetReason::SenderAddressTooLong, out);
            return false;
        }
        if is_rcpt {
            self.rcpt_count += 1;
            if self.rcpt_count > MAX_RCPT {
                self.do_reset(ResetReason::TooManyRecipients, out);
                return false;
            }
        }
        if let Some(addr) = range.and_then(|(s, e)| line.get_mut(s..e)) {
            let mut replaced = false;
            for b in addr.iter_mut().filter(|b| **b == b'|') {
                *b = b' ';
                replaced = true;
            }
            if replaced {
                out.events.push(Event::PipeReplaced);
                log::info!("smtp: '|' in a MAIL/RCPT address replaced by a space");
            }
        }
        true
    }

    /// A complete command line was decided: count it, queue its reply, change state.
    fn command_line_end(&mut self, allowed: bool, bdat: Option<u64>, out: &mut Output) {
        let ClientState::Command(line) = &mut self.client else {
            return;
        };
        let acc = line.verb;
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
                    let allowed = acc.len <= MAX_VERB && self.policy.verb_allowed(acc.verb());
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
            ClientState::Data(d) if d.pending_cr() => {
                ops::copy(&mut out.to_server, 1);
                ops::insert(&mut out.to_server, b"\n");
            }
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

    #[test]
    fn bdat_sizes() {
        assert_eq!(bdat_size(b"BDAT 12 LAST\r\n"), Some(12));
        assert_eq!(bdat_size(b"BDAT  7\r\n"), Some(7));
        assert_eq!(bdat_size(b"BDAT x\r\n"), None);
        assert_eq!(bdat_size(b"BDAT\r\n"), None);
        assert_eq!(bdat_size(b"BDAT 99999999999999999999999\r\n"), None);
    }

    #[test]
    fn address_ranges() {
        let l = b"MAIL FROM:<a|b@x> SIZE=1\r\n";
        assert_eq!(address_range(l), Some((11, 16)));
        let l = b"RCPT TO: c|d\r\n";
        assert_eq!(address_range(l), Some((9, 12)));
        assert_eq!(address_range(b"MAIL\r\n"), None);
    }

    #[test]
    fn masks_keep_line_end() {
        assert_eq!(mask_line(b"EXPN a\r\n", true), b"XXXXXX\r\n");
        assert_eq!(mask_line(b"EXPN\n", true), b"XXXX\n");
        assert_eq!(mask_line(b"EX", false), b"XX");
    }
}
