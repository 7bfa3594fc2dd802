//! The server-to-client direction: replies matched to commands in order, greeting masking,
//! EHLO reply rewriting, and the reply codes that switch the client's state (354, 334, 220).

use super::held::HeldBuf;
use super::ops;
use super::policy::pix40_banner;
use super::session::{CmdKind, Expect, Session};
use super::{Event, Output, Profile, MAX_HELD};

const LF: u8 = b'\n';

/// A keyword longer than this is not one the policies know: it is masked without holding.
const MAX_KEYWORD: usize = 32;

/// What the reply being received is, decided from the queue and its first line's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Plain,
    /// The greeting, masked byte by byte (pix44, pix51, asa, strict).
    Banner,
    /// The greeting, removed and replaced at its end (pix40).
    Pix40Banner,
    /// A 250 reply to EHLO under asa: keywords masked in place.
    EhloAsa,
    /// A 250 reply to EHLO under strict: held whole, lines removed.
    EhloStrict,
    /// A strict EHLO reply that outgrew [`MAX_HELD`]: the rest is decided line by line
    /// (lines of blocked extensions deleted, except a final one, which is X-ed instead so
    /// that the reply still ends).
    EhloStrictStream,
}

#[derive(Debug)]
struct Reply {
    role: Role,
    /// Lines of the reply so far (saturating: only whether it is the first matters).
    line_index: u32,
    changed: bool,
    /// pix40: greeting bytes removed so far.
    deleted: usize,
}

/// How the rest of a line passes once its head is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineAction {
    Copy,
    Banner,
    Delete,
    /// asa EHLO line (or strict past the bound): keyword bytes held after the code.
    Keyword,
    /// asa EHLO line: a long keyword being masked as it comes.
    KeywordMask,
    /// strict EHLO reply: everything held.
    Hold,
}

/// The server direction's state.
#[derive(Debug, Default)]
pub(crate) struct ServerSide {
    /// Held bytes of the current line (code, separator, maybe a keyword).
    head: HeldBuf,
    /// Bytes of the current line seen so far.
    pos: usize,
    action: Option<LineAction>,
    code: [u8; 3],
    sep: u8,
    reply: Option<Reply>,
    /// strict: the EHLO reply held whole.
    held_reply: HeldBuf,
    /// A whole line was seen (the first line's code tells whether the server talks SMTP).
    seen_line: bool,
}

impl ServerSide {
    /// True between replies (where an injected reply may be inserted).
    pub(crate) fn between_replies(&self) -> bool {
        self.reply.is_none() && self.pos == 0
    }

    pub(crate) fn held(&self) -> usize {
        self.head.len() + self.held_reply.len()
    }

    /// Heap bytes owned (O(1)): the held line head and EHLO reply, both freed once decided.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.head.heap_bytes() + self.held_reply.heap_bytes()
    }

    fn has_code(&self) -> bool {
        self.code.iter().all(u8::is_ascii_digit)
    }
}

fn is_keyword_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

impl Session {
    pub(crate) fn feed_server(&mut self, data: &[u8], out: &mut Output) {
        let mut i = 0;
        while i < data.len() && self.reset.is_none() && !self.tls {
            let rest = data.get(i..).unwrap_or(&[]);
            i += self.server_line_bytes(rest, out);
        }
        if self.tls && i < data.len() {
            ops::copy(&mut out.to_client, data.len() - i);
        }
    }

