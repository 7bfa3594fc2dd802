//! Capture files for `mailguard replay`: reading pcap and pcapng, writing pcap, and adapting
//! link layers to the Ethernet frames the engine understands.
//!
//! Choices made where the spec is silent:
//! - Classic pcap is read record by record *without* the `pcap-file` crate's validation
//!   (which rejects `orig_len > snaplen`, i.e. every capture taken with a small snaplen):
//!   the record header is kept verbatim so that a frame written back unchanged is the same
//!   record, byte for byte (timestamp fraction, `orig_len` included).
//! - The output pcap keeps the input's global header (byte order, timestamp resolution,
//!   version, link type); only a snaplen below 65535 is raised to 65535 so that frames the
//!   engine builds always fit. For pcapng input the output is a little-endian,
//!   nanosecond-resolution pcap with the interfaces' link type (all interfaces must share one).
//! - pcapng timestamps are converted with each interface's `if_tsresol` (default µs);
//!   `if_tsoffset` is ignored.
//! - A record longer than [`MAX_RECORD`] is treated as corruption, never allocated.
//! - Records are read in place: one fixed 8 MB buffer is filled with `read`s of at most
//!   128 KiB (so that they stay in L2, see `Chunked`), classic pcap record headers are read
//!   straight out of it (`RecordBuffer`; `pcap-file` checks the global header, and its
//!   pcapng reader buffers the same way), and [`CaptureReader::next_record`] lends the
//!   record's bytes from that buffer (no copy, no allocation per record; the buffer's size,
//!   not the file's, bounds the memory). [`CaptureReader::next_frame`] is the owned variant
//!   for callers that keep frames. No mmap: a file shrinking under a mapping would be a
//!   SIGBUS, and measured (scripts/bench/notes.md, session 5) mapping and unmapping the
//!   pages cost what the `read` copy does, while the first touch of each record moved into
//!   the engine: no faster.
//! - A pipe or FIFO (`/dev/stdin`) is read like a file: it cannot seek back over the magic
//!   number read to tell the format, so those bytes are handed to the reader first (`Chunked`).
//! - The output goes through large buffers (256 KiB, 1 MiB threaded): large writes, by a
//!   writer thread when the process may use more than one CPU (see [`CaptureWriter`]).
//! - Link types other than Ethernet are converted to Ethernet for the engine and back by
//!   [`LinkAdapter`]: Linux SLL and SLL2, BSD loopback (`NULL`, `LOOP`) and raw IP.

use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest capture record accepted (bigger ones are reported as corruption).
pub const MAX_RECORD: u32 = 1 << 20;

/// Link-layer type numbers (LINKTYPE_*) this module knows.
pub mod linktype {
    /// BSD loopback, host byte order family.
    pub const NULL: u32 = 0;
    /// Ethernet II.
    pub const ETHERNET: u32 = 1;
    /// Raw IP (OpenBSD's value).
    pub const RAW_OPENBSD: u32 = 12;
    /// Raw IP (most systems).
    pub const RAW: u32 = 101;
    /// OpenBSD loopback, network byte order family.
    pub const LOOP: u32 = 108;
    /// Linux cooked capture v1.
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: u32 = 276;
}

/// Why a capture could not be read or written.
#[derive(Debug)]
pub enum CaptureError {
    /// The input could not be opened or read.
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The input is neither pcap nor pcapng.
    NotACapture {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The link type is not one the engine can be given.
    UnsupportedLinkType {
        /// The LINKTYPE_ number.
        linktype: u32,
    },
    /// A pcapng file whose interfaces have different link types.
    MixedLinkTypes {
        /// The link types found.
        linktypes: Vec<u32>,
    },
    /// The file ends (or is corrupt) inside a record.
    Truncated {
        /// Packets read completely before the problem.
        packets: u64,
        /// Byte offset in the file where the incomplete record starts.
        offset: u64,
        /// True when `offset` is an estimate (pcapng).
        approximate: bool,
        /// What was wrong.
        detail: String,
    },
    /// The output could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureError::Open { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            CaptureError::NotACapture { path, detail } => write!(
                f,
                "{} is not a capture file (pcap or pcapng): {detail}",
                path.display()
            ),
            CaptureError::UnsupportedLinkType { linktype } => write!(
                f,
                "unsupported link type {linktype} ({}); supported: Ethernet (1), Linux SLL (113), \
                 Linux SLL2 (276), loopback NULL (0) / LOOP (108), raw IP (12, 101, 228, 229)",
                linktype_name(*linktype)
            ),
            CaptureError::MixedLinkTypes { linktypes } => write!(
                f,
                "pcapng interfaces have different link types {linktypes:?}; \
                 split the capture per interface first (e.g. with editcap)"
            ),
            CaptureError::Truncated {
                packets,
                offset,
                approximate,
                detail,
            } => write!(
                f,
                "truncated capture: {detail} at {}byte {offset}, after {packets} complete packets",
                if *approximate { "about " } else { "" }
            ),
            CaptureError::Write { path, detail } => {
                write!(f, "cannot write {}: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for CaptureError {}

/// A human name for a LINKTYPE_ number.
pub fn linktype_name(linktype: u32) -> String {
    format!("{:?}", DataLink::from(linktype))
}

/// The container format of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap.
    Pcap,
    /// pcapng.
    PcapNg,
}

/// One frame read from a capture.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length of the frame on the wire (may exceed `data.len()` when the capture truncated it).
    pub orig_len: u32,
    /// The captured bytes, link layer included.
    pub data: Vec<u8>,
    /// The classic pcap record timestamp as stored (seconds, fraction), to rewrite it verbatim.
    raw_ts: Option<(u32, u32)>,
}

impl Frame {
    /// The frame as a [`Record`] borrowing its bytes.
    pub fn as_record(&self) -> Record<'_> {
        Record {
            ts_ns: self.ts_ns,
            orig_len: self.orig_len,
            data: &self.data,
            raw_ts: self.raw_ts,
        }
    }
}

/// One frame read from a capture, its bytes lent from the reader's buffer (valid until the
/// reader is asked for the next one).
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length of the frame on the wire (may exceed `data.len()` when the capture truncated it).
    pub orig_len: u32,
    /// The captured bytes, link layer included.
    pub data: &'a [u8],
    /// The classic pcap record timestamp as stored (seconds, fraction), to rewrite it verbatim.
    raw_ts: Option<(u32, u32)>,
}

impl Record<'_> {
    /// An owned copy.
    pub fn to_frame(&self) -> Frame {
        let mut f = Frame::default();
        self.copy_into(&mut f);
        f
    }

    /// Copies the record into `frame`, reusing its buffer.
    fn copy_into(&self, frame: &mut Frame) {
        frame.ts_ns = self.ts_ns;
        frame.orig_len = self.orig_len;
        frame.raw_ts = self.raw_ts;
        frame.data.clear();
        frame.data.extend_from_slice(self.data);
    }
}

enum Inner {
    Pcap(RecordBuffer),
    PcapNg {
        reader: PcapNgReader<Chunked>,
        /// Nanoseconds per timestamp unit, or `None` for a power-of-2 resolution (as 2^-n s).
        units: Vec<TsUnit>,
    },
}

#[derive(Clone, Copy, Debug)]
enum TsUnit {
    /// Timestamp counts 10^-n seconds.
    Decimal(u32),
    /// Timestamp counts 2^-n seconds.
    Binary(u32),
}

impl TsUnit {
    fn to_ns(self, raw: u64) -> u64 {
        match self {
            TsUnit::Decimal(n) if n <= 9 => raw.saturating_mul(10u64.pow(9 - n)),
            TsUnit::Decimal(n) => raw / 10u64.saturating_pow(n.min(19) - 9).max(1),
            TsUnit::Binary(n) => {
                let n = n.min(63);
                ((u128::from(raw) * 1_000_000_000) >> n).min(u128::from(u64::MAX)) as u64
            }
        }
    }
}

/// Reads frames from a pcap or pcapng file.
pub struct CaptureReader {
    source: Source,
    /// The owned copy [`CaptureReader::next_frame`] lends.
    frame: Frame,
}

/// The reader proper, apart from [`CaptureReader`]'s owned frame so that a record it lends
/// can be copied into that frame.
struct Source {
    inner: Inner,
    format: Format,
    linktype: u32,
    header: PcapHeader,
    packets: u64,
    offset: u64,
    size: u64,
    done: bool,
    /// pcapng packet bytes (see [`Source::next_pcapng`]); reused, so no allocation per packet.
    scratch: Vec<u8>,
}

