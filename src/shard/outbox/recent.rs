//! What a distributed-mode connection remembers of the messages it was given, so that a second
//! live copy (a redrive, a produce that timed out yet reached the broker) is not shown twice.
//!
//! Three memories, in the order they are asked:
//! - **Unacknowledged ids**: every message addressed to the device and given to it that it has
//!   not acked yet. Exact: a redrive only resends a message below DELIVERED, and a message
//!   stays below DELIVERED while no device acked it, so every redrive that can reach a live
//!   connection is of a message still in this set (a message another device acked is never
//!   redriven). Bounded by [`MAX_UNACKED`]: the connection is a credit window, like MQTT's
//!   receive maximum; the replay waits for acks and a live message past the bound closes the
//!   connection with 4008 (it reconnects and gets the rest by replay). A deaf device that
//!   took 50 messages a second for 35 s until its ping timed out was shown thousands of
//!   redriven copies before this set (perf/RESULTS.md §15a).
//! - **Positions**: a bit for each of the last [`POSITIONS`] places of the user's stream the
//!   connection was given (carbons too, which are never acked).
//! - **Recent ids**: the last [`RECENT`] ids, for messages without a position and for a
//!   redrive that races the commit of this device's own ack.

use std::time::Instant;

use super::delivered::Delivered;
use crate::protocol::Status;

/// The last [`RECENT`] message ids of a connection, as hashes, oldest overwritten first;
/// the ids it was told are DELIVERED ([`Delivered`]); the unacknowledged ids and the
/// positions (module doc).
pub struct Recent {
    ids: [u64; RECENT],
    next: usize,
    delivered: Delivered,
    positions: Positions,
    /// Hashes of the unacknowledged ids, in no order; empty (no allocation) once all are acked.
    unacked: Vec<u64>,
}

/// Ids a connection remembers (512 bytes of the box).
pub const RECENT: usize = 64;
/// Most messages a connection holds unacknowledged (module doc): 8 KiB of hashes for a
/// device that stopped reading, 20 s of a busy chat at 50 messages a second.
pub const MAX_UNACKED: usize = 1024;
/// Stream positions a connection remembers (64 bytes of the box).
const POSITIONS: usize = 512;

/// Which of the last [`POSITIONS`] stream positions this connection was given: a bit each.
/// Positions have no holes, so 64 bytes remember 512 messages, where the id hashes
/// remember 64; a redrive comes back seconds later, past the hashes (found by the chaos
/// soak). A position below the window falls back to the hashes.
struct Positions {
    /// The window holds `base + 1 ..= base + POSITIONS`; `None` until the first one.
    base: Option<i64>,
    bits: [u64; POSITIONS / 64],
}

impl Positions {
    /// Records `pos`; `Some(true)` if it was recorded before, `None` when it lies below the
    /// window (unknown).
    fn record(&mut self, pos: i64) -> Option<bool> {
        let span = POSITIONS as i64;
        // The first position sits mid-window: older ones may still come, out of order.
        let base = *self.base.get_or_insert(pos - span / 2 - 1);
        if pos <= base {
            return None;
        }
        if pos > base + span {
            self.slide(((pos - base - span) + 63) / 64);
        }
        let off = (pos - self.base.unwrap_or(base) - 1) as usize;
        let (word, bit) = (off / 64, 1u64 << (off % 64));
        let seen = self.bits[word] & bit != 0;
        self.bits[word] |= bit;
        Some(seen)
    }

    /// Moves the window up by `words` × 64 positions, forgetting the lowest ones.
    fn slide(&mut self, words: i64) {
        let n = (words as usize).min(self.bits.len());
        self.bits.copy_within(n.., 0);
        let len = self.bits.len();
        self.bits[len - n..].fill(0);
        self.base = self.base.map(|b| b + words * 64);
    }
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            ids: [0; RECENT],
            next: 0,
            delivered: Delivered::default(),
            positions: Positions {
                base: None,
                bits: [0; POSITIONS / 64],
            },
            unacked: Vec::new(),
        }
    }
}

/// FNV-1a, never 0 (the empty slot): a collision needs 2^64 luck.
fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1
}

/// What [`Recent::give`] decided for one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Given {
    /// Not seen before: show it.
    New,
    /// This connection has it already: drop the copy.
    Repeat,
    /// New, but [`MAX_UNACKED`] messages are waiting for this device's acks.
    NoCredit,
}

