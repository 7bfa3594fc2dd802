//! The Mailguard SMTP policy as a segmentation-invariant stream transducer.
//!
//! A [`Session`] is created per TCP connection. The engine feeds it the in-order bytes of each
//! direction ([`Session::feed`]) in chunks of any size, and the session appends to an
//! [`Output`] what each receiver must get, as [`Op`]s over the input of that direction, plus
//! [`Event`]s (for logs, counters and reports).
//!
//! Contract between the policy and the engine:
//! - Ops of one direction are in stream order. `Copy(n)` and `Delete(n)` consume the next `n`
//!   input bytes of that direction; `Replace(b)` consumes `b.len()` input bytes and emits `b`
//!   instead; `Insert(b)` emits `b` and consumes nothing.
//! - Input that was fed but is not yet consumed by an op is *held*: the engine keeps those
//!   bytes and must not forward them. The policy holds only what is undecided (a partial verb,
//!   a banner or EHLO reply line) and never more than [`MAX_HELD`] bytes per direction.
//! - The concatenation of the ops produced for a direction never depends on how its input was
//!   chunked (segmentation invariance), given the same interleaving of the two directions at
//!   line granularity.
//! - An insert into the *other* direction (pix40's `250 OK`) appears in that direction's op
//!   list, placed at the right position of its stream.
//! - [`Output::reset`] set means: reset the connection on both sides; no further ops follow.
//!
//! # Structure
//!
//! - `session`: [`Session`], the state both directions share: the queue of replies the server
//!   owes (greeting, each forwarded command, pix40's injected slots), flags the server's
//!   replies set for the client (354 → body, 334 → AUTH continuation), the reset.
//! - `client`: the client's typed state (`Command` line / `AuthContinuation` / `Data` /
//!   `Bdat(n)` / `StartTlsWait`); verbs are decided as soon as they can be. `data`: the
//!   message body (terminator, strict's normalisation, asa's line limits).
//! - `server`: reply parsing (multi-line `ddd-`), each reply matched in order to what it
//!   answers, greeting masking and EHLO rewriting.
//! - `policy`: allow-lists and masking rules per profile; `ops`: [`apply_ops`] and op
//!   builders; `transform`: [`transform`] for whole scripted sessions.
//!
//! # Holding
//!
//! Every profile holds only a verb's undecided prefix: `MA` may become `MAIL`, `EX` cannot
//! become any allowed verb and is decided (blocked) at once, `MAIL` is decided by the SP (or
//! line end) after it; at most 65 bytes (the longest verb, 64, and one more) are held. The
//! rest of the line then streams: copied, X-ed (holding at most one CR, to know whether it is
//! the line end) or deleted (pix40). This matters on the wire: the engine does not
//! acknowledge held bytes, so a client typing one byte per segment would fill its congestion
//! window with held bytes and stall if a whole line were held. AUTH continuation lines, DATA
//! bodies and BDAT chunks stream.
//!
//! No verb needs its arguments before the line can start to stream; what the filter reads in
//! them is parsed from the streamed bytes with a few bytes of state, never a copy of the line:
//! - BDAT: the chunk size (SP, spaces, 1 to 19 digits; `LAST` does not matter), used at the
//!   line end to pass the chunk by length;
//! - asa MAIL/RCPT: where the address is (after the first `:`, spaces skipped, `<...>` or up
//!   to the next space), to replace each `|` in it by a space as it passes (one
//!   [`Event::PipeReplaced`] per line) and to count the sender address's bytes;
//! - AUTH, STARTTLS, DATA: the verb alone decides (what follows is decided by the server's
//!   334, 220 or 354).
//!
//! asa and strict enforce their limits while the line streams, at the byte that crosses
//! them; what was streamed before it stays sent, and the server is left with an unterminated
//! line, which it never executes, when the connection is reset:
//! - command line > 512 bytes (CRLF included): the reset comes with byte 513 when no LF is
//!   among the first 512. The server has received the line's first 512 bytes as decided
//!   (copied, `|` replaced, or X-ed); a CR at byte 512 of an X-ed line is still held and is
//!   never sent. A line whose LF is byte 513 (CR at 512) is too long.
//! - asa sender address > 320 bytes: the reset comes with the address's 321st byte; the
//!   line up to its 320th byte has been sent.
//! - asa, > 100 RCPT in a transaction: the 101st resets as soon as its verb is known
//!   (`RCPT` + SP): nothing of it is sent.
//!
//! Server lines hold their 3-digit code and separator (4 bytes); asa holds an EHLO keyword (≤ 32 bytes, longer ones
//! are masked as they come); strict holds a whole EHLO reply (to fix the last kept line's
//! separator). If that reply outgrows [`MAX_HELD`], its complete lines are decided (the
//! separator left as it is, since the reply goes on) and the rest is decided line by line
//! on its keyword: lines of blocked extensions are deleted, except a final `250 ` line,
//! whose keyword is X-ed instead so that the reply still ends. More than 4096 replies owed
//! at once resets the connection ([`ResetReason::HeldBytesLimit`]).
//!
//! # Choices where the spec is silent
//!
//! - **Verbs.** The verb is the bytes up to the first SP or LF (a CR just before LF is the
//!   line end). Anything else in it (tab, NUL, bare CR, 8-bit bytes, a leading space, an empty
//!   line) means no allowed verb: the line is blocked whole. Blocked-verb names are reported
//!   upper-cased, non-printable bytes as `?`.
//! - **Masking** keeps the line end (LF or CRLF); a bare CR inside a blocked line is X-ed.
//! - **Greeting.** The greeting is the server's first reply. It is masked (pix40: replaced)
//!   only if its first line's code is `220`; a first reply with another code (`554`, `421`, or
//!   text that is not SMTP, which raises [`Event::NotSmtp`]) passes untouched but still counts
//!   as the greeting. A server that never greets therefore has each reply matched to the
//!   command before the one it answers; this errs on the strict side (a 354 answering DATA is
//!   then not taken as DATA's, so the body is filtered as commands), and pix40's injected
//!   replies come one reply late. pix40's replacement is `220 SMTP/cmap`, underscores, then
//!   `" read\r\n"`, as long as the whole original greeting (all its lines), 20 bytes at least.
//!   `banner-mask = kb` applies to every masking profile (pix44 too).
//! - **Client talking first.** Its commands are filtered as usual and wait in the reply queue
//!   behind the greeting; pix40's injected `250 OK`s come after the greeting. It is reported
//!   once as [`Event::NotSmtp`] (a compliant client waits for the greeting), as are a client
//!   line starting with a byte that is neither printable ASCII nor white space (TLS
//!   ClientHello, binary junk) and a server whose first line has no 3-digit code.
//! - **Replies.** A line whose code is three digits followed by `-` continues a reply; any
//!   other line ends it. Replies the server sends when nothing is owed pass unchanged. An
//!   injected reply is only ever inserted between two server replies.
//! - **DATA.** Only a `354` answering a forwarded DATA starts the body; an unsolicited 354
//!   changes nothing (CVE-2000-1022). The body starts at the client's next line in command
//!   mode (a 354 arriving while an earlier body is still being sent takes effect after it).
//!   Lines the client sends after DATA, before the reply, are commands (a client must wait for
//!   354; a PIX filters them the same way). After a rejected DATA, pipelined lines are
//!   commands. The body ends at a line that is exactly `.` before its line end: `.\r\n` or
//!   `.\n` (servers such as Postfix accept the latter); under strict, bare CR and bare LF
//!   first become CRLF, so `.\r` + `X` also ends the body.
//! - **EHLO replies.** The first line (the server's name) is never masked or removed. asa
//!   masks only the keyword (its parameters stay). strict keeps SIZE, PIPELINING, DSN,
//!   ENHANCEDSTATUSCODES, 8BITMIME, BINARYMIME, CHUNKING, AUTH, STARTTLS, SMTPUTF8 and the
//!   operator's verbs; every other extension, known or not, is removed.
//! - **asa limits.** RCPT is counted per transaction (reset by MAIL, RSET, HELO, EHLO and the
//!   end of a message) when its verb is decided; the sender address is the text between `<`
//!   and `>` (or up to a space) after `MAIL FROM:`; `|` is replaced only inside the address;
//!   message lines are measured without their CRLF; headers end at the first empty line.
//!   See *Holding* for the exact bytes sent before a limit's reset.
//! - **BDAT** with a missing or unparsable size is a command without a chunk (the server will
//!   refuse it).
//! - **STARTTLS.** Client bytes between STARTTLS and its reply are dropped whatever the reply;
//!   on a `220` both directions pass through ([`Session::is_passthrough`]); on anything else
//!   the client is back in command mode.
//! - **FIN.** A command line unterminated at the client's FIN is decided by its verb like any
//!   other (copied, X-ed or deleted) but expects no reply (pix40 injects nothing for it); a
//!   held CR in a strict body becomes CRLF. At the server's FIN, a held line or EHLO reply is
//!   emitted as decided so far (pix40's replacement greeting is still sent), and injected
//!   replies still waiting behind replies the server will never send are dropped, as is any
//!   reply pix40 would inject after the server's FIN.
//! - **Operator verbs** (`allow_verbs`) only apply to strict.

