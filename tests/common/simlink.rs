//! A seeded, simulated Ethernet link and smoltcp endpoints attached to it.
//!
//! - [`Rng`]: a small deterministic generator (splitmix64-seeded xorshift64*), so a seed
//!   reproduces a whole run bit for bit without extra dependencies.
//! - [`Lane`]: one direction of a link. Each frame pushed into it may be dropped, duplicated,
//!   delayed by a random amount (which reorders frames) and, with some probability, held back
//!   much longer (explicit reordering). Frames that are not IPv4 (ARP) cross unimpaired after
//!   the minimum delay: impairing ARP only tests smoltcp's neighbour discovery, not the filter.
//! - [`SimDevice`] / [`Endpoint`]: a smoltcp `Interface` (medium Ethernet) with one TCP socket,
//!   checksum verification on (asserted at construction), driven by a simulated clock.
//!
//! Time is in microseconds of simulated time ([`SimTime`]).
#![allow(dead_code)]

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use std::collections::VecDeque;

/// Simulated time in microseconds.
pub type SimTime = u64;

/// Deterministic pseudo-random numbers: xorshift64* seeded through splitmix64.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, including 0).
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; returns 0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }

    /// A child generator, so that independent consumers do not perturb each other.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

/// How one lane mistreats frames (probabilities in per mille, delays in microseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Impairment {
    /// Probability that a frame is lost.
    pub drop: u32,
    /// Probability that a frame is delivered twice (each copy gets its own delay).
    pub duplicate: u32,
    /// Probability that a frame is held back by an extra `reorder_extra` delay.
    pub reorder: u32,
    /// Minimum one-way delay.
    pub delay_min: SimTime,
    /// Maximum one-way delay (uniform between min and max: jitter reorders frames too).
    pub delay_max: SimTime,
    /// Extra delay of a held-back frame.
    pub reorder_extra: SimTime,
}

impl Impairment {
    /// A perfect link with a fixed 1 ms delay.
    pub const CLEAN: Impairment = Impairment {
        drop: 0,
        duplicate: 0,
        reorder: 0,
        delay_min: 1_000,
        delay_max: 1_000,
        reorder_extra: 0,
    };

    /// A random bad link for a seed: up to 10% loss, 10% duplication, 15% reordering.
    pub fn random(rng: &mut Rng) -> Impairment {
        let delay_min = rng.range(200, 3_000);
        Impairment {
            drop: rng.range(0, 100) as u32,
            duplicate: rng.range(0, 100) as u32,
            reorder: rng.range(0, 150) as u32,
            delay_min,
            delay_max: delay_min + rng.range(0, 5_000),
            reorder_extra: rng.range(1_000, 30_000),
        }
    }
}

/// Counters of what a lane did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneStats {
    /// Frames pushed in.
    pub sent: u64,
    /// Frames lost.
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Frames held back for reordering.
    pub reordered: u64,
}

/// One direction of a simulated link.
#[derive(Debug)]
pub struct Lane {
    rng: Rng,
    imp: Impairment,
    order: u64,
    queue: Vec<(SimTime, u64, Vec<u8>)>,
    /// What the lane did so far.
    pub stats: LaneStats,
}

impl Lane {
    /// A lane with its own generator.
    pub fn new(rng: Rng, imp: Impairment) -> Lane {
        Lane {
            rng,
            imp,
            order: 0,
            queue: Vec::new(),
            stats: LaneStats::default(),
        }
    }

    /// Puts a frame on the wire at `now`; false if the lane lost it.
    pub fn push(&mut self, now: SimTime, frame: &[u8]) -> bool {
        self.stats.sent += 1;
        if !is_ipv4(frame) {
            self.enqueue(now + self.imp.delay_min, frame);
            return true;
        }
        if self.rng.chance(self.imp.drop) {
            self.stats.dropped += 1;
            return false;
        }
        let copies = if self.rng.chance(self.imp.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = now + self.rng.range(self.imp.delay_min, self.imp.delay_max);
            if self.rng.chance(self.imp.reorder) {
                self.stats.reordered += 1;
                at += self.imp.reorder_extra;
            }
            self.enqueue(at, frame);
        }
        true
    }

    fn enqueue(&mut self, at: SimTime, frame: &[u8]) {
        self.order += 1;
        self.queue.push((at, self.order, frame.to_vec()));
    }

    /// When the next frame arrives, if any is in flight.
    pub fn next_at(&self) -> Option<SimTime> {
        self.queue.iter().map(|(at, _, _)| *at).min()
    }

    /// Takes the earliest frame due at `now` (ties in push order).
    pub fn pop_due(&mut self, now: SimTime) -> Option<Vec<u8>> {
        let idx = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, (at, _, _))| *at <= now)
            .min_by_key(|(_, (at, order, _))| (*at, *order))
            .map(|(i, _)| i)?;
        Some(self.queue.swap_remove(idx).2)
    }
}