impl CaptureReader {
    /// Opens `path`, recognising pcap and pcapng by their magic number.
    pub fn open(path: &Path) -> Result<CaptureReader, CaptureError> {
        let open_err = |source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(open_err)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut file, &mut magic).map_err(open_err)?;
        let not_capture = |detail: String| CaptureError::NotACapture {
            path: path.to_path_buf(),
            detail,
        };
        let format = match magic {
            _ if got < 4 => return Err(not_capture(format!("only {got} bytes long"))),
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1] => Format::Pcap,
            [0x0a, 0x0d, 0x0d, 0x0a] => Format::PcapNg,
            [0x1f, 0x8b, ..] => {
                return Err(not_capture("it is gzip-compressed; gunzip it first".into()))
            }
            m => {
                return Err(not_capture(format!(
                    "unknown magic number {:02x}{:02x}{:02x}{:02x}",
                    m[0], m[1], m[2], m[3]
                )))
            }
        };
        // A pipe or FIFO (`/dev/stdin`) cannot seek back: the bytes read are handed to the
        // reader ahead of the rest instead.
        let head = match file.seek(SeekFrom::Start(0)) {
            Ok(_) => Vec::new(),
            Err(e) if e.raw_os_error() == Some(libc::ESPIPE) => {
                magic.get(..got).unwrap_or_default().to_vec()
            }
            Err(e) => return Err(open_err(e)),
        };
        let input = Chunked::new(file, head);
        // No BufReader: the crate's readers buffer 8 MB themselves and read straight into it.
        let bad_header = |e: PcapError| not_capture(format!("bad file header ({})", describe(&e)));
        let source = match format {
            Format::Pcap => {
                let mut reader = RecordBuffer::new(input);
                let header = reader.header().map_err(bad_header)?;
                let linktype = u32::from(header.datalink);
                Source {
                    inner: Inner::Pcap(reader),
                    format,
                    linktype,
                    header,
                    packets: 0,
                    offset: 24,
                    size,
                    done: false,
                    scratch: Vec::new(),
                }
            }
            Format::PcapNg => Source::open_pcapng(input, size, bad_header)?,
        };
        Ok(CaptureReader {
            source,
            frame: Frame::default(),
        })
    }

    /// pcap or pcapng.
    pub fn format(&self) -> Format {
        self.source.format
    }

    /// The LINKTYPE_ of the frames. For pcapng, known once the first frame has been read
    /// (`u32::MAX` before).
    pub fn linktype(&self) -> u32 {
        self.source.linktype
    }

    /// Frames read so far.
    pub fn packets(&self) -> u64 {
        self.source.packets
    }

    /// Approximate bytes consumed so far (for progress), and the file size.
    pub fn progress(&self) -> (u64, u64) {
        (self.source.offset.min(self.source.size), self.source.size)
    }

    /// The global header an output pcap of these frames should have.
    pub fn output_header(&self) -> PcapHeader {
        let s = &self.source;
        let mut h = s.header;
        h.snaplen = h.snaplen.max(65_535);
        if s.format == Format::PcapNg && s.linktype != u32::MAX {
            h.datalink = DataLink::from(s.linktype);
        }
        h
    }

    /// The next frame, its bytes lent from the reader's buffer; `None` at the end of the
    /// file. After an error, always `None`. No copy and no allocation per classic pcap record.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, CaptureError>> {
        self.source.next_record()
    }

    /// [`CaptureReader::next_record`] copied into a frame the reader owns (its buffer is
    /// reused by the next call, so no allocation per frame), for callers that keep frames.
    pub fn next_frame(&mut self) -> Option<Result<&Frame, CaptureError>> {
        match self.source.next_record()? {
            Ok(record) => {
                record.copy_into(&mut self.frame);
                Some(Ok(&self.frame))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

impl Source {
    fn open_pcapng(
        input: Chunked,
        size: u64,
        bad_header: impl Fn(PcapError) -> CaptureError,
    ) -> Result<Source, CaptureError> {
        let reader = PcapNgReader::new(input).map_err(bad_header)?;
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: 262_144,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::Little,
        };
        Ok(Source {
            inner: Inner::PcapNg {
                reader,
                units: Vec::new(),
            },
            format: Format::PcapNg,
            // Unknown until the first interface description block.
            linktype: u32::MAX,
            header,
            packets: 0,
            offset: 0,
            size,
            done: false,
            scratch: Vec::new(),
        })
    }

    fn next_record(&mut self) -> Option<Result<Record<'_>, CaptureError>> {
        if self.done {
            return None;
        }
        // Each reads one record and keeps the counters (`packets`, `done`) itself: the record
        // borrows the reader, so nothing may touch `self` as a whole after it is made.
        if matches!(self.inner, Inner::Pcap(_)) {
            self.next_pcap()
        } else {
            self.next_pcapng()
        }
    }

    fn truncated(&self, detail: impl Into<String>) -> CaptureError {
        truncated(self.packets, self.offset, self.format, detail.into())
    }

    /// Ends the reading with `e`.
    fn fail(&mut self, e: CaptureError) -> Option<Result<Record<'static>, CaptureError>> {
        self.done = true;
        Some(Err(e))
    }

    fn next_pcap(&mut self) -> Option<Result<Record<'_>, CaptureError>> {
        let resolution = self.header.ts_resolution;
        let Inner::Pcap(reader) = &mut self.inner else {
            return None;
        };
        let raw = match reader.next_raw() {
            Some(Ok(raw)) => raw,
            Some(Err(e)) => {
                let e = truncated(self.packets, self.offset, self.format, describe(&e));
                self.done = true;
                return Some(Err(e));
            }
            None => {
                self.done = true;
                return None;
            }
        };
        if raw.incl_len > MAX_RECORD {
            let detail = format!("a record claims {} bytes (corrupt?)", raw.incl_len);
            let e = truncated(self.packets, self.offset, self.format, detail);
            self.done = true;
            return Some(Err(e));
        }
        let frac_ns = match resolution {
            TsResolution::MicroSecond => u64::from(raw.ts_frac).saturating_mul(1000),
            TsResolution::NanoSecond => u64::from(raw.ts_frac),
        };
        let ts_ns = u64::from(raw.ts_sec)
            .saturating_mul(1_000_000_000)
            .saturating_add(frac_ns);
        self.offset += 16 + u64::from(raw.incl_len);
        self.packets += 1;
        Some(Ok(Record {
            ts_ns,
            orig_len: raw.orig_len,
            data: raw.data,
            raw_ts: Some((raw.ts_sec, raw.ts_frac)),
        }))
    }

    /// The next packet of a pcapng file, interface and section blocks handled on the way.
    /// Its bytes are copied into `scratch` (reused): the blocks before a packet borrow the
    /// crate's reader too, and the borrow checker cannot see that a loop over blocks that
    /// returns the packet's borrow releases the others. One copy, no allocation.
    fn next_pcapng(&mut self) -> Option<Result<Record<'_>, CaptureError>> {
        let (ts_ns, orig_len) = loop {
            let Inner::PcapNg { reader, units } = &mut self.inner else {
                return None;
            };
            let block = match reader.next_block() {
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    let e = self.truncated(describe(&e));
                    return self.fail(e);
                }
                None => {
                    self.done = true;
                    return None;
                }
            };
            let (iface, ts, orig_len, data) = match block {
                Block::InterfaceDescription(idb) => {
                    let lt = u32::from(idb.linktype);
                    units.push(ts_unit(&idb.options));
                    if self.linktype == u32::MAX {
                        self.linktype = lt;
                    } else if self.linktype != lt {
                        let linktypes = vec![self.linktype, lt];
                        return self.fail(CaptureError::MixedLinkTypes { linktypes });
                    }
                    continue;
                }
                Block::SectionHeader(_) => {
                    // A new section restarts interface numbering.
                    units.clear();
                    continue;
                }
                Block::EnhancedPacket(epb) => (
                    epb.interface_id as usize,
                    // The crate reads the raw 64-bit count as nanoseconds; undo that.
                    Some(epb.timestamp.as_nanos().min(u128::from(u64::MAX)) as u64),
                    epb.original_len,
                    epb.data,
                ),
                Block::SimplePacket(spb) => (0, None, spb.original_len, spb.data),
                Block::Packet(pb) => (
                    usize::from(pb.interface_id),
                    Some(pb.timestamp),
                    pb.original_len,
                    pb.data,
                ),
                _ => continue,
            };
            let Some(unit) = units.get(iface).copied() else {
                let e = self.truncated(format!("a packet refers to unknown interface {iface}"));
                return self.fail(e);
            };
            if data.len() > MAX_RECORD as usize {
                let e = self.truncated("a packet larger than 1 MiB (corrupt?)");
                return self.fail(e);
            }
            self.scratch.clear();
            self.scratch.extend_from_slice(&data);
            let ts_ns = ts.map(|t| unit.to_ns(t)).unwrap_or(0);
            break (ts_ns, orig_len);
        };
        let len = self.scratch.len();
        self.offset += len as u64 + 32;
        self.packets += 1;
        Some(Ok(Record {
            ts_ns,
            orig_len: orig_len.max(len as u32),
            data: &self.scratch,
            raw_ts: None,
        }))
    }
}

/// The timestamp unit an interface's options announce (`if_tsresol`, default µs).
fn ts_unit(options: &[InterfaceDescriptionOption]) -> TsUnit {
    options
        .iter()
        .find_map(|o| match o {
            InterfaceDescriptionOption::IfTsResol(r) if r & 0x80 != 0 => {
                Some(TsUnit::Binary(u32::from(r & 0x7f)))
            }
            InterfaceDescriptionOption::IfTsResol(r) => Some(TsUnit::Decimal(u32::from(*r))),
            _ => None,
        })
        .unwrap_or(TsUnit::Decimal(6))
}

