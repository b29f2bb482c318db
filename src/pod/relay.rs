//! The status relay (distributed mode): one thread per pod moves committed status changes
//! from the Postgres outbox to `<prefix>message-status`, key = message id. Only one pod's
//! relay works at a time (an advisory lock per round), so events leave in commit order;
//! events are deleted only after the broker acknowledged every one of a round, so a crash
//! or a broker outage repeats a round (at least once), it never skips one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::kafka::KafkaBus;
use crate::backend::store::{PostgresStore, StatusEvent, StatusOutbox};
use crate::protocol::rfc3339_micros;

/// Events relayed per round at most.
const ROUND: i64 = 1000;

/// The relay thread; [`stop`](Self::stop) ends it after the current round.
pub struct StatusRelay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

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
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("status-relay".into())
            .spawn(move || {
                let mut r = Relay { bus, topic, idle };
                r.run(outbox, &flag)
            })
            .map_err(|e| e.to_string())?;
        Ok(StatusRelay {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Relay {
    bus: KafkaBus,
    topic: String,
    idle: Duration,
}

impl Relay {
    fn run(&mut self, mut outbox: StatusOutbox, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let busy = match outbox.begin(ROUND) {
                Ok(Some(events)) if !events.is_empty() => self.relay(&mut outbox, events),
                Ok(_) => {
                    outbox.abort();
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "status relay: outbox read failed");
                    false
                }
            };
            if !busy {
                std::thread::sleep(self.idle);
            }
        }
        outbox.abort();
    }

    /// Produces a round and deletes it once every event is acknowledged; `true` if the
    /// round was complete (more may be due at once).
    fn relay(&mut self, outbox: &mut StatusOutbox, events: Vec<StatusEvent>) -> bool {
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
                    return false;
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
            return false;
        }
        if let Err(e) = outbox.finish(through) {
            tracing::warn!(error = %e, "status relay: delete failed; round repeated");
            return false;
        }
        true
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