pub(crate) mod client;
mod data;
mod held;
mod ops;
pub(crate) mod policy;
pub(crate) mod server;
mod session;
mod transform;

pub use ops::apply_ops;
pub use session::Session;
pub use transform::{transform, Transcript};

/// Upper bound on the bytes a [`Session`] may hold undecided per direction.
pub const MAX_HELD: usize = 4096;

/// Direction of a byte stream within an SMTP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client (the side that sent the SYN) to server.
    ClientToServer,
    /// Server to client.
    ServerToClient,
}

impl Dir {
    /// The opposite direction.
    pub fn reverse(self) -> Dir {
        match self {
            Dir::ClientToServer => Dir::ServerToClient,
            Dir::ServerToClient => Dir::ClientToServer,
        }
    }
}

/// Which device a profile models (DESIGN.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// `no fixup protocol smtp 25`: everything passes.
    Off,
    /// PIX 4.0/4.1 `mailhost`.
    Pix40,
    /// PIX 4.2-4.4 `fixup protocol smtp`.
    Pix44,
    /// PIX 5.1+ / 6.x `fixup protocol smtp`.
    Pix51,
    /// ASA `inspect esmtp`, default policy map.
    Asa,
    /// Ours: secure and ESMTP-friendly.
    #[default]
    Strict,
}