/// The error for input damaged after `packets` complete records, at byte `offset`.
fn truncated(packets: u64, offset: u64, format: Format, detail: String) -> CaptureError {
    CaptureError::Truncated {
        packets,
        offset,
        approximate: format == Format::PcapNg,
        detail,
    }
}

/// One classic pcap record as stored, its bytes lent from a [`RecordBuffer`].
struct RawRecord<'a> {
    ts_sec: u32,
    ts_frac: u32,
    incl_len: u32,
    orig_len: u32,
    data: &'a [u8],
}

/// Bytes of a [`RecordBuffer`]: `pcap-file`'s size, so that a record longer than the
/// buffer ends the reading exactly where (and as) the crate's reader ended it.
const RECORD_BUFFER: usize = 8_000_000;

/// Classic pcap records read in place: the 16-byte header read straight out of the
/// buffer, the data lent from it. The same buffering as `pcap-file`'s reader (one fixed
/// buffer, the unread rest moved to its start before each read of at most a chunk) and
/// the same errors (`IncompleteBuffer` cases end as `UnexpectedEof`), without the crate's
/// generic parser and its checks per record, which the replay paid for every frame.
struct RecordBuffer {
    source: Chunked,
    buffer: Vec<u8>,
    /// Start of the unread bytes.
    pos: usize,
    /// End of the bytes read.
    len: usize,
    little_endian: bool,
}

impl RecordBuffer {
    fn new(source: Chunked) -> RecordBuffer {
        RecordBuffer {
            source,
            buffer: vec![0; RECORD_BUFFER],
            pos: 0,
            len: 0,
            little_endian: true,
        }
    }