    /// Consumes bytes of the current line, up to and including its LF; returns how many.
    fn server_line_bytes(&mut self, data: &[u8], out: &mut Output) -> usize {
        if self.server.pos == 0 && self.server.reply.is_none() {
            self.flush_injected(out);
        }
        let mut k = 0;
        while let Some(rest) = data.get(k..).filter(|r| !r.is_empty()) {
            if self.server.action == Some(LineAction::Copy) {
                // The rest of the line passes as one run.
                let n = rest
                    .iter()
                    .position(|&c| c == LF)
                    .map_or(rest.len(), |p| p + 1);
                ops::copy(&mut out.to_client, n);
                self.server.pos += n;
                k += n;
                if rest.get(n - 1) == Some(&LF) {
                    self.server_line_end(out);
                    return k;
                }
                continue;
            }
            if let Some(n) = self.fresh_head_len(rest) {
                // The line's head lies whole in the input: decided from there, not held.
                let head = rest.get(..n).unwrap_or_default();
                k += n;
                self.server.pos += n;
                self.decide_fresh_line(head, out);
                if head.last() == Some(&LF) {
                    self.server_line_end(out);
                    return k;
                }
                if self.reset.is_some() {
                    return k;
                }
                continue;
            }
            let Some(&b) = rest.first() else {
                break;
            };
            k += 1;
            self.server.pos += 1;
            if self.server_byte(b, out) {
                return k;
            }
            if b == LF {
                self.server_line_end(out);
                return k;
            }
            if self.reset.is_some() {
                return k;
            }
        }
        k
    }

    /// The length of the line head at the start of `rest` if nothing of it is held yet and
    /// it is all there: four bytes (code and separator), or fewer ending at an LF. Taking
    /// them at once does what taking them byte by byte would (a byte before the fourth that
    /// is not an LF only goes to the held head).
    fn fresh_head_len(&self, rest: &[u8]) -> Option<usize> {
        let s = &self.server;
        if s.action.is_some() || !s.head.is_empty() || self.reset.is_some() {
            return None;
        }
        let n = rest
            .iter()
            .take(4)
            .position(|&c| c == LF)
            .map_or(4, |p| p + 1);
        (n <= rest.len()).then_some(n)
    }

    /// One byte of a line whose action is not a plain copy. Returns true if the byte was
    /// handed on to a recursive pass (strict's EHLO overflow), which also ends the line if
    /// the byte does.
    fn server_byte(&mut self, b: u8, out: &mut Output) -> bool {
        let s = &mut self.server;
        match s.action {
            None => {
                s.head.push(b);
                if s.head.len() >= 4 || b == LF {
                    self.decide_line(out);
                }
            }
            Some(LineAction::Copy) => ops::copy(&mut out.to_client, 1),
            Some(LineAction::Banner) => {
                let m = self.policy.banner_byte(s.pos - 1, b);
                ops::same_len(&mut out.to_client, &[b], &[m]);
            }
            Some(LineAction::Delete) => {
                ops::delete(&mut out.to_client, 1);
                if let Some(r) = s.reply.as_mut() {
                    r.deleted += 1;
                }
            }
            Some(LineAction::Keyword) => self.keyword_byte(b, out),
            Some(LineAction::KeywordMask) => {
                if is_keyword_byte(b) {
                    ops::same_len(&mut out.to_client, &[b], b"X");
                } else {
                    s.action = Some(LineAction::Copy);
                    ops::copy(&mut out.to_client, 1);
                }
            }
            Some(LineAction::Hold) => {
                if s.held_reply.len() < MAX_HELD {
                    s.held_reply.push(b);
                    return false;
                }
                // Decide what is held, then go on line by line with this byte.
                let mut tail = self.overflow_strict_ehlo(out);
                tail.push(b);
                let mut j = 0;
                while j < tail.len() && self.reset.is_none() {
                    j += self.server_line_bytes(tail.get(j..).unwrap_or(&[]), out);
                }
                return true;
            }
        }
        false
    }

    /// A byte after `250-` in an EHLO reply line whose keyword is being read.
    fn keyword_byte(&mut self, b: u8, out: &mut Output) {
        if is_keyword_byte(b) {
            self.server.head.push(b);
            if self.server.head.len() > 4 + MAX_KEYWORD {
                // No policy knows a keyword this long: it is not kept.
                self.drop_keyword(out, true);
            }
            return;
        }
        self.decide_keyword(out);
        if self.server.action == Some(LineAction::Delete) {
            ops::delete(&mut out.to_client, 1);
        } else {
            ops::copy(&mut out.to_client, 1);
        }
    }

