//! The interface between the worker loop and the packet I/O: a [`Backend`] moves whole
//! Ethernet frames between the process and the two ports of one worker (outside, inside).
//!
//! Choices made where the spec is silent:
//! - A backend serves one worker: it owns that worker's file descriptors (one per side) and
//!   no lock is taken on the packet path. Both backends here wait on both descriptors with a
//!   single `poll(2)` and then drain each without blocking, so one read timeout covers both
//!   sides and a batch can mix them.
//! - Frames are read into a [`FrameBatch`] owned by the caller, so the caller can send
//!   (through the same backend) while it walks the batch. It is the engine's
//!   [`FrameSink`](crate::engine::FrameSink) under another name: both are "frames with a
//!   side, in order", and one type keeps one implementation.
//! - A frame larger than [`MAX_FRAME`] is never handed on truncated: it is dropped and
//!   counted in [`IoStats::rx_truncated`].

use crate::engine::Side;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Largest frame a backend reads whole: 64 KiB of IP packet plus an Ethernet header and two
/// VLAN tags. With offloads off, real frames are at most the MTU plus headers.
pub const MAX_FRAME: usize = 65536 + 14 + 8;

/// Default upper bound of frames read per [`Backend::recv_batch`] call.
pub const DEFAULT_BATCH: usize = 64;

/// Frames read in one [`Backend::recv_batch`] call, in arrival order, each with the side it
/// was read from. The same buffer type the engine emits into: one flat byte buffer plus
/// ranges, reused across calls so the packet path does not allocate.
pub type FrameBatch = crate::engine::FrameSink;

/// Counters of the I/O layer of one worker (the engine keeps its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Frames read, outside then inside.
    pub rx_frames: [u64; 2],
    /// Bytes read, outside then inside.
    pub rx_bytes: [u64; 2],
    /// Frames written, to outside then to inside.
    pub tx_frames: [u64; 2],
    /// Bytes written, to outside then to inside.
    pub tx_bytes: [u64; 2],
    /// Frames dropped on read because they were larger than [`MAX_FRAME`].
    pub rx_truncated: u64,
    /// Frames our own socket saw leaving (should stay 0 with `PACKET_IGNORE_OUTGOING`).
    pub rx_own_outgoing: u64,
    /// Frames that could not be written (buffer full, too big for the link, ...).
    pub tx_errors: u64,
    /// Frames read with a checksum left to offload (a local peer's tx checksum offload is
    /// on: turn it off, their checksums are not valid on the wire).
    pub rx_csum_partial: u64,
    /// Transmit-ring sends the kernel refused in part (peer's queue full, link down, socket
    /// buffer full): the frames left stay queued in order and are retried at the next
    /// flush.
    pub tx_retries: u64,
    /// Frames a backend with a transmit ring sent through its copy path instead (ring
    /// still full after a send, or a frame longer than the ring takes).
    pub tx_copied: u64,
}

impl IoStats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &IoStats) {
        for i in 0..2 {
            self.rx_frames[i] += other.rx_frames[i];
            self.rx_bytes[i] += other.rx_bytes[i];
            self.tx_frames[i] += other.tx_frames[i];
            self.tx_bytes[i] += other.tx_bytes[i];
        }
        self.rx_truncated += other.rx_truncated;
        self.rx_own_outgoing += other.rx_own_outgoing;
        self.tx_errors += other.tx_errors;
        self.rx_csum_partial += other.rx_csum_partial;
        self.tx_retries += other.tx_retries;
        self.tx_copied += other.tx_copied;
    }
}

impl IoStats {
    /// Counts a frame of `len` bytes read from the side of index `i` (0 outside, 1 inside).
    pub fn count_rx(&mut self, i: usize, len: usize) {
        if let (Some(f), Some(b)) = (self.rx_frames.get_mut(i), self.rx_bytes.get_mut(i)) {
            *f += 1;
            *b += len as u64;
        }
    }

