//! Worker threads of the live bridge: each owns one [`Backend`] (its sockets or queues)
//! and one [`Engine`] (its flow table and counters); nothing is shared on the packet path.
//!
//! Each loop: wait for frames on either side (bounded by the engine's next timer, the next
//! stats report and [`MAX_WAIT`], so control messages and shutdown are seen promptly), hand
//! each frame to [`Engine::handle_frame`] with the monotonic clock as [`Time`]; run
//! [`Engine::handle_timeout`] when due; then write the batch's output with one
//! [`Backend::send_frames`]: for each input frame, itself (to the other side) if the verdict
//! was `Forward`, then the frames the engine emitted for it, in order; the timers' frames
//! last. Forwarded frames are handed over where the batch holds them (no copy into an
//! output queue: a batching backend points its `sendmmsg` at them); only the frames the
//! engine made are kept, in one [`FrameSink`] per batch.
//! Counters go to the main thread over crossbeam-channel as [`WorkerReport`]s; [`Control`]
//! comes back the same way.
//!
//! Choices made where the spec is silent:
//! - A send error (buffer full, frame too big for the link) loses that frame only: it is
//!   counted in [`IoStats::tx_errors`] and logged at debug level; TCP recovers.
//! - A receive error other than a timeout or a signal ends the worker (the interface went
//!   away); the main thread sees it in the final report and stops the bridge.
//! - `--pcap-out` copies every frame the bridge writes to a writer thread through a bounded
//!   channel; when the writer falls behind, frames are left out of the file (counted), never
//!   held on the packet path.

use super::backend::{Backend, FrameBatch, IoStats, DEFAULT_BATCH};
use crate::engine::{Engine, EngineConfig, FrameSink, Limits, Side, Stats, Time, Verdict};
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use std::io;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Longest a worker waits for frames before looking at its control channel.
pub const MAX_WAIT: Duration = Duration::from_millis(100);

/// Messages from the main thread to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Send a [`WorkerReport`] now.
    Report,
    /// Send a final report and exit.
    Stop,
}

/// A frame the bridge wrote, for `--pcap-out`.
#[derive(Clone, Debug)]
pub struct CapturedFrame {
    /// Wall-clock time since the Unix epoch.
    pub when: Duration,
    /// The side it was written to.
    pub side: Side,
    /// The frame.
    pub data: Vec<u8>,
}

/// Counters of one worker, sent to the main thread.
#[derive(Clone, Debug)]
pub struct WorkerReport {
    /// Worker index.
    pub worker: usize,
    /// The engine's counters.
    pub engine: Stats,
    /// The I/O layer's counters.
    pub io: IoStats,
    /// Frames left out of `--pcap-out` because the writer was behind.
    pub capture_dropped: u64,
    /// True for the last report of the worker (it has exited its loop).
    pub last: bool,
    /// Why the worker stopped, if it was an error.
    pub error: Option<String>,
}

/// How one worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Worker index (0-based), used in logs and reports.
    pub index: usize,
    /// The CPU to pin the thread to, if any.
    pub cpu: Option<usize>,
    /// The engine's configuration.
    pub engine: EngineConfig,
    /// The engine's resource bounds (this worker's share).
    pub limits: Limits,
    /// How often to send a report unasked (`None`: only on [`Control::Report`] and at exit).
    pub report_every: Option<Duration>,
    /// The common origin of the monotonic clock (the same for all workers).
    pub epoch: Instant,
}

/// The CPUs this process may run on, in increasing order (empty if unknown).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data; sched_getaffinity writes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid for writes of its size.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cpu out of range",
        ));
    }
    // SAFETY: cpu_set_t is plain old data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` was checked against CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is valid for reads of its size; 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a worker thread.
pub fn spawn<B: Backend + 'static>(
    config: WorkerConfig,
    backend: B,
    control: Receiver<Control>,
    reports: Sender<WorkerReport>,
    capture: Option<Sender<CapturedFrame>>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("mg-worker-{}", config.index))
        .spawn(move || {
            let mut worker = Worker {
                engine: Engine::new(config.engine.clone()).with_limits(config.limits.clone()),
                backend,
                capture,
                capture_dropped: 0,
                produced: FrameSink::default(),
                plan: Vec::new(),
                config,
            };
            worker.run(&control, &reports);
        })
}

/// The state of one worker thread.
struct Worker<B: Backend> {
    config: WorkerConfig,
    engine: Engine,
    backend: B,
    capture: Option<Sender<CapturedFrame>>,
    capture_dropped: u64,
    /// The frames the engine emitted during the current batch (input frames, then timers).
    produced: FrameSink,
    /// Per input frame of the current batch, what goes out for it.
    plan: Vec<Planned>,
}