impl Profile {
    /// Every profile, in the order of DESIGN.md §2.
    pub const ALL: [Profile; 6] = [
        Profile::Off,
        Profile::Pix40,
        Profile::Pix44,
        Profile::Pix51,
        Profile::Asa,
        Profile::Strict,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Off => "off",
            Profile::Pix40 => "pix40",
            Profile::Pix44 => "pix44",
            Profile::Pix51 => "pix51",
            Profile::Asa => "asa",
            Profile::Strict => "strict",
        }
    }

    /// Parses a profile name as printed by [`Profile::name`].
    pub fn from_name(s: &str) -> Option<Profile> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How banners (220 greetings) are masked by pix51, asa and strict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BannerMask {
    /// Keep each line's 3-digit code and the separator after it.
    #[default]
    Standard,
    /// `banner-mask = kb`: mask the separator after the code too (the KB 320027 example).
    Kb,
}

/// The whole policy of a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Which device to model.
    pub profile: Profile,
    /// Banner masking variant.
    pub banner_mask: BannerMask,
    /// Extra verbs the operator allows under `strict` (upper case, e.g. `X-LINK2STATE`).
    pub allow_verbs: Vec<String>,
}

/// A verb as the client typed it, upper-cased, at most [`VerbName::CAP`] bytes kept
/// (no allocation; cheap to count by name).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerbName {
    len: u8,
    bytes: [u8; VerbName::CAP],
}

impl VerbName {
    /// How many bytes of a verb are kept.
    pub const CAP: usize = 16;

    /// Builds a name from the first bytes of a verb: upper-cased, truncated to [`Self::CAP`],
    /// bytes outside printable ASCII replaced by `?`.
    pub fn new(verb: &[u8]) -> VerbName {
        let mut bytes = [0u8; Self::CAP];
        let len = verb.len().min(Self::CAP);
        for (dst, &b) in bytes.iter_mut().zip(&verb[..len]) {
            *dst = if b.is_ascii_graphic() {
                b.to_ascii_uppercase()
            } else {
                b'?'
            };
        }
        VerbName {
            len: len as u8,
            bytes,
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII graphic bytes or '?' are stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl std::fmt::Debug for VerbName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::fmt::Display for VerbName {
    /// The verb, or `(empty)` for a line with no verb (empty, or starting with a space), so
    /// that summaries never show a blank name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.as_str() {
            "" => f.write_str("(empty)"),
            verb => f.write_str(verb),
        }
    }
}

/// One edit over the input stream of a direction (see the module docs for the contract).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Consume `n` input bytes and emit them unchanged.
    Copy(usize),
    /// Consume `n` input bytes and emit nothing.
    Delete(usize),
    /// Consume `b.len()` input bytes and emit `b` (masking: same length).
    Replace(Vec<u8>),
    /// Emit `b`, consuming nothing.
    Insert(Vec<u8>),
}