    /// Counts the outcome of writing a frame of `len` bytes to the side of index `i`, and
    /// passes the outcome on.
    pub fn count_tx(&mut self, i: usize, len: usize, result: io::Result<()>) -> io::Result<()> {
        match &result {
            Ok(()) => {
                if let (Some(f), Some(b)) = (self.tx_frames.get_mut(i), self.tx_bytes.get_mut(i)) {
                    *f += 1;
                    *b += len as u64;
                }
            }
            Err(_) => self.tx_errors += 1,
        }
        result
    }
}

/// The side of index `i` in the `[outside, inside]` arrays (the inverse of [`side_index`]).
pub(crate) fn side_of(i: usize) -> Side {
    if i == 0 {
        Side::Outside
    } else {
        Side::Inside
    }
}

/// The body of [`Backend::recv_batch`] for a backend with one descriptor per side: waits
/// up to `timeout` on both `fds`, then calls `drain(i, room)` for each readable side `i`,
/// which reads at most `room` frames into the batch and returns how many it read. Each
/// side gets half of `max` first, so a busy side cannot starve the other.
pub(crate) fn recv_ready(
    fds: [RawFd; 2],
    timeout: Option<Duration>,
    max: usize,
    mut drain: impl FnMut(usize, usize) -> io::Result<usize>,
) -> io::Result<usize> {
    let ready = poll_readable(fds, timeout)?;
    let half = max.div_ceil(2);
    let mut got = 0;
    for (i, r) in ready.iter().enumerate() {
        if *r {
            got += drain(i, half)?;
        }
    }
    Ok(got)
}

/// Index of a side in the `[outside, inside]` arrays of [`IoStats`].
pub fn side_index(side: Side) -> usize {
    match side {
        Side::Outside => 0,
        Side::Inside => 1,
    }
}

/// Packet I/O for one worker: both ports, frames in and out.
pub trait Backend: Send {
    /// Waits up to `timeout` (forever if `None`) until a frame is ready on either side, then
    /// appends to `batch` the frames ready now, at most `max` of them. Returns the number
    /// appended (0 on timeout or interruption by a signal).
    fn recv_batch(
        &mut self,
        timeout: Option<Duration>,
        max: usize,
        batch: &mut FrameBatch,
    ) -> io::Result<usize>;

    /// Writes one frame to `side`, or queues it until [`Backend::flush`]. An error means
    /// that frame was not sent (and is counted); the port stays usable. A backend that
    /// queues counts the errors of queued frames when it flushes them.
    fn send(&mut self, side: Side, frame: &[u8]) -> io::Result<()>;

    /// Writes the frames [`Backend::send`] queued, in order. The worker calls it after
    /// each batch, before it waits again. Backends that write at once keep this default.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Writes `frames`, in order on each side, then flushes: the same as [`Backend::send`]
    /// for each frame followed by [`Backend::flush`] (this default). The frames only have
    /// to live for the call, so a backend that batches its writes can point its system
    /// calls at the caller's buffers instead of copying each frame into a queue of its own
    /// first (the AF_PACKET backend's `sendmmsg` path does). A frame not sent is counted,
    /// as with `send`; the error returned is the flush's.
    fn send_frames<'a, I>(&mut self, frames: I) -> io::Result<()>
    where
        I: Iterator<Item = (Side, &'a [u8])>,
        Self: Sized,
    {
        for (side, frame) in frames {
            if let Err(e) = self.send(side, frame) {
                log::debug!("{}-byte frame to {side:?} not sent: {e}", frame.len());
            }
        }
        self.flush()
    }

    /// The I/O counters so far.
    fn io_stats(&self) -> IoStats;

    /// A short name for logs (`afpacket`, `tap`).
    fn name(&self) -> &'static str;
}

/// Which descriptors of `[outside, inside]` are readable after waiting up to `timeout`.
/// Interruption by a signal is reported as nothing readable.
pub fn poll_readable(fds: [RawFd; 2], timeout: Option<Duration>) -> io::Result<[bool; 2]> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ms: libc::c_int = match timeout {
        None => -1,
        // Round up so a sub-millisecond timer does not spin at 0 ms.
        Some(d) => d.as_micros().div_ceil(1000).min(libc::c_int::MAX as u128) as libc::c_int,
    };
    // SAFETY: `pfds` is a valid array of two pollfd for the duration of the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), 2, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok([false, false]);
        }
        return Err(e);
    }
    let bad = libc::POLLERR | libc::POLLNVAL | libc::POLLHUP;
    for p in &pfds {
        if p.revents & libc::POLLNVAL != 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
    }
    Ok(pfds.map(|p| p.revents & (libc::POLLIN | bad) != 0))
}

