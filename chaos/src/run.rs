//! What the devices share: the options, the phase of the run, and just enough bookkeeping
//! for the main thread to see when everything settled (so the drain ends on a condition,
//! not after a guess). Touched once per message; a mutex is fine in a test tool.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Options;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Devices send on their schedule.
    Traffic,
    /// No new messages; outboxes are resent until accepted, messages received and acked.
    Drain,
    /// Devices close and exit.
    Stop,
}

pub struct Run {
    pub opts: Options,
    /// Between two sends of one device.
    pub interval: Duration,
    phase: AtomicU8,
    /// Bumped by every reconnect storm: each device drops its connection and reconnects.
    storms: AtomicU32,
    /// Slow readers stop reading until this many ms after `start`.
    stall_until_ms: AtomicU32,
    /// The one device that stops reading until the pod closes it (`usize::MAX`: none).
    deaf: AtomicUsize,
    start: Instant,
    outboxes: Vec<AtomicUsize>,
    /// Devices that have seen the traffic end: they create no new message from then on.
    past_traffic: Vec<AtomicBool>,
    ids: Mutex<Ids>,
}

#[derive(Default)]
struct Ids {
    accepted: HashSet<String>,
    received: HashSet<String>,
}

impl Run {
    pub fn new(opts: Options) -> Run {
        let per_device = opts.rate / opts.users as f64;
        Run {
            interval: Duration::from_secs_f64(1.0 / per_device),
            phase: AtomicU8::new(Phase::Traffic as u8),
            storms: AtomicU32::new(0),
            stall_until_ms: AtomicU32::new(0),
            deaf: AtomicUsize::new(usize::MAX),
            start: Instant::now(),
            outboxes: (0..opts.users).map(|_| AtomicUsize::new(0)).collect(),
            past_traffic: (0..opts.users).map(|_| AtomicBool::new(false)).collect(),
            ids: Mutex::default(),
            opts,
        }
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Traffic,
            1 => Phase::Drain,
            _ => Phase::Stop,
        }
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Relaxed);
    }

    pub fn storms(&self) -> u32 {
        self.storms.load(Ordering::Relaxed)
    }

    pub fn storm(&self) {
        self.storms.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes the slow readers stop reading for `d`.
    pub fn stall_readers(&self, d: Duration) {
        let until = (self.start.elapsed() + d).as_millis() as u32;
        self.stall_until_ms.store(until, Ordering::Relaxed);
    }

    pub fn readers_stalled(&self) -> bool {
        (self.start.elapsed().as_millis() as u32) < self.stall_until_ms.load(Ordering::Relaxed)
    }

    /// Makes `device` a non-reading client (`None`: every device reads again).
    pub fn set_deaf(&self, device: Option<usize>) {
        self.deaf
            .store(device.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    pub fn deaf_device(&self) -> Option<usize> {
        let d = self.deaf.load(Ordering::Relaxed);
        (d != usize::MAX).then_some(d)
    }

    /// Whether `device` is the non-reading one; only while traffic lasts, so that a
    /// forgotten `hear` cannot keep the drain from settling.
    pub fn is_deaf(&self, device: usize) -> bool {
        self.phase() == Phase::Traffic && self.deaf.load(Ordering::Relaxed) == device
    }

    /// The phase as `device` acts on it. Once a device has seen the traffic end it says so,
    /// and the drain judges nothing before every device has: a device that read `Traffic`
    /// just before the switch may still create a message, which a drain that had already
    /// seen empty outboxes would never wait for.
    pub fn phase_for(&self, device: usize) -> Phase {
        let phase = self.phase();
        if phase != Phase::Traffic {
            self.past_traffic[device].store(true, Ordering::Release);
        }
        phase
    }

    /// Every device has seen the traffic end (and published its outbox since).
    pub fn all_past_traffic(&self) -> bool {
        self.past_traffic.iter().all(|d| d.load(Ordering::Acquire))
    }

    pub fn set_outbox(&self, device: usize, len: usize) {
        self.outboxes[device].store(len, Ordering::Relaxed);
    }

    pub fn accepted(&self, id: &str) {
        self.ids.lock().unwrap().accepted.insert(id.to_string());
    }

    /// A message frame that reached the device it was addressed to.
    pub fn received(&self, id: &str) {
        self.ids.lock().unwrap().received.insert(id.to_string());
    }

    /// (sends not yet accepted, accepted messages not yet received by their recipient).
    pub fn unsettled(&self) -> (usize, usize) {
        let outbox = self
            .outboxes
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .sum();
        let ids = self.ids.lock().unwrap();
        let missing = ids.accepted.difference(&ids.received).count();
        (outbox, missing)
    }
}
