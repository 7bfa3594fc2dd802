//! The AF_PACKET backend: raw Ethernet frames on two Linux interfaces.
//!
//! The Linux traps of DESIGN.md §4, and what this module does about each:
//! - **Our own frames re-read**: every socket sets `PACKET_IGNORE_OUTGOING`; frames still
//!   reported as `PACKET_OUTGOING` (kernels before 4.20) are skipped and counted.
//! - **Silent truncation**: a ring slot holds a frame of the ports' MTU (see
//!   [`ring_frame_size`]); a longer frame is not cut but handed over whole through the
//!   socket's ordinary queue (`PACKET_COPY_THRESH`: the slot says `TP_STATUS_COPY`) and read
//!   there with `MSG_TRUNC` into a [`MAX_FRAME`] buffer, so the kernel tells us its real
//!   length. A frame longer than that, or one the kernel did cut (`tp_len > tp_snaplen`,
//!   when the socket's queue was full), is dropped and counted, never forwarded cut.
//! - **VLAN tags**: the kernel strips 802.1Q/802.1ad tags before AF_PACKET sees a frame and
//!   reports them in the ring slot's header (or `PACKET_AUXDATA` on the copy path); the
//!   tag is put back so trunks are bridged tagged.
//! - **Partial checksums** (`TP_STATUS_CSUMNOTREADY`, frames from a local peer with tx
//!   checksum offload): counted in [`IoStats::rx_csum_partial`], forwarded as they are.
//! - **Link down**: `ENETDOWN` (an error on the socket, reported by `poll` as `POLLERR`) is
//!   logged and waited out (the socket stays bound and the ring fills again when the link
//!   is back up); a vanished interface (`ENODEV`) ends the worker.
//! - **No read timeout**: both rings are looked at without a system call; when both are
//!   empty the worker optionally spins on them for [`AfPacketBackend::set_busy_poll`], then
//!   waits on both sockets with one `poll(2)` with the caller's timeout.
//!
//! Batching (issue 6; profile and figures in scripts/bench/notes.md):
//! - **Receive**: a `PACKET_RX_RING` per socket, `TPACKET_V2`: the kernel writes each frame
//!   into a shared slot and flips its status, so reading costs no system call and no copy
//!   out of the kernel (one copy, slot to batch). V2 rather than V3: V3 hands over whole
//!   blocks, on a timer at light load (milliseconds of added latency); V2 frees every
//!   frame as soon as it is written and `poll` wakes per frame. If the ring cannot be set
//!   up (memory limits, an old kernel), the socket falls back to one `recvmsg` per frame.
//! - **Send, `sendmmsg`** (default): the worker hands a batch's output over in one
//!   [`Backend::send_frames`], and `sendmmsg` points straight at the frames where the
//!   worker holds them (forwarded frames in the receive batch, the engine's own in its
//!   sink), [`TX_BATCH`] per call and side: no copy into a queue first (that copy was about
//!   5 % of the worker once the hosts' receive left its core, notes.md). Frames given to
//!   [`Backend::send`] one by one queue per side and go out in `sendmmsg` batches at each
//!   [`Backend::flush`]. On the veth lab this measured faster than the
//!   transmit ring below (4 alternated runs on a quiet machine, scripts/bench/notes.md):
//!   veth copies a ring frame into fresh pages when it crosses into the peer's namespace
//!   (`skb_copy_ubufs`), a copy a NIC's DMA from the ring would not need.
//! - **Send, transmit ring** (`--tx-ring`; [`TxOptions`]): a `PACKET_TX_RING` per socket,
//!   TPACKET_V2, [`TX_RING_BYTES`], slots the size of the receive ring's. [`Backend::send`]
//!   copies the frame into the next free slot and marks it; one `send(2)` of no data hands
//!   every marked slot to the kernel, every [`TX_BATCH`] frames and at each
//!   [`Backend::flush`] (the worker calls it after each batch). Slots are taken back, and
//!   counted sent, once the kernel marks them available again. Choices where the kernel
//!   leaves room:
//!   - a frame the kernel *refuses* (peer queue full: `ENOBUFS`; link down) stays in its
//!     slot, with those behind it, and is retried in order at the next flush (the kernel
//!     offers no way to skip it); each refused `send` is counted in
//!     [`IoStats::tx_retries`]. The `sendmmsg` path instead drops such a frame;
//!   - `PACKET_LOSS` is set (a malformed frame would otherwise stop the ring for good), so
//!     the ring only takes frames the kernel cannot find malformed: 14 bytes up to the
//!     sending port's MTU plus the Ethernet header (and an 802.1Q tag). The MTU is read at
//!     start: if it is lowered while the bridge runs, frames between the new and the old
//!     limit are skipped by the kernel unseen but counted sent (restart the bridge);
//!     a raised MTU only sends the longer frames through the copy path;
//!   - the *copy path* (`sendmmsg` from a queue per side, through a second, send-only
//!     socket: a socket with a transmit ring ignores the data of any send) takes longer
//!     frames, and every frame while the ring is still full after a `send` (the kernel is
//!     refusing frames). Once a side's copy queue holds a frame, the side's later frames
//!     join it until the flush, which writes the ring first: the wire order is the order
//!     sent. Counted in [`IoStats::tx_copied`]; a frame the kernel refuses there is counted
//!     in [`IoStats::tx_errors`] and skipped, the rest still sent, in order.
//!   - no zero-copy forwarding from a receive slot into a transmit slot: the engine reads
//!     each frame from the batch the receive side copied it into (about 1 % of the
//!     worker); doing it would need a `Backend` that lends slots across the engine call.
//!   - without a receive ring, or without `--tx-ring`, every frame takes the copy path
//!     (on the socket itself).
//! - **Qdisc bypass** (`--qdisc-bypass`): `PACKET_QDISC_BYPASS` hands frames straight to the driver.
//!   Traffic control on the ports is not applied to the bridge's output, and a capture on
//!   the bridge's own ports sees only what it receives (the peers' captures see all). A
//!   driver that cannot take a frame makes the kernel refuse it (counted as above) instead
//!   of queueing it.
//! - **Offloads**: [`OffloadGuard`] turns GRO, LRO, GSO, TSO and tx checksumming off on the
//!   bridged ports (legacy `SIOCETHTOOL` get/set calls) and restores what it changed when
//!   dropped. The *peers'* tx-checksum offload cannot be changed from here: on veth labs
//!   turn it off on the far ends (scripts/lab.sh does).
//! - **Fanout**: with N workers, each side has one `PACKET_FANOUT_HASH` group, and worker
//!   i's socket is the i-th member of both groups (sockets are opened in worker order by
//!   [`open_workers`]). The kernel hashes a flow symmetrically (same value both directions,
//!   same seed for every group), so both directions of a flow reach the same worker.
//!   No `PACKET_FANOUT_FLAG_DEFRAG`: reassembled datagrams would not fit the wire again.
//!
//! Why not pnet's datalink channel: it waits on one descriptor at a time (a worker needs
//! both sides in one wait), reads without `MSG_TRUNC` (truncation would go unnoticed) and
//! polls before every frame. pnet is used to look interfaces up; the sockets are plain
//! libc.

use super::backend::{
    check_interface_up, close_fd, ifreq_for, ioctl_socket, os_error, poll_readable, recv_ready,
    side_index, side_of, Backend, FrameBatch, IoStats, MAX_FRAME,
};
use crate::engine::Side;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Socket buffer sizes asked for (the kernel caps them at `net.core.[rw]mem_max`).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// Bytes of receive ring per socket (two per worker).
pub const RING_BYTES: usize = 4 << 20;
/// Bytes per ring block (the kernel allocates the ring in blocks; a slot never spans two).
const RING_BLOCK: usize = 1 << 16;
/// Room in a ring slot before the frame: the `tpacket2_hdr` and `sockaddr_ll` (52 bytes)
/// rounded up by the kernel, which puts the network header on a 16-byte boundary.
const RING_SLOT_OVERHEAD: usize = 96;
/// Most frames one `sendmmsg` writes.
pub const TX_BATCH: usize = 64;
/// Longest busy-poll accepted (a worker must still look at its control channel).
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(100);

/// The ring slot size for ports of `mtu` bytes: room for the slot header, an Ethernet
/// header, two VLAN tags and `mtu` bytes, as a power of two between 2 KiB and
/// 64 KiB (one ring block). Longer frames take the copy path (module docs).
pub fn ring_frame_size(mtu: usize) -> usize {
    RING_SLOT_OVERHEAD
        .saturating_add(mtu)
        .saturating_add(14 + 8)
        .min(RING_BLOCK)
        .next_power_of_two()
        .clamp(2048, RING_BLOCK)
}

/// How many frames one transmit ring holds for ports of `mtu` bytes.
pub fn tx_ring_frames(mtu: usize) -> usize {
    TX_RING_BYTES / ring_frame_size(mtu)
}

