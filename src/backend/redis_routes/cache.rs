//! Each shard's cache of route lookups, for frames a device may miss (status frames,
//! carbons, receipts, typing: best effort in docs/PROTOCOL.md). Messages never use it.
//!
//! Kept correct by Redis itself: the route thread's connection speaks RESP3 with
//! `CLIENT TRACKING ON`, so Redis pushes an invalidation on that same connection whenever a
//! route key this pod read is written (a register, an unregister, a lease renewal). On one
//! connection Redis sends a write's invalidation before the reply to any later command, so
//! once a round trip completes, every write that Redis ran before that round trip began has
//! been seen. The thread hands the invalidations to the shards before it answers the round
//! trip's lookups, and publishes when that round trip began ([`CacheShared::fresh_at_us`]).
//! A shard answers from its cache only while that instant is at most `--route-cache-max-age-ms`
//! old: under load round trips follow each other within a millisecond or two and the cache
//! serves most status and carbon lookups; when the thread is quiet, lookups go to Redis.
//!
//! What a stale answer can miss: a round trip that began after Redis ran a register reads
//! its invalidation, so an answer without the new place was given less than the max age
//! after that register. The registering connection waits the max age before its replay reads
//! the store (`RouteTable::settle_after_register`): whatever such an answer routed was
//! committed before the replay's read, and the replay (a v2 sync, with the statuses of what
//! it reads back) covers it. Messages themselves never take a cached answer.
//!
//! Races: a lookup read in round trip `r` may be invalidated by a push read in the same round
//! trip (the write came after the read). Every invalidation carries its round trip, and a
//! fill from round trip `r` is refused when the shard has drained an invalidation of that
//! user from round trip `r` or later. A reconnect (new connection, nothing tracked yet) or a
//! flush from Redis bumps an epoch that empties every cache and refuses older fills.

use std::collections::HashMap;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

use crate::backend::Location;

/// Entries per shard at most; when full the cache starts over (a miss costs one lookup).
const MAX_ENTRIES: usize = 65_536;
/// Invalidations remembered for refusing late fills, per shard, before old ones are pruned.
const MAX_REMEMBERED: usize = 4_096;
/// A fill older than this many round trips behind the newest invalidation seen is refused:
/// the invalidations that could concern it may have been pruned.
const KEEP_ROUNDS: u64 = 1_024;

/// What the route thread publishes to every shard's cache.
pub struct CacheShared {
    origin: Instant,
    /// When the last completed round trip began, µs after `origin`, plus one (0: none yet).
    fresh_at_us: AtomicU64,
    /// Bumped when tracking restarts (a new connection) or Redis flushed its tracking table.
    epoch: AtomicU64,
    max_age: Duration,
    /// Redis server time minus this host's clock, ms, read at every heartbeat: lease expiries
    /// are written and compared in the server's time, so pods whose clocks disagree still
    /// agree on when a lease ran out.
    clock_offset_ms: AtomicI64,
}

impl CacheShared {
    pub fn new(max_age: Duration) -> CacheShared {
        CacheShared {
            origin: Instant::now(),
            fresh_at_us: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            max_age,
            clock_offset_ms: AtomicI64::new(0),
        }
    }

    /// Now on the Redis server's clock (as of the last heartbeat's reading).
    pub fn server_now_ms(&self) -> i64 {
        local_ms() + self.clock_offset_ms.load(Relaxed)
    }

    pub fn set_clock_offset(&self, ms: i64) {
        self.clock_offset_ms.store(ms, Relaxed);
    }

    /// `--route-cache-max-age-ms`: also how long a stale answer can outlive a route write.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    pub fn enabled(&self) -> bool {
        !self.max_age.is_zero()
    }

    /// Called by the route thread once a round trip that began at `began` completed and its
    /// invalidations were handed to the shards.
    pub fn completed(&self, began: Instant) {
        let us = began.duration_since(self.origin).as_micros() as u64 + 1; // 0: never.
                                                                           // Release: a shard that sees this instant also sees the invalidations sent before.
        self.fresh_at_us.fetch_max(us, Release);
    }

    /// Every cache starts over, and fills read before now are refused.
    pub fn flush(&self) {
        self.epoch.fetch_add(1, Relaxed);
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Acquire)
    }

    fn fresh(&self) -> bool {
        let now = self.origin.elapsed().as_micros() as u64;
        let at = self.fresh_at_us.load(Acquire);
        at > 0 && (now + 1).saturating_sub(at) <= self.max_age.as_micros() as u64
    }
}