/// Closes `fd` if it is valid (used by the backends' `Drop`).
pub(crate) fn close_fd(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: the caller owns `fd` and never uses it again.
        unsafe {
            libc::close(fd);
        }
    }
}

/// The last OS error with some context, e.g. `"bind eth0: Operation not permitted"`.
pub(crate) fn os_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// An `ifreq` naming `ifname`, other fields zeroed. Fails if the name does not fit.
pub(crate) fn ifreq_for(ifname: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{ifname:?} is not a valid interface name (1 to 15 bytes)"),
        ));
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(ifr)
}

/// A throwaway datagram socket for interface ioctls.
pub(crate) fn ioctl_socket() -> io::Result<RawFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_error("socket for interface ioctls"));
    }
    Ok(fd)
}

/// The `IFF_*` flags of `ifname`.
pub(crate) fn interface_flags(ifname: &str) -> io::Result<libc::c_int> {
    let mut ifr = ifreq_for(ifname)?;
    let fd = ioctl_socket()?;
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) };
    let result = if rc < 0 {
        // Raw, so callers can tell ENODEV apart.
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        Ok(libc::c_int::from(unsafe { ifr.ifr_ifru.ifru_flags }) & 0xffff)
    };
    close_fd(fd);
    result
}

/// Sets `IFF_UP` on `ifname` (used for TAP devices we create).
pub(crate) fn set_interface_up(ifname: &str) -> io::Result<()> {
    let flags = interface_flags(ifname)?;
    if flags & libc::IFF_UP != 0 {
        return Ok(());
    }
    let mut ifr = ifreq_for(ifname)?;
    ifr.ifr_ifru.ifru_flags = (flags | libc::IFF_UP) as libc::c_short;
    let fd = ioctl_socket()?;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) };
    let result = if rc < 0 {
        Err(os_error(&format!("bringing {ifname} up")))
    } else {
        Ok(())
    };
    close_fd(fd);
    result
}

