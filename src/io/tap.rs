//! The TAP backend: frames exchanged with the kernel through two TAP devices.
//!
//! Each side is a TAP device named by the user. If it exists it is attached to (it must
//! have been created with the matching queue mode: `ip tuntap add mode tap multi_queue`
//! for more than one worker); if not, it is created for the life of the process. Either
//! way it is brought up: unlike a NIC, a TAP device is ours to drive, so "down" is not an
//! error here. Frames are plain Ethernet (`IFF_NO_PI`, no virtio-net header), so the
//! kernel segments and checksums everything before it reaches us: no offload trap here.
//!
//! Workers: with N > 1 every worker attaches its own queue (`IFF_MULTI_QUEUE`) of both
//! devices. The kernel picks the queue of a frame it sends to us from the flow's symmetric
//! hash (and from the queue we last wrote that flow on), the same function on both devices,
//! so both directions of a flow reach the same worker; `tests/live_fanout.rs` checks it.
//! With one worker a device of either queue mode is accepted.

use super::backend::{
    close_fd, ifreq_for, os_error, recv_ready, set_interface_up, side_index, side_of, Backend,
    FrameBatch, IoStats, MAX_FRAME,
};
use crate::engine::Side;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// One queue of one TAP device.
#[derive(Debug)]
struct TapQueue {
    fd: RawFd,
}

impl Drop for TapQueue {
    fn drop(&mut self) {
        close_fd(self.fd);
    }
}

impl TapQueue {
    /// Attaches a queue of TAP device `ifname`, creating the device if it does not exist.
    fn attach(ifname: &str, multi_queue: bool) -> io::Result<TapQueue> {
        // SAFETY: plain open(2) with a NUL-terminated path.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "no privilege to open /dev/net/tun: run as root or with CAP_NET_ADMIN",
                ),
                Some(libc::ENOENT) => io::Error::new(
                    io::ErrorKind::NotFound,
                    "/dev/net/tun does not exist (modprobe tun)",
                ),
                _ => os_error("open /dev/net/tun"),
            });
        }
        let queue = TapQueue { fd };
        let mut ifr = ifreq_for(ifname)?;
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
        if multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes the ifreq we own.
        let rc = unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut ifr) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("no privilege to attach TAP device {ifname}: run as root or with CAP_NET_ADMIN"),
                ),
                Some(libc::EINVAL) => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "cannot attach {ifname} as a {}TAP device: is it a TAP created with {}?",
                        if multi_queue { "multi-queue " } else { "" },
                        if multi_queue { "`ip tuntap add mode tap multi_queue`" } else { "matching options" }
                    ),
                ),
                Some(libc::EBUSY) => io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("TAP device {ifname} is already attached by another process"),
                ),
                _ => io::Error::new(e.kind(), format!("TUNSETIFF {ifname}: {e}")),
            });
        }
        Ok(queue)
    }

    /// Like [`TapQueue::attach`], but a single queue also accepts a multi-queue device.
    fn attach_any(ifname: &str, multi_queue: bool) -> io::Result<TapQueue> {
        match TapQueue::attach(ifname, multi_queue) {
            Err(e) if !multi_queue && e.kind() == io::ErrorKind::InvalidInput => {
                TapQueue::attach(ifname, true)
            }
            other => other,
        }
    }

    /// Reads one frame without blocking; `Ok(None)` when nothing is ready.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is valid for reads of its length.
        let n = unsafe { libc::write(self.fd, frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// One worker's queues of the outside and inside TAP devices.
#[derive(Debug)]
pub struct TapBackend {
    queues: [TapQueue; 2],
    buf: Vec<u8>,
    stats: IoStats,
}

impl TapBackend {
    /// Attaches one queue of each device (multi-queue when `multi_queue`).
    pub fn open(outside: &str, inside: &str, multi_queue: bool) -> io::Result<TapBackend> {
        let out = TapQueue::attach_any(outside, multi_queue)?;
        let ins = TapQueue::attach_any(inside, multi_queue)?;
        for name in [outside, inside] {
            set_interface_up(name)?;
        }
        Ok(TapBackend {
            queues: [out, ins],
            // One byte more than the largest frame: a read that fills it was cut.
            buf: vec![0; MAX_FRAME + 1],
            stats: IoStats::default(),
        })
    }

    fn drain(&mut self, i: usize, room: usize, batch: &mut FrameBatch) -> io::Result<usize> {
        let side = side_of(i);
        let mut got = 0;
        while got < room {
            let Some(q) = self.queues.get(i) else {
                break;
            };
            let Some(n) = q.recv(&mut self.buf)? else {
                break;
            };
            if n > MAX_FRAME {
                self.stats.rx_truncated += 1;
                log::warn!("dropped an oversized frame from {side:?} (over {MAX_FRAME} bytes)");
                continue;
            }
            batch.push(side, self.buf.get(..n).unwrap_or_default());
            self.stats.count_rx(i, n);
            got += 1;
        }
        Ok(got)
    }
}

impl Backend for TapBackend {
    fn recv_batch(
        &mut self,
        timeout: Option<Duration>,
        max: usize,
        batch: &mut FrameBatch,
    ) -> io::Result<usize> {
        let fds = [self.queues[0].fd, self.queues[1].fd];
        recv_ready(fds, timeout, max, |i, room| self.drain(i, room, batch))
    }

    fn send(&mut self, side: Side, frame: &[u8]) -> io::Result<()> {
        let i = side_index(side);
        let result = match self.queues.get(i) {
            Some(q) => q.send(frame),
            None => Ok(()),
        };
        self.stats.count_tx(i, frame.len(), result)
    }

    fn io_stats(&self) -> IoStats {
        self.stats
    }

    fn name(&self) -> &'static str {
        "tap"
    }
}

/// Attaches `workers` queues of each device, one backend per worker.
pub fn open_workers(outside: &str, inside: &str, workers: usize) -> io::Result<Vec<TapBackend>> {
    let multi_queue = workers > 1;
    (0..workers)
        .map(|_| TapBackend::open(outside, inside, multi_queue))
        .collect()
}
