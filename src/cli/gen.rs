//! `mailguard gen`: writes synthetic SMTP captures (bundled examples, benchmark loads).
//!
//! Two modes:
//! - `--scenario NAME -o FILE`: one realistic session from the catalogue below
//!   ([`scenario`]). The server side is what a real, unfiltered server of that kind answers to
//!   the client's bytes: the capture shows the wire *before* the filter, and replaying it
//!   through a profile shows what the filter does.
//! - bulk (`--sessions`, `--concurrent`, `--half-open`): many interleaved sessions for the
//!   benchmarks of issue 6 and the flood of issue 7 ([`synth::write_bulk`]), streamed through a
//!   `BufWriter`, with progress on stderr.
//!
//! Everything is deterministic: the same binary and options write the same bytes.

use super::CliError;
use crate::io::synth::{
    self, Action, BulkOptions, Conversation, Endpoint, FlowSpec, FrameSink, Impairments, Pace,
    PcapSink, Rng, Step, TcpSession, Timing,
};
use crate::smtp::Dir;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Instant;

/// The named scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioName {
    /// Microsoft KB 320027: Exchange 2000 banner, EHLO, AUTH LOGIN, X-LINK2STATE,
    /// `goodmorning`, HELO fallback, an 8BITMIME mail, QUIT.
    Kb320027,
    /// MAIL, RCPT, VRFY, RCPT, DATA pipelined in one segment.
    Pipelining,
    /// EHLO, STARTTLS, 220, then TLS records both ways.
    Starttls,
    /// CHUNKING: two BDAT chunks, the second LAST.
    Bdat,
    /// A body hiding `\n.\r\n` and `\r.\r\n` followed by MAIL FROM (SMTP smuggling).
    Smuggling,
    /// A person typing: one byte per client segment, a VRFY among the commands.
    Telnet,
    /// A mail over IPv6 inside an 802.1Q tag.
    Ipv6Vlan,
    /// A mail with loss, retransmission with other segmentation, reordering, duplicates,
    /// and sequence numbers wrapping past 2^32.
    Lossy,
}

impl ScenarioName {
    /// Every scenario, in catalogue order.
    pub const ALL: [ScenarioName; 8] = [
        ScenarioName::Kb320027,
        ScenarioName::Pipelining,
        ScenarioName::Starttls,
        ScenarioName::Bdat,
        ScenarioName::Smuggling,
        ScenarioName::Telnet,
        ScenarioName::Ipv6Vlan,
        ScenarioName::Lossy,
    ];

    /// The name on the command line (and of the bundled `pcaps/NAME.pcap`).
    pub fn name(self) -> &'static str {
        match self {
            ScenarioName::Kb320027 => "kb320027",
            ScenarioName::Pipelining => "pipelining",
            ScenarioName::Starttls => "starttls",
            ScenarioName::Bdat => "bdat",
            ScenarioName::Smuggling => "smuggling",
            ScenarioName::Telnet => "telnet",
            ScenarioName::Ipv6Vlan => "ipv6-vlan",
            ScenarioName::Lossy => "lossy",
        }
    }
}