impl Recent {
    /// Records `id` (stream position `pos`, 0 when unknown) as given to this connection.
    /// `awaits_ack`: addressed to the device and below DELIVERED, so it joins the
    /// unacknowledged ids.
    pub fn give(&mut self, id: &str, pos: i64, awaits_ack: bool) -> Given {
        let h = id_hash(id);
        if self.unacked.contains(&h) {
            return Given::Repeat;
        }
        if awaits_ack && self.unacked.len() >= MAX_UNACKED {
            return Given::NoCredit;
        }
        if self.seen_before(h, pos) {
            return Given::Repeat;
        }
        if awaits_ack {
            self.unacked.push(h);
        }
        Given::New
    }

    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// The device acked `id`: it leaves the unacknowledged ids for the recent ones, where a
    /// redrive that read the message before the ack's commit still finds it.
    pub fn acked(&mut self, id: &str) {
        let h = id_hash(id);
        let Some(i) = self.unacked.iter().position(|&u| u == h) else {
            return;
        };
        self.unacked.swap_remove(i);
        if self.unacked.is_empty() && self.unacked.capacity() > 64 {
            self.unacked = Vec::new(); // A burst's worth of hashes is not kept for good.
        }
        if !self.ids.contains(&h) {
            self.remember(h);
        }
    }

    fn seen_before(&mut self, h: u64, pos: i64) -> bool {
        if pos > 0 && self.positions.record(pos) == Some(true) {
            return true;
        }
        if self.ids.contains(&h) {
            return true;
        }
        self.remember(h);
        false
    }

    fn remember(&mut self, h: u64) {
        self.ids[self.next] = h;
        self.next = (self.next + 1) % RECENT;
    }

    /// See [`Delivered::age`].
    pub fn age(&mut self, now: Instant) {
        self.delivered.age(now);
    }

    /// Whether a status frame for `id` would go backwards: SENT after this connection was
    /// told DELIVERED. It happens in distributed mode when SENT and DELIVERED were committed
    /// by different pods and reached this pod by different paths (Kafka, the same-pod
    /// shortcut, a redrive), so the later commit arrived first.
    /// The clock is read for a DELIVERED only (it dates the id), not for every status.
    pub fn status_behind(&mut self, id: &str, status: Status) -> bool {
        let h = id_hash(id);
        if status != Status::Delivered {
            return self.delivered.contains(h);
        }
        self.delivered.insert(h, Instant::now());
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unacked_id_is_a_repeat_however_far_back() {
        let mut r = Recent::default();
        assert_eq!(r.give("old", 1, true), Given::New);
        // Far more than the positions and the recent ids remember.
        for p in 2..=(POSITIONS as i64 * 2) {
            assert_eq!(r.give(&format!("m{p}"), p, false), Given::New);
        }
        assert_eq!(r.give("old", 1, true), Given::Repeat, "a redrive of it");
        r.acked("old");
        assert_eq!(r.unacked(), 0);
        assert_eq!(
            r.give("old", 1, true),
            Given::Repeat,
            "racing the ack's commit"
        );
    }

    #[test]
    fn credit_runs_out_at_the_bound_and_comes_back_with_acks() {
        let mut r = Recent::default();
        for i in 0..MAX_UNACKED {
            assert_eq!(r.give(&format!("m{i}"), i as i64 + 1, true), Given::New);
        }
        assert_eq!(r.unacked(), MAX_UNACKED);
        let next = MAX_UNACKED as i64 + 1;
        assert_eq!(r.give("next", next, true), Given::NoCredit);
        assert_eq!(
            r.give("m3", 4, true),
            Given::Repeat,
            "a repeat is still a repeat"
        );
        assert_eq!(r.give("carbon", next, false), Given::New, "needs no credit");
        r.acked("m0");
        assert_eq!(r.give("next", next + 1, true), Given::New);
        for i in 1..MAX_UNACKED {
            r.acked(&format!("m{i}"));
        }
        r.acked("next");
        assert_eq!(
            (r.unacked(), r.unacked.capacity()),
            (0, 0),
            "memory given back"
        );
    }

    #[test]
    fn an_ack_of_an_id_never_given_changes_nothing() {
        let mut r = Recent::default();
        r.give("a", 1, true);
        r.acked("zzz");
        assert_eq!(r.unacked(), 1);
        assert_eq!(r.give("zzz", 2, true), Given::New);
    }
}