/// This host's clock, ms since the epoch.
pub fn local_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A route key written after this pod read it, in round trip `round`.
pub struct Invalidation {
    pub user: Box<str>,
    pub round: u64,
}

/// A lookup's answer: each place with its lease expiry (Redis server ms), and when it was read.
pub struct Fetched {
    pub places: Vec<(Location, i64)>,
    pub round: u64,
    pub epoch: u64,
}

struct Entry {
    places: Vec<(Location, i64)>,
    round: u64,
}

/// One shard's cache; owned by the shard's route handle.
pub struct ShardCache {
    shared: std::sync::Arc<CacheShared>,
    rx: Receiver<Invalidation>,
    entries: HashMap<Box<str>, Entry>,
    /// The newest round trip in which each recently invalidated user was invalidated.
    invalidated: HashMap<Box<str>, u64>,
    newest_round: u64,
    epoch: u64,
}

impl ShardCache {
    pub fn new(shared: std::sync::Arc<CacheShared>, rx: Receiver<Invalidation>) -> ShardCache {
        ShardCache {
            epoch: shared.epoch(),
            shared,
            rx,
            entries: HashMap::new(),
            invalidated: HashMap::new(),
            newest_round: 0,
        }
    }

    /// The cached places of `user` whose lease runs past now (Redis server time); `None`
    /// when not cached or when the route thread has not completed a round trip recently
    /// enough to vouch for the cache.
    pub fn get(&mut self, user: &str) -> Option<Vec<Location>> {
        if !self.shared.enabled() || !self.shared.fresh() {
            return None;
        }
        self.sync();
        let entry = self.entries.get(user)?;
        let now_ms = self.shared.server_now_ms();
        let live = entry.places.iter().filter(|(_, expiry)| *expiry > now_ms);
        Some(live.map(|(at, _)| at.clone()).collect())
    }

    /// How long a stale answer can outlive a route write (see the module doc).
    pub fn max_age(&self) -> Duration {
        self.shared.max_age()
    }

    /// Keeps `fetched` for `user` unless a write may have followed its read.
    pub fn fill(&mut self, user: &str, fetched: Fetched) {
        if !self.shared.enabled() {
            return;
        }
        self.sync();
        let stale = fetched.epoch != self.epoch
            || fetched.round + KEEP_ROUNDS <= self.newest_round
            || self
                .invalidated
                .get(user)
                .is_some_and(|r| *r >= fetched.round);
        if stale {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        let entry = Entry {
            places: fetched.places,
            round: fetched.round,
        };
        self.entries.insert(user.into(), entry);
    }

    /// Applies what the route thread sent since the last call.
    fn sync(&mut self) {
        let epoch = self.shared.epoch();
        if epoch != self.epoch {
            self.entries.clear();
            self.invalidated.clear();
            self.epoch = epoch;
        }
        for inv in self.rx.try_iter() {
            if (self.entries.get(&inv.user)).is_some_and(|e| e.round <= inv.round) {
                self.entries.remove(&inv.user);
            }
            self.newest_round = self.newest_round.max(inv.round);
            let seen = self.invalidated.entry(inv.user).or_insert(0);
            *seen = (*seen).max(inv.round);
        }
        if self.invalidated.len() > MAX_REMEMBERED {
            let newest = self.newest_round;
            self.invalidated.retain(|_, r| *r + KEEP_ROUNDS > newest);
        }
    }
}

/// Tells every shard's cache that `user`'s key was written; a shard whose queue is full
/// loses its whole cache instead.
pub fn tell(shards: &[Sender<Invalidation>], cache: &CacheShared, user: &str, round: u64) {
    for tx in shards {
        let inv = Invalidation {
            user: user.into(),
            round,
        };
        if tx.try_send(inv).is_err() {
            cache.flush();
        }
    }
}

#[cfg(test)]
mod tests;