/// Checks that `ifname` exists and is administratively up, with errors meant for the user:
/// `interface X does not exist`, `interface X is down (ip link set X up)`.
pub fn check_interface_up(ifname: &str) -> io::Result<()> {
    match interface_flags(ifname) {
        Ok(flags) if flags & libc::IFF_UP != 0 => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::NotConnected,
            format!("interface {ifname} is down (ip link set {ifname} up)"),
        )),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) || e.kind() == io::ErrorKind::NotFound => {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("interface {ifname} does not exist"),
            ))
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("interface {ifname}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keeps_frames_and_sides_in_order() {
        let mut b = FrameBatch::default();
        b.push(Side::Outside, b"one");
        b.push(Side::Inside, b"");
        b.push(Side::Inside, b"three");
        let v: Vec<_> = b.iter().collect();
        assert_eq!(
            v,
            vec![
                (Side::Outside, &b"one"[..]),
                (Side::Inside, &b""[..]),
                (Side::Inside, &b"three"[..])
            ]
        );
        assert_eq!(b.len(), 3);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.iter().count(), 0);
    }

    #[test]
    fn io_stats_merge_adds_every_counter() {
        let a = IoStats {
            rx_frames: [1, 2],
            rx_bytes: [3, 4],
            tx_frames: [5, 6],
            tx_bytes: [7, 8],
            rx_truncated: 9,
            rx_own_outgoing: 10,
            tx_errors: 11,
            rx_csum_partial: 12,
            tx_retries: 13,
            tx_copied: 14,
        };
        let mut sum = a;
        sum.merge(&a);
        assert_eq!(sum.rx_frames, [2, 4]);
        assert_eq!(sum.tx_bytes, [14, 16]);
        assert_eq!(
            (sum.rx_truncated, sum.rx_own_outgoing, sum.tx_errors),
            (18, 20, 22)
        );
        assert_eq!(sum.rx_csum_partial, 24);
        assert_eq!((sum.tx_retries, sum.tx_copied), (26, 28));
    }

    #[test]
    fn io_stats_count_frames_bytes_and_send_errors_per_side() {
        let mut s = IoStats::default();
        s.count_rx(0, 60);
        s.count_rx(1, 1514);
        s.count_rx(1, 40);
        assert_eq!(s.rx_frames, [1, 2]);
        assert_eq!(s.rx_bytes, [60, 1554]);
        assert!(s.count_tx(1, 70, Ok(())).is_ok());
        let e = s.count_tx(0, 9000, Err(io::Error::from_raw_os_error(libc::EMSGSIZE)));
        assert_eq!(
            e.expect_err("passed on").raw_os_error(),
            Some(libc::EMSGSIZE)
        );
        assert_eq!(s.tx_frames, [0, 1]);
        assert_eq!(s.tx_bytes, [0, 70]);
        assert_eq!(s.tx_errors, 1);
        for side in [Side::Outside, Side::Inside] {
            assert_eq!(side_of(side_index(side)), side);
        }
    }

    #[test]
    fn recv_ready_drains_only_readable_sides_half_the_batch_each() {
        let mut a = [0; 2];
        let mut b = [0; 2];
        // SAFETY: socketpair writes two descriptors into each array.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, a.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: as above.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, b.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: writing one byte from a valid buffer to a descriptor we own.
        let n = unsafe { libc::write(b[1], b"x".as_ptr().cast(), 1) };
        assert_eq!(n, 1);
        let mut calls = Vec::new();
        let got = recv_ready([a[0], b[0]], Some(Duration::from_secs(5)), 7, |i, room| {
            calls.push((i, room));
            Ok(2)
        })
        .expect("poll");
        assert_eq!(calls, vec![(1, 4)]);
        assert_eq!(got, 2);
        for fd in a.into_iter().chain(b) {
            close_fd(fd);
        }
    }

    #[test]
    fn poll_reports_which_side_is_readable() {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two descriptors into `fds`.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        let mut other = [0; 2];
        // SAFETY: as above.
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, other.as_mut_ptr()) };
        assert_eq!(rc, 0);
        let watched = [fds[0], other[0]];
        assert_eq!(
            poll_readable(watched, Some(Duration::ZERO)).expect("poll"),
            [false, false]
        );
        // SAFETY: writing one byte from a valid buffer to a descriptor we own.
        let n = unsafe { libc::write(other[1], b"x".as_ptr().cast(), 1) };
        assert_eq!(n, 1);
        assert_eq!(
            poll_readable(watched, Some(Duration::from_secs(5))).expect("poll"),
            [false, true]
        );
        for fd in fds.into_iter().chain(other) {
            close_fd(fd);
        }
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(ifreq_for("").is_err());
        assert!(ifreq_for("sixteen-chars-xx").is_err());
        assert!(ifreq_for("a\0b").is_err());
        assert!(ifreq_for("fifteen-chars-x").is_ok());
    }

    #[test]
    fn a_missing_interface_is_named_in_the_error() {
        let e = check_interface_up("mg-no-such0").expect_err("missing");
        assert_eq!(e.to_string(), "interface mg-no-such0 does not exist");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