fn is_ipv4(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x08, 0x00][..])
}

/// A smoltcp device whose frames are moved by the test: `rx` is filled by the link,
/// `tx` emptied into it.
#[derive(Debug)]
pub struct SimDevice {
    /// Frames delivered to this endpoint, not yet read by smoltcp.
    pub rx: VecDeque<Vec<u8>>,
    /// Frames smoltcp transmitted, not yet put on the link.
    pub tx: Vec<Vec<u8>>,
    mtu: usize,
}

impl SimDevice {
    /// A device whose IP MTU is `ip_mtu` (the Ethernet header comes on top).
    pub fn new(ip_mtu: usize) -> SimDevice {
        SimDevice {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu: ip_mtu + 14,
        }
    }
}

/// Receive token of [`SimDevice`].
pub struct SimRx(Vec<u8>);
/// Transmit token of [`SimDevice`].
pub struct SimTx<'a>(&'a mut Vec<Vec<u8>>);

impl smoltcp::phy::RxToken for SimRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for SimTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for SimDevice {
    type RxToken<'a> = SimRx;
    type TxToken<'a> = SimTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(SimRx, SimTx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((SimRx(frame), SimTx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<SimTx<'_>> {
        Some(SimTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        // The default verifies on receive and computes on send; spelled out because the
        // whole point of these endpoints is to reject frames with bad checksums.
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}

/// Parameters of one endpoint.
#[derive(Clone, Copy, Debug)]
pub struct EndpointParams {
    /// Last octet of 198.18.0.x and of the MAC address.
    pub host: u8,
    /// IP MTU of its interface (its MSS is this minus 40).
    pub ip_mtu: usize,
    /// TCP receive buffer (its window).
    pub rx_buf: usize,
    /// TCP send buffer.
    pub tx_buf: usize,
    /// Nagle's algorithm on the socket.
    pub nagle: bool,
    /// Seed of smoltcp's own randomness (ISN, ephemeral choices).
    pub seed: u64,
    /// TCP keep-alive interval in milliseconds (0: off). smoltcp 0.12 has no persist timer,
    /// so a reordered stale zero-window ACK deadlocks a sender; its keep-alive, answered with
    /// the current window, stands in for the window probe.
    pub keep_alive_ms: u64,
}

/// A smoltcp host with one TCP socket.
pub struct Endpoint {
    /// The interface.
    pub iface: Interface,
    /// The device the test moves frames through.
    pub device: SimDevice,
    /// The socket set (one socket).
    pub sockets: SocketSet<'static>,
    /// The TCP socket.
    pub handle: SocketHandle,
}

/// The address of simulated host `host`.
pub fn host_ip(host: u8) -> IpAddress {
    IpAddress::v4(198, 18, 0, host)
}

impl Endpoint {
    /// A host at 198.18.0.`host`/24 with one unconnected TCP socket.
    pub fn new(p: EndpointParams, now: SimTime) -> Endpoint {
        let mut device = SimDevice::new(p.ip_mtu);
        let caps = device.capabilities();
        assert!(
            caps.checksum.ipv4.rx() && caps.checksum.tcp.rx(),
            "endpoints must verify IPv4 and TCP checksums"
        );
        let mac = EthernetAddress([0x02, 0, 0, 0, 0, p.host]);
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = p.seed;
        let mut iface = Interface::new(config, &mut device, instant(now));
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(host_ip(p.host), 24))
                .expect("one address fits");
        });
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; p.rx_buf]),
            tcp::SocketBuffer::new(vec![0; p.tx_buf]),
        );
        socket.set_nagle_enabled(p.nagle);
        if p.keep_alive_ms > 0 {
            socket.set_keep_alive(Some(smoltcp::time::Duration::from_millis(p.keep_alive_ms)));
        }
        let mut sockets = SocketSet::new(Vec::new());
        let handle = sockets.add(socket);
        Endpoint {
            iface,
            device,
            sockets,
            handle,
        }
    }

    /// The TCP socket.
    pub fn socket(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.handle)
    }

    /// Lets smoltcp process received frames and timers at `now`.
    pub fn poll(&mut self, now: SimTime) {
        self.iface
            .poll(instant(now), &mut self.device, &mut self.sockets);
    }

    /// When smoltcp next wants to be polled.
    pub fn poll_at(&mut self, now: SimTime) -> Option<SimTime> {
        self.iface
            .poll_at(instant(now), &self.sockets)
            .map(|i| i.total_micros().max(0) as u64)
    }
}

/// A smoltcp instant for a simulated time.
pub fn instant(t: SimTime) -> Instant {
    Instant::from_micros(t as i64)
}