/// Options of this subcommand.
#[derive(Clone, Debug, clap::Args)]
#[command(
    about = "Write synthetic SMTP captures: a named scenario, or a bulk benchmark load",
    after_help = "Examples:\n  \
        mailguard gen --scenario kb320027 -o kb.pcap\n  \
        mailguard gen --sessions 5000 --attachment-kb 100 --loss 0.001 -o big.pcap\n  \
        mailguard gen --sessions 1000000 --concurrent 1000000 --mails-per-session 0 -o scale.pcap\n  \
        mailguard gen --sessions 1000 --half-open 1000000 -o flood.pcap"
)]
pub struct Args {
    /// Write this named session (see the list of values).
    #[arg(long, value_enum, conflicts_with_all = ["sessions", "concurrent", "half_open"])]
    pub scenario: Option<ScenarioName>,
    /// Output pcap file.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    /// Bulk: number of complete SMTP sessions.
    #[arg(long, value_name = "N")]
    pub sessions: Option<u64>,
    /// Bulk: seed of everything random (same seed, same file).
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// Bulk: mean attachment size in KiB, base64 in the body (0: plain text mails).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub attachment_kb: u32,
    /// Bulk: fraction of mails sending MAIL/RCPT/DATA pipelined in one segment.
    #[arg(long, default_value_t = 0.3, value_name = "R")]
    pub pipelining_ratio: f64,
    /// Bulk: probability that a data segment is lost (and retransmitted); reordering and
    /// duplicates follow at half and a quarter of it.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub loss: f64,
    /// Bulk: open this many sessions (handshake and banner) before any goes further or
    /// closes (the scale test: bytes of state per connection).
    #[arg(long, value_name = "N")]
    pub concurrent: Option<u64>,
    /// Bulk: add N SYNs, answered by SYN/ACKs, that never complete.
    #[arg(long, value_name = "N")]
    pub half_open: Option<u64>,
    /// Bulk: sessions progressing at once (how finely they interleave).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub parallel: usize,
    /// Bulk: mails per session (0: connect, EHLO, QUIT).
    #[arg(long, default_value_t = 1, value_name = "M")]
    pub mails_per_session: u32,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), CliError> {
    let started = Instant::now();
    let file = File::create(&args.output)
        .map_err(|e| CliError::new(format!("cannot create {}: {e}", args.output.display())))?;
    let writer = BufWriter::with_capacity(1 << 20, file);
    let pcap = PcapSink::new(writer).map_err(|e| io_error(args, e))?;
    let mut sink = ProgressSink::new(pcap);
    let what = match args.scenario {
        Some(name) => {
            let sc = scenario(name);
            sc.write(&mut sink).map_err(|e| io_error(args, e))?;
            format!("scenario {}", name.name())
        }
        None => {
            let opts = bulk_options(args)?;
            let sum = synth::write_bulk(&opts, &mut sink).map_err(|e| io_error(args, e))?;
            format!(
                "{} sessions ({} held open at once first), {} half-open",
                sum.sessions, opts.concurrent, sum.half_open
            )
        }
    };
    let (frames, bytes) = (sink.inner.frames, sink.inner.bytes);
    let mut w = sink.inner.into_inner();
    w.flush().map_err(|e| io_error(args, e))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "mailguard gen: wrote {}: {what}; {frames} frames, {:.1} MB in {secs:.2} s ({:.0} MB/s)",
        args.output.display(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs.max(1e-6)
    );
    Ok(())
}

fn io_error(args: &Args, e: io::Error) -> CliError {
    CliError::new(format!("writing {}: {e}", args.output.display()))
}

/// The bulk options the command line asks for.
fn bulk_options(args: &Args) -> Result<BulkOptions, CliError> {
    let concurrent = args.concurrent.unwrap_or(0);
    let half_open = args.half_open.unwrap_or(0);
    let sessions = match args.sessions {
        Some(n) => n,
        None if concurrent > 0 => concurrent,
        None if half_open > 0 => 0,
        None => {
            return Err(CliError::new(
                "say what to write: --scenario NAME, or --sessions N (bulk), see --help",
            ))
        }
    };
    if concurrent > sessions {
        return Err(CliError::new(format!(
            "--concurrent {concurrent} exceeds --sessions {sessions}"
        )));
    }
    if !(0.0..=0.5).contains(&args.loss) {
        return Err(CliError::new("--loss must be between 0 and 0.5"));
    }
    if !(0.0..=1.0).contains(&args.pipelining_ratio) {
        return Err(CliError::new("--pipelining-ratio must be between 0 and 1"));
    }
    if args.parallel == 0 {
        return Err(CliError::new("--parallel must be at least 1"));
    }
    Ok(BulkOptions {
        sessions,
        seed: args.seed,
        attachment_kb: args.attachment_kb,
        pipelining_ratio: args.pipelining_ratio,
        loss: args.loss,
        concurrent,
        half_open,
        parallel: args.parallel,
        mails_per_session: args.mails_per_session,
        ..BulkOptions::default()
    })
}

/// Counts what passes and prints progress to stderr about twice a second.
struct ProgressSink<W: Write> {
    inner: PcapSink<W>,
    last: Instant,
    tty: bool,
}

impl<W: Write> ProgressSink<W> {
    fn new(inner: PcapSink<W>) -> ProgressSink<W> {
        ProgressSink {
            inner,
            last: Instant::now(),
            tty: io::stderr().is_terminal(),
        }
    }
}