/// What the worker writes for one input frame: the frame itself (to the other side) if the
/// engine forwarded it, then the next `produced` frames of [`Worker::produced`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Planned {
    forward: bool,
    produced: usize,
}

/// The frames a batch writes, in order: for each input frame its [`Planned`] output, then
/// the frames left in `produced` (the timers'). Borrowed from the batch and the sink.
struct Outputs<'a, B, P, R>
where
    B: Iterator<Item = (Side, &'a [u8])>,
    P: Iterator<Item = &'a Planned>,
    R: Iterator<Item = (Side, &'a [u8])>,
{
    batch: B,
    plan: P,
    produced: R,
    /// Frames of `produced` still owed to the current input frame (`None`: the input frames
    /// are done, the rest of `produced` follows).
    owed: Option<usize>,
}

impl<'a, B, P, R> Outputs<'a, B, P, R>
where
    B: Iterator<Item = (Side, &'a [u8])>,
    P: Iterator<Item = &'a Planned>,
    R: Iterator<Item = (Side, &'a [u8])>,
{
    fn new(batch: B, plan: P, produced: R) -> Self {
        Outputs {
            batch,
            plan,
            produced,
            owed: Some(0),
        }
    }
}

impl<'a, B, P, R> Iterator for Outputs<'a, B, P, R>
where
    B: Iterator<Item = (Side, &'a [u8])>,
    P: Iterator<Item = &'a Planned>,
    R: Iterator<Item = (Side, &'a [u8])>,
{
    type Item = (Side, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.owed {
                None => return self.produced.next(),
                Some(n) if n > 0 => {
                    self.owed = Some(n - 1);
                    return self.produced.next();
                }
                Some(_) => {}
            }
            match (self.batch.next(), self.plan.next()) {
                (Some((side, frame)), Some(p)) => {
                    self.owed = Some(p.produced);
                    if p.forward {
                        return Some((side.other(), frame));
                    }
                }
                _ => self.owed = None,
            }
        }
    }
}

impl<B: Backend> Worker<B> {
    fn now(&self) -> Time {
        Time(self.config.epoch.elapsed().as_nanos().min(u64::MAX as u128) as u64)
    }

    fn run(&mut self, control: &Receiver<Control>, reports: &Sender<WorkerReport>) {
        if let Some(cpu) = self.config.cpu {
            match pin_current_thread(cpu) {
                Ok(()) => log::debug!("worker {} pinned to CPU {cpu}", self.config.index),
                Err(e) => log::warn!("worker {}: cannot pin to CPU {cpu}: {e}", self.config.index),
            }
        }
        log::debug!(
            "worker {} running ({})",
            self.config.index,
            self.backend.name()
        );
        let mut batch = FrameBatch::default();
        let mut next_report = self.config.report_every.map(|d| Instant::now() + d);
        let error = loop {
            match control.try_recv() {
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => break None,
                Ok(Control::Report) => {
                    let _ = reports.send(self.report(false, None));
                }
                Err(TryRecvError::Empty) => {}
            }
            let wait = self.wait_time(next_report);
            batch.clear();
            self.produced.clear();
            self.plan.clear();
            if let Err(e) = self
                .backend
                .recv_batch(Some(wait), DEFAULT_BATCH, &mut batch)
            {
                break Some(format!("receive: {e}"));
            }
            for (side, frame) in batch.iter() {
                self.handle(side, frame);
            }
            self.run_timers();
            self.write(&batch);
            if let (Some(at), Some(every)) = (next_report, self.config.report_every) {
                if Instant::now() >= at {
                    let _ = reports.try_send(self.report(false, None));
                    next_report = Some(Instant::now() + every);
                }
            }
        };
        if let Some(e) = &error {
            log::error!("worker {} stopped: {e}", self.config.index);
        }
        let _ = reports.send(self.report(true, error));
    }

    /// How long to wait for frames: until the engine's next timer, the next report or
    /// [`MAX_WAIT`], whichever is first.
    fn wait_time(&self, next_report: Option<Instant>) -> Duration {
        let mut wait = MAX_WAIT;
        if let Some(at) = self.engine.poll_timeout() {
            wait = wait.min(Duration::from_nanos(at.0.saturating_sub(self.now().0)));
        }
        if let Some(at) = next_report {
            wait = wait.min(at.saturating_duration_since(Instant::now()));
        }
        wait
    }

    /// Runs the engine on one input frame and plans what goes out for it.
    fn handle(&mut self, side: Side, frame: &[u8]) {
        let before = self.produced.len();
        let now = self.now();
        let verdict = self
            .engine
            .handle_frame(now, side, frame, &mut self.produced);
        self.plan.push(Planned {
            forward: matches!(verdict, Verdict::Forward(_)),
            produced: self.produced.len().saturating_sub(before),
        });
    }

    fn run_timers(&mut self) {
        let now = self.now();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now, &mut self.produced);
        }
    }

    /// The frames `batch` and the timers make go out, in order.
    fn outputs<'a>(
        batch: &'a FrameBatch,
        plan: &'a [Planned],
        produced: &'a FrameSink,
    ) -> impl Iterator<Item = (Side, &'a [u8])> + 'a {
        Outputs::new(batch.iter(), plan.iter(), produced.iter())
    }

    /// Writes the batch's output (and copies it to `--pcap-out`).
    fn write(&mut self, batch: &FrameBatch) {
        if self.capture.is_some() {
            for (side, frame) in Self::outputs(batch, &self.plan, &self.produced) {
                capture(&mut self.capture, &mut self.capture_dropped, side, frame);
            }
        }
        let frames = Self::outputs(batch, &self.plan, &self.produced);
        if let Err(e) = self.backend.send_frames(frames) {
            log::debug!("worker {}: flushing sends: {e}", self.config.index);
        }
    }

    fn report(&self, last: bool, error: Option<String>) -> WorkerReport {
        WorkerReport {
            worker: self.config.index,
            engine: self.engine.stats().clone(),
            io: self.backend.io_stats(),
            capture_dropped: self.capture_dropped,
            last,
            error,
        }
    }
}

/// Copies a frame the bridge writes to the `--pcap-out` writer, if there is one; counts it
/// in `dropped` if the writer is behind, forgets the writer if it has gone.
fn capture(
    writer: &mut Option<Sender<CapturedFrame>>,
    dropped: &mut u64,
    side: Side,
    frame: &[u8],
) {
    if let Some(tx) = writer {
        let when = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let item = CapturedFrame {
            when,
            side,
            data: frame.to_vec(),
        };
        match tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => *dropped += 1,
            Err(TrySendError::Disconnected(_)) => *writer = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::backend::side_index;
    use crossbeam_channel::{unbounded, RecvTimeoutError};

    /// An in-memory backend: frames to read come from a channel; frames written are
    /// queued and go to a channel only on `flush` (as a batching backend does), so a worker
    /// that forgot to flush would deliver nothing.
    struct FakeBackend {
        incoming: Receiver<(Side, Vec<u8>)>,
        sent: Sender<(Side, Vec<u8>)>,
        queued: Vec<(Side, Vec<u8>)>,
        stats: IoStats,
    }

    impl Backend for FakeBackend {
        fn recv_batch(
            &mut self,
            timeout: Option<Duration>,
            max: usize,
            batch: &mut FrameBatch,
        ) -> io::Result<usize> {
            let first = match self.incoming.recv_timeout(timeout.unwrap_or(MAX_WAIT)) {
                Ok(f) => f,
                Err(RecvTimeoutError::Timeout) => return Ok(0),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "interface gone"))
                }
            };
            let mut n = 0;
            for (side, frame) in std::iter::once(first).chain(self.incoming.try_iter()) {
                self.stats.count_rx(side_index(side), frame.len());
                batch.push(side, &frame);
                n += 1;
                if n == max {
                    break;
                }
            }
            Ok(n)
        }

        fn send(&mut self, side: Side, frame: &[u8]) -> io::Result<()> {
            self.queued.push((side, frame.to_vec()));
            Ok(())
        }

        fn flush(&mut self) -> io::Result<()> {
            for (side, frame) in self.queued.drain(..) {
                let result = self
                    .sent
                    .send((side, frame.clone()))
                    .map_err(|_| io::Error::other("test gone"));
                let _ = self.stats.count_tx(side_index(side), frame.len(), result);
            }
            Ok(())
        }

        fn io_stats(&self) -> IoStats {
            self.stats
        }

        fn name(&self) -> &'static str {
            "fake"
        }
    }

    struct Harness {
        frames: Sender<(Side, Vec<u8>)>,
        sent: Receiver<(Side, Vec<u8>)>,
        control: Sender<Control>,
        reports: Receiver<WorkerReport>,
        handle: JoinHandle<()>,
    }

    fn start() -> Harness {
        let (frames, incoming) = unbounded();
        let (sent_tx, sent) = unbounded();
        let (control, control_rx) = unbounded();
        let (report_tx, reports) = unbounded();
        let backend = FakeBackend {
            incoming,
            sent: sent_tx,
            queued: Vec::new(),
            stats: IoStats::default(),
        };
        let config = WorkerConfig {
            index: 3,
            cpu: None,
            engine: EngineConfig::default(),
            limits: Limits::default(),
            report_every: None,
            epoch: Instant::now(),
        };
        let handle = spawn(config, backend, control_rx, report_tx, None).expect("spawn");
        Harness {
            frames,
            sent,
            control,
            reports,
            handle,
        }
    }

    /// A frame the engine cannot misread as anything but "not IP": an ARP-typed header.
    fn frame(tag: u8) -> Vec<u8> {
        let mut f = vec![0xff; 12];
        f.extend_from_slice(&[0x08, 0x06]);
        f.extend_from_slice(&[tag; 28]);
        f
    }

    #[test]
    fn forwards_each_frame_to_the_other_side_in_order() {
        let h = start();
        for tag in 0..10u8 {
            let side = if tag % 3 == 0 {
                Side::Inside
            } else {
                Side::Outside
            };
            h.frames.send((side, frame(tag))).expect("feed");
        }
        for tag in 0..10u8 {
            let side = if tag % 3 == 0 {
                Side::Inside
            } else {
                Side::Outside
            };
            let (out_side, out) = h
                .sent
                .recv_timeout(Duration::from_secs(5))
                .expect("forwarded");
            assert_eq!(out_side, side.other(), "frame {tag}");
            assert_eq!(out, frame(tag));
        }
        h.control.send(Control::Stop).expect("stop");
        let last = h
            .reports
            .recv_timeout(Duration::from_secs(5))
            .expect("final report");
        assert!(last.last);
        assert_eq!(last.worker, 3);
        assert_eq!(last.error, None);
        assert_eq!(last.engine.frames_in, 10);
        assert_eq!(last.io.rx_frames, [6, 4]);
        assert_eq!(last.io.tx_frames, [4, 6]);
        h.handle.join().expect("worker exits");
    }

    #[test]
    fn reports_on_request_and_stops_on_backend_error() {
        let h = start();
        h.frames.send((Side::Outside, frame(1))).expect("feed");
        let _ = h
            .sent
            .recv_timeout(Duration::from_secs(5))
            .expect("forwarded");
        h.control.send(Control::Report).expect("ask");
        let r = h
            .reports
            .recv_timeout(Duration::from_secs(5))
            .expect("report");
        assert!(!r.last);
        assert_eq!(r.engine.frames_in, 1);
        // The interface goes away: the worker reports why and exits.
        drop(h.frames);
        let last = h
            .reports
            .recv_timeout(Duration::from_secs(5))
            .expect("final report");
        assert!(last.last);
        assert!(
            last.error
                .as_deref()
                .is_some_and(|e| e.contains("interface gone")),
            "{last:?}"
        );
        h.handle.join().expect("worker exits");
    }

    #[test]
    fn a_closed_control_channel_stops_the_worker() {
        let h = start();
        drop(h.control);
        let last = h
            .reports
            .recv_timeout(Duration::from_secs(5))
            .expect("final report");
        assert!(last.last);
        assert_eq!(last.error, None);
        h.handle.join().expect("worker exits");
    }

    #[test]
    fn pinning_to_an_allowed_cpu_works_and_out_of_range_is_refused() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        let cpu = cpus[0];
        std::thread::spawn(move || pin_current_thread(cpu))
            .join()
            .expect("thread")
            .expect("pin");
        assert!(pin_current_thread(libc::CPU_SETSIZE as usize).is_err());
    }

    /// The batch's output order: per input frame, itself (to the other side) if forwarded,
    /// then the frames the engine made for it; the timers' frames last.
    #[test]
    fn outputs_follow_each_input_with_its_own_frames_then_the_timers() {
        let mut batch = FrameBatch::default();
        batch.push(Side::Outside, b"in0");
        batch.push(Side::Inside, b"in1");
        batch.push(Side::Outside, b"in2");
        batch.push(Side::Inside, b"in3");
        let mut produced = FrameSink::default();
        produced.push(Side::Outside, b"p1a");
        produced.push(Side::Inside, b"p1b");
        produced.push(Side::Inside, b"p2a");
        produced.push(Side::Outside, b"timer");
        let plan = [
            Planned {
                forward: true,
                produced: 0,
            },
            Planned {
                forward: false,
                produced: 2,
            },
            Planned {
                forward: true,
                produced: 1,
            },
            Planned {
                forward: false,
                produced: 0,
            },
        ];
        let got: Vec<(Side, &[u8])> =
            Worker::<FakeBackend>::outputs(&batch, &plan, &produced).collect();
        let want: Vec<(Side, &[u8])> = vec![
            (Side::Inside, b"in0"),
            (Side::Outside, b"p1a"),
            (Side::Inside, b"p1b"),
            (Side::Inside, b"in2"),
            (Side::Inside, b"p2a"),
            (Side::Outside, b"timer"),
        ];
        assert_eq!(got, want);
        // Nothing from the batch at all: only the timers' frames.
        let empty = FrameBatch::default();
        let got: Vec<(Side, &[u8])> =
            Worker::<FakeBackend>::outputs(&empty, &[], &produced).collect();
        assert_eq!(got.len(), 4);
    }
}