/// How many frames one receive ring holds for ports of `mtu` bytes.
pub fn ring_frames(mtu: usize) -> usize {
    RING_BYTES / ring_frame_size(mtu)
}

/// The MTU of `ifname`.
fn interface_mtu(ifname: &str) -> io::Result<usize> {
    let mut ifr = ifreq_for(ifname)?;
    let fd = ioctl_socket()?;
    // SAFETY: SIOCGIFMTU writes into the ifreq we own.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut ifr) };
    let result = if rc < 0 {
        Err(os_error(&format!("MTU of {ifname}")))
    } else {
        // SAFETY: SIOCGIFMTU filled the mtu member of the union.
        Ok(usize::try_from(unsafe { ifr.ifr_ifru.ifru_mtu }).unwrap_or(0))
    };
    close_fd(fd);
    result
}

/// A `PACKET_RX_RING` (TPACKET_V2) mapped into this process: `frames` slots of
/// `frame_size` bytes, read in order from `head`.
#[derive(Debug)]
struct RxRing {
    base: *mut u8,
    frame_size: usize,
    frames: usize,
    head: usize,
}

// SAFETY: the slots are only touched through `&mut self` or atomics; the mapping they lie
// in belongs to the same socket (`Mapping`) and outlives the ring.
unsafe impl Send for RxRing {}

/// What a ring slot holds, read from its header.
#[derive(Clone, Copy, Debug)]
struct SlotInfo {
    status: u32,
    /// The frame's real length.
    len: usize,
    /// Bytes of it in the slot.
    snaplen: usize,
    /// Offset of the frame in the slot.
    mac: usize,
    pkttype: u8,
    vlan_tci: u16,
    vlan_tpid: u16,
}

impl RxRing {
    /// The status word of slot `head`.
    fn status_word(&self) -> &AtomicU32 {
        let offset = (self.head % self.frames) * self.frame_size;
        // SAFETY: `offset` is a slot start inside the mapping; slots are 16-byte aligned
        // and begin with the u32 `tp_status`, which the kernel and we share (atomics).
        unsafe { AtomicU32::from_ptr(self.base.add(offset).cast()) }
    }

    /// True when the kernel has handed slot `head` to us.
    fn ready(&self) -> bool {
        self.status_word().load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// The header of slot `head` if it is ours.
    fn peek(&self) -> Option<SlotInfo> {
        let status = self.status_word().load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let offset = (self.head % self.frames) * self.frame_size;
        // SAFETY: the slot is ours (status read with Acquire above); the header and the
        // sockaddr_ll after it lie inside the slot (RING_SLOT_OVERHEAD < frame_size).
        let (hdr, sll) = unsafe {
            let slot = self.base.add(offset);
            let hdr = std::ptr::read_unaligned(slot.cast::<libc::tpacket2_hdr>());
            let sll_at = (std::mem::size_of::<libc::tpacket2_hdr>() + 15) & !15;
            let sll = std::ptr::read_unaligned(slot.add(sll_at).cast::<libc::sockaddr_ll>());
            (hdr, sll)
        };
        Some(SlotInfo {
            status,
            len: hdr.tp_len as usize,
            snaplen: hdr.tp_snaplen as usize,
            mac: usize::from(hdr.tp_mac),
            pkttype: sll.sll_pkttype,
            vlan_tci: hdr.tp_vlan_tci,
            vlan_tpid: hdr.tp_vlan_tpid,
        })
    }

    /// The `snaplen` bytes at `mac` in slot `head`, if they lie inside the slot.
    fn data(&self, info: &SlotInfo) -> Option<&[u8]> {
        let end = info.mac.checked_add(info.snaplen)?;
        if end > self.frame_size {
            return None;
        }
        let offset = (self.head % self.frames) * self.frame_size + info.mac;
        // SAFETY: the range lies inside slot `head` (checked above), which is ours until
        // `release`, and `release` needs `&mut self`, so it outlives this borrow.
        Some(unsafe { std::slice::from_raw_parts(self.base.add(offset), info.snaplen) })
    }

    /// Gives slot `head` back to the kernel and moves to the next.
    fn release(&mut self) {
        self.status_word()
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.head = (self.head + 1) % self.frames;
    }
}

/// Bytes of transmit ring per socket (512 slots of 2 KiB at MTU 1500: eight times what one
/// batch of [`DEFAULT_BATCH`](super::backend::DEFAULT_BATCH) frames read can produce).
pub const TX_RING_BYTES: usize = 1 << 20;

/// Where the frame starts in a TPACKET_V2 transmit slot: right after the header, where the
/// kernel looks when `PACKET_TX_HAS_OFF` is not set (`TPACKET2_HDRLEN - sizeof(sockaddr_ll)`).
const TX_DATA_OFFSET: usize = 32;

/// Status bits of a transmit slot the kernel still owns (queued, or handed to the driver).
const TX_BUSY: u32 = libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING;

/// How the transmit side of the AF_PACKET sockets is set up (both off by default: on the
/// veth lab `sendmmsg` through the qdisc measured fastest; see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOptions {
    /// Write frames into a `PACKET_TX_RING` and hand each batch over with one `send`
    /// (else `sendmmsg` from the per-side queues).
    pub ring: bool,
    /// `PACKET_QDISC_BYPASS`: hand frames to the driver directly, skipping the qdisc
    /// layer (and the taps on it: a capture on the bridge's own ports no longer sees what
    /// the bridge sends; the peers' captures do).
    pub qdisc_bypass: bool,
}

/// One `mmap` of a socket's rings (receive ring first, then the transmit ring, as the
/// kernel lays them out); unmapped when dropped.
#[derive(Debug)]
struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by one socket and touched only through the rings it holds,
// which are used through `&mut self` or atomics; moving it to another thread is as safe
// as moving a Vec.
unsafe impl Send for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are a mapping made by `map_rings`, unmapped once.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

/// A `PACKET_TX_RING` (TPACKET_V2): `frames` slots of `frame_size` bytes. Slots
/// `tail..head` (`in_flight` of them) were handed to the kernel and not yet seen done;
/// the kernel sends them in ring order, so they complete in that order too.
#[derive(Debug)]
struct TxRing {
    base: *mut u8,
    frame_size: usize,
    frames: usize,
    head: usize,
    tail: usize,
    in_flight: usize,
    /// Slots filled since the last `send`.
    unsent: usize,
    /// The last `send` failed: the kernel left slots marked for sending, to retry.
    refused: bool,
    /// Longest untagged frame the ring takes: the interface's MTU (read at start) plus an
    /// Ethernet header, the kernel's own limit (a longer frame would be skipped unseen
    /// under `PACKET_LOSS`, so it takes the copy path and its error is counted there).
    /// 802.1Q-tagged frames may be 4 bytes longer, as the kernel allows.
    max_len: usize,
    /// The slot's room for a frame.
    room: usize,
}

// SAFETY: as for `Mapping`: the slots are only touched through `&mut self` or atomics.
unsafe impl Send for TxRing {}

impl TxRing {
    /// The status word of slot `k`.
    fn status_word(&self, k: usize) -> &AtomicU32 {
        let offset = (k % self.frames) * self.frame_size;
        // SAFETY: `offset` is a slot start inside the mapping; slots are 16-byte aligned
        // and begin with the u32 `tp_status`, shared with the kernel (atomics).
        unsafe { AtomicU32::from_ptr(self.base.add(offset).cast()) }
    }

    /// True when the ring takes `frame`: at least an Ethernet header, within the slot,
    /// and within the kernel's length limit for it.
    fn fits(&self, frame: &[u8]) -> bool {
        let tagged = frame.get(12..14) == Some(&[0x81, 0x00][..]);
        let limit = self.max_len.saturating_add(if tagged { 4 } else { 0 });
        (14..=limit.min(self.room)).contains(&frame.len())
    }

