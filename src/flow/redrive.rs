//! The redrive (distributed mode): messages stuck at NONE (the produce failed or timed out,
//! the broker was down, the pod died between commit and produce) are routed again. A broker
//! outage or a pod crash delays messages; it never loses one.
//!
//! Exactly one pod at a time redrives a message: a sweep *claims* its page in the store
//! ([`MessageStore::claim_stuck`](crate::backend::store::MessageStore::claim_stuck)), which
//! restarts the claimed rows' stuck clock, so the other pods' sweeps skip them for
//! `stuck_after`. A claim happens only once a message has been NONE for `stuck_after`, which
//! the configuration keeps above the producer's delivery timeout: a produce still in flight
//! is never redriven beside itself.
//!
//! Messages stuck at SENT for `sent_after` are redriven too, with the same claims: their
//! record reached a pod topic, but a broker that loses acknowledged records (a crash before
//! they were replicated or written, a wiped disk) would otherwise strand them until the
//! recipient reconnects. A recipient device that got the record and has not acked yet is
//! sent it again; its connection remembers every id its device has not acked and drops the
//! copy ([`Outbox::push_given`](crate::shard::outbox::Outbox::push_given)).
//!
//! A message whose recipient has no live route is *parked*, not routed again and again: the
//! recipient's next connect replays it. Parking lasts until the message's age has doubled,
//! then it is looked at again (see [`MessageStore::park`]): a route table can miss a
//! connected recipient for a moment, and that recipient would never reconnect to get it.
//!
//! [`MessageStore::park`]: crate::backend::store::MessageStore::park

use std::rc::Rc;

use futures::channel::oneshot;

use crate::backend::store::{PendingMessage, StoreCmd, StuckAfter};
use crate::protocol::{now_micros, Status};
use crate::shard::{RedriveSettings, Shard};

use super::produce::{produce, Produced};
use super::route::envelope;
use super::submit::{submit, STATUS_PATIENCE};

/// Stuck messages claimed per sweep.
const PAGE: usize = 512;

/// Runs until the shard drains.
pub async fn run(shard: Rc<Shard>, s: RedriveSettings) {
    while !shard.draining.get() {
        glommio::timer::sleep(s.interval).await;
        let page = match claim(&shard, &s).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "redrive claim failed");
                continue;
            }
        };
        if page.is_empty() {
            continue;
        }
        tracing::debug!(n = page.len(), "redrive");
        shard.begin_work();
        let routed = page.into_iter().map(|m| redrive_one(&shard, m));
        let ids: Vec<String> = futures::future::join_all(routed)
            .await
            .into_iter()
            .flatten()
            .collect();
        shard.end_work();
        if !ids.is_empty() {
            park(&shard, ids).await;
        }
    }
}

/// Routes one claimed message; returns its id when it is to be parked (nobody to reach).
async fn redrive_one(shard: &Shard, m: PendingMessage) -> Option<String> {
    let (id, user, status) = (m.id.clone(), m.reciever_id.clone(), m.status);
    let env = envelope(m.view(), false);
    match produce(shard, &user, env).await {
        Produced::Reached(_) => {
            if status == Status::None {
                super::status::advance(shard, &id, Status::Sent).await;
            }
            None
        }
        Produced::Offline => Some(id),
        Produced::Failed => None, // Claimed again after its window.
    }
}

async fn claim(shard: &Shard, s: &RedriveSettings) -> Result<Vec<PendingMessage>, String> {
    let (reply, wait) = oneshot::channel();
    let cmd = StoreCmd::Claim {
        now: now_micros(),
        after: StuckAfter {
            none: s.none_after.as_micros() as i64,
            sent: s.sent_after.map_or(i64::MAX / 2, |d| d.as_micros() as i64),
        },
        limit: PAGE,
        reply,
    };
    submit(&shard.pod.store, cmd, STATUS_PATIENCE)
        .await
        .map_err(|e| format!("{e:?}"))?;
    wait.await.map_err(|_| "store thread ended".to_string())?
}

async fn park(shard: &Shard, ids: Vec<String>) {
    let n = ids.len();
    let cmd = StoreCmd::Park {
        ids,
        now: now_micros(),
    };
    if submit(&shard.pod.store, cmd, STATUS_PATIENCE)
        .await
        .is_err()
    {
        tracing::warn!(n, "park not queued; those messages are claimed again later");
    }
}