impl<W: Write> FrameSink for ProgressSink<W> {
    fn frame(&mut self, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        self.inner.frame(ts_ns, data)?;
        if self.inner.frames.is_multiple_of(65_536) && self.last.elapsed().as_millis() >= 500 {
            self.last = Instant::now();
            let end = if self.tty { "\r" } else { "\n" };
            eprint!(
                "mailguard gen: {} frames, {:.1} MB{end}",
                self.inner.frames,
                self.inner.bytes as f64 / 1e6
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The scenario catalogue.

/// A named session: its connection, timing, impairments and script.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name.
    pub name: ScenarioName,
    /// Endpoints.
    pub flow: FlowSpec,
    /// Delays to each endpoint.
    pub timing: Timing,
    /// Path trouble.
    pub impair: Impairments,
    /// Seed of the session's randomness (think times, impairments).
    pub seed: u64,
    /// Capture time of the SYN, ns since the epoch.
    pub start_ns: u64,
    /// What happens.
    pub script: Vec<Action>,
}

impl Scenario {
    /// The conversation this scenario plays.
    pub fn conversation(&self) -> Conversation {
        let tcp = TcpSession::new(
            self.flow.clone(),
            self.timing,
            self.impair,
            self.seed,
            self.start_ns,
        );
        Conversation::new(0, tcp, self.script.clone())
    }

    /// The bytes each side sends: (client to server, server to client).
    pub fn streams(&self) -> (Vec<u8>, Vec<u8>) {
        synth::script_streams(&self.script)
    }

    /// Writes the capture.
    pub fn write(&self, sink: &mut dyn FrameSink) -> io::Result<()> {
        synth::write_conversation(self.conversation(), sink)
    }
}

const MS: u64 = 1_000_000;
const US: u64 = 1_000;

fn v4_flow(client_port: u16, client_isn: u32, server_isn: u32) -> FlowSpec {
    FlowSpec {
        client: Endpoint {
            mac: [0x02, 0x00, 0x5e, 0x12, 0x00, 0x0a],
            ip: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10)),
            port: client_port,
            mss: 1460,
            wscale: 8,
            window: 513,
            ttl: 128,
            isn: client_isn,
        },
        server: Endpoint {
            mac: [0x02, 0x00, 0x5e, 0x13, 0x00, 0x19],
            ip: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 25)),
            port: 25,
            mss: 1460,
            wscale: 7,
            window: 502,
            ttl: 64,
            isn: server_isn,
        },
        vlan: None,
    }
}

fn lan() -> Timing {
    Timing {
        client_delay_ns: 350 * US,
        server_delay_ns: 60 * US,
    }
}

fn c(data: &str) -> Action {
    Action::Send(Step::client(data))
}

fn s(data: &str) -> Action {
    Action::Send(Step::server(data))
}

/// The scenario called `name`.
pub fn scenario(name: ScenarioName) -> Scenario {
    match name {
        ScenarioName::Kb320027 => kb320027(),
        ScenarioName::Pipelining => pipelining(),
        ScenarioName::Starttls => starttls(),
        ScenarioName::Bdat => bdat(),
        ScenarioName::Smuggling => smuggling(),
        ScenarioName::Telnet => telnet(),
        ScenarioName::Ipv6Vlan => ipv6_vlan(),
        ScenarioName::Lossy => lossy(),
    }
}

/// The greeting line of Microsoft KB 320027 (note the two spaces after `at`).
pub const KB320027_GREETING: &str = "220 exchangehost Microsoft ESMTP MAIL Service, Version: 5.0.2195.4905 ready at  Tue, 9 Apr 2002 11:34:29 -0700";