    /// Reads the global header, checked by `pcap-file`'s parser (as its reader does), and
    /// takes the records' byte order from it.
    fn header(&mut self) -> Result<PcapHeader, PcapError> {
        loop {
            let unread = self.buffer.get(self.pos..self.len).unwrap_or_default();
            match PcapParser::new(unread) {
                Ok((rest, parser)) => {
                    self.pos = self.len - rest.len();
                    let header = parser.header();
                    self.little_endian = header.endianness.is_little();
                    return Ok(header);
                }
                Err(PcapError::IncompleteBuffer) => {
                    if unread.len() == self.buffer.len()
                        || self.fill().map_err(PcapError::IoError)? == 0
                    {
                        return Err(PcapError::IoError(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves the unread bytes to the start and reads more after them; the bytes read.
    fn fill(&mut self) -> std::io::Result<usize> {
        self.buffer.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        let n = self
            .source
            .read(self.buffer.get_mut(self.len..).unwrap_or_default())?;
        self.len += n;
        Ok(n)
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = self
            .buffer
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .unwrap_or_default();
        if self.little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    }

    /// The next record; `None` at a clean end of the file.
    fn next_raw(&mut self) -> Option<Result<RawRecord<'_>, PcapError>> {
        if self.pos == self.len {
            match self.fill() {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(PcapError::IoError(e))),
            }
        }
        let eof = || PcapError::IoError(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        loop {
            let avail = self.len - self.pos;
            if avail >= 16 {
                let incl_len = self.u32_at(self.pos + 8);
                let need = (incl_len as usize).saturating_add(16);
                if avail >= need {
                    let at = self.pos;
                    self.pos += need;
                    return Some(Ok(RawRecord {
                        ts_sec: self.u32_at(at),
                        ts_frac: self.u32_at(at + 4),
                        incl_len,
                        orig_len: self.u32_at(at + 12),
                        data: self.buffer.get(at + 16..at + need).unwrap_or_default(),
                    }));
                }
            }
            if avail == self.buffer.len() {
                return Some(Err(eof()));
            }
            match self.fill() {
                Ok(0) => return Some(Err(eof())),
                Ok(_) => {}
                Err(e) => return Some(Err(PcapError::IoError(e))),
            }
        }
    }
}

/// Most bytes one `read` brings in (see [`Chunked`]).
const READ_CHUNK: usize = 128 << 10;

/// The capture file, read at most [`READ_CHUNK`] bytes at a time.
///
/// The readers (`RecordBuffer`, `pcap-file`'s for pcapng) keep an 8 MB buffer and ask for
/// as much as fits. Filled whole, the kernel writes 8 MB of cold memory per read and the
/// records have left the CPU's L2 cache before the engine first looks at them (the
/// checksum). Refilled a chunk at a time, the buffer's live part stays at its start (the
/// reader moves the unparsed rest of the last chunk there before each read), in L2 and the
/// TLB, for the kernel's copy and for the engine: a strict bulk replay spent about 15 % less
/// CPU (scripts/bench/notes.md). A record larger than a chunk still fits: the reader reads
/// again until it is whole.
///
/// `head` holds bytes already taken from a file that cannot seek back (a pipe: the magic
/// number read to recognise the format); they are read first.
struct Chunked {
    file: File,
    head: Vec<u8>,
}

impl Chunked {
    fn new(file: File, head: Vec<u8>) -> Chunked {
        Chunked { file, head }
    }
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.head.is_empty() {
            let n = buf.len().min(self.head.len());
            let (to, from) = (buf.get_mut(..n), self.head.get(..n));
            if let (Some(to), Some(from)) = (to, from) {
                to.copy_from_slice(from);
            }
            self.head.drain(..n);
            return Ok(n);
        }
        let n = buf.len().min(READ_CHUNK);
        self.file.read(buf.get_mut(..n).unwrap_or_default())
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn describe(e: &PcapError) -> String {
    match e {
        PcapError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends inside a record".into()
        }
        PcapError::IncompleteBuffer => "the file ends inside a record".into(),
        PcapError::IoError(io) => format!("read error: {io}"),
        other => other.to_string(),
    }
}

/// Bytes of output gathered before each `write` to the file: large writes, and small
/// enough to stay in L2 with the input's chunk (see [`Chunked`]).
const WRITE_BUFFER: usize = 256 << 10;

/// Bytes of each buffer handed to a writer thread. Larger than in line: the thread's copy
/// reads the buffer from the other core's cache whatever its size, and fewer hand-overs
/// cost fewer wake-ups (a strict bulk replay used 4 % less CPU than with 256 KiB, the same
/// wall time; 512 KiB and 2 MiB measured alike).
const THREAD_BUFFER: usize = 1 << 20;

/// Buffers a threaded [`CaptureWriter`] owns at most: one being filled while the others
/// wait for, or are in, the writer thread's `write`.
const WRITE_BUFFERS: usize = 3;

/// How a [`CaptureWriter`] chooses between writing in line and a writer thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// A writer thread when the process may run on more than one CPU, else in line.
    Auto,
    /// Always in line: `write(2)` on the caller's thread when a buffer is full.
    Inline,
    /// Always a writer thread (falls back to in line if the thread cannot be started).
    Thread,
}

/// Writes a classic pcap file (the global header via `pcap-file`, records directly so that
/// their header fields are written exactly as given).
///
/// Records are gathered in a buffer ([`WRITE_BUFFER`] bytes in line, [`THREAD_BUFFER`]
/// threaded); a full buffer is written either in line or by a writer thread
/// ([`WriteMode`]), so that the kernel's copy of one buffer into the file (and, on tmpfs,
/// its page allocation) runs while the caller fills the next.
/// The thread and the caller pass [`WRITE_BUFFERS`] buffers back and forth over two
/// channels: no allocation per buffer once they exist, the bytes in the order they were
/// given. A buffer is handed over when the next record does not fit, so every `write` ends
/// on a whole record (a record larger than a buffer is split across buffers); a replay
/// killed between two writes leaves a file that ends on a whole record.
///
/// Choices made (measured, scripts/bench/notes.md "The replay's output thread"):
/// - [`WriteMode::Auto`] starts the thread only when `available_parallelism()` is above 1,
///   which on Linux counts the CPUs of the process's affinity mask (`taskset -c 0`) and its
///   cgroup's quota: on one CPU the thread only adds context switches.
/// - The first write error of the thread ends it; the caller sees it at its next call
///   (a flag checked per record, then the thread is joined for the error itself), as the
///   same [`CaptureError::Write`] the in-line write gives, and again at every later call.
///   [`CaptureWriter::flush`] hands over the last buffer, waits until the thread has
///   written every buffer back, and returns its error; the thread lives on for more records.
/// - Dropped without `flush`, the writer writes what it holds and waits for the thread, as
///   `BufWriter` does when dropped; errors are then ignored.
pub struct CaptureWriter {
    /// The buffer being filled (capacity `cap`).
    buf: Vec<u8>,
    /// Bytes a buffer holds before it is handed over.
    cap: usize,
    out: Output,
    path: PathBuf,
    resolution: TsResolution,
    little_endian: bool,
    frames: u64,
    /// The first write error, kept to be returned again by later calls.
    failed: Option<String>,
}

/// Where a full buffer goes.
enum Output {
    /// Written by the caller.
    Inline(File),
    /// Handed to a writer thread.
    Thread(WriterThread),
    /// After a write error (the thread, if any, joined), and while dropping.
    Closed,
}

/// The writer thread and the two channels to it: full buffers go, empty ones come back.
struct WriterThread {
    full: crossbeam_channel::Sender<Vec<u8>>,
    empty: crossbeam_channel::Receiver<Vec<u8>>,
    /// Set by the thread when a write failed (it then stops).
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Buffers made so far (at most [`WRITE_BUFFERS`]), the one being filled included.
    made: usize,
    /// Empty buffers back from the thread, not in use.
    spare: Vec<Vec<u8>>,
    /// Returns the file on success, the first write error otherwise.
    handle: std::thread::JoinHandle<std::io::Result<File>>,
}

impl WriterThread {
    /// Starts the thread writing to `file`; gives the file back if it cannot start.
    fn start(file: File) -> Result<WriterThread, File> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (full, full_rx) = crossbeam_channel::bounded::<Vec<u8>>(WRITE_BUFFERS);
        let (empty_tx, empty) = crossbeam_channel::bounded::<Vec<u8>>(WRITE_BUFFERS);
        let failed = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&failed);
        // The file goes in through a channel so that a failed spawn can give it back.
        let (file_tx, file_rx) = crossbeam_channel::bounded::<File>(1);
        let spawned = std::thread::Builder::new()
            .name("pcap-writer".into())
            .spawn(move || {
                let mut file = file_rx
                    .recv()
                    .map_err(|_| std::io::Error::other("no output file"))?;
                for mut buf in full_rx {
                    if let Err(e) = file.write_all(&buf) {
                        flag.store(true, Ordering::Release);
                        return Err(e);
                    }
                    buf.clear();
                    // The caller may have stopped taking buffers back (it is closing).
                    let _ = empty_tx.try_send(buf);
                }
                Ok(file)
            });
        let Ok(handle) = spawned else {
            return Err(file);
        };
        if let Err(e) = file_tx.send(file) {
            // The thread is gone already (it cannot be: it is waiting for the file).
            let _ = handle.join();
            return Err(e.into_inner());
        }
        Ok(WriterThread {
            full,
            empty,
            failed,
            made: 1,
            spare: Vec::with_capacity(WRITE_BUFFERS),
            handle,
        })
    }

    fn has_failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Hands `buf` to the thread and returns an empty buffer; `None` when the thread has
    /// stopped (a write error: join it for the error).
    fn swap(&mut self, buf: Vec<u8>) -> Option<Vec<u8>> {
        self.full.send(buf).ok()?;
        if let Some(b) = self.spare.pop() {
            return Some(b);
        }
        if let Ok(b) = self.empty.try_recv() {
            return Some(b);
        }
        if self.made < WRITE_BUFFERS {
            self.made += 1;
            return Some(Vec::with_capacity(THREAD_BUFFER));
        }
        self.empty.recv().ok()
    }

    /// Hands `buf` to the thread and waits until it has written every buffer it holds;
    /// returns an empty buffer, `None` when the thread has stopped.
    fn drain(&mut self, buf: Vec<u8>) -> Option<Vec<u8>> {
        self.full.send(buf).ok()?;
        while self.spare.len() < self.made {
            let b = self.empty.recv().ok()?;
            self.spare.push(b);
        }
        self.spare.pop()
    }

    /// Waits for the thread to write everything it was given; its result.
    fn join(self) -> std::io::Result<File> {
        drop(self.full);
        self.handle
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the writer thread panicked")))
    }
}

impl CaptureWriter {
    /// Creates (truncates) `path` and writes `header` ([`WriteMode::Auto`]).
    pub fn create(path: &Path, header: PcapHeader) -> Result<CaptureWriter, CaptureError> {
        CaptureWriter::create_with(path, header, WriteMode::Auto)
    }

    /// Creates (truncates) `path` and writes `header`, writing full buffers as `mode` says.
    pub fn create_with(
        path: &Path,
        header: PcapHeader,
        mode: WriteMode,
    ) -> Result<CaptureWriter, CaptureError> {
        let err = |detail: String| CaptureError::Write {
            path: path.to_path_buf(),
            detail,
        };
        let file = File::create(path).map_err(|e| err(e.to_string()))?;
        let threaded = match mode {
            WriteMode::Auto => std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
            WriteMode::Inline => false,
            WriteMode::Thread => true,
        };
        let out = if threaded {
            WriterThread::start(file).map_or_else(Output::Inline, Output::Thread)
        } else {
            Output::Inline(file)
        };
        let cap = match out {
            Output::Thread(_) => THREAD_BUFFER,
            _ => WRITE_BUFFER,
        };
        let mut buf = Vec::with_capacity(cap);
        header.write_to(&mut buf).map_err(|e| err(describe(&e)))?;
        Ok(CaptureWriter {
            buf,
            cap,
            out,
            path: path.to_path_buf(),
            resolution: header.ts_resolution,
            little_endian: header.endianness.is_little(),
            frames: 0,
            failed: None,
        })
    }

    /// True when full buffers go to a writer thread.
    pub fn is_threaded(&self) -> bool {
        matches!(self.out, Output::Thread(_))
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes `frame` as it was read (same record header when the input was classic pcap).
    pub fn write_original(&mut self, frame: &Frame) -> Result<(), CaptureError> {
        self.write_record(&frame.as_record())
    }

    /// Writes `record` as it was read (same record header when the input was classic pcap),
    /// straight from the reader's buffer.
    pub fn write_record(&mut self, record: &Record) -> Result<(), CaptureError> {
        let (ts_sec, ts_frac) = record.raw_ts.unwrap_or_else(|| self.split_ts(record.ts_ns));
        self.write_raw(ts_sec, ts_frac, record.orig_len, record.data)
    }

    /// Writes a complete frame (not truncated) stamped `ts_ns`.
    pub fn write_frame(&mut self, ts_ns: u64, data: &[u8]) -> Result<(), CaptureError> {
        let (ts_sec, ts_frac) = self.split_ts(ts_ns);
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.write_raw(ts_sec, ts_frac, len, data)
    }

    fn split_ts(&self, ts_ns: u64) -> (u32, u32) {
        let sec = u32::try_from(ts_ns / 1_000_000_000).unwrap_or(u32::MAX);
        let ns = (ts_ns % 1_000_000_000) as u32;
        match self.resolution {
            TsResolution::MicroSecond => (sec, ns / 1000),
            TsResolution::NanoSecond => (sec, ns),
        }
    }

    fn write_raw(
        &mut self,
        ts_sec: u32,
        ts_frac: u32,
        orig_len: u32,
        data: &[u8],
    ) -> Result<(), CaptureError> {
        self.check()?;
        let incl_len = u32::try_from(data.len()).map_err(|_| self.err("frame too large"))?;
        let mut record = [0u8; 16];
        let fields = [ts_sec, ts_frac, incl_len, orig_len.max(incl_len)];
        for (chunk, v) in record.chunks_exact_mut(4).zip(fields) {
            let bytes = if self.little_endian {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            chunk.copy_from_slice(&bytes);
        }
        self.put(&record, data)?;
        self.frames += 1;
        Ok(())
    }

    /// Appends one record (`head` then `data`) to the buffer, handing the buffer over first
    /// when the record does not fit.
    #[inline]
    fn put(&mut self, head: &[u8; 16], data: &[u8]) -> Result<(), CaptureError> {
        if self.buf.len() + head.len() + data.len() <= self.cap {
            self.buf.extend_from_slice(head);
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        self.put_after_hand_over(head, data)
    }

    /// [`CaptureWriter::put`] for a record that does not fit: hands the buffer over, then
    /// appends the record, in pieces (handing over each full buffer) when it is larger than
    /// a buffer.
    #[cold]
    fn put_after_hand_over(&mut self, head: &[u8], data: &[u8]) -> Result<(), CaptureError> {
        if !self.buf.is_empty() {
            self.hand_over()?;
        }
        for part in [head, data] {
            let mut rest = part;
            while !rest.is_empty() {
                if self.buf.len() >= self.cap {
                    self.hand_over()?;
                }
                let n = rest.len().min(self.cap.saturating_sub(self.buf.len()));
                let (now, later) = rest.split_at(n);
                self.buf.extend_from_slice(now);
                rest = later;
            }
        }
        Ok(())
    }

    /// Writes the buffer (in line) or swaps it for an empty one (threaded).
    fn hand_over(&mut self) -> Result<(), CaptureError> {
        self.pass_buffer(false)
    }

    /// Writes the buffer in line, or hands it to the thread for an empty one; with `wait`,
    /// also waits until the thread has written every buffer it holds.
    fn pass_buffer(&mut self, wait: bool) -> Result<(), CaptureError> {
        match &mut self.out {
            Output::Inline(file) => {
                let written = file.write_all(&self.buf);
                self.buf.clear();
                written.map_err(|e| self.fail(e.to_string()))
            }
            Output::Thread(thread) => {
                let buf = std::mem::take(&mut self.buf);
                let empty = if wait {
                    thread.drain(buf)
                } else {
                    thread.swap(buf)
                };
                match empty {
                    Some(empty) => {
                        self.buf = empty;
                        Ok(())
                    }
                    None => Err(self.close()),
                }
            }
            Output::Closed => Err(self.closed()),
        }
    }

    /// The thread's error if it has stopped on one; the error met before, again.
    #[inline]
    fn check(&mut self) -> Result<(), CaptureError> {
        let thread_failed = matches!(&self.out, Output::Thread(t) if t.has_failed());
        if self.failed.is_none() && !thread_failed {
            return Ok(());
        }
        Err(self.close())
    }

    /// Joins the writer thread (if any), keeping its error; the error to return.
    fn close(&mut self) -> CaptureError {
        if let Output::Thread(t) = std::mem::replace(&mut self.out, Output::Closed) {
            if let Err(e) = t.join() {
                self.failed.get_or_insert(e.to_string());
            }
        }
        self.closed()
    }

    /// The error met before (or, if none, that the output is closed).
    fn closed(&self) -> CaptureError {
        self.err(self.failed.as_deref().unwrap_or("the output is closed"))
    }

    /// Records `detail` as the writer's error; the error to return.
    fn fail(&mut self, detail: String) -> CaptureError {
        self.failed.get_or_insert(detail);
        self.closed()
    }

    fn err(&self, detail: &str) -> CaptureError {
        CaptureError::Write {
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    /// Writes every buffered record to the file (threaded: hands over the buffer and waits
    /// until the thread has written everything), returning the first write error.
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.check()?;
        // In line, `write_all` is the whole flush: a `File` holds no buffer of its own.
        self.pass_buffer(true)
    }
}

impl Drop for CaptureWriter {
    /// Writes what is buffered and waits for the writer thread; errors are ignored (call
    /// [`CaptureWriter::flush`] to see them).
    fn drop(&mut self) {
        if self.failed.is_none() {
            let _ = self.flush();
        }
        let _ = self.close();
    }
}

/// Ethernet type numbers used by [`LinkAdapter`].
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;

/// Converts frames of a capture's link type to Ethernet for the engine and back.
///
/// For Ethernet this is the identity. For the others, the link header is replaced by a
/// synthetic Ethernet header (fixed locally administered MACs, the frame's ethertype); on the
/// way back the link header of the last input frame with the same IP source address (or,
/// failing that, the same ethertype) is put back, with its protocol field set from the
/// Ethernet frame, so that frames the engine builds look like their neighbours.
pub struct LinkAdapter {
    linktype: u32,
    eth: Vec<u8>,
    out: Vec<u8>,
    by_src: HashMap<IpKey, Vec<u8>>,
    by_type: HashMap<u16, Vec<u8>>,
}

type IpKey = (u8, [u8; 16]);

/// Source MAC of synthesised Ethernet headers.
pub const SYNTH_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Destination MAC of synthesised Ethernet headers.
pub const SYNTH_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

impl LinkAdapter {
    /// An adapter for `linktype`, or the error to report if the engine cannot be given it.
    pub fn new(linktype: u32) -> Result<LinkAdapter, CaptureError> {
        use linktype::*;
        match linktype {
            ETHERNET | NULL | LOOP | RAW | RAW_OPENBSD | IPV4 | IPV6 | LINUX_SLL | LINUX_SLL2 => {
                Ok(LinkAdapter {
                    linktype,
                    eth: Vec::with_capacity(2048),
                    out: Vec::with_capacity(2048),
                    by_src: HashMap::new(),
                    by_type: HashMap::new(),
                })
            }
            other => Err(CaptureError::UnsupportedLinkType { linktype: other }),
        }
    }

    /// Length of the link header and the ethertype it announces, if the frame is long enough.
    fn split(&self, raw: &[u8]) -> Option<(usize, u16)> {
        use linktype::*;
        let be16 = |i: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*raw.get(i)?, *raw.get(i + 1)?]))
        };
        match self.linktype {
            NULL | LOOP => {
                let b: [u8; 4] = raw.get(..4)?.try_into().ok()?;
                let le = u32::from_le_bytes(b);
                let family = if self.linktype == LOOP || le > 0xffff {
                    u32::from_be_bytes(b)
                } else {
                    le
                };
                let ethertype = match family {
                    2 => ETH_IPV4,
                    10 | 24 | 28 | 30 => ETH_IPV6,
                    _ => 0,
                };
                Some((4, ethertype))
            }
            RAW | RAW_OPENBSD | IPV4 | IPV6 => {
                let ethertype = match raw.first()? >> 4 {
                    4 => ETH_IPV4,
                    6 => ETH_IPV6,
                    _ => 0,
                };
                Some((0, ethertype))
            }
            LINUX_SLL | LINUX_SLL2 => {
                let layout = sll_layout(self.linktype)?;
                Some((layout.len, be16(layout.protocol_at)?))
            }
            _ => None,
        }
    }

    /// The frame as Ethernet. Frames too short to hold their link header come back empty
    /// (the engine then counts them unparseable).
    pub fn to_ethernet<'a>(&'a mut self, raw: &'a [u8]) -> &'a [u8] {
        if self.linktype == linktype::ETHERNET {
            return raw;
        }
        let Some((hlen, ethertype)) = self.split(raw) else {
            return &[];
        };
        let (header, payload) = raw.split_at(hlen.min(raw.len()));
        if let Some(key) = ip_source(ethertype, payload) {
            remember(&mut self.by_src, key, header);
        }
        remember(&mut self.by_type, ethertype, header);
        self.eth.clear();
        self.eth.extend_from_slice(&SYNTH_DST_MAC);
        self.eth.extend_from_slice(&SYNTH_SRC_MAC);
        self.eth.extend_from_slice(&ethertype.to_be_bytes());
        self.eth.extend_from_slice(payload);
        &self.eth
    }

    /// An Ethernet frame from the engine in the capture's link type.
    pub fn from_ethernet<'a>(&'a mut self, eth: &'a [u8]) -> &'a [u8] {
        use linktype::*;
        if self.linktype == ETHERNET {
            return eth;
        }
        let Some(ethertype) = eth.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            return eth;
        };
        let payload = eth.get(14..).unwrap_or_default();
        let template = ip_source(ethertype, payload)
            .and_then(|k| self.by_src.get(&k))
            .or_else(|| self.by_type.get(&ethertype))
            .cloned();
        self.out.clear();
        match self.linktype {
            NULL | LOOP => {
                let header = template.unwrap_or_else(|| {
                    let family: u32 = if ethertype == ETH_IPV6 { 10 } else { 2 };
                    if self.linktype == LOOP {
                        family.to_be_bytes().to_vec()
                    } else {
                        family.to_ne_bytes().to_vec()
                    }
                });
                self.out.extend_from_slice(&header);
            }
            LINUX_SLL | LINUX_SLL2 => {
                if let Some(layout) = sll_layout(self.linktype) {
                    let mut header = template.unwrap_or_else(|| {
                        // Packet type "sent by us", ARPHRD_ETHER, no address.
                        let mut h = vec![0u8; layout.len];
                        for (at, value) in layout.sent_by_us {
                            if let Some(b) = h.get_mut(at) {
                                *b = value;
                            }
                        }
                        h
                    });
                    let at = layout.protocol_at;
                    if let Some(p) = header.get_mut(at..at + 2) {
                        p.copy_from_slice(&ethertype.to_be_bytes());
                    }
                    self.out.extend_from_slice(&header);
                }
            }
            _ => {}
        }
        self.out.extend_from_slice(payload);
        &self.out
    }
}

/// Where the fields of a Linux cooked header (SLL or SLL2) sit.
struct SllLayout {
    /// Header length.
    len: usize,
    /// Offset of the protocol (ethertype) field.
    protocol_at: usize,
    /// `(offset, value)` of the bytes that make a header of our own say "sent by us"
    /// (packet type 4) on an Ethernet device (ARPHRD_ETHER, 1).
    sent_by_us: [(usize, u8); 2],
}

/// The layout of `linktype`'s cooked header, if it is SLL or SLL2.
fn sll_layout(linktype: u32) -> Option<SllLayout> {
    let (len, protocol_at, sent_by_us) = match linktype {
        linktype::LINUX_SLL => (16, 14, [(1, 4), (3, 1)]),
        linktype::LINUX_SLL2 => (20, 0, [(10, 4), (9, 1)]),
        _ => return None,
    };
    Some(SllLayout {
        len,
        protocol_at,
        sent_by_us,
    })
}

fn remember<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<u8>>, key: K, header: &[u8]) {
    match map.get_mut(&key) {
        Some(h) if h.as_slice() == header => {}
        Some(h) => {
            h.clear();
            h.extend_from_slice(header);
        }
        None => {
            // Bounded by the number of distinct source addresses in the capture, which the
            // capture itself bounds; each entry is at most 20 bytes.
            map.insert(key, header.to_vec());
        }
    }
}

/// The IP source address of a packet, as a map key.
fn ip_source(ethertype: u16, ip: &[u8]) -> Option<IpKey> {
    let mut key = [0u8; 16];
    match ethertype {
        ETH_IPV4 => {
            key[..4].copy_from_slice(ip.get(12..16)?);
            Some((4, key))
        }
        ETH_IPV6 => {
            key.copy_from_slice(ip.get(8..24)?);
            Some((6, key))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4/TCP packet (no link header) from `src` with a few payload bytes.
    fn ipv4(src: [u8; 4]) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 44, 0, 0, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&[198, 18, 0, 2]);
        ip.extend_from_slice(&[0x9c, 0x40, 0, 25]);
        ip.extend_from_slice(&[0u8; 20]);
        ip
    }

    fn ipv6() -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        ip.extend_from_slice(&[0u8; 28]);
        ip.extend_from_slice(&[0u8; 20]);
        ip
    }

