//! The DELIVERED statuses a distributed-mode connection showed, so that a SENT arriving
//! after them is dropped (a sender never sees a status go backwards).
//!
//! SENT and DELIVERED of one message can be committed by different pods and reach the
//! sender's pod by different paths: the same-pod shortcut, the broker, a produce that timed
//! out yet landed. How far a SENT trails is a matter of time (a produce's timeout, a relay
//! held up by a pause past the lease), not of how many statuses come between: the chaos
//! soak saw SENT 14 s behind its DELIVERED with 1,301 DELIVERED shown in between on one
//! connection, far past the ring of the last 32 that this replaced. So ids are kept by age:
//! two generations of [`GENERATION`] each, so every id is remembered for at least that long,
//! unless more than [`PER_GENERATION`] come in one generation (then for that many).

use std::time::{Duration, Instant};

/// How long one generation lasts: twice the producer's default `message.timeout.ms` (15 s),
/// past which a status frame in flight has landed or failed.
pub const GENERATION: Duration = Duration::from_secs(30);
/// Most ids in one generation (16 KiB of hashes): 68 DELIVERED a second for 30 s.
pub const PER_GENERATION: usize = 2048;

/// Hashes of the ids told DELIVERED: `current` since `since`, and the generation before it.
/// Empty (no allocation) on a connection that only receives.
#[derive(Default)]
pub struct Delivered {
    current: Vec<u64>,
    previous: Vec<u64>,
    since: Option<Instant>,
}

impl Delivered {
    pub fn contains(&self, h: u64) -> bool {
        self.current.contains(&h) || self.previous.contains(&h)
    }

    /// Remembers `h`, told DELIVERED at `now`; the oldest generation goes when the current
    /// one is [`GENERATION`] old or full.
    pub fn insert(&mut self, h: u64, now: Instant) {
        if self.contains(h) {
            return;
        }
        let aged = self
            .since
            .map_or(true, |s| now.duration_since(s) >= GENERATION);
        if aged || self.current.len() >= PER_GENERATION {
            self.previous = std::mem::take(&mut self.current);
            self.since = Some(now);
        }
        self.current.push(h);
    }

    /// Lets go of both generations once the current one is two generations old: every id
    /// in it came before it was one generation old, so each was kept a generation at least.
    /// Called from the shard's keepalive sweep, so that a connection idle after a burst
    /// does not keep the burst's hashes for good.
    pub fn age(&mut self, now: Instant) {
        let old = self
            .since
            .is_some_and(|s| now.duration_since(s) >= GENERATION * 2);
        if old {
            *self = Delivered::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_kept_for_a_generation_however_many_follow_it_up_to_the_bound() {
        let t0 = Instant::now();
        let mut d = Delivered::default();
        d.insert(1, t0);
        for h in 2..=PER_GENERATION as u64 {
            d.insert(h, t0 + Duration::from_millis(h));
        }
        assert!(d.contains(1), "a full generation still holds it");
        d.insert(5000, t0 + GENERATION / 2);
        assert!(d.contains(1), "the generation before still holds it");
        d.insert(5001, t0 + GENERATION + GENERATION / 2);
        assert!(!d.contains(1), "two generations later it is gone");
        assert!(d.contains(5000) && d.contains(5001));
    }

    #[test]
    fn ids_age_out_after_two_generations() {
        let t0 = Instant::now();
        let mut d = Delivered::default();
        d.insert(1, t0);
        d.insert(2, t0 + GENERATION);
        assert!(d.contains(1));
        d.insert(3, t0 + GENERATION * 2);
        assert!(!d.contains(1) && d.contains(2) && d.contains(3));
        d.age(t0 + GENERATION * 3);
        assert!(d.contains(3), "kept while the current generation is young");
        d.age(t0 + GENERATION * 4);
        assert!(!d.contains(2) && !d.contains(3));
        assert_eq!(d.current.capacity() + d.previous.capacity(), 0, "freed");
    }
}
