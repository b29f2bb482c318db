//! Step 3 of the message path: where are the recipient's connections?
//!
//! The seed's Redis model (`user → pod`) generalised to several devices: a user maps to the set
//! of [`Location`]s holding their live connections.

use futures::future::LocalBoxFuture;
use smallvec::SmallVec;

use super::Location;

/// Route table failures. A failed lookup leaves the message at NONE for later delivery.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The shard owning the route entry is gone (the pod is shutting down).
    #[error("route owner shard {0} is not running")]
    ShardGone(usize),
    /// The remote route store failed.
    #[error("route store unavailable: {0}")]
    Unavailable(String),
}

/// A per-shard handle to the route table. Futures are `!Send`: they run on the shard's
/// executor and must never block it.
pub trait RouteTable {
    /// Records a live connection of `user` at `at`; resolves once lookups will see it.
    fn register<'a>(
        &'a self,
        user: &'a str,
        at: Location,
    ) -> LocalBoxFuture<'a, Result<(), RouteError>>;
    /// Forgets one connection of `user` at `at` (other devices at the same place stay).
    fn unregister<'a>(
        &'a self,
        user: &'a str,
        at: Location,
    ) -> LocalBoxFuture<'a, Result<(), RouteError>>;
    /// Every place holding a live connection of `user`.
    fn lookup<'a>(&'a self, user: &'a str)
        -> LocalBoxFuture<'a, Result<Vec<Location>, RouteError>>;
    /// [`lookup`](Self::lookup) for a frame a device may miss (a status frame, a carbon, a
    /// receipt, typing: best effort in docs/PROTOCOL.md): the answer may come from a cache
    /// that Redis keeps current (`redis_routes::cache`). Never for a message.
    fn lookup_recent<'a>(
        &'a self,
        user: &'a str,
    ) -> LocalBoxFuture<'a, Result<Vec<Location>, RouteError>> {
        self.lookup(user)
    }
    /// How long after a register other pods may still answer
    /// [`lookup_recent`](Self::lookup_recent) without the new place. A connection's replay
    /// starts only after it: a carbon or status frame routed by such an answer concerns a
    /// change committed before the replay reads the store, which the replay then covers.
    fn settle_after_register(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// The shard of this pod whose lookups for `user` need no round trip, when the table is
    /// split over the shards (the embedded one). Routing a message there and delivering from
    /// there costs one hand-off instead of a lookup request, its reply and the delivery.
    fn home_of(&self, _user: &str) -> Option<usize> {
        None
    }
}

/// The shard that owns `user`'s route entry in the embedded route table: a pure function of
/// the user id, so every shard agrees without talking.
pub fn home_shard(user: &str, shards: usize) -> usize {
    // FNV-1a: stable across processes and releases, unlike std's SipHash keys.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// The embedded route table's slice owned by one shard: user → (shard, live connections).
///
/// One entry per connected user, so it is sized like per-connection state: the name is a
/// `Box<str>` (no spare capacity) and two shards fit inline (no heap block per user).
#[derive(Default)]
pub struct Directory {
    entries: std::collections::HashMap<Box<str>, SmallVec<[(u16, u32); 2]>>,
}

impl Directory {
    pub fn add(&mut self, user: &str, shard: u16) {
        let Some(list) = self.entries.get_mut(user) else {
            self.entries
                .insert(user.into(), smallvec::smallvec![(shard, 1)]);
            return;
        };
        match list.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, n)) => *n += 1,
            None => list.push((shard, 1)),
        }
    }

    pub fn remove(&mut self, user: &str, shard: u16) {
        let Some(list) = self.entries.get_mut(user) else {
            return;
        };
        if let Some(pos) = list.iter().position(|(s, _)| *s == shard) {
            list[pos].1 -= 1;
            if list[pos].1 == 0 {
                list.swap_remove(pos);
            }
        }
        if list.is_empty() {
            self.entries.remove(user);
        }
    }

    pub fn shards_of(&self, user: &str) -> Vec<u16> {
        self.entries
            .get(user)
            .map(|l| l.iter().map(|(s, _)| *s).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_counts_devices_per_shard() {
        let mut d = Directory::default();
        d.add("bob", 0);
        d.add("bob", 0);
        d.add("bob", 1);
        assert_eq!(d.shards_of("bob"), vec![0, 1]);
        d.remove("bob", 0);
        assert_eq!(d.shards_of("bob"), vec![0, 1]);
        d.remove("bob", 0);
        d.remove("bob", 1);
        assert!(d.shards_of("bob").is_empty());
        d.remove("nobody", 3);
    }

    #[test]
    fn home_shard_is_stable_and_in_range() {
        assert_eq!(home_shard("alice", 4), home_shard("alice", 4));
        assert!((0..100).all(|i| home_shard(&format!("u{i}"), 3) < 3));
        assert_eq!(home_shard("x", 0), 0);
    }
}