    fn round_trip(linktype: u32, frames: &[Vec<u8>]) {
        let mut a = LinkAdapter::new(linktype).expect("supported");
        for f in frames {
            let eth = a.to_ethernet(f).to_vec();
            assert!(
                eth.len() >= 14,
                "linktype {linktype}: converted frame too short"
            );
            let back = a.from_ethernet(&eth).to_vec();
            assert_eq!(&back, f, "linktype {linktype}: frame not restored");
        }
    }

    fn sll(pkttype: u8, addr: [u8; 6], proto: u16, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0, pkttype, 0, 1, 0, 6];
        h.extend_from_slice(&addr);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&proto.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    #[test]
    fn sll_round_trips_per_source_address() {
        let a = sll(0, [2, 0, 0, 0, 0, 0xaa], 0x0800, &ipv4([198, 18, 0, 1]));
        let b = sll(4, [2, 0, 0, 0, 0, 0xbb], 0x0800, &ipv4([198, 18, 0, 2]));
        let c = sll(0, [2, 0, 0, 0, 0, 0xaa], 0x86dd, &ipv6());
        round_trip(linktype::LINUX_SLL, &[a.clone(), b.clone(), c]);
        // An engine-built frame from 198.18.0.2 gets b's link header back.
        let mut ad = LinkAdapter::new(linktype::LINUX_SLL).expect("supported");
        let _ = ad.to_ethernet(&a);
        let _ = ad.to_ethernet(&b);
        let mut eth = SYNTH_DST_MAC.to_vec();
        eth.extend_from_slice(&SYNTH_SRC_MAC);
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&ipv4([198, 18, 0, 2]));
        assert_eq!(ad.from_ethernet(&eth)[..16], b[..16]);
    }

    #[test]
    fn sll2_null_loop_raw_round_trip() {
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6];
        sll2.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
        sll2.extend_from_slice(&ipv4([198, 18, 0, 1]));
        round_trip(linktype::LINUX_SLL2, &[sll2]);
        let mut null_le = 2u32.to_le_bytes().to_vec();
        null_le.extend_from_slice(&ipv4([198, 18, 0, 1]));
        let mut null6 = 30u32.to_le_bytes().to_vec();
        null6.extend_from_slice(&ipv6());
        round_trip(linktype::NULL, &[null_le, null6]);
        let mut null_be = 2u32.to_be_bytes().to_vec();
        null_be.extend_from_slice(&ipv4([198, 18, 0, 1]));
        round_trip(linktype::NULL, &[null_be.clone()]);
        round_trip(linktype::LOOP, &[null_be]);
        round_trip(linktype::RAW, &[ipv4([198, 18, 0, 1]), ipv6()]);
    }

    #[test]
    fn ethernet_is_identity_and_short_frames_become_empty() {
        let mut a = LinkAdapter::new(linktype::ETHERNET).expect("supported");
        let f = [1u8, 2, 3];
        assert_eq!(a.to_ethernet(&f), &f);
        let mut s = LinkAdapter::new(linktype::LINUX_SLL).expect("supported");
        for n in 0..16 {
            assert!(s.to_ethernet(&[0u8; 16][..n]).is_empty());
        }
        assert!(LinkAdapter::new(105).is_err());
        let _ = s.from_ethernet(&[0u8; 5]);
    }

    #[test]
    fn cooked_headers_of_our_own_say_sent_by_us_with_the_frames_ethertype() {
        let mut eth = SYNTH_DST_MAC.to_vec();
        eth.extend_from_slice(&SYNTH_SRC_MAC);
        eth.extend_from_slice(&ETH_IPV6.to_be_bytes());
        eth.extend_from_slice(&ipv6());
        // Nothing read yet: no neighbour's header to copy.
        let mut sll = LinkAdapter::new(linktype::LINUX_SLL).expect("supported");
        let out = sll.from_ethernet(&eth).to_vec();
        let mut want = vec![0, 4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x86, 0xdd];
        want.extend_from_slice(&ipv6());
        assert_eq!(out, want);
        let mut sll2 = LinkAdapter::new(linktype::LINUX_SLL2).expect("supported");
        let out = sll2.from_ethernet(&eth).to_vec();
        let mut want = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        want.extend_from_slice(&ipv6());
        assert_eq!(out, want);
    }

    /// Deterministic frame `i`: lengths vary from 1 byte to 3 KiB, contents from `i`.
    fn numbered_frame(i: u32) -> Vec<u8> {
        let len = 1 + (i.wrapping_mul(2_654_435_761) % 3072) as usize;
        (0..len).map(|k| (k as u32 ^ i) as u8).collect()
    }

    /// Writes `n` numbered frames (µs timestamps) and returns the file.
    fn numbered_capture(dir: &Path, n: u32) -> PathBuf {
        let path = dir.join("numbered.pcap");
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let mut w = CaptureWriter::create(&path, header).expect("create");
        for i in 0..n {
            let ts = u64::from(i) * 1_000_000_000 + u64::from(i % 1000) * 1000;
            w.write_frame(ts, &numbered_frame(i)).expect("write");
        }
        w.flush().expect("flush");
        path
    }

    /// Big-endian and nanosecond captures: record headers are read in the file's byte
    /// order and resolution, and written back in them byte for byte.
    #[test]
    fn big_endian_nanosecond_records_read_and_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("be.pcap");
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            endianness: Endianness::Big,
            ts_resolution: TsResolution::NanoSecond,
            ..PcapHeader::default()
        };
        let mut w = CaptureWriter::create(&path, header).expect("create");
        for i in 0..300u32 {
            w.write_frame(u64::from(i) * 1_000_000_007, &numbered_frame(i))
                .expect("write");
        }
        w.flush().expect("flush");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(&bytes[..4], &[0xa1, 0xb2, 0x3c, 0x4d]);
        let mut r = CaptureReader::open(&path).expect("open");
        let out = dir.path().join("out.pcap");
        let mut w = CaptureWriter::create(&out, r.output_header()).expect("create");
        let mut i = 0u32;
        while let Some(rec) = r.next_record() {
            let rec = rec.expect("record");
            assert_eq!(rec.data, &numbered_frame(i)[..]);
            assert_eq!(rec.ts_ns, u64::from(i) * 1_000_000_007);
            assert_eq!(rec.orig_len as usize, rec.data.len());
            w.write_record(&rec).expect("write");
            i += 1;
        }
        assert_eq!(i, 300);
        w.flush().expect("flush");
        assert_eq!(std::fs::read(&out).expect("read"), bytes);
    }

    #[test]
    fn records_are_read_in_place_across_buffer_refills_and_written_back_identically() {
        let dir = tempfile::tempdir().expect("tempdir");
        // About 15 MB: the reader's 8 MB buffer is refilled mid-record at least once.
        let n = 10_000;
        let input = numbered_capture(dir.path(), n);
        let mut r = CaptureReader::open(&input).expect("open");
        let output = dir.path().join("copy.pcap");
        let mut w = CaptureWriter::create(&output, r.output_header()).expect("create");
        let mut i = 0;
        while let Some(rec) = r.next_record() {
            let rec = rec.expect("intact");
            assert_eq!(rec.data, numbered_frame(i).as_slice(), "frame {i}");
            let ts = u64::from(i) * 1_000_000_000 + u64::from(i % 1000) * 1000;
            assert_eq!(rec.ts_ns, ts, "frame {i}");
            w.write_record(&rec).expect("write");
            i += 1;
        }
        assert_eq!(i, n);
        assert_eq!(r.packets(), u64::from(n));
        w.flush().expect("flush");
        let (a, b) = (std::fs::read(&input), std::fs::read(&output));
        assert!(a.expect("input") == b.expect("output"), "copy differs");
    }

    #[test]
    fn records_larger_than_a_read_chunk_are_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.pcap");
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            snaplen: MAX_RECORD,
            ..PcapHeader::default()
        };
        // Small records around records of 1.5, 3 and 7.5 read chunks (MAX_RECORD is 8).
        let sizes = [
            60,
            READ_CHUNK * 3 / 2,
            61,
            READ_CHUNK * 3,
            READ_CHUNK * 15 / 2,
            62,
        ];
        let frame =
            |i: usize, len: usize| -> Vec<u8> { (0..len).map(|k| (k * 7 + i) as u8).collect() };
        let mut w = CaptureWriter::create(&path, header).expect("create");
        for (i, &len) in sizes.iter().enumerate() {
            w.write_frame(i as u64 * 1000, &frame(i, len))
                .expect("write");
        }
        w.flush().expect("flush");
        let mut r = CaptureReader::open(&path).expect("open");
        for (i, &len) in sizes.iter().enumerate() {
            let rec = r.next_record().expect("a record").expect("intact");
            assert_eq!(rec.data.len(), len, "record {i}");
            assert!(rec.data == frame(i, len).as_slice(), "record {i} differs");
        }
        assert!(r.next_record().is_none());
    }

    #[test]
    fn next_frame_and_next_record_agree_and_truncation_is_reported_where_it_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = numbered_capture(dir.path(), 50);
        let bytes = std::fs::read(&input).expect("read");
        // Cut inside the 41st record: 24-byte header, then 16 + len per record.
        let start_41: usize = 24 + (0..40).map(|i| 16 + numbered_frame(i).len()).sum::<usize>();
        let cut = dir.path().join("cut.pcap");
        std::fs::write(&cut, &bytes[..start_41 + 20]).expect("write");
        let mut owned = CaptureReader::open(&cut).expect("open");
        let mut lent = CaptureReader::open(&cut).expect("open");
        for i in 0..40 {
            let f = owned
                .next_frame()
                .expect("a frame")
                .expect("intact")
                .clone();
            let r = lent.next_record().expect("a record").expect("intact");
            assert_eq!(f.data, r.data, "frame {i}");
            assert_eq!((f.ts_ns, f.orig_len), (r.ts_ns, r.orig_len), "frame {i}");
        }
        for reader in [&mut owned, &mut lent] {
            match reader.next_record() {
                Some(Err(CaptureError::Truncated {
                    packets, offset, ..
                })) => {
                    assert_eq!(packets, 40);
                    assert_eq!(offset, start_41 as u64);
                }
                other => panic!("expected truncation, got {other:?}"),
            }
            assert!(reader.next_record().is_none(), "nothing after an error");
        }
    }

    /// A pcapng file: two Ethernet interfaces (µs by default, then ns), `n` numbered
    /// packets alternating between them, packet `i` stamped with raw count `1000 * i + 7`.
    fn numbered_pcapng(dir: &Path, n: u32) -> PathBuf {
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        use pcap_file::pcapng::PcapNgWriter;
        let path = dir.join("numbered.pcapng");
        let file = File::create(&path).expect("create");
        let mut w = PcapNgWriter::new(file).expect("writer");
        for options in [vec![], vec![InterfaceDescriptionOption::IfTsResol(9)]] {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: 0,
                options,
            };
            w.write_pcapng_block(idb).expect("idb");
        }
        for i in 0..n {
            let data = numbered_frame(i);
            let epb = EnhancedPacketBlock {
                interface_id: i % 2,
                // The crate writes the Duration's nanoseconds as the raw count.
                timestamp: std::time::Duration::from_nanos(1000 * u64::from(i) + 7),
                original_len: data.len() as u32 + 3,
                data: data.into(),
                options: Vec::new(),
            };
            w.write_pcapng_block(epb).expect("epb");
        }
        w.into_inner().flush().expect("flush");
        path
    }

    #[test]
    fn pcapng_packets_come_with_their_interfaces_units_and_truncation_counts_packets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = numbered_pcapng(dir.path(), 6000);
        let mut r = CaptureReader::open(&input).expect("open");
        assert_eq!(r.format(), Format::PcapNg);
        let mut i = 0u32;
        while let Some(rec) = r.next_record() {
            let rec = rec.expect("intact");
            let data = numbered_frame(i);
            assert_eq!(rec.data, data.as_slice(), "packet {i}");
            assert_eq!(rec.orig_len, data.len() as u32 + 3, "packet {i}");
            let raw = 1000 * u64::from(i) + 7;
            let want = if i.is_multiple_of(2) { raw * 1000 } else { raw };
            assert_eq!(rec.ts_ns, want, "packet {i}");
            i += 1;
        }
        assert_eq!(i, 6000);
        assert_eq!(r.linktype(), linktype::ETHERNET);
        assert_eq!(r.output_header().datalink, DataLink::ETHERNET);
        // Cut 10 bytes into the last packet block: every packet before it, then the damage.
        let bytes = std::fs::read(&input).expect("read");
        let last_block = 32 + numbered_frame(5999).len().div_ceil(4) * 4;
        let cut = dir.path().join("cut.pcapng");
        std::fs::write(&cut, &bytes[..bytes.len() - last_block + 10]).expect("write");
        let mut r = CaptureReader::open(&cut).expect("open");
        let mut n = 0;
        let err = loop {
            match r.next_frame() {
                Some(Ok(_)) => n += 1,
                Some(Err(e)) => break e,
                None => panic!("no error after {n} packets"),
            }
        };
        assert_eq!(n, 5999);
        assert!(
            matches!(
                err,
                CaptureError::Truncated {
                    packets: 5999,
                    approximate: true,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(r.next_frame().is_none(), "nothing after an error");
    }

    /// Every record of `path`, read with a reader opened on `open` (the file itself or a FIFO
    /// fed from it), and the error that ended the reading, if any.
    fn read_all(open: &Path) -> (Vec<Frame>, Option<String>) {
        let mut r = CaptureReader::open(open).expect("open");
        let mut frames = Vec::new();
        while let Some(f) = r.next_frame() {
            match f {
                Ok(f) => frames.push(f.clone()),
                Err(e) => return (frames, Some(e.to_string())),
            }
        }
        (frames, None)
    }

    /// A FIFO (or a pipe as `/dev/stdin`) cannot seek back over the magic number: its records
    /// are read like the file's, across buffer refills, for pcap, pcapng and a cut capture.
    #[test]
    fn a_fifo_is_read_like_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pcap = numbered_capture(dir.path(), 6000);
        let ng = numbered_pcapng(dir.path(), 3000);
        let cut = dir.path().join("cut.pcap");
        let bytes = std::fs::read(&pcap).expect("read");
        std::fs::write(&cut, &bytes[..bytes.len() - 1000]).expect("write");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            println!("SKIP: mkfifo unavailable");
            return;
        }
        for input in [&pcap, &ng, &cut] {
            let want = read_all(input);
            let data = std::fs::read(input).expect("read");
            let writer_path = fifo.clone();
            let writer = std::thread::spawn(move || {
                let mut f = File::options().write(true).open(writer_path).expect("fifo");
                // Broken pipe if the reader stops early: the comparison below tells.
                let _ = f.write_all(&data);
            });
            let got = read_all(&fifo);
            writer.join().expect("writer");
            let name = input.display();
            assert_eq!(got.0.len(), want.0.len(), "{name}");
            for (i, (a, b)) in got.0.iter().zip(&want.0).enumerate() {
                assert!(a.data == b.data, "{name}: frame {i} differs");
                assert_eq!((a.ts_ns, a.orig_len), (b.ts_ns, b.orig_len), "{name}: {i}");
            }
            assert_eq!(got.1, want.1, "{name}");
        }
        assert_eq!(read_all(&pcap).0.len(), 6000);
        assert!(read_all(&cut)
            .1
            .is_some_and(|e| e.contains("ends inside a record")));
    }

    /// A record header claiming more than [`MAX_RECORD`] is corruption reported where the
    /// record starts: "claims N bytes" when the bytes are there and fit the read buffer, "ends
    /// inside a record" when they are not or do not fit; the same through a FIFO.
    #[test]
    fn oversized_records_are_reported_where_they_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = numbered_capture(dir.path(), 3);
        let head = std::fs::read(&good).expect("read");
        let fifo = dir.path().join("fifo");
        let have_fifo = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        let cases: [(u32, usize, &str); 3] = [
            (2 << 20, 2 << 20, "a record claims 2097152 bytes (corrupt?)"),
            (0xffff_fff0, 100, "the file ends inside a record"),
            (9_000_000, 9_000_000, "the file ends inside a record"),
        ];
        for (claim, present, want) in cases {
            let mut bytes = head.clone();
            // In the file's byte order (the magic number written as 0xa1b2c3d4 tells).
            let big_endian = head.first() == Some(&0xa1);
            for v in [7u32, 0, claim, claim] {
                let b = if big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                bytes.extend_from_slice(&b);
            }
            bytes.resize(bytes.len() + present, 0x5a);
            let path = dir.path().join("big.pcap");
            std::fs::write(&path, &bytes).expect("write");
            let mut inputs = vec![path.clone()];
            if have_fifo {
                inputs.push(fifo.clone());
            }
            for input in inputs {
                let feeder = (input == fifo).then(|| {
                    let (data, to) = (bytes.clone(), fifo.clone());
                    std::thread::spawn(move || {
                        let mut f = File::options().write(true).open(to).expect("fifo");
                        let _ = f.write_all(&data);
                    })
                });
                let (frames, err) = read_all(&input);
                drop(feeder.map(|t| t.join()));
                assert_eq!(frames.len(), 3, "{claim}: {}", input.display());
                let err = err.expect("an error");
                assert!(err.contains(want), "{claim}: {err}");
                assert!(err.contains(&format!("byte {}", head.len())), "{err}");
                assert!(err.contains("after 3 complete packets"), "{err}");
            }
        }
    }

    #[test]
    fn pcapng_timestamp_units() {
        assert_eq!(TsUnit::Decimal(6).to_ns(1_500_000), 1_500_000_000);
        assert_eq!(TsUnit::Decimal(9).to_ns(7), 7);
        assert_eq!(TsUnit::Decimal(12).to_ns(7_000), 7);
        assert_eq!(TsUnit::Binary(10).to_ns(1024), 1_000_000_000);
        assert_eq!(TsUnit::Decimal(6).to_ns(u64::MAX), u64::MAX);
    }
}