    /// The line's code and separator are known (or the line ended early): choose the
    /// reply's role (on its first line) and this line's action, and emit the held head.
    fn decide_line(&mut self, out: &mut Output) {
        let head = std::mem::take(&mut self.server.head);
        if self.decide_line_from(&head, out) == LineAction::Keyword {
            // The keyword's bytes are held after the head.
            self.server.head = head;
        }
    }

    /// [`Session::decide_line`] for a head read straight from the input (nothing held):
    /// the bytes are held only if the line goes on to read a keyword after them.
    fn decide_fresh_line(&mut self, head: &[u8], out: &mut Output) {
        if self.decide_line_from(head, out) == LineAction::Keyword {
            // Byte by byte, as if they had been held from the start (same capacity).
            for &b in head {
                self.server.head.push(b);
            }
        }
    }

    /// Decides the line whose head is `head` (its first four bytes, or fewer up to an LF)
    /// and emits the head by its action; a `Keyword` head is left to the caller to hold.
    fn decide_line_from(&mut self, head: &[u8], out: &mut Output) -> LineAction {
        let s = &mut self.server;
        s.code = [0; 3];
        for (c, h) in s.code.iter_mut().zip(head) {
            *c = *h;
        }
        s.sep = head.get(3).copied().unwrap_or(0);
        if !s.seen_line && !s.has_code() && !self.server_not_smtp {
            self.server_not_smtp = true;
            out.events.push(Event::NotSmtp);
            log::info!("smtp: server sends non-SMTP bytes");
        }
        if self.server.reply.is_none() {
            let role = self.reply_role();
            self.server.reply = Some(Reply {
                role,
                line_index: 0,
                changed: false,
                deleted: 0,
            });
        }
        let action = self.line_action(head.len());
        self.server.action = Some(action);
        self.emit_head(action, head, out);
        action
    }

    /// What the reply starting now is, from the queue and its first line's code.
    fn reply_role(&self) -> Role {
        match (self.queue.front(), &self.server.code) {
            (Some(Expect::Greeting), b"220") if self.policy.deletes_blocked() => Role::Pix40Banner,
            (Some(Expect::Greeting), b"220") => Role::Banner,
            (Some(Expect::Cmd(CmdKind::Ehlo)), b"250") => match self.policy.profile {
                Profile::Asa => Role::EhloAsa,
                Profile::Strict => Role::EhloStrict,
                _ => Role::Plain,
            },
            _ => Role::Plain,
        }
    }

    /// How the current line passes, given its reply's role and its head's length.
    fn line_action(&self, head_len: usize) -> LineAction {
        let s = &self.server;
        let (role, index) = s
            .reply
            .as_ref()
            .map_or((Role::Plain, 0), |r| (r.role, r.line_index));
        let ehlo_line = index > 0 && &s.code == b"250" && (s.sep == b'-' || s.sep == b' ');
        match role {
            Role::Plain => LineAction::Copy,
            Role::Banner => LineAction::Banner,
            Role::Pix40Banner => LineAction::Delete,
            Role::EhloAsa | Role::EhloStrictStream if ehlo_line && head_len == 4 => {
                LineAction::Keyword
            }
            Role::EhloAsa | Role::EhloStrictStream => LineAction::Copy,
            Role::EhloStrict => LineAction::Hold,
        }
    }

    /// Emits (or keeps holding) the line's head once its action is known (a `Keyword` head
    /// is held by the caller).
    fn emit_head(&mut self, action: LineAction, head: &[u8], out: &mut Output) {
        let s = &mut self.server;
        match action {
            LineAction::Copy => ops::copy(&mut out.to_client, head.len()),
            LineAction::Banner => {
                let masked: Vec<u8> = head
                    .iter()
                    .enumerate()
                    .map(|(p, &b)| self.policy.banner_byte(p, b))
                    .collect();
                ops::same_len(&mut out.to_client, head, &masked);
            }
            LineAction::Delete => {
                ops::delete(&mut out.to_client, head.len());
                if let Some(r) = s.reply.as_mut() {
                    r.deleted += head.len();
                }
            }
            LineAction::Keyword | LineAction::KeywordMask => {}
            LineAction::Hold => s.held_reply.extend_from_slice(head),
        }
    }

