//! The frame rate limits: per connection (`--max-frames-per-sec`) and per user
//! (`--max-frames-per-user-per-sec`, shared by all of a user's connections on the pod). Each is
//! a token bucket refilled at the rate and holding at most one second's worth, so a client
//! may burst up to the rate.
//!
//! A refused frame costs a token too, so the bucket goes into debt: a client that honours
//! `rate_limited` and pauses is served again, while one that keeps sending regardless sinks
//! to a whole second's worth of debt and is closed (4029). The debt is the same `f32`, so the
//! bucket stays 8 bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One connection's bucket. 8 bytes, because it lives in every connection's task for the
/// connection's life: 16 bytes pushed the task into a larger allocation class and cost
/// ~250 B per idle connection (perf/RESULTS.md §10e).
pub struct FrameLimit {
    tokens: f32,
    /// When the bucket was last refilled, in ms of the wall clock modulo 2³² (differences
    /// wrap correctly; a clock step back refills nothing).
    at_ms: u32,
}

impl FrameLimit {
    /// A full bucket for `rate` frames per second.
    pub fn new(rate: u32, now_us: i64) -> FrameLimit {
        FrameLimit {
            tokens: rate as f32,
            at_ms: ms(now_us),
        }
    }

    /// What to do with one more frame now at `rate` (0: no limit).
    pub fn take(&mut self, rate: u32, now_us: i64) -> Take {
        if rate == 0 {
            return Take::Process;
        }
        let now = ms(now_us);
        let elapsed = now.wrapping_sub(self.at_ms);
        // A clock step back shows as a huge wrapped difference: refill nothing then.
        let elapsed = if elapsed > u32::MAX / 2 { 0 } else { elapsed };
        let rate = rate as f32;
        self.tokens = (self.tokens + elapsed as f32 / 1000.0 * rate).min(rate);
        self.at_ms = now;
        let ok = self.tokens >= 1.0;
        self.tokens -= 1.0;
        if ok {
            Take::Process
        } else if self.tokens > -rate {
            Take::Refuse
        } else {
            Take::Close
        }
    }

    /// The bucket as one word, for [`SharedLimit`].
    fn bits(&self) -> u64 {
        (u64::from(self.tokens.to_bits()) << 32) | u64::from(self.at_ms)
    }

    fn from_bits(bits: u64) -> FrameLimit {
        FrameLimit {
            tokens: f32::from_bits((bits >> 32) as u32),
            at_ms: bits as u32,
        }
    }
}

/// One user's bucket, spent by every connection of the user on the pod, whatever shard it is
/// on: the arithmetic of [`FrameLimit`] in one atomic word, so shards spend from it without a
/// lock (a user sending from two shards at once retries a compare-exchange, nothing more).
/// Without it a user with ten devices could send ten times `--max-frames-per-sec`.
pub struct SharedLimit(AtomicU64);

impl SharedLimit {
    pub fn new(rate: u32, now_us: i64) -> SharedLimit {
        SharedLimit(AtomicU64::new(FrameLimit::new(rate, now_us).bits()))
    }

    /// [`FrameLimit::take`] on the shared bucket.
    pub fn take(&self, rate: u32, now_us: i64) -> Take {
        let mut old = self.0.load(Relaxed);
        loop {
            let mut bucket = FrameLimit::from_bits(old);
            let verdict = bucket.take(rate, now_us);
            match self
                .0
                .compare_exchange_weak(old, bucket.bits(), Relaxed, Relaxed)
            {
                Ok(_) => return verdict,
                Err(current) => old = current,
            }
        }
    }
}

/// Values kept while something holds them, by user: the users' [`SharedLimit`]s, pod-wide
/// (one holder per shard with a connection of the user; locked only then) and per shard (one
/// holder per connection; read for every frame, no lock). Dropped when the last holder lets
/// go, so the maps stay as large as the set of connected users.
pub struct Held<V>(HashMap<String, (u32, V)>);

impl<V> Default for Held<V> {
    fn default() -> Self {
        Held(HashMap::new())
    }
}

impl<V: Clone> Held<V> {
    /// One more holder of `user`'s value, made first if nobody held it.
    pub fn hold(&mut self, user: &str, make: impl FnOnce() -> V) -> V {
        let entry = match self.0.get_mut(user) {
            Some(entry) => entry,
            None => self.0.entry(user.to_owned()).or_insert((0, make())),
        };
        entry.0 += 1;
        entry.1.clone()
    }