fn kb320027() -> Scenario {
    // 2002-04-09 18:34:29 UTC, the time in the greeting, minus the handshake.
    let start_ns = 1_018_377_269 * 1_000_000_000 - 4 * MS;
    let body: &[u8] = b"From: John Doe <jdoe@corp.example.com>\r\n\
        To: Marie Dupr\xe9 <marie@exchangehost.example.com>\r\n\
        Subject: R\xe9union de lundi\r\n\
        Date: Tue, 9 Apr 2002 11:34:31 -0700\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=iso-8859-1\r\n\
        Content-Transfer-Encoding: 8bit\r\n\
        \r\n\
        Bonjour Marie,\r\n\
        \r\n\
        La r\xe9union de lundi est d\xe9plac\xe9e \xe0 14h, salle 3 (c\xf4t\xe9 caf\xe9t\xe9ria).\r\n\
        Gr\xfc\xdfe aus M\xfcnchen, \xa9 2002, 25\xb0C, 100\xa3.\r\n\
        ..the next line starts with a dot in the original text, hence the stuffing\r\n\
        .\xa0\r\n\
        A bient\xf4t,\r\n\
        John\r\n\
        .\r\n";
    let script = vec![
        Action::Connect,
        Action::Send(
            Step::server(format!(
                "220-exchangehost.corp.example.com: authorized use only, sessions are logged\r\n\
                 {KB320027_GREETING}\r\n"
            ))
            .think(2 * MS),
        ),
        c("EHLO client.corp.example.com\r\n"),
        s("250-exchangehost Hello [198.18.0.10]\r\n\
           250-TURN\r\n\
           250-ATRN\r\n\
           250-SIZE\r\n\
           250-ETRN\r\n\
           250-PIPELINING\r\n\
           250-DSN\r\n\
           250-ENHANCEDSTATUSCODES\r\n\
           250-8bitmime\r\n\
           250-BINARYMIME\r\n\
           250-CHUNKING\r\n\
           250-VRFY\r\n\
           250-X-EXPS GSSAPI NTLM LOGIN\r\n\
           250-X-EXPS=LOGIN\r\n\
           250-AUTH GSSAPI NTLM LOGIN\r\n\
           250-AUTH=LOGIN\r\n\
           250-X-LINK2STATE\r\n\
           250-XEXCH50\r\n\
           250-STARTTLS\r\n\
           250 OK\r\n"),
        c("AUTH LOGIN\r\n"),
        s("334 VXNlcm5hbWU6\r\n"),
        Action::Send(Step::client("amRvZQ==\r\n").think(900 * US)),
        s("334 UGFzc3dvcmQ6\r\n"),
        Action::Send(Step::client("UzNjcjN0IQ==\r\n").think(700 * US)),
        Action::Send(Step::server("235 2.7.0 Authentication successful.\r\n").think(6 * MS)),
        c("X-LINK2STATE LAST CHUNK=AQAAAG1haWwuY29ycC5leGFtcGxlLmNvbQ==\r\n"),
        s("250 2.0.0 X-LINK2STATE OK\r\n"),
        c("goodmorning\r\n"),
        s("500 5.3.3 Unrecognized command\r\n"),
        c("HELO client.corp.example.com\r\n"),
        s("250 exchangehost Hello [198.18.0.10]\r\n"),
        c("MAIL FROM:<jdoe@corp.example.com> BODY=8BITMIME\r\n"),
        s("250 2.1.0 jdoe@corp.example.com....Sender OK\r\n"),
        c("RCPT TO:<marie@exchangehost.example.com>\r\n"),
        s("250 2.1.5 marie@exchangehost.example.com \r\n"),
        c("DATA\r\n"),
        s("354 Start mail input; end with <CRLF>.<CRLF>\r\n"),
        Action::Send(Step::client(body)),
        Action::Send(
            Step::server(
                "250 2.6.0 <EXCHANGEHOSTqk4Ty00000001@exchangehost> Queued mail for delivery\r\n",
            )
            .think(12 * MS),
        ),
        c("QUIT\r\n"),
        s("221 2.0.0 exchangehost Service closing transmission channel\r\n"),
        Action::Close(Dir::ServerToClient),
    ];
    Scenario {
        name: ScenarioName::Kb320027,
        flow: v4_flow(1069, 0x3c2f_1a05, 0x8e11_4c77),
        timing: lan(),
        impair: Impairments::default(),
        seed: 320_027,
        start_ns,
        script,
    }
}

const POSTFIX_BANNER: &str = "220 mail.example.net ESMTP Postfix (Debian/GNU)\r\n";
const POSTFIX_EHLO: &str = "250-mail.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
    250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n\
    250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

fn postfix_open(client: &str) -> Vec<Action> {
    vec![
        Action::Connect,
        Action::Send(Step::server(POSTFIX_BANNER).think(3 * MS)),
        c(&format!("EHLO {client}\r\n")),
        s(POSTFIX_EHLO),
    ]
}

/// Alice's envelope to Bob, each command accepted by Postfix: `MAIL FROM` (with
/// `mail_params` after the address) and `RCPT TO`.
fn alice_to_bob(script: &mut Vec<Action>, mail_params: &str) {
    script.push(c(&format!(
        "MAIL FROM:<alice@example.org>{mail_params}\r\n"
    )));
    script.push(s("250 2.1.0 Ok\r\n"));
    script.push(c("RCPT TO:<bob@example.net>\r\n"));
    script.push(s("250 2.1.5 Ok\r\n"));
}