    /// The keyword held after `250-` is complete: emit it, or mask / delete its line.
    fn decide_keyword(&mut self, out: &mut Output) {
        let s = &mut self.server;
        let kw = s.head.get(4..).unwrap_or(&[]);
        if kw.is_empty() || self.policy.ehlo_keyword_kept(kw) {
            ops::copy(&mut out.to_client, s.head.len());
            s.head = HeldBuf::default();
            s.action = Some(LineAction::Copy);
            return;
        }
        self.drop_keyword(out, false);
    }

    /// The keyword held after the code is not kept. asa masks it (`STARTTLS` → `XXXXXXXA`);
    /// strict past the bound deletes the line, or masks it if it ends the reply.
    /// `more`: the keyword continues after what is held.
    fn drop_keyword(&mut self, out: &mut Output, more: bool) {
        let s = &mut self.server;
        let head = std::mem::take(&mut s.head);
        let kw = head.get(4..).unwrap_or(&[]);
        let strict = s
            .reply
            .as_ref()
            .is_some_and(|r| r.role == Role::EhloStrictStream);
        if let Some(r) = s.reply.as_mut() {
            r.changed = true;
        }
        if strict && s.sep == b'-' {
            ops::delete(&mut out.to_client, head.len());
            s.action = Some(LineAction::Delete);
            return;
        }
        ops::copy(&mut out.to_client, head.len().min(4));
        let masked = if !strict && !more && kw.eq_ignore_ascii_case(b"STARTTLS") {
            b"XXXXXXXA".to_vec()
        } else {
            vec![b'X'; kw.len()]
        };
        ops::same_len(&mut out.to_client, kw, &masked);
        s.action = Some(if more {
            LineAction::KeywordMask
        } else {
            LineAction::Copy
        });
    }

    /// strict: the held EHLO reply reached [`MAX_HELD`]. Emits its complete lines (the reply
    /// goes on, so no separator is fixed), switches the reply to line-by-line decisions and
    /// returns the held bytes of the current, incomplete line for reprocessing.
    fn overflow_strict_ehlo(&mut self, out: &mut Output) -> Vec<u8> {
        log::info!("smtp: EHLO reply longer than {MAX_HELD} bytes, deciding line by line");
        let held = std::mem::take(&mut self.server.held_reply);
        let complete = held.iter().rposition(|&b| b == LF).map_or(0, |p| p + 1);
        let (lines, tail) = held.split_at(complete);
        self.strict_ehlo(lines, false, out);
        let s = &mut self.server;
        if let Some(r) = s.reply.as_mut() {
            r.role = Role::EhloStrictStream;
            r.changed = true;
        }
        s.pos = 0;
        s.action = None;
        s.head = HeldBuf::default();
        tail.to_vec()
    }

    /// A server line ended at its LF.
    fn server_line_end(&mut self, out: &mut Output) {
        if self.server.action == Some(LineAction::Keyword) {
            self.decide_keyword(out);
        }
        let s = &mut self.server;
        let is_final = !(s.has_code() && s.sep == b'-');
        let code = s.code;
        s.pos = 0;
        s.action = None;
        s.seen_line = true;
        if let Some(r) = s.reply.as_mut() {
            r.line_index = r.line_index.saturating_add(1);
        }
        if is_final {
            self.reply_done(code, out);
        }
    }