/// The writer's edges: buffer boundaries, the writer thread, errors, drop.
#[cfg(test)]
mod writer_tests {
    use super::*;
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    use std::time::Duration;

    /// A frame of `len` bytes numbered `i`.
    fn frame(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|k| (k ^ i.wrapping_mul(31)) as u8).collect()
    }

    /// Small frames, with frames around and above either buffer size among them, and a flush
    /// (`None`) in the middle.
    fn workload() -> Vec<Option<(u64, Vec<u8>)>> {
        let mut sizes: Vec<usize> = (0..3000)
            .map(|i| 1 + (i * 2_654_435_761usize) % 1600)
            .collect();
        let big = [
            WRITE_BUFFER - 16,
            WRITE_BUFFER - 15,
            WRITE_BUFFER,
            WRITE_BUFFER + 1,
            3 * WRITE_BUFFER + 7,
            THREAD_BUFFER - 16,
            THREAD_BUFFER - 15,
            2 * THREAD_BUFFER + 5,
            MAX_RECORD as usize,
            0,
        ];
        for (k, len) in big.into_iter().enumerate() {
            sizes.insert(100 + k * 250, len);
        }
        let mut out: Vec<_> = sizes
            .into_iter()
            .enumerate()
            .map(|(i, len)| Some((1_700_000_000_123_456_789 + i as u64 * 1_001, frame(i, len))))
            .collect();
        out.insert(1500, None);
        out
    }

    /// What `pcap-file`'s own writer makes of the workload.
    fn expected(header: PcapHeader, work: &[Option<(u64, Vec<u8>)>]) -> Vec<u8> {
        let mut w = PcapWriter::with_header(Vec::new(), header).expect("header");
        for (ts, data) in work.iter().flatten() {
            let ts = Duration::from_nanos(*ts);
            let packet = PcapPacket::new(ts, data.len() as u32, data);
            w.write_packet(&packet).expect("packet");
        }
        w.into_writer()
    }

    /// Little-endian µs and big-endian ns headers, with a snaplen above the largest frame
    /// (`pcap-file`'s writer checks it; ours writes any length).
    fn headers() -> [PcapHeader; 2] {
        let snaplen = 4 * MAX_RECORD;
        [
            PcapHeader {
                datalink: DataLink::ETHERNET,
                snaplen,
                ..PcapHeader::default()
            },
            PcapHeader {
                datalink: DataLink::ETHERNET,
                endianness: Endianness::Big,
                ts_resolution: TsResolution::NanoSecond,
                snaplen,
                ..PcapHeader::default()
            },
        ]
    }

    fn write_all(
        w: &mut CaptureWriter,
        work: &[Option<(u64, Vec<u8>)>],
    ) -> Result<(), CaptureError> {
        for item in work {
            match item {
                Some((ts, data)) => w.write_frame(*ts, data)?,
                None => w.flush()?,
            }
        }
        Ok(())
    }

    /// In line and threaded, little- and big-endian: the bytes `pcap-file` writes, for
    /// thousands of small records across buffer boundaries and records as large as a
    /// buffer, one byte more, several buffers and `MAX_RECORD`; a flush in the middle
    /// leaves a threaded writer threaded.
    #[test]
    fn in_line_and_threaded_writers_write_the_same_bytes_as_pcap_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = workload();
        for header in headers() {
            let want = expected(header, &work);
            for mode in [WriteMode::Inline, WriteMode::Thread] {
                let path = dir.path().join("out.pcap");
                let mut w = CaptureWriter::create_with(&path, header, mode).expect("create");
                assert_eq!(w.is_threaded(), mode == WriteMode::Thread);
                write_all(&mut w, &work).expect("write");
                assert_eq!(w.is_threaded(), mode == WriteMode::Thread, "after a flush");
                w.flush().expect("flush");
                assert_eq!(w.frames(), work.iter().flatten().count() as u64);
                let got = std::fs::read(&path).expect("read");
                assert_eq!(got.len(), want.len(), "{mode:?} {:?}", header.endianness);
                assert!(
                    got == want,
                    "{mode:?} {:?}: bytes differ",
                    header.endianness
                );
            }
        }
    }

    /// `Auto` starts the thread exactly when the process may use more than one CPU.
    #[test]
    fn auto_is_threaded_only_with_more_than_one_cpu() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = CaptureWriter::create(&dir.path().join("a.pcap"), headers()[0]).expect("create");
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(w.is_threaded(), cpus > 1, "{cpus} CPUs");
    }

    /// `/dev/full` and the error text a write to it gives, if this system has it.
    fn dev_full() -> Option<(&'static Path, String)> {
        let full = Path::new("/dev/full");
        if !full.exists() {
            println!("SKIP: no /dev/full");
            return None;
        }
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        Some((full, format!("cannot write /dev/full: {enospc}")))
    }

    /// Writes the workload until the first error; the error's text.
    fn first_error(path: &Path, mode: WriteMode) -> String {
        let mut w = CaptureWriter::create_with(path, headers()[0], mode).expect("create");
        let e = write_all(&mut w, &workload())
            .and_then(|()| w.flush())
            .expect_err("the write must fail");
        assert!(
            matches!(&e, CaptureError::Write { path: p, .. } if p == path),
            "{e}"
        );
        // Every later call says it again.
        let again = w
            .write_frame(1, &[0u8; 60])
            .expect_err("write after the error");
        assert_eq!(again.to_string(), e.to_string());
        let again = w.flush().expect_err("flush after the error");
        assert_eq!(again.to_string(), e.to_string());
        e.to_string()
    }

    /// A full device: the thread's error reaches the caller with the path and the OS's
    /// detail, the same text as in line; dropping the failed writer returns.
    #[test]
    fn a_full_device_is_the_same_write_error_threaded_and_in_line() {
        let Some((full, want)) = dev_full() else {
            return;
        };
        let inline = first_error(full, WriteMode::Inline);
        let threaded = first_error(full, WriteMode::Thread);
        assert_eq!(threaded, inline);
        assert_eq!(inline, want);
    }

    /// The thread's error reaches the caller through a `write_*` call, not only `flush`:
    /// the thread stops at its first failed write, so at the latest the hand-over after the
    /// pool's buffers are all given (no empty one comes back) reports it.
    #[test]
    fn a_thread_error_is_returned_by_a_write_before_any_flush() {
        let Some((full, want)) = dev_full() else {
            return;
        };
        let mut w =
            CaptureWriter::create_with(full, headers()[0], WriteMode::Thread).expect("create");
        let data = frame(7, 9000);
        let records = (WRITE_BUFFERS + 2) * THREAD_BUFFER / (data.len() + 16);
        let failed_at = (0..records).find_map(|i| w.write_frame(i as u64, &data).err());
        let e = failed_at.expect("a write fails before the pool is used up twice");
        assert_eq!(e.to_string(), want);
        assert!(w.frames() < records as u64);
    }

    /// A FIFO whose reader has gone: the thread's EPIPE comes back with the path.
    #[test]
    fn a_pipe_whose_reader_is_gone_is_a_write_error_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            println!("SKIP: mkfifo unavailable");
            return;
        }
        let epipe = std::io::Error::from_raw_os_error(libc::EPIPE).to_string();
        for mode in [WriteMode::Inline, WriteMode::Thread] {
            let reader_path = fifo.clone();
            // Opens the read end and closes it again: creating the writer waits for the
            // open, and the writes start after the close.
            let reader = std::thread::spawn(move || drop(File::open(reader_path)));
            let mut w = CaptureWriter::create_with(&fifo, headers()[0], mode).expect("create");
            reader.join().expect("reader");
            let e = write_all(&mut w, &workload())
                .and_then(|()| w.flush())
                .expect_err("the write must fail");
            assert_eq!(
                e.to_string(),
                format!("cannot write {}: {epipe}", fifo.display()),
                "{mode:?}"
            );
        }
    }

    /// Dropped without a flush, a threaded writer writes everything it was given (as
    /// `BufWriter` does) and returns, also on a device where the writes fail.
    #[test]
    fn a_writer_dropped_without_flush_writes_everything_and_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work: Vec<_> = workload().into_iter().filter(Option::is_some).collect();
        let header = headers()[1];
        for mode in [WriteMode::Inline, WriteMode::Thread] {
            let path = dir.path().join("dropped.pcap");
            let mut w = CaptureWriter::create_with(&path, header, mode).expect("create");
            write_all(&mut w, &work).expect("write");
            drop(w);
            let got = std::fs::read(&path).expect("read");
            assert!(got == expected(header, &work), "{mode:?}: bytes differ");
        }
        let full = Path::new("/dev/full");
        if full.exists() {
            let mut w =
                CaptureWriter::create_with(full, header, WriteMode::Thread).expect("create");
            let _ = write_all(&mut w, &work);
            drop(w);
        }
    }
}