fn postfix_close(script: &mut Vec<Action>) {
    script.push(c("QUIT\r\n"));
    script.push(s("221 2.0.0 Bye\r\n"));
    script.push(Action::Close(Dir::ServerToClient));
}

fn simple_scenario(name: ScenarioName, seed: u64, script: Vec<Action>) -> Scenario {
    let mut rng = Rng::new(seed);
    Scenario {
        name,
        flow: v4_flow(
            rng.range(32_768, 60_999) as u16,
            rng.next_u64() as u32,
            rng.next_u64() as u32,
        ),
        timing: lan(),
        impair: Impairments::default(),
        seed,
        start_ns: synth::DEFAULT_EPOCH_NS + seed * 1_000 * MS,
        script,
    }
}

fn pipelining() -> Scenario {
    let mut sc = postfix_open("client.example.org");
    sc.push(c("MAIL FROM:<alice@example.org>\r\n\
               RCPT TO:<bob@example.net>\r\n\
               VRFY bob\r\n\
               RCPT TO:<carol@example.net>\r\n\
               DATA\r\n"));
    sc.push(s("250 2.1.0 Ok\r\n\
               250 2.1.5 Ok\r\n\
               252 2.0.0 bob\r\n\
               250 2.1.5 Ok\r\n\
               354 End data with <CR><LF>.<CR><LF>\r\n"));
    sc.push(c("From: Alice <alice@example.org>\r\n\
               To: Bob <bob@example.net>, Carol <carol@example.net>\r\n\
               Subject: pipelined\r\n\
               \r\n\
               Sent with PIPELINING: five commands in one segment.\r\n\
               .\r\n"));
    sc.push(s("250 2.0.0 Ok: queued as 4F1C21A0B3\r\n"));
    postfix_close(&mut sc);
    simple_scenario(ScenarioName::Pipelining, 2, sc)
}

/// A TLS record of `kind` with `len` bytes of random-looking body.
fn tls_record(rng: &mut Rng, kind: u8, len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&[kind, 0x03, 0x03]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    for _ in 0..len {
        out.push(rng.next_u64() as u8);
    }
}

fn random_bytes(rng: &mut Rng, n: usize, out: &mut Vec<u8>) {
    for _ in 0..n {
        out.push(rng.next_u64() as u8);
    }
}

/// Wraps handshake message `body` of `kind` in a handshake record.
fn handshake_record(record_version: u8, kind: u8, body: &[u8]) -> Vec<u8> {
    let hs_len = body.len() as u32;
    let mut r = vec![0x16, 0x03, record_version];
    r.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    r.push(kind);
    r.extend_from_slice(hs_len.to_be_bytes().get(1..).unwrap_or(&[0, 0, 0]));
    r.extend_from_slice(body);
    r
}