    /// Copies `frame` into the next free slot and marks it for sending. False if the ring
    /// is full (every slot still the kernel's) or the frame does not fit.
    fn push(&mut self, frame: &[u8]) -> bool {
        if !self.fits(frame) || self.in_flight >= self.frames {
            return false;
        }
        let status = self.status_word(self.head);
        if status.load(Ordering::Acquire) & (TX_BUSY | libc::TP_STATUS_WRONG_FORMAT) != 0 {
            return false;
        }
        let offset = (self.head % self.frames) * self.frame_size;
        // SAFETY: the slot is ours (not busy, checked above with Acquire); the frame fits
        // between TX_DATA_OFFSET and the slot's end (`room` = frame_size - offset), and
        // `tp_len` is the u32 at byte 4 of the slot header.
        unsafe {
            let slot = self.base.add(offset);
            std::ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(TX_DATA_OFFSET), frame.len());
            std::ptr::write_unaligned(slot.add(4).cast::<u32>(), frame.len() as u32);
        }
        status.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.head = (self.head + 1) % self.frames;
        self.in_flight += 1;
        self.unsent += 1;
        true
    }

    /// The length written into slot `k`.
    fn len_of(&self, k: usize) -> usize {
        let offset = (k % self.frames) * self.frame_size + 4;
        // SAFETY: byte 4..8 of a slot inside the mapping; the kernel does not write it.
        unsafe { std::ptr::read_unaligned(self.base.add(offset).cast::<u32>()) as usize }
    }

    /// Slots from `tail` the kernel is done with, as their lengths, oldest first, without
    /// taking them back (for counters read between flushes).
    fn done(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.in_flight)
            .map(move |k| (self.tail + k) % self.frames)
            .take_while(move |&k| self.status_word(k).load(Ordering::Acquire) & TX_BUSY == 0)
            .map(move |k| self.len_of(k))
    }

    /// Takes back the slots the kernel is done with, reporting each one's length.
    fn reap(&mut self, mut sent: impl FnMut(usize)) {
        while self.in_flight > 0 {
            if self.status_word(self.tail).load(Ordering::Acquire) & TX_BUSY != 0 {
                break;
            }
            sent(self.len_of(self.tail));
            self.tail = (self.tail + 1) % self.frames;
            self.in_flight -= 1;
        }
    }

    /// True when the slot filled last is still marked for sending.
    fn newest_marked(&self) -> bool {
        self.in_flight > 0
            && self
                .status_word(self.head + self.frames - 1)
                .load(Ordering::Acquire)
                & libc::TP_STATUS_SEND_REQUEST
                != 0
    }

    /// True when slots wait for a `send`: filled since the last one, or left by a
    /// `send` the kernel refused part of.
    fn wants_send(&self) -> bool {
        self.unsent > 0 || self.refused
    }
}

/// One AF_PACKET socket bound to one interface.
#[derive(Debug)]
struct PacketSocket {
    fd: RawFd,
    /// The receive ring, unless it could not be set up (then frames are read one
    /// `recvmsg` at a time).
    ring: Option<RxRing>,
    /// The transmit ring, if asked for and set up (else frames go out with `sendmmsg`).
    tx: Option<TxRing>,
    /// With a transmit ring, a second socket for the copy path (`sendmmsg`): on a socket
    /// with a transmit ring every send only hands over the ring's slots and ignores the
    /// data passed, so frames the ring does not take need a socket without one. Bound
    /// with protocol 0, it receives nothing. -1 without a transmit ring.
    copy_fd: RawFd,
    /// The rings' memory; declared last, so it is unmapped after the rings are gone.
    map: Option<Mapping>,
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        close_fd(self.fd);
        close_fd(self.copy_fd);
    }
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> i32 {
    setsockopt_val(fd, level, name, &value)
}

/// `setsockopt(2)` with `value` as the option's plain-data argument.
fn setsockopt_val<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> i32 {
    // SAFETY: `value` lives for the call; the size is that of `T`.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

/// The interface index of `ifname`, via pnet's interface list.
fn interface_index(ifname: &str) -> io::Result<u32> {
    pnet::datalink::interfaces()
        .into_iter()
        .find(|i| i.name == ifname)
        .map(|i| i.index)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("interface {ifname} does not exist"),
            )
        })
}

