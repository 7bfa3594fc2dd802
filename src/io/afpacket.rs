//! The AF_PACKET backend: raw Ethernet frames on two Linux interfaces.
//!
//! The Linux traps of DESIGN.md §4, and what this module does about each:
//! - **Our own frames re-read**: every socket sets `PACKET_IGNORE_OUTGOING`; frames still
//!   reported as `PACKET_OUTGOING` (kernels before 4.20) are skipped and counted.
//! - **Silent truncation**: frames are read with `MSG_TRUNC` into a [`MAX_FRAME`] buffer, so
//!   the kernel tells us the real length; a longer frame is dropped and counted, never
//!   forwarded cut.
//! - **VLAN tags**: the kernel strips 802.1Q/802.1ad tags before AF_PACKET sees a frame and
//!   reports them in `PACKET_AUXDATA`; the tag is put back so trunks are bridged tagged.
//! - **Partial checksums** (`TP_STATUS_CSUMNOTREADY`, frames from a local peer with tx
//!   checksum offload): counted in [`IoStats::rx_csum_partial`], forwarded as they are.
//! - **Link down**: `ENETDOWN` on read is logged and waited out (the socket stays bound and
//!   reads again when the link is back up); a vanished interface ends the worker.
//! - **No read timeout**: both sockets of a worker are waited on with one `poll(2)` with
//!   the caller's timeout, then drained without blocking.
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
//! libc, opened exactly as `pnet::datalink::Config::socket_fd` would expect, so a pnet or
//! TPACKET_V3 ring backend can replace this one behind [`Backend`].

use super::backend::{
    check_interface_up, close_fd, ifreq_for, ioctl_socket, os_error, recv_ready, side_index,
    side_of, Backend, FrameBatch, IoStats, MAX_FRAME,
};
use crate::engine::Side;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Socket buffer sizes asked for (the kernel caps them at `net.core.[rw]mem_max`).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// One AF_PACKET socket bound to one interface.
#[derive(Debug)]
struct PacketSocket {
    fd: RawFd,
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        close_fd(self.fd);
    }
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> i32 {
    // SAFETY: `value` lives for the call; the size matches.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
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
    /// joins fanout group `fanout` if given.
    fn open(ifname: &str, fanout: Option<u16>) -> io::Result<PacketSocket> {
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
        let sock = PacketSocket { fd };
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
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
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
        // SAFETY: packet_mreq is plain old data.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex as libc::c_int;
        mreq.mr_type = libc::PACKET_MR_PROMISC as libc::c_ushort;
        // SAFETY: `mreq` lives for the call; the size matches.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
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

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is valid for reads of its length.
        let n = unsafe { libc::send(self.fd, frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
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

/// The AF_PACKET ports of one worker.
#[derive(Debug)]
pub struct AfPacketBackend {
    socks: [PacketSocket; 2],
    buf: Vec<u8>,
    stats: IoStats,
}

impl AfPacketBackend {
    /// Opens one worker's sockets on `outside` and `inside`, joining the fanout groups if
    /// given (`(outside group, inside group)`).
    pub fn open(
        outside: &str,
        inside: &str,
        fanout: Option<(u16, u16)>,
    ) -> io::Result<AfPacketBackend> {
        let out = PacketSocket::open(outside, fanout.map(|f| f.0))?;
        let ins = PacketSocket::open(inside, fanout.map(|f| f.1))?;
        Ok(AfPacketBackend {
            socks: [out, ins],
            buf: vec![0; VLAN_ROOM + MAX_FRAME],
            stats: IoStats::default(),
        })
    }

    /// Reads what is ready on side `i` into `batch`, at most `room` frames.
    fn drain(&mut self, i: usize, room: usize, batch: &mut FrameBatch) -> io::Result<usize> {
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
            if rx.pkttype == libc::PACKET_OUTGOING {
                self.stats.rx_own_outgoing += 1;
                continue;
            }
            if rx.len > MAX_FRAME {
                self.stats.rx_truncated += 1;
                log::warn!(
                    "dropped a {}-byte frame from {side:?}: larger than {MAX_FRAME}",
                    rx.len
                );
                continue;
            }
            let status = rx.aux.map_or(0, |a| a.tp_status);
            if status & libc::TP_STATUS_CSUMNOTREADY != 0 {
                self.stats.rx_csum_partial += 1;
            }
            let Some(frame) = restore_vlan(&mut self.buf, rx) else {
                continue;
            };
            let n = frame.len();
            batch.push(side, frame);
            self.stats.count_rx(i, n);
            got += 1;
        }
        Ok(got)
    }
}

impl Backend for AfPacketBackend {
    fn recv_batch(
        &mut self,
        timeout: Option<Duration>,
        max: usize,
        batch: &mut FrameBatch,
    ) -> io::Result<usize> {
        let fds = [self.socks[0].fd, self.socks[1].fd];
        recv_ready(fds, timeout, max, |i, room| self.drain(i, room, batch))
    }

    fn send(&mut self, side: Side, frame: &[u8]) -> io::Result<()> {
        let i = side_index(side);
        let result = match self.socks.get(i) {
            Some(s) => s.send(frame),
            None => Ok(()),
        };
        self.stats.count_tx(i, frame.len(), result)
    }

    fn io_stats(&self) -> IoStats {
        self.stats
    }

    fn name(&self) -> &'static str {
        "afpacket"
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
    let fanout = (workers > 1).then(|| {
        let base = (std::process::id() as u16 & 0x7fff) << 1;
        (base, base | 1)
    });
    (0..workers)
        .map(|_| AfPacketBackend::open(outside, inside, fanout))
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