/// A well-formed TLS 1.3 ClientHello (random values, padded to 512 bytes like browsers do).
fn client_hello(rng: &mut Rng) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    random_bytes(rng, 32, &mut b); // random
    b.push(32);
    random_bytes(rng, 32, &mut b); // legacy session id
    let suites: [u16; 5] = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f];
    b.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for cs in suites {
        b.extend_from_slice(&cs.to_be_bytes());
    }
    b.extend_from_slice(&[1, 0]); // compression: null
    let mut ext = Vec::new();
    // supported_versions: TLS 1.3, 1.2
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
    // supported_groups: x25519
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256
    ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04]);
    // key_share: x25519
    ext.extend_from_slice(&[0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
    random_bytes(rng, 32, &mut ext);
    // padding to a 512-byte handshake body
    let used = b.len() + 2 + ext.len() + 4;
    let pad = 508usize.saturating_sub(used);
    ext.extend_from_slice(&[0x00, 0x15]);
    ext.extend_from_slice(&(pad as u16).to_be_bytes());
    ext.extend(std::iter::repeat_n(0u8, pad));
    b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    b.extend_from_slice(&ext);
    handshake_record(0x01, 1, &b)
}

/// A well-formed TLS 1.3 ServerHello record.
fn server_hello(rng: &mut Rng) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    random_bytes(rng, 32, &mut b);
    b.push(32);
    random_bytes(rng, 32, &mut b);
    b.extend_from_slice(&[0x13, 0x01, 0x00]); // TLS_AES_128_GCM_SHA256, null compression
    let mut ext = vec![0x00, 0x2b, 0x00, 0x02, 0x03, 0x04];
    ext.extend_from_slice(&[0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
    random_bytes(rng, 32, &mut ext);
    b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    b.extend_from_slice(&ext);
    handshake_record(0x03, 2, &b)
}

fn starttls() -> Scenario {
    let mut rng = Rng::new(0x715);
    let mut sc = postfix_open("client.example.org");
    sc.push(c("STARTTLS\r\n"));
    sc.push(s("220 2.0.0 Ready to start TLS\r\n"));
    sc.push(Action::Send(Step::client(client_hello(&mut rng))));
    let mut flight = server_hello(&mut rng);
    tls_record(&mut rng, 0x14, 1, &mut flight); // ChangeCipherSpec
    tls_record(&mut rng, 0x17, 2871, &mut flight); // encrypted certificate etc.
    tls_record(&mut rng, 0x17, 286, &mut flight);
    tls_record(&mut rng, 0x17, 69, &mut flight);
    sc.push(Action::Send(Step::server(flight)));
    let mut fin = Vec::new();
    tls_record(&mut rng, 0x14, 1, &mut fin);
    tls_record(&mut rng, 0x17, 69, &mut fin);
    sc.push(Action::Send(Step::client(fin)));
    // Encrypted EHLO, MAIL, RCPT, DATA, message, QUIT and their replies.
    for (client_len, server_len) in [
        (42, 233),
        (58, 36),
        (52, 36),
        (27, 60),
        (2410, 68),
        (27, 38),
    ] {
        let mut a = Vec::new();
        tls_record(&mut rng, 0x17, client_len, &mut a);
        sc.push(Action::Send(Step::client(a)));
        let mut b = Vec::new();
        tls_record(&mut rng, 0x17, server_len, &mut b);
        sc.push(Action::Send(Step::server(b)));
    }
    sc.push(Action::Close(Dir::ServerToClient));
    simple_scenario(ScenarioName::Starttls, 3, sc)
}

fn bdat() -> Scenario {
    let chunk1: &[u8] = b"From: Alice <alice@example.org>\r\n\
        To: Bob <bob@example.net>\r\n\
        Subject: chunked\r\n\
        \r\n\
        First chunk of the message.\r\n";
    let chunk2: &[u8] = b"Lines that look like SMTP must pass as data:\r\n\
        VRFY root\r\n\
        .\r\n\
        QUIT\r\n";
    let mut sc = postfix_open("client.example.org");
    alice_to_bob(&mut sc, " BODY=8BITMIME");
    let head1 = format!("BDAT {}\r\n", chunk1.len());
    sc.push(Action::Send(Step::pipelined(
        Dir::ClientToServer,
        &[head1.as_bytes(), chunk1],
    )));
    sc.push(s(&format!("250 2.0.0 Ok: {} bytes\r\n", chunk1.len())));
    let mut last = format!("BDAT {} LAST\r\n", chunk2.len()).into_bytes();
    last.extend_from_slice(chunk2);
    sc.push(Action::Send(Step::client(last)));
    sc.push(s("250 2.0.0 Ok: queued as 9D3E5A1F20\r\n"));
    postfix_close(&mut sc);
    simple_scenario(ScenarioName::Bdat, 4, sc)
}

fn smuggling() -> Scenario {
    let mut sc = postfix_open("client.example.org");
    alice_to_bob(&mut sc, "");
    sc.push(c("DATA\r\n"));
    sc.push(s("354 End data with <CR><LF>.<CR><LF>\r\n"));
    sc.push(c("From: Alice <alice@example.org>\r\n\
               To: Bob <bob@example.net>\r\n\
               Subject: harmless\r\n\
               \r\n\
               The visible message.\r\n\
               \n.\r\n\
               MAIL FROM:<ceo@bank.example>\r\n\
               RCPT TO:<victim@example.net>\r\n\
               DATA\r\n\
               From: CEO <ceo@bank.example>\r\n\
               Subject: smuggled (bare LF dot)\r\n\
               \r\n\
               Please pay invoice 1.\r\n\
               \r.\r\n\
               MAIL FROM:<cfo@bank.example>\r\n\
               RCPT TO:<victim@example.net>\r\n\
               DATA\r\n\
               From: CFO <cfo@bank.example>\r\n\
               Subject: smuggled (bare CR dot)\r\n\
               \r\n\
               Please pay invoice 2.\r\n\
               .\r\n"));
    // A compliant server ends the message only at CRLF.CRLF: one message, one reply.
    sc.push(s("250 2.0.0 Ok: queued as 5B7E0C2D19\r\n"));
    postfix_close(&mut sc);
    simple_scenario(ScenarioName::Smuggling, 5, sc)
}

fn typed(line: &str, think_ns: u64) -> Action {
    Action::Send(Step::client(line).paced(Pace::Typed).think(think_ns))
}

fn telnet() -> Scenario {
    let script = vec![
        Action::Connect,
        Action::Send(Step::server("220 mail.example.net ESMTP Postfix\r\n").think(3 * MS)),
        typed("helo tester\r\n", 2_400 * MS),
        s("250 mail.example.net\r\n"),
        typed("vrfy root\r\n", 3_100 * MS),
        s("252 2.0.0 root\r\n"),
        typed("mail from:<tester@example.org>\r\n", 1_800 * MS),
        s("250 2.1.0 Ok\r\n"),
        typed("rcpt to:<postmaster@example.net>\r\n", 1_500 * MS),
        s("250 2.1.5 Ok\r\n"),
        typed("data\r\n", 1_200 * MS),
        s("354 End data with <CR><LF>.<CR><LF>\r\n"),
        typed("Subject: typed\r\n\r\nhi\r\n.\r\n", 2_000 * MS),
        s("250 2.0.0 Ok: queued as 3F2A81C004\r\n"),
        typed("quit\r\n", 1_700 * MS),
        s("221 2.0.0 Bye\r\n"),
        Action::Close(Dir::ServerToClient),
    ];
    let mut sc = simple_scenario(ScenarioName::Telnet, 6, script);
    sc.timing = Timing {
        client_delay_ns: 8 * MS,
        server_delay_ns: 80 * US,
    };
    sc
}

fn ipv6_vlan() -> Scenario {
    let mut sc = postfix_open("client.example.org");
    alice_to_bob(&mut sc, "");
    sc.push(c("DATA\r\n"));
    sc.push(s("354 End data with <CR><LF>.<CR><LF>\r\n"));
    let mut body = String::from(
        "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n\
         Subject: over IPv6 in VLAN 100\r\n\r\n",
    );
    for i in 0..60 {
        body.push_str(&format!(
            "Line {i:02} of a mail long enough to need several segments over IPv6.\r\n"
        ));
    }
    body.push_str(".\r\n");
    sc.push(c(&body));
    sc.push(s("250 2.0.0 Ok: queued as 6A0B2C3D4E\r\n"));
    postfix_close(&mut sc);
    let mut out = simple_scenario(ScenarioName::Ipv6Vlan, 7, sc);
    out.flow.vlan = Some(100);
    // RFC 5180 benchmarking addresses.
    out.flow.client.ip = IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10));
    out.flow.server.ip = IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x25));
    out.flow.client.mss = 1440;
    out.flow.server.mss = 1440;
    out
}