impl PacketSocket {
    /// Opens a raw socket on `ifname`, promiscuous, ignoring its own outgoing frames, and
    /// joins fanout group `fanout` if given. Ring slots are sized for `mtu` (the larger of
    /// both ports'); the transmit side is set up as `tx` asks.
    fn open(
        ifname: &str,
        fanout: Option<u16>,
        mtu: usize,
        tx: TxOptions,
    ) -> io::Result<PacketSocket> {
        check_interface_up(ifname)?;
        let ifindex = interface_index(ifname)?;
        // Protocol 0 at creation: nothing is queued before bind() picks the interface.
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EACCES) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "no privilege to open raw sockets: run as root or with CAP_NET_RAW and CAP_NET_ADMIN",
                ));
            }
            return Err(os_error("socket(AF_PACKET)"));
        }
        let mut sock = PacketSocket {
            fd,
            ring: None,
            tx: None,
            copy_fd: -1,
            map: None,
        };
        if setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1) < 0 {
            log::warn!(
                "{ifname}: PACKET_IGNORE_OUTGOING unsupported ({}); skipping outgoing frames by type",
                io::Error::last_os_error()
            );
        }
        // VLAN tags and checksum state arrive as auxiliary data.
        if setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1) < 0 {
            return Err(os_error(&format!("PACKET_AUXDATA on {ifname}")));
        }
        // Bigger buffers absorb bursts; failure only costs drops under load.
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER);
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER);
        if tx.qdisc_bypass && setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1) < 0
        {
            log::warn!(
                "{ifname}: PACKET_QDISC_BYPASS unsupported ({}); sending through the qdisc",
                io::Error::last_os_error()
            );
        }
        // The rings before bind(), so that no frame is queued outside them.
        let tx_mtu = if tx.ring {
            match open_copy_socket(ifname, ifindex, tx.qdisc_bypass) {
                Ok(copy_fd) => {
                    sock.copy_fd = copy_fd;
                    Some(interface_mtu(ifname)?)
                }
                Err(e) => {
                    log::warn!(
                        "{ifname}: no socket for the copy path ({e}); sending with sendmmsg"
                    );
                    None
                }
            }
        } else {
            None
        };
        if let Some((rx, txr, map)) = open_rings(fd, ifname, mtu, tx_mtu) {
            sock.ring = Some(rx);
            sock.tx = txr;
            sock.map = Some(map);
        }
        if sock.tx.is_none() {
            close_fd(sock.copy_fd);
            sock.copy_fd = -1;
        }
        bind_ll(fd, ifname, ifindex, (libc::ETH_P_ALL as u16).to_be())?;
        // SAFETY: packet_mreq is plain old data.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex as libc::c_int;
        mreq.mr_type = libc::PACKET_MR_PROMISC as libc::c_ushort;
        let rc = setsockopt_val(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq);
        if rc < 0 {
            return Err(os_error(&format!("promiscuous mode on {ifname}")));
        }
        if let Some(group) = fanout {
            let arg = libc::c_int::from(group) | ((libc::PACKET_FANOUT_HASH as libc::c_int) << 16);
            if setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, arg) < 0 {
                return Err(os_error(&format!("PACKET_FANOUT on {ifname}")));
            }
        }
        Ok(sock)
    }

    /// Reads one frame without blocking. `Ok(None)`: nothing ready.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        // SAFETY: sockaddr_ll, msghdr and the control buffer are plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut control = [0u64; CONTROL_WORDS];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: every pointer in `msg` refers to a live buffer of the size given.
        let n = unsafe { libc::recvmsg(self.fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(Received {
            len: n as usize,
            pkttype: sll.sll_pkttype,
            aux: auxdata(&msg),
        }))
    }

    /// Writes `frames` in order with `sendmmsg`, [`TX_BATCH`] at a time, and reports each
    /// frame's outcome to `done(len, result)`. A frame the kernel refuses is reported and
    /// skipped; the ones after it are still sent.
    fn send_all<'a>(
        &self,
        frames: impl Iterator<Item = &'a [u8]>,
        mut done: impl FnMut(usize, io::Result<()>),
    ) {
        let mut out = Iovecs::default();
        for frame in frames {
            out.push(frame);
            if out.is_full() {
                self.send_iovecs(&mut out, &mut done);
            }
        }
        self.send_iovecs(&mut out, &mut done);
    }

    /// Writes the frames `out` points at with `sendmmsg`, in order, reports each frame's
    /// outcome to `done(len, result)` (a refused frame is reported and skipped, the ones
    /// after it are still sent) and empties `out`.
    fn send_iovecs(&self, out: &mut Iovecs<'_>, done: &mut impl FnMut(usize, io::Result<()>)) {
        let n = out.n.min(TX_BATCH);
        if n == 0 {
            return;
        }
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { std::mem::zeroed() };
        for (msg, iov) in msgs.iter_mut().zip(out.iov.iter_mut()).take(n) {
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        let mut start = 0;
        while start < n {
            let Some(rest) = msgs.get_mut(start..n) else {
                break;
            };
            // SAFETY: `rest` holds `rest.len()` initialised headers, each pointing at one
            // iovec over a frame borrowed for the lifetime of `out`, which outlives the call.
            let rc = unsafe {
                libc::sendmmsg(
                    self.send_fd(),
                    rest.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    0,
                )
            };
            let len_of = |k: usize| out.iov.get(k).map_or(0, |v| v.iov_len);
            if rc > 0 {
                let sent = rc as usize;
                for k in start..start + sent {
                    done(len_of(k), Ok(()));
                }
                start += sent;
            } else {
                let e = io::Error::last_os_error();
                if rc < 0 && e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                done(len_of(start), Err(e));
                start += 1;
            }
        }
        out.n = 0;
    }

    /// The descriptor `sendmmsg` writes to: the copy-path socket if there is a transmit
    /// ring (see `copy_fd`), else the socket itself.
    fn send_fd(&self) -> RawFd {
        if self.tx.is_some() {
            self.copy_fd
        } else {
            self.fd
        }
    }

    /// Takes the socket's pending error (`SO_ERROR`), if any.
    fn take_error(&self) -> Option<io::Error> {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` and `len` live for the call; the size matches.
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Some(io::Error::last_os_error());
        }
        (err != 0).then(|| io::Error::from_raw_os_error(err))
    }
}

/// Up to [`TX_BATCH`] frames for one `sendmmsg`, as `iovec`s over the caller's buffers; the
/// lifetime keeps each frame borrowed until the `Iovecs` is gone.
struct Iovecs<'a> {
    iov: [libc::iovec; TX_BATCH],
    n: usize,
    frames: std::marker::PhantomData<&'a [u8]>,
}

impl Default for Iovecs<'_> {
    fn default() -> Self {
        Iovecs {
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; TX_BATCH],
            n: 0,
            frames: std::marker::PhantomData,
        }
    }
}

impl<'a> Iovecs<'a> {
    /// Adds `frame` (the caller sends before the `Iovecs` is full: see [`Iovecs::is_full`]).
    fn push(&mut self, frame: &'a [u8]) {
        if let Some(iov) = self.iov.get_mut(self.n) {
            // The kernel only reads through the pointer (sendmmsg).
            iov.iov_base = frame.as_ptr().cast_mut().cast();
            iov.iov_len = frame.len();
            self.n += 1;
        }
    }

    fn is_full(&self) -> bool {
        self.n >= TX_BATCH
    }
}

/// A send-only packet socket on interface `ifindex` for the copy path next to a transmit
/// ring: bound with protocol 0, so nothing is queued on it to read.
fn open_copy_socket(ifname: &str, ifindex: u32, qdisc_bypass: bool) -> io::Result<RawFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_error("socket(AF_PACKET)"));
    }
    let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER);
    if qdisc_bypass {
        let _ = setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1);
    }
    if let Err(e) = bind_ll(fd, ifname, ifindex, 0) {
        close_fd(fd);
        return Err(e);
    }
    Ok(fd)
}

/// Binds packet socket `fd` to interface `ifindex` for `protocol` (network byte order;
/// 0: receive nothing).
fn bind_ll(fd: RawFd, ifname: &str, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = protocol;
    sll.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: `sll` is a valid sockaddr_ll for the call.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(os_error(&format!("bind to {ifname}")));
    }
    Ok(())
}

/// Sets up the rings of `fd` (TPACKET_V2): a receive ring with slots for `mtu`
/// (oversized frames through the socket's queue) and, if `tx_mtu` (the interface's own
/// MTU) is given, a transmit ring with slots of the same size after it in one mapping.
/// `None` (logged) if the receive ring cannot be set up: the socket then reads with
/// `recvmsg` and sends with `sendmmsg`. A transmit ring that cannot be set up is logged and
/// left out.
fn open_rings(
    fd: RawFd,
    ifname: &str,
    mtu: usize,
    tx_mtu: Option<usize>,
) -> Option<(RxRing, Option<TxRing>, Mapping)> {
    let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
    if setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VERSION, version) < 0 {
        log::warn!(
            "{ifname}: TPACKET_V2 unsupported ({}); reading one frame per system call",
            io::Error::last_os_error()
        );
        return None;
    }
    // Any frame that does not fit a slot goes to the socket's queue whole.
    if setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_COPY_THRESH, 1) < 0 {
        log::warn!(
            "{ifname}: PACKET_COPY_THRESH unsupported ({}); reading one frame per system call",
            io::Error::last_os_error()
        );
        return None;
    }
    let frame_size = ring_frame_size(mtu);
    // PACKET_LOSS is refused (EBUSY) once any ring exists: before the receive ring.
    let tx_mtu = tx_mtu.filter(|_| set_tx_loss(fd, ifname));
    if let Err(e) = set_ring(fd, libc::PACKET_RX_RING, RING_BYTES, frame_size) {
        log::warn!("{ifname}: no receive ring ({e}); reading one frame per system call");
        return None;
    }
    let tx_bytes = tx_mtu.map_or(0, |_| open_tx_ring(fd, ifname, frame_size));
    let map = match map_rings(fd, RING_BYTES + tx_bytes) {
        Ok(map) => map,
        Err(e) => {
            log::warn!("{ifname}: rings not mapped ({e}); reading one frame per system call");
            // Rings the kernel fills but nobody reads would swallow every frame.
            let _ = set_ring(fd, libc::PACKET_RX_RING, 0, frame_size);
            let _ = set_ring(fd, libc::PACKET_TX_RING, 0, frame_size);
            return None;
        }
    };
    let rx = RxRing {
        base: map.base,
        frame_size,
        frames: RING_BYTES / frame_size,
        head: 0,
    };
    let tx = tx_mtu.filter(|_| tx_bytes > 0).map(|tx_mtu| TxRing {
        // SAFETY: the transmit ring starts right after the receive ring in the mapping.
        base: unsafe { map.base.add(RING_BYTES) },
        frame_size,
        frames: tx_bytes / frame_size,
        head: 0,
        tail: 0,
        in_flight: 0,
        unsent: 0,
        refused: false,
        max_len: tx_mtu.saturating_add(14),
        room: frame_size - TX_DATA_OFFSET,
    });
    Some((rx, tx, map))
}

/// `PACKET_LOSS` on `fd`, which a transmit ring needs: without it a frame the kernel
/// finds malformed stops the ring for good (`TP_STATUS_WRONG_FORMAT` at its head); with it
/// the kernel skips the frame unseen, so the ring takes only frames that pass the
/// kernel's checks ([`TxRing::fits`]) and the others take the copy path, where a refusal
/// is counted. False (logged) if the kernel refuses it.
fn set_tx_loss(fd: RawFd, ifname: &str) -> bool {
    if setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_LOSS, 1) < 0 {
        log::warn!(
            "{ifname}: PACKET_LOSS unsupported ({}); sending with sendmmsg",
            io::Error::last_os_error()
        );
        return false;
    }
    true
}

/// Sets up `fd`'s transmit ring with slots of `frame_size` (after [`set_tx_loss`]);
/// returns its size in bytes, 0 (logged) if it cannot be had.
fn open_tx_ring(fd: RawFd, ifname: &str, frame_size: usize) -> usize {
    match set_ring(fd, libc::PACKET_TX_RING, TX_RING_BYTES, frame_size) {
        Ok(()) => TX_RING_BYTES,
        Err(e) => {
            log::warn!("{ifname}: no transmit ring ({e}); sending with sendmmsg");
            0
        }
    }
}

/// `PACKET_RX_RING`/`PACKET_TX_RING` of `bytes` (0: remove the ring) in slots of
/// `frame_size`.
fn set_ring(fd: RawFd, which: libc::c_int, bytes: usize, frame_size: usize) -> io::Result<()> {
    let req = libc::tpacket_req {
        tp_block_size: RING_BLOCK as libc::c_uint,
        tp_block_nr: (bytes / RING_BLOCK) as libc::c_uint,
        tp_frame_size: frame_size as libc::c_uint,
        tp_frame_nr: (bytes / frame_size) as libc::c_uint,
    };
    if setsockopt_val(fd, libc::SOL_PACKET, which, &req) < 0 {
        let name = if which == libc::PACKET_RX_RING {
            "PACKET_RX_RING"
        } else {
            "PACKET_TX_RING"
        };
        return Err(os_error(name));
    }
    Ok(())
}

/// Maps `len` bytes of `fd`'s rings, locked in memory if the limits allow.
fn map_rings(fd: RawFd, len: usize) -> io::Result<Mapping> {
    let map = |flags| {
        // SAFETY: mapping the rings the kernel allocated for `fd`, `len` bytes in all.
        unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | flags,
                fd,
                0,
            )
        }
    };
    let mut base = map(libc::MAP_LOCKED | libc::MAP_POPULATE);
    if base == libc::MAP_FAILED {
        // MAP_LOCKED needs RLIMIT_MEMLOCK room; the rings work without it.
        base = map(0);
    }
    if base == libc::MAP_FAILED {
        return Err(os_error("mmap of the rings"));
    }
    Ok(Mapping {
        base: base.cast(),
        len,
    })
}

/// Control buffer for one `tpacket_auxdata` message, in u64 words for alignment.
const CONTROL_WORDS: usize = 8;

/// What the kernel said about a frame besides its bytes.
#[derive(Clone, Copy, Debug)]
struct Received {
    /// The frame's real length (may exceed the buffer: `MSG_TRUNC`).
    len: usize,
    /// `PACKET_HOST`, `PACKET_OUTGOING`, ...
    pkttype: u8,
    /// The `PACKET_AUXDATA` message, if the kernel sent one.
    aux: Option<libc::tpacket_auxdata>,
}

/// The `PACKET_AUXDATA` control message of `msg`, if present.
fn auxdata(msg: &libc::msghdr) -> Option<libc::tpacket_auxdata> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros stay within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null cmsg pointers from CMSG_FIRSTHDR/NXTHDR point into the buffer.
        let hdr = unsafe { &*cmsg };
        let want = std::mem::size_of::<libc::tpacket_auxdata>();
        // SAFETY: CMSG_LEN is arithmetic.
        let full = unsafe { libc::CMSG_LEN(want as u32) } as usize;
        if hdr.cmsg_level == libc::SOL_PACKET
            && hdr.cmsg_type == libc::PACKET_AUXDATA
            && hdr.cmsg_len as usize >= full
        {
            // SAFETY: the message is at least `full` bytes long; read_unaligned copes with
            // any alignment.
            return Some(unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::tpacket_auxdata>())
            });
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    None
}

/// Bytes kept free before each frame so a VLAN tag the kernel stripped can be put back.
const VLAN_ROOM: usize = 4;

/// The frame received at `buf[VLAN_ROOM..]`, with the VLAN tag the kernel moved into
/// the auxiliary data put back after the MAC addresses (so tagged traffic is forwarded
/// tagged). `None` for a frame too short to hold MAC addresses.
fn restore_vlan(buf: &mut [u8], rx: Received) -> Option<&[u8]> {
    let end = VLAN_ROOM.checked_add(rx.len)?;
    let tagged = rx
        .aux
        .filter(|a| a.tp_status & libc::TP_STATUS_VLAN_VALID != 0 && rx.len >= 12);
    let Some(aux) = tagged else {
        return buf.get(VLAN_ROOM..end);
    };
    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
        aux.tp_vlan_tpid
    } else {
        0x8100
    };
    buf.copy_within(VLAN_ROOM..VLAN_ROOM + 12, 0);
    let tag = buf.get_mut(12..16)?;
    tag[..2].copy_from_slice(&tpid.to_be_bytes());
    tag[2..].copy_from_slice(&aux.tp_vlan_tci.to_be_bytes());
    buf.get(..end)
}

/// The frame `data` read from a ring slot, put into `batch` for `side` with the VLAN tag
/// the kernel stripped (`vlan`: TPID, TCI) back after the MAC addresses. The same bytes
/// as [`restore_vlan`] makes on the `recvmsg` path. Returns the length pushed.
fn push_with_vlan(
    batch: &mut FrameBatch,
    side: Side,
    data: &[u8],
    vlan: Option<(u16, u16)>,
) -> usize {
    let (Some((tpid, tci)), Some(macs), Some(rest)) = (vlan, data.get(..12), data.get(12..)) else {
        batch.push(side, data);
        return data.len();
    };
    let out = batch.push_with_len(side, data.len() + 4);
    let (head, tail) = out.split_at_mut(16);
    head[..12].copy_from_slice(macs);
    head[12..14].copy_from_slice(&tpid.to_be_bytes());
    head[14..16].copy_from_slice(&tci.to_be_bytes());
    tail.copy_from_slice(rest);
    data.len() + 4
}

/// The VLAN tag a ring slot reports, as (TPID, TCI).
fn slot_vlan(info: &SlotInfo) -> Option<(u16, u16)> {
    if info.status & libc::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    let tpid = if info.status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
        info.vlan_tpid
    } else {
        0x8100
    };
    Some((tpid, info.vlan_tci))
}

/// The AF_PACKET ports of one worker.
#[derive(Debug)]
pub struct AfPacketBackend {
    socks: [PacketSocket; 2],
    buf: Vec<u8>,
    stats: IoStats,
    /// Frames queued for each side until [`Backend::flush`].
    tx: [FrameBatch; 2],
    /// How long to spin on the rings before sleeping in `poll`.
    busy_poll: Duration,
}

impl AfPacketBackend {
    /// Opens one worker's sockets on `outside` and `inside`, joining the fanout groups if
    /// given (`(outside group, inside group)`).
    pub fn open(
        outside: &str,
        inside: &str,
        fanout: Option<(u16, u16)>,
    ) -> io::Result<AfPacketBackend> {
        Self::open_with(outside, inside, fanout, TxOptions::default())
    }

    /// [`AfPacketBackend::open`] with the transmit side set up as `tx` asks.
    pub fn open_with(
        outside: &str,
        inside: &str,
        fanout: Option<(u16, u16)>,
        tx: TxOptions,
    ) -> io::Result<AfPacketBackend> {
        // Both rings get slots for the larger MTU: a frame read on one port is written
        // to the other.
        let mtu = interface_mtu(outside)?.max(interface_mtu(inside)?);
        let out = PacketSocket::open(outside, fanout.map(|f| f.0), mtu, tx)?;
        let ins = PacketSocket::open(inside, fanout.map(|f| f.1), mtu, tx)?;
        Ok(AfPacketBackend {
            socks: [out, ins],
            buf: vec![0; VLAN_ROOM + MAX_FRAME],
            stats: IoStats::default(),
            tx: Default::default(),
            busy_poll: Duration::ZERO,
        })
    }

    /// Spin on the receive rings for up to `d` (at most [`MAX_BUSY_POLL`]) before sleeping
    /// in `poll(2)` when they are empty: saves the wake-up latency of the sleep at the cost
    /// of that much CPU after each burst. Zero (the default) never spins.
    pub fn set_busy_poll(&mut self, d: Duration) {
        self.busy_poll = d.min(MAX_BUSY_POLL);
    }

    /// True when both sockets read through a ring.
    pub fn uses_rings(&self) -> bool {
        self.socks.iter().all(|s| s.ring.is_some())
    }

    /// True when both sockets write through a transmit ring.
    pub fn uses_tx_rings(&self) -> bool {
        self.socks.iter().all(|s| s.tx.is_some())
    }

    /// Reads what is ready on side `i` into `batch`, at most `room` frames (ring or
    /// `recvmsg`, whichever the socket has).
    fn drain(&mut self, i: usize, room: usize, batch: &mut FrameBatch) -> io::Result<usize> {
        match self.socks.get(i).map(|s| s.ring.is_some()) {
            Some(true) => self.drain_ring(i, room, batch),
            Some(false) => self.drain_socket(i, room, batch),
            None => Ok(0),
        }
    }

    /// Reads the ready slots of side `i`'s ring into `batch`, at most `room` frames.
    fn drain_ring(&mut self, i: usize, room: usize, batch: &mut FrameBatch) -> io::Result<usize> {
        let side = side_of(i);
        let mut got = 0;
        while got < room {
            let Some(sock) = self.socks.get_mut(i) else {
                break;
            };
            let Some(ring) = sock.ring.as_mut() else {
                break;
            };
            let Some(info) = ring.peek() else {
                break;
            };
            if info.status & libc::TP_STATUS_COPY != 0 {
                // Too long for a slot: the whole frame waits in the socket's queue.
                ring.release();
                got += self.take_copied(i, batch)?;
                continue;
            }
            if info.pkttype == libc::PACKET_OUTGOING {
                self.stats.rx_own_outgoing += 1;
                ring.release();
                continue;
            }
            let Some(data) = ring.data(&info).filter(|_| info.snaplen == info.len) else {
                ring.release();
                self.stats.rx_truncated += 1;
                log::warn!(
                    "dropped a {}-byte frame from {side:?}: no room to read it whole",
                    info.len
                );
                continue;
            };
            if info.status & libc::TP_STATUS_CSUMNOTREADY != 0 {
                self.stats.rx_csum_partial += 1;
            }
            let n = push_with_vlan(batch, side, data, slot_vlan(&info));
            ring.release();
            self.stats.count_rx(i, n);
            got += 1;
        }
        Ok(got)
    }

    /// Reads the frame a ring slot marked `TP_STATUS_COPY` from side `i`'s socket queue.
    /// Returns 1 if it went into `batch`.
    fn take_copied(&mut self, i: usize, batch: &mut FrameBatch) -> io::Result<usize> {
        let Some(sock) = self.socks.get(i) else {
            return Ok(0);
        };
        match sock.recv(self.buf.get_mut(VLAN_ROOM..).unwrap_or_default()) {
            Ok(Some(rx)) => Ok(usize::from(self.accept(i, rx, batch))),
            Ok(None) => {
                // The kernel marked a copy but queued none: nothing whole to forward.
                self.stats.rx_truncated += 1;
                Ok(0)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                log::warn!(
                    "{:?} interface is down; waiting for it to come back",
                    side_of(i)
                );
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads what is ready on side `i`'s socket with `recvmsg` (no ring), at most `room`
    /// frames.
    fn drain_socket(&mut self, i: usize, room: usize, batch: &mut FrameBatch) -> io::Result<usize> {
        let side = side_of(i);
        let mut got = 0;
        while got < room {
            let Some(sock) = self.socks.get(i) else {
                break;
            };
            let rx = match sock.recv(self.buf.get_mut(VLAN_ROOM..).unwrap_or_default()) {
                Ok(Some(rx)) => rx,
                Ok(None) => break,
                // The link went down (it may come back: the socket stays bound). Only a
                // vanished interface (ENODEV) or worse ends the worker.
                Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                    log::warn!("{side:?} interface is down; waiting for it to come back");
                    break;
                }
                Err(e) => return Err(e),
            };
            got += usize::from(self.accept(i, rx, batch));
        }
        Ok(got)
    }

    /// Checks a frame read with `recvmsg` into `self.buf` and puts it into `batch`.
    /// Returns false (and counts why) if it was not taken.
    fn accept(&mut self, i: usize, rx: Received, batch: &mut FrameBatch) -> bool {
        let side = side_of(i);
        if rx.pkttype == libc::PACKET_OUTGOING {
            self.stats.rx_own_outgoing += 1;
            return false;
        }
        if rx.len > MAX_FRAME {
            self.stats.rx_truncated += 1;
            log::warn!(
                "dropped a {}-byte frame from {side:?}: larger than {MAX_FRAME}",
                rx.len
            );
            return false;
        }
        let status = rx.aux.map_or(0, |a| a.tp_status);
        if status & libc::TP_STATUS_CSUMNOTREADY != 0 {
            self.stats.rx_csum_partial += 1;
        }
        let Some(frame) = restore_vlan(&mut self.buf, rx) else {
            return false;
        };
        let n = frame.len();
        batch.push(side, frame);
        self.stats.count_rx(i, n);
        true
    }

    /// Reads what both rings hold (half of `max` each first, so a busy side cannot starve
    /// the other).
    fn drain_rings(&mut self, max: usize, batch: &mut FrameBatch) -> io::Result<usize> {
        let half = max.div_ceil(2);
        Ok(self.drain_ring(0, half, batch)? + self.drain_ring(1, half, batch)?)
    }

    /// True when either ring has a frame ready.
    fn rings_ready(&self) -> bool {
        self.socks
            .iter()
            .any(|s| s.ring.as_ref().is_some_and(RxRing::ready))
    }

    /// Spins on the rings for up to `limit`; true as soon as one has a frame.
    fn spin(&self, limit: Duration) -> bool {
        if limit.is_zero() {
            return false;
        }
        let deadline = Instant::now() + limit;
        loop {
            for _ in 0..64 {
                if self.rings_ready() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// `recv_batch` for two rings: look, spin, then sleep in `poll` until a ring has a
    /// frame or a socket an error.
    fn recv_rings(
        &mut self,
        timeout: Option<Duration>,
        max: usize,
        batch: &mut FrameBatch,
    ) -> io::Result<usize> {
        let got = self.drain_rings(max, batch)?;
        if got > 0 {
            return Ok(got);
        }
        let limit = timeout.map_or(self.busy_poll, |t| t.min(self.busy_poll));
        if !self.spin(limit) {
            let fds = [self.socks[0].fd, self.socks[1].fd];
            let ready = poll_readable(fds, timeout)?;
            // Readable with an empty ring: an error (link down, interface gone) or a
            // frame that took the copy path; the error is taken here, the frame below.
            for (sock, r) in self.socks.iter().zip(ready) {
                if !r || sock.ring.as_ref().is_some_and(RxRing::ready) {
                    continue;
                }
                match sock.take_error() {
                    Some(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                        log::warn!("an interface is down; waiting for it to come back");
                    }
                    Some(e) => return Err(e),
                    None => {}
                }
            }
        }
        self.drain_rings(max, batch)
    }
}

impl Backend for AfPacketBackend {
    fn recv_batch(
        &mut self,
        timeout: Option<Duration>,
        max: usize,
        batch: &mut FrameBatch,
    ) -> io::Result<usize> {
        if self.uses_rings() {
            return self.recv_rings(timeout, max, batch);
        }
        let fds = [self.socks[0].fd, self.socks[1].fd];
        recv_ready(fds, timeout, max, |i, room| self.drain(i, room, batch))
    }

    fn send(&mut self, side: Side, frame: &[u8]) -> io::Result<()> {
        let i = side_index(side);
        if self.ring_send(i, frame) {
            return Ok(());
        }
        let Some(queue) = self.tx.get_mut(i) else {
            return Ok(());
        };
        queue.push(side, frame);
        if queue.len() >= TX_BATCH {
            self.flush_side(i);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_side(0);
        self.flush_side(1);
        Ok(())
    }

    /// Without transmit rings: `sendmmsg` straight from the caller's frames, per side in
    /// batches of [`TX_BATCH`] (no copy into the side's queue first). With transmit rings
    /// each frame is copied into a slot anyway: `send` per frame, then `flush`.
    fn send_frames<'a, I>(&mut self, frames: I) -> io::Result<()>
    where
        I: Iterator<Item = (Side, &'a [u8])>,
        Self: Sized,
    {
        if self.socks.iter().any(|s| s.tx.is_some()) {
            for (side, frame) in frames {
                let _ = self.send(side, frame);
            }
            return self.flush();
        }
        // Frames an earlier `send` queued go first.
        self.flush()?;
        let mut out = [Iovecs::default(), Iovecs::default()];
        for (side, frame) in frames {
            let i = side_index(side);
            let Some(o) = out.get_mut(i) else {
                continue;
            };
            o.push(frame);
            if o.is_full() {
                self.send_out(i, o);
            }
        }
        for (i, o) in out.iter_mut().enumerate() {
            self.send_out(i, o);
        }
        Ok(())
    }

    /// The counters, with the frames the transmit rings have finished sending since the
    /// last flush counted as sent.
    fn io_stats(&self) -> IoStats {
        let mut stats = self.stats;
        for (i, sock) in self.socks.iter().enumerate() {
            for len in sock.tx.iter().flat_map(TxRing::done) {
                let _ = stats.count_tx(i, len, Ok(()));
            }
        }
        stats
    }

    fn name(&self) -> &'static str {
        "afpacket"
    }
}

impl AfPacketBackend {
    /// Puts `frame` for side `i` into its transmit ring; false if it must take the copy
    /// path: no ring, frames already waiting on the copy path (they go first, so this
    /// one queues behind them), a frame the ring does not take, or a ring still full after
    /// a `send` (the kernel refuses frames: the one behind would most likely be refused
    /// too). With a ring, each of these is counted in [`IoStats::tx_copied`].
    fn ring_send(&mut self, i: usize, frame: &[u8]) -> bool {
        let Some(ring) = self.socks.get_mut(i).and_then(|s| s.tx.as_mut()) else {
            return false;
        };
        if self.tx.get(i).is_none_or(|q| !q.is_empty()) || !ring.fits(frame) {
            self.stats.tx_copied += 1;
            return false;
        }
        if !ring.push(frame) {
            self.kick_ring(i);
            let pushed = self
                .socks
                .get_mut(i)
                .and_then(|s| s.tx.as_mut())
                .is_some_and(|r| r.push(frame));
            if !pushed {
                self.stats.tx_copied += 1;
                return false;
            }
        }
        if self
            .socks
            .get(i)
            .and_then(|s| s.tx.as_ref())
            .is_some_and(|r| r.unsent >= TX_BATCH)
        {
            self.kick_ring(i);
        }
        true
    }

    /// Hands side `i`'s marked transmit slots to the kernel with one `send`, then takes
    /// back (and counts as sent) the slots it is done with. If the kernel refuses a frame
    /// (the peer's queue is full: `ENOBUFS`; no socket buffer left; link down), that frame
    /// and the ones after it stay marked, in order, and the next flush retries them; the
    /// refusal is counted in [`IoStats::tx_retries`].
    fn kick_ring(&mut self, i: usize) {
        let Some(sock) = self.socks.get_mut(i) else {
            return;
        };
        let fd = sock.fd;
        let Some(ring) = sock.tx.as_mut() else {
            return;
        };
        if ring.wants_send() {
            // SAFETY: a send of no data: the kernel takes the frames from the ring.
            let rc = unsafe { libc::send(fd, std::ptr::null(), 0, libc::MSG_DONTWAIT) };
            ring.unsent = 0;
            // The kernel works through the marked slots in order and stops at the first it
            // cannot send (a refusal, or a partial send when the socket buffer is full):
            // if the newest is still marked, slots are left to retry.
            let error = (rc < 0).then(io::Error::last_os_error);
            ring.refused = error.is_some() || ring.newest_marked();
            if ring.refused {
                self.stats.tx_retries += 1;
                log::debug!(
                    "{:?}: transmit ring send refused in part ({error:?}); retried at the next flush",
                    side_of(i),
                );
            }
        }
        let stats = &mut self.stats;
        ring.reap(|len| {
            let _ = stats.count_tx(i, len, Ok(()));
        });
    }

    /// Sends the frames `out` points at on side `i` and counts each one's outcome.
    fn send_out(&mut self, i: usize, out: &mut Iovecs<'_>) {
        let Some(sock) = self.socks.get(i) else {
            return;
        };
        let stats = &mut self.stats;
        sock.send_iovecs(out, &mut |len, result| {
            if let Err(e) = stats.count_tx(i, len, result) {
                log::debug!("{len}-byte frame to {:?} not sent: {e}", side_of(i));
            }
        });
    }

    /// Writes side `i`'s transmit ring, then its copy-path queue (frames queued after the
    /// ring's), and empties the queue; each frame's outcome is counted.
    fn flush_side(&mut self, i: usize) {
        self.kick_ring(i);
        let (Some(sock), Some(queue)) = (self.socks.get(i), self.tx.get_mut(i)) else {
            return;
        };
        if queue.is_empty() {
            return;
        }
        let stats = &mut self.stats;
        sock.send_all(queue.iter().map(|(_, f)| f), |len, result| {
            if let Err(e) = stats.count_tx(i, len, result) {
                log::debug!("{len}-byte frame to {:?} not sent: {e}", side_of(i));
            }
        });
        queue.clear();
    }
}

/// Opens the sockets of `workers` workers in worker order, so that worker i is member i
/// of both fanout groups. Fanout is used only with more than one worker; group ids are
/// derived from the process id so that two bridges in one namespace do not share a group.
pub fn open_workers(
    outside: &str,
    inside: &str,
    workers: usize,
) -> io::Result<Vec<AfPacketBackend>> {
    open_workers_with(outside, inside, workers, TxOptions::default())
}

/// [`open_workers`] with the transmit side set up as `tx` asks.
pub fn open_workers_with(
    outside: &str,
    inside: &str,
    workers: usize,
    tx: TxOptions,
) -> io::Result<Vec<AfPacketBackend>> {
    let fanout = (workers > 1).then(|| {
        let base = (std::process::id() as u16 & 0x7fff) << 1;
        (base, base | 1)
    });
    (0..workers)
        .map(|_| AfPacketBackend::open_with(outside, inside, fanout, tx))
        .collect()
}

/// Legacy ethtool commands (`include/uapi/linux/ethtool.h`): get/set pairs.
const ETHTOOL_FEATURES: [(&str, u32, u32); 4] = [
    ("tcp-segmentation-offload", 0x1e, 0x1f),
    ("generic-segmentation-offload", 0x23, 0x24),
    ("generic-receive-offload", 0x2b, 0x2c),
    ("tx-checksumming", 0x16, 0x17),
];
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETH_FLAG_LRO: u32 = 1 << 15;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ethtool(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    let mut ifr = ifreq_for(ifname)?;
    ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    let fd = ioctl_socket()?;
    // SAFETY: SIOCETHTOOL reads/writes `value`, which outlives the call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut ifr) };
    let result = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value.data)
    };
    close_fd(fd);
    result
}

fn no_admin(ifname: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("no privilege to change offloads on {ifname}: run as root or with CAP_NET_ADMIN"),
    )
}

/// Offload settings changed on one interface; restored when dropped.
#[derive(Debug)]
pub struct OffloadGuard {
    ifname: String,
    /// (name, set command, previous value) in the order they were changed.
    changed: Vec<(&'static str, u32, u32)>,
}

impl OffloadGuard {
    /// Turns TSO, GSO, GRO, tx checksumming and LRO off on `ifname` (the legacy TSO switch
    /// leaves features newer than it, such as AccECN segmentation, as they are; they only
    /// concern frames the host itself sends). A setting the driver
    /// cannot change is logged and left alone (its super-frames would be dropped as
    /// oversized or forwarded with the driver's checksum state).
    pub fn disable(ifname: &str) -> io::Result<OffloadGuard> {
        let mut guard = OffloadGuard {
            ifname: ifname.to_string(),
            changed: Vec::new(),
        };
        for (name, get, set) in ETHTOOL_FEATURES {
            match ethtool(ifname, get, 0) {
                Ok(0) => {}
                Ok(old) => match ethtool(ifname, set, 0) {
                    Ok(_) => guard.changed.push((name, set, old)),
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                        return Err(no_admin(ifname));
                    }
                    Err(e) => log::warn!("{ifname}: cannot turn {name} off: {e}"),
                },
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Err(no_admin(ifname)),
                Err(e) => log::debug!("{ifname}: {name} not reported: {e}"),
            }
        }
        if let Ok(flags) = ethtool(ifname, ETHTOOL_GFLAGS, 0) {
            if flags & ETH_FLAG_LRO != 0 {
                match ethtool(ifname, ETHTOOL_SFLAGS, flags & !ETH_FLAG_LRO) {
                    Ok(_) => guard
                        .changed
                        .push(("large-receive-offload", ETHTOOL_SFLAGS, flags)),
                    Err(e) => log::warn!("{ifname}: cannot turn large-receive-offload off: {e}"),
                }
            }
        }
        if !guard.changed.is_empty() {
            let names: Vec<_> = guard.changed.iter().map(|c| c.0).collect();
            log::info!("{ifname}: turned off {}", names.join(", "));
        }
        Ok(guard)
    }

    /// Names of the offloads this guard turned off.
    pub fn changed(&self) -> Vec<&'static str> {
        self.changed.iter().map(|c| c.0).collect()
    }
}

impl Drop for OffloadGuard {
    fn drop(&mut self) {
        // Reverse order: tx checksumming comes back before the segmentation offloads that
        // depend on it.
        for (name, set, old) in self.changed.iter().rev() {
            if let Err(e) = ethtool(&self.ifname, *set, *old) {
                log::warn!("{}: could not restore {name}: {e}", self.ifname);
            }
        }
        if !self.changed.is_empty() {
            log::info!("{}: offload settings restored", self.ifname);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_slots_hold_an_mtu_frame_with_headers_and_tags() {
        assert_eq!(ring_frame_size(1500), 2048);
        assert_eq!(ring_frame_size(0), 2048);
        assert_eq!(ring_frame_size(9000), 16384);
        assert_eq!(ring_frame_size(65000), 65536);
        // Longer than a block: the slot stays one block; longer frames take the copy path.
        assert_eq!(ring_frame_size(65535), RING_BLOCK);
        assert_eq!(ring_frame_size(usize::MAX), RING_BLOCK);
        for mtu in [68, 1500, 1504, 9000, 16000, 65000] {
            let size = ring_frame_size(mtu);
            assert!(size >= RING_SLOT_OVERHEAD + mtu + 14 + 8, "{mtu}");
            assert_eq!(RING_BLOCK % size, 0, "a block holds whole slots ({mtu})");
            assert_eq!(ring_frames(mtu) * size, RING_BYTES);
        }
    }

    /// A frame of `len` bytes with recognisable content.
    fn frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    /// What the recvmsg path makes of `data` with `aux`.
    fn via_recvmsg(data: &[u8], aux: Option<libc::tpacket_auxdata>) -> Vec<u8> {
        let mut buf = vec![0u8; VLAN_ROOM + data.len()];
        buf[VLAN_ROOM..].copy_from_slice(data);
        let rx = Received {
            len: data.len(),
            pkttype: libc::PACKET_HOST,
            aux,
        };
        restore_vlan(&mut buf, rx).expect("frame").to_vec()
    }

    fn aux(status: u32, tci: u16, tpid: u16) -> libc::tpacket_auxdata {
        // SAFETY: tpacket_auxdata is plain old data.
        let mut a: libc::tpacket_auxdata = unsafe { std::mem::zeroed() };
        a.tp_status = status;
        a.tp_vlan_tci = tci;
        a.tp_vlan_tpid = tpid;
        a
    }

    #[test]
    fn ring_and_recvmsg_paths_put_the_same_vlan_tag_back() {
        let valid = libc::TP_STATUS_VLAN_VALID;
        let both = valid | libc::TP_STATUS_VLAN_TPID_VALID;
        for len in [0, 11, 12, 13, 60, 1514] {
            let data = frame(len);
            for (status, tci, tpid) in [(0, 0, 0), (valid, 0xa064, 0), (both, 0x0fff, 0x88a8)] {
                let info = SlotInfo {
                    status: libc::TP_STATUS_USER | status,
                    len,
                    snaplen: len,
                    mac: 0,
                    pkttype: libc::PACKET_HOST,
                    vlan_tci: tci,
                    vlan_tpid: tpid,
                };
                let mut batch = FrameBatch::default();
                let n = push_with_vlan(&mut batch, Side::Inside, &data, slot_vlan(&info));
                let (side, got) = batch.iter().next().expect("pushed");
                assert_eq!(side, Side::Inside);
                assert_eq!(got.len(), n);
                let want = via_recvmsg(&data, Some(aux(status, tci, tpid)));
                assert_eq!(got, &want[..], "len {len} status {status:#x}");
                if status != 0 && len >= 12 {
                    let tag = [tpid_or_8100(status, tpid), tci].map(u16::to_be_bytes);
                    assert_eq!(&got[12..14], &tag[0]);
                    assert_eq!(&got[14..16], &tag[1]);
                    assert_eq!(&got[16..], &data[12..]);
                }
            }
        }
    }

    /// A datagram socket pair standing in for a packet socket: (sender, receiver fd).
    fn dgram_pair() -> (PacketSocket, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two descriptors into `fds`.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        (
            PacketSocket {
                fd: fds[0],
                ring: None,
                tx: None,
                copy_fd: -1,
                map: None,
            },
            fds[1],
        )
    }

    /// Reads `n` datagrams from `fd` on another thread (the sender blocks when the
    /// receiver's queue is full).
    fn read_datagrams(fd: RawFd, n: usize) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 70000];
            (0..n)
                .map(|_| {
                    // SAFETY: reading into a buffer we own, of its length.
                    let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                    buf[..usize::try_from(got).expect("recv")].to_vec()
                })
                .collect()
        })
    }

    #[test]
    fn sends_go_out_in_order_in_batches_of_any_length() {
        let (sock, peer) = dgram_pair();
        let frames: Vec<Vec<u8>> = (0..TX_BATCH * 2 + 7).map(|i| frame(60 + i)).collect();
        let reader = read_datagrams(peer, frames.len());
        let mut outcomes = Vec::new();
        sock.send_all(frames.iter().map(Vec::as_slice), |len, r| {
            outcomes.push((len, r.is_ok()))
        });
        assert_eq!(reader.join().expect("reader"), frames);
        let want: Vec<_> = frames.iter().map(|f| (f.len(), true)).collect();
        assert_eq!(outcomes, want);
        close_fd(peer);
    }

    #[test]
    fn a_refused_frame_is_reported_and_the_rest_still_sent() {
        let (sock, peer) = dgram_pair();
        // A datagram larger than the send buffer is refused (EMSGSIZE).
        assert_eq!(
            setsockopt_int(sock.fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4096),
            0
        );
        let big = frame(65000);
        let frames = [frame(60), big.clone(), frame(61), big, frame(62)];
        let reader = read_datagrams(peer, 3);
        let mut outcomes = Vec::new();
        sock.send_all(frames.iter().map(Vec::as_slice), |len, r| {
            outcomes.push((len, r.map_err(|e| e.raw_os_error())))
        });
        assert_eq!(
            reader.join().expect("reader"),
            vec![frame(60), frame(61), frame(62)]
        );
        assert_eq!(
            outcomes,
            vec![
                (60, Ok(())),
                (65000, Err(Some(libc::EMSGSIZE))),
                (61, Ok(())),
                (65000, Err(Some(libc::EMSGSIZE))),
                (62, Ok(())),
            ]
        );
        close_fd(peer);
    }

    /// A transmit ring over plain memory, `frames` slots of 2 KiB, for driving the ring's
    /// bookkeeping without a kernel (the test plays the kernel by writing status words).
    fn memory_ring(memory: &mut [u64], frames: usize) -> TxRing {
        assert!(memory.len() * 8 >= frames * 2048);
        TxRing {
            base: memory.as_mut_ptr().cast(),
            frame_size: 2048,
            frames,
            head: 0,
            tail: 0,
            in_flight: 0,
            unsent: 0,
            refused: false,
            max_len: 1514,
            room: 2048 - TX_DATA_OFFSET,
        }
    }

    /// What "the kernel" finds in slot `k`: status, `tp_len` and the frame.
    fn slot(memory: &[u64], k: usize) -> (u32, usize, Vec<u8>) {
        let bytes: Vec<u8> = memory.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let at = k * 2048;
        let word = |o: usize| u32::from_ne_bytes(bytes[at + o..at + o + 4].try_into().unwrap());
        let len = word(4) as usize;
        let data = bytes[at + TX_DATA_OFFSET..at + TX_DATA_OFFSET + len].to_vec();
        (word(0), len, data)
    }

    /// "The kernel" marks slot `k` with `status`.
    fn set_status(memory: &mut [u64], k: usize, status: u32) {
        let word = &mut memory[k * 2048 / 8];
        let mut b = word.to_ne_bytes();
        b[..4].copy_from_slice(&status.to_ne_bytes());
        *word = u64::from_ne_bytes(b);
    }

    #[test]
    fn tx_ring_takes_frames_of_14_bytes_to_mtu_plus_header_only_and_within_the_slot() {
        let mut memory = vec![0u64; 4 * 2048 / 8];
        let mut ring = memory_ring(&mut memory, 4);
        assert!(!ring.fits(&frame(13)) && ring.fits(&frame(14)));
        assert!(ring.fits(&frame(1514)) && !ring.fits(&frame(1515)));
        assert!(!ring.push(&frame(13)));
        assert!(!ring.push(&frame(1515)));
        // An 802.1Q tag may add 4 bytes (the kernel allows it), an 802.1ad one may not.
        let tagged = |len: usize, tpid: [u8; 2]| {
            let mut f = frame(len);
            f[12..14].copy_from_slice(&tpid);
            f
        };
        assert!(ring.fits(&tagged(1518, [0x81, 0x00])));
        assert!(!ring.fits(&tagged(1519, [0x81, 0x00])));
        assert!(!ring.fits(&tagged(1518, [0x88, 0xa8])));
        // Never more than the slot holds, whatever the MTU.
        ring.max_len = 9014;
        assert!(ring.fits(&frame(2016)) && !ring.fits(&frame(2017)));
        assert_eq!((ring.in_flight, ring.unsent), (0, 0));
    }

    #[test]
    fn tx_ring_fills_reaps_in_order_and_wraps_with_the_bytes_intact() {
        let frames = 4;
        let mut memory = vec![0u64; frames * 2048 / 8];
        let mut ring = memory_ring(&mut memory, frames);
        let mut next = 0usize;
        let mut sent = Vec::new();
        // Ten turns of the ring: fill it, check what the kernel would read, complete two
        // or all slots, reap.
        for turn in 0..10 {
            while ring.push(&frame(60 + next)) {
                next += 1;
            }
            assert_eq!(ring.in_flight, frames, "full on turn {turn}");
            assert!(ring.newest_marked());
            for k in 0..frames {
                let (status, len, data) = slot(&memory, k);
                assert_eq!(status, libc::TP_STATUS_SEND_REQUEST);
                assert_eq!(data, frame(len));
            }
            // The kernel sends in ring order: complete the oldest `done` slots.
            let done = if turn % 2 == 0 { 2 } else { frames };
            for j in 0..done {
                set_status(
                    &mut memory,
                    (ring.tail + j) % frames,
                    libc::TP_STATUS_AVAILABLE,
                );
            }
            let lens: Vec<usize> = ring.done().collect();
            assert_eq!(lens.len(), done, "done() counts without taking back");
            assert_eq!(ring.in_flight, frames);
            ring.reap(|len| sent.push(len));
            assert_eq!(ring.in_flight, frames - done);
        }
        // Every frame reaped once, in the order pushed.
        let want: Vec<usize> = (0..sent.len()).map(|i| 60 + i).collect();
        assert_eq!(sent, want);
    }

    #[test]
    fn tx_ring_does_not_overwrite_a_slot_the_kernel_still_holds() {
        let frames = 2;
        let mut memory = vec![0u64; frames * 2048 / 8];
        let mut ring = memory_ring(&mut memory, frames);
        assert!(ring.push(&frame(60)) && ring.push(&frame(61)));
        assert!(!ring.push(&frame(62)), "full");
        // Slot 0 handed to the driver, not done: nothing to reap, still full.
        set_status(&mut memory, 0, libc::TP_STATUS_SENDING);
        let mut reaped = 0;
        ring.reap(|_| reaped += 1);
        assert_eq!(reaped, 0);
        assert!(!ring.push(&frame(62)));
        // Slot 1 done before slot 0 (cannot happen on one queue, but must not be taken
        // back out of order).
        set_status(&mut memory, 1, libc::TP_STATUS_AVAILABLE);
        ring.reap(|_| reaped += 1);
        assert_eq!(reaped, 0);
        set_status(&mut memory, 0, libc::TP_STATUS_AVAILABLE);
        ring.reap(|_| reaped += 1);
        assert_eq!(reaped, 2);
        assert!(!ring.newest_marked());
        assert!(ring.push(&frame(62)));
        assert_eq!(slot(&memory, 0).2, frame(62));
    }

    fn tpid_or_8100(status: u32, tpid: u16) -> u16 {
        if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
            tpid
        } else {
            0x8100
        }
    }
}