impl Op {
    /// Input bytes this op consumes.
    pub fn consumed(&self) -> usize {
        match self {
            Op::Copy(n) | Op::Delete(n) => *n,
            Op::Replace(b) => b.len(),
            Op::Insert(_) => 0,
        }
    }

    /// Output bytes this op emits.
    pub fn emitted(&self) -> usize {
        match self {
            Op::Copy(n) => *n,
            Op::Delete(_) => 0,
            Op::Replace(b) | Op::Insert(b) => b.len(),
        }
    }
}

/// Why the policy asks for the connection to be reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResetReason {
    /// A command line longer than 512 bytes (asa, strict).
    CommandLineTooLong,
    /// More than 100 RCPT commands (asa).
    TooManyRecipients,
    /// A header line longer than 998 bytes (asa).
    HeaderLineTooLong,
    /// A MAIL FROM address longer than 320 bytes (asa).
    SenderAddressTooLong,
    /// Held (undecided) bytes would exceed [`MAX_HELD`].
    HeldBytesLimit,
}

impl ResetReason {
    /// Stable name for logs, counters and reports.
    pub fn name(self) -> &'static str {
        match self {
            ResetReason::CommandLineTooLong => "command-line-too-long",
            ResetReason::TooManyRecipients => "too-many-recipients",
            ResetReason::HeaderLineTooLong => "header-line-too-long",
            ResetReason::SenderAddressTooLong => "sender-address-too-long",
            ResetReason::HeldBytesLimit => "held-bytes-limit",
        }
    }
}

/// Something the policy decided or noticed, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A client command line with an allowed verb passed.
    CommandAllowed(VerbName),
    /// A client command line with a blocked verb was masked or removed.
    VerbBlocked(VerbName),
    /// A 220 greeting was masked (or replaced, pix40).
    BannerMasked,
    /// An EHLO reply was masked (asa) or had lines removed (strict).
    EhloReplyRewritten,
    /// The filter answered the client itself (pix40's `250 OK`).
    ReplyInjected,
    /// The server answered 354: the message body follows.
    DataStarted,
    /// The body's terminating `.` line was seen.
    DataEnded,
    /// A BDAT chunk of this many bytes passes by length.
    BdatChunk(u64),
    /// STARTTLS accepted by the server: the rest of the connection passes uninspected.
    TlsPassthrough,
    /// Client bytes pipelined after STARTTLS, before the server's 220, were dropped.
    DroppedAfterStartTls(usize),
    /// `|` in a MAIL/RCPT address replaced by a space (asa).
    PipeReplaced,
    /// A body line longer than 998 bytes (asa logs it only).
    LongBodyLine,
    /// The stream does not look like SMTP (binary junk, TLS hello): handled by the rules anyway.
    NotSmtp,
    /// The policy asks for a reset of both sides.
    Reset(ResetReason),
}

/// What a call to [`Session::feed`] or [`Session::finish`] decided.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Ops for the client-to-server stream, in order.
    pub to_server: Vec<Op>,
    /// Ops for the server-to-client stream, in order.
    pub to_client: Vec<Op>,
    /// Events, in order.
    pub events: Vec<Event>,
    /// Set when the connection must be reset on both sides.
    pub reset: Option<ResetReason>,
}

impl Output {
    /// The op list of a direction.
    pub fn ops_mut(&mut self, dir: Dir) -> &mut Vec<Op> {
        match dir {
            Dir::ClientToServer => &mut self.to_server,
            Dir::ServerToClient => &mut self.to_client,
        }
    }

    /// Empties the output for reuse, keeping its allocations.
    pub fn clear(&mut self) {
        self.to_server.clear();
        self.to_client.clear();
        self.events.clear();
        self.reset = None;
    }
}