fn lossy() -> Scenario {
    let mut rng = Rng::new(0x1055);
    let mut sc = postfix_open("client.example.org");
    alice_to_bob(&mut sc, "");
    sc.push(c("DATA\r\n"));
    sc.push(s("354 End data with <CR><LF>.<CR><LF>\r\n"));
    let mut body = b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n\
        Subject: report over a bad link\r\nMIME-Version: 1.0\r\n\
        Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for _ in 0..300 {
        for _ in 0..76 {
            body.push(B64[(rng.next_u64() & 63) as usize]);
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    sc.push(Action::Send(Step::client(body)));
    sc.push(Action::Send(
        Step::server("250 2.0.0 Ok: queued as 7C1D3E5F60\r\n").think(20 * MS),
    ));
    postfix_close(&mut sc);
    let mut out = simple_scenario(ScenarioName::Lossy, 8, sc);
    // Both ISNs just below 2^32: the server's banner and the client's body wrap.
    out.flow.client.isn = 0xffff_f000;
    out.flow.server.isn = 0xffff_fff0;
    out.timing = Timing {
        client_delay_ns: 12 * MS,
        server_delay_ns: 90 * US,
    };
    out.impair = Impairments {
        loss: 0.12,
        reorder: 0.08,
        duplicate: 0.06,
    };
    out
}
