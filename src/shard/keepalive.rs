//! The shard's keepalive sweep: one task per shard instead of one timer per connection.
//!
//! A timer per connection cost an entry in the reactor's timer tree, a select in every writer
//! wake-up and ~200 B per idle connection. The sweep walks the shard's connections a few times
//! per ping interval; a walk over 20k connections takes well under a millisecond.
//!
//! The sweep also enforces route-lease fencing: when the pod's lease epoch moved (its Redis
//! leases lapsed, so other pods may own its users now), every connection is closed with 4009.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Shard;
use crate::protocol::codes::close;
use crate::shard::outbox::Keepalive;

/// Runs until the task is dropped (shutdown drops it with the shard).
pub async fn run(shard: Rc<Shard>) {
    let t = &shard.settings().tuning;
    let (ping_every, pong_within) = (t.ping_interval(), t.pong_timeout());
    let tick = sweep_period(ping_every, pong_within);
    let epoch = &shard.pod.lease_epoch;
    let mut seen = epoch.load(Ordering::Acquire);
    loop {
        glommio::timer::sleep(tick).await;
        let now_epoch = epoch.load(Ordering::Acquire);
        if now_epoch != seen {
            seen = now_epoch;
            close_for_lost_lease(&shard);
        }
        let now = Instant::now();
        let now_secs = crate::protocol::now_micros() / 1_000_000;
        shard.conns.borrow().for_each_outbox(|outbox| {
            let mut outbox = outbox.borrow_mut();
            if outbox.token_expired(now_secs) {
                let reason = "token expired; reconnect with a fresh token";
                outbox.abort(close::TOKEN_EXPIRED, reason);
            }
            if outbox.keepalive(now, ping_every, pong_within) == Keepalive::Dead {
                shard
                    .metrics()
                    .ping_timeout_closes
                    .fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Closes every connection of the shard with 4009 so its clients reconnect and register
/// afresh (the inbox's `LeaseLost` does the same, sooner, when the inbox has room).
/// Each connection is counted once (`route_lost_closes_total`), though both paths run.
pub fn close_for_lost_lease(shard: &Shard) {
    let mut closed = 0;
    shard.conns.borrow().for_each_outbox(|outbox| {
        let mut outbox = outbox.borrow_mut();
        if !outbox.is_aborted() {
            outbox.abort(close::ROUTE_LOST, "route lease lost; reconnect");
            closed += 1;
        }
    });
    let m = shard.metrics();
    m.route_lost_closes.fetch_add(closed, Ordering::Relaxed);
}

/// Closes every connection of these users on the shard with 4010, ahead of what is queued
/// for them (the user no longer exists; what was queued stays stored).
pub fn close_for_deleted_users(shard: &Shard, users: &[String]) {
    let conns = shard.conns.borrow();
    for user in users {
        conns.each_outbox_of(user, |_, outbox| {
            outbox
                .borrow_mut()
                .abort(close::USER_DELETED, "user deleted");
        });
    }
}

/// Closes `user`'s connections on this shard with 4012 (the server API's disconnect) and
/// returns how many it closed.
pub fn disconnect_user(shard: &Shard, user: &str) -> usize {
    let mut closed = 0;
    shard.conns.borrow().each_outbox_of(user, |_, outbox| {
        let reason = "disconnected by the application";
        outbox.borrow_mut().abort(close::DISCONNECTED, reason);
        closed += 1;
    });
    closed
}

/// A quarter of the shorter of the two periods, between 10 ms and 1 s: a ping or a timeout
/// is late by at most that.
pub fn sweep_period(ping_every: Duration, pong_within: Duration) -> Duration {
    (ping_every.min(pong_within) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_is_a_quarter_of_the_shorter_period_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(sweep_period(s(25), s(10)), Duration::from_secs(1));
        let ms = Duration::from_millis;
        assert_eq!(sweep_period(ms(200), ms(400)), ms(50));
        assert_eq!(sweep_period(ms(1), ms(1)), ms(10));
    }
}