    /// One holder fewer; true when it was the last and the value is gone.
    pub fn let_go(&mut self, user: &str) -> bool {
        let Some(entry) = self.0.get_mut(user) else {
            return false;
        };
        entry.0 -= 1;
        if entry.0 > 0 {
            return false;
        }
        self.0.remove(user);
        true
    }

    pub fn get(&self, user: &str) -> Option<&V> {
        self.0.get(user).map(|(_, v)| v)
    }

    /// How many users are held.
    pub fn users(&self) -> usize {
        self.0.len()
    }
}

/// See [`FrameLimit::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Process,
    /// Answer `rate_limited`, process nothing.
    Refuse,
    /// A second's worth of frames refused without a pause: close the connection.
    Close,
}

fn ms(now_us: i64) -> u32 {
    (now_us / 1000) as u32 // Truncation is the modulo.
}

#[cfg(test)]
mod tests {
    use super::{FrameLimit, Held, SharedLimit, Take};

    fn ok(t: Take) -> bool {
        t == Take::Process
    }

    #[test]
    fn a_burst_up_to_the_rate_then_the_rate_itself() {
        let mut off = FrameLimit::new(0, 0);
        assert!((0..100).all(|_| ok(off.take(0, 0))), "0 is no limit");
        let mut l = FrameLimit::new(4, 0);
        assert!((0..4).all(|_| ok(l.take(4, 0))), "the bucket starts full");
        assert_eq!(l.take(4, 0), Take::Refuse);
        // The refused frame cost a token: 250 ms (one frame at 4/s) only pays it back.
        assert_eq!(l.take(4, 250_000), Take::Refuse);
        assert_eq!(
            l.take(4, 750_000),
            Take::Process,
            "a client that pauses is served"
        );
        // Idle for a minute: no more than one second's worth is saved up.
        let saved = (0..10).filter(|_| ok(l.take(4, 60_750_000))).count();
        assert_eq!(saved, 4);
        assert_eq!(std::mem::size_of::<FrameLimit>(), 8);
    }

    #[test]
    fn a_client_that_keeps_sending_while_refused_is_closed() {
        let mut l = FrameLimit::new(4, 0);
        let verdicts: Vec<Take> = (0..8).map(|_| l.take(4, 0)).collect();
        assert_eq!(&verdicts[..4], [Take::Process; 4]);
        assert_eq!(&verdicts[4..7], [Take::Refuse; 3]);
        assert_eq!(verdicts[7], Take::Close, "a second's worth of debt");
        // A clock that steps back refills nothing and breaks nothing.
        assert_eq!(FrameLimit::new(1, 5_000_000).take(1, 1_000), Take::Process);
    }

    #[test]
    fn the_millisecond_clock_wraps_without_a_burst() {
        let wrap_us = (u32::MAX as i64 + 1) * 1000;
        let mut l = FrameLimit::new(2, wrap_us - 1_000);
        assert!(ok(l.take(2, wrap_us - 1_000)) && ok(l.take(2, wrap_us - 1_000)));
        assert_eq!(l.take(2, wrap_us), Take::Refuse);
        assert!(
            ok(l.take(2, wrap_us + 1_000_000)),
            "a second across the wrap refills two frames, one of them the refused one's cost"
        );
    }

    #[test]
    fn a_shared_bucket_counts_every_holder_s_frames_and_is_dropped_with_the_last() {
        let mut pod: Held<std::sync::Arc<SharedLimit>> = Held::default();
        let a = pod.hold("alice", || std::sync::Arc::new(SharedLimit::new(4, 0)));
        let b = pod.hold("alice", || unreachable!("alice's bucket exists"));
        let verdicts: Vec<Take> = (0..4).flat_map(|_| [a.take(4, 0), b.take(4, 0)]).collect();
        assert_eq!(
            verdicts.iter().filter(|t| ok(**t)).count(),
            4,
            "one bucket of 4"
        );
        assert_eq!(
            a.take(4, 0),
            Take::Close,
            "a second's worth of debt, together"
        );
        assert!(ok(a.take(4, 5_000_000)), "refilled after a pause");
        assert!(!pod.let_go("alice"), "one holder left");
        assert_eq!(pod.users(), 1);
        assert!(pod.let_go("alice"));
        assert_eq!(pod.users(), 0);
        assert!(!pod.let_go("alice"), "nothing to let go");
        let fresh = pod.hold("alice", || std::sync::Arc::new(SharedLimit::new(4, 0)));
        assert!(
            ok(fresh.take(4, 0)),
            "a new holder starts with a full bucket"
        );
    }
}