    /// A whole reply was received: rewrite what was held, match it to its command.
    fn reply_done(&mut self, code: [u8; 3], out: &mut Output) {
        let Some(reply) = self.server.reply.take() else {
            return;
        };
        self.end_reply_rewrites(&reply, true, out);
        if self.reset.is_some() {
            return;
        }
        let expect = self.queue.pop_front();
        match (expect, &code) {
            (Some(Expect::Cmd(CmdKind::Data)), b"354") => {
                self.data_accepted = true;
                out.events.push(Event::DataStarted);
                log::debug!("smtp: DATA accepted, body follows");
            }
            (Some(Expect::Cmd(CmdKind::StartTls)), c) => {
                self.starttls_answered(c == b"220", out);
            }
            (Some(Expect::Cmd(CmdKind::Auth | CmdKind::AuthContinuation)), b"334") => {
                self.auth_continuation = true;
            }
            _ => {}
        }
        self.flush_injected(out);
    }

    /// Emits what a reply's role defers to its end (pix40's banner, strict's EHLO lines).
    /// `complete`: the reply ended normally (not cut by FIN).
    fn end_reply_rewrites(&mut self, reply: &Reply, complete: bool, out: &mut Output) {
        let _ = complete;
        match reply.role {
            Role::Pix40Banner => {
                ops::insert(&mut out.to_client, &pix40_banner(reply.deleted));
                out.events.push(Event::BannerMasked);
                log::info!("smtp: greeting replaced");
            }
            Role::Banner => {
                out.events.push(Event::BannerMasked);
                log::info!("smtp: greeting masked");
            }
            Role::EhloStrict => {
                let held = std::mem::take(&mut self.server.held_reply);
                if self.strict_ehlo(&held, true, out) {
                    out.events.push(Event::EhloReplyRewritten);
                    log::info!("smtp: EHLO reply lines removed");
                }
            }
            Role::EhloAsa | Role::EhloStrictStream if reply.changed => {
                out.events.push(Event::EhloReplyRewritten);
                log::info!("smtp: EHLO reply masked");
            }
            _ => {}
        }
    }

    /// strict: emits a held EHLO reply without the lines of blocked extensions, the last kept
    /// line's separator fixed to a space. Returns true if anything changed.
    fn strict_ehlo(&self, held: &[u8], complete: bool, out: &mut Output) -> bool {
        let lines: Vec<&[u8]> = held.split_inclusive(|&b| b == LF).collect();
        let keep: Vec<bool> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    return true;
                }
                let kw_end = l
                    .get(4..)
                    .map_or(0, |r| r.iter().take_while(|&&b| is_keyword_byte(b)).count());
                let kw = l.get(4..4 + kw_end).unwrap_or(&[]);
                self.policy.ehlo_keyword_kept(kw)
            })
            .collect();
        let last_kept = keep.iter().rposition(|&k| k).unwrap_or(0);
        let fix_sep = complete
            && lines
                .get(last_kept)
                .is_some_and(|l| l.get(3) == Some(&b'-'));
        let mut changed = false;
        for (i, (l, k)) in lines.iter().zip(&keep).enumerate() {
            if !k {
                ops::delete(&mut out.to_client, l.len());
                changed = true;
            } else if i == last_kept && fix_sep {
                ops::copy(&mut out.to_client, 3);
                ops::replace(&mut out.to_client, b" ");
                ops::copy(&mut out.to_client, l.len() - 4);
                changed = true;
            } else {
                ops::copy(&mut out.to_client, l.len());
            }
        }
        changed
    }

    /// FIN from the server: emit what is held as if the line and reply ended here. Injected
    /// replies still behind owed replies are never sent.
    pub(crate) fn finish_server(&mut self, out: &mut Output) {
        if self.server.action.is_none() && !self.server.head.is_empty() {
            self.decide_line(out);
        }
        if self.server.action == Some(LineAction::Keyword) {
            self.decide_keyword(out);
        }
        if let Some(reply) = self.server.reply.take() {
            self.end_reply_rewrites(&reply, false, out);
        }
        self.server.pos = 0;
        self.server.action = None;
        self.flush_injected(out);
        self.queue = super::session::ReplyQueue::default();
    }
}
