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

mod client;
mod ops;
mod policy;
mod server;
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
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
