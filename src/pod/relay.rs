//! The status relay (distributed mode): one thread per pod moves committed status changes
//! from the Postgres outbox to `<prefix>message-status`, key = message id. Only one pod's
//! relay works at a time (an advisory lock per round), so events leave in commit order;
//! events are deleted only after the broker acknowledged every one of a round, so a crash
//! or a broker outage repeats a round (at least once), it never skips one.
//!
//! Rounds are paced: after a round that was not full the relay pauses `idle` (50 ms by
//! default) before the next, so under a steady trickle each round carries what gathered
//! meanwhile. A round costs five Postgres round trips and a produce whatever it carries, and
//! back-to-back rounds of a few events each spent more CPU than the messages they announced
//! (perf/RESULTS.md §26). An event waits in the outbox at most about `idle` plus a round.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::backend::kafka::KafkaBus;
use crate::backend::stoppable::StoppableThread;
use crate::backend::store::{PostgresStore, StatusEvent, StatusOutbox};
use crate::protocol::rfc3339_micros;

/// Events relayed per round at most.
const ROUND: i64 = 1000;

/// The relay thread; [`stop`](Self::stop) ends it after the current round.
pub struct StatusRelay(StoppableThread);

impl StatusRelay {
    /// Starts the relay on a connection of its own; `idle` is the pause when nothing is due
    /// (or another pod relays).
    pub fn start(
        store: &PostgresStore,
        bus: KafkaBus,
        topic: String,
        idle: Duration,
    ) -> Result<StatusRelay, String> {
        let outbox = store.outbox().map_err(|e| e.to_string())?;
        let mut relay = Relay { bus, topic, idle };
        let thread = StoppableThread::spawn("status-relay", move |stop| relay.run(outbox, stop))?;
        Ok(StatusRelay(thread))
    }

    pub fn stop(self) {
        self.0.stop()
    }
}

struct Relay {
    bus: KafkaBus,
    topic: String,
    idle: Duration,
}

impl Relay {
    fn run(&mut self, mut outbox: StatusOutbox, stop: &AtomicBool) {
        let mut backoff = Backoff::new(self.idle);
        while !stop.load(Ordering::Relaxed) {
            let round = match outbox.begin(ROUND) {
                Ok(Some(events)) if !events.is_empty() => {
                    let full = events.len() as i64 >= ROUND;
                    match self.relay(&mut outbox, events) {
                        Round::Done if !full => Round::Idle,
                        other => other,
                    }
                }
                Ok(_) => {
                    outbox.abort();
                    Round::Idle
                }
                Err(e) => {
                    tracing::warn!(error = %e, "status relay: outbox read failed");
                    Round::Failed
                }
            };
            match round {
                Round::Done => backoff.reset(),
                Round::Idle => {
                    backoff.reset();
                    std::thread::sleep(self.idle);
                }
                Round::Failed => std::thread::sleep(backoff.next()),
            }
        }
        outbox.abort();
    }

    /// Produces a round and deletes it once every event is acknowledged.
    fn relay(&mut self, outbox: &mut StatusOutbox, events: Vec<StatusEvent>) -> Round {
        crate::failpoints::crash_point("after_status_commit_before_event");
        let through = events.last().map_or(0, |e| e.seq);
        let mut reports = Vec::with_capacity(events.len());
        for e in &events {
            match self
                .bus
                .send_reported(&self.topic, &e.change.id, &payload(e))
            {
                Ok(rx) => reports.push(rx),
                Err(err) => {
                    tracing::warn!(error = %err, "status relay: produce refused; round repeated");
                    outbox.abort();
                    return Round::Failed;
                }
            }
        }
        let acked = futures::executor::block_on(futures::future::join_all(reports));
        let failed = acked.into_iter().find_map(|r| match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("producer stopped".to_owned()),
        });
        if let Some(err) = failed {
            tracing::warn!(error = %err, "status relay: not acknowledged; round repeated");
            outbox.abort();
            return Round::Failed;
        }
        if let Err(e) = outbox.finish(through) {
            tracing::warn!(error = %e, "status relay: delete failed; round repeated");
            return Round::Failed;
        }
        Round::Done
    }
}

/// How a relay round ended.
enum Round {
    /// A full round relayed and deleted: more may be due at once.
    Done,
    /// Nothing was due, or what was due fitted in one round: the next waits `idle`.
    Idle,
    /// Repeated later. A broker that fails every produce at once (a dead storage engine, a
    /// fatal producer error) must not turn the relay into a busy loop.
    Failed,
}

/// Pauses between failed rounds: doubling from the idle pause up to [`MAX_BACKOFF`].
struct Backoff {
    first: Duration,
    now: Duration,
}

const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Backoff {
    fn new(first: Duration) -> Backoff {
        let first = first.max(Duration::from_millis(1));
        Backoff { first, now: first }
    }

    fn next(&mut self) -> Duration {
        let d = self.now;
        self.now = (self.now * 2).min(MAX_BACKOFF);
        d
    }

    fn reset(&mut self) {
        self.now = self.first;
    }
}

fn payload(e: &StatusEvent) -> String {
    let c = &e.change;
    serde_json::json!({
        "id": c.id, "status": c.status.as_str(), "sender_id": c.sender_id,
        "reciever_id": c.reciever_id, "at": rfc3339_micros(c.at),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_rounds_back_off_up_to_the_cap_and_success_resets() {
        let mut b = Backoff::new(Duration::from_millis(50));
        let waits: Vec<_> = (0..8).map(|_| b.next().as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(50));
        assert_eq!(
            Backoff::new(Duration::ZERO).next(),
            Duration::from_millis(1)
        );
    }
}
