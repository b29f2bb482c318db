//! `message.undelivered` webhooks (`--webhook-undelivered-after-secs`): the hook an
//! application uses to send a push notification to a user who did not get a message.
//!
//! Shard 0 of each pod sweeps the message table in insertion order, each message once when
//! it turns `after` old ([`MessageStore::undelivered`](crate::backend::store::MessageStore)):
//! one still below DELIVERED becomes an event. With several pods the store's lock on the
//! sweep's mark lets one pod at a time sweep, so a message is reported once cluster-wide.
//! A round asks for no more rows than the webhook queue has room for, so no event is dropped
//! for a full queue: a receiver that is down slows the sweep, it does not lose events. What
//! the pod had queued and not delivered dies with it, as for every webhook.

use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use serde_json::json;

use crate::backend::store::{StoreCmd, Undelivered, UndeliveredRound};
use crate::backend::webhook::{WebhookEvent, Webhooks};
use crate::protocol::{now_micros, rfc3339_micros};
use crate::shard::Shard;

use super::submit::{submit, STATUS_PATIENCE};

/// Messages looked at per round at most.
pub const ROUND: usize = 1_000;

/// Runs until the shard drains: rounds back to back while they find a full window, then a
/// pause of a quarter of `after` (100 ms to 5 s).
pub async fn run(shard: Rc<Shard>, after: Duration) {
    let Some(hooks) = shard.pod.webhooks.clone() else {
        return;
    };
    let pause = (after / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    while !shard.draining.get() {
        let room = hooks.room().min(ROUND);
        let full = room > 0 && sweep(&shard, &hooks, after, room).await;
        if !full {
            glommio::timer::sleep(pause).await;
        }
    }
}

/// One round; true when it looked at as many rows as it asked for (more may be waiting).
async fn sweep(shard: &Shard, hooks: &Webhooks, after: Duration, limit: usize) -> bool {
    let before = now_micros() - after.as_micros() as i64;
    match round(shard, before, limit).await {
        Ok(r) => {
            for u in &r.found {
                hooks.emit(event(u, &shard.settings().pod_id));
            }
            r.looked_at == limit
        }
        Err(e) => {
            tracing::warn!(error = %e, "undelivered sweep failed; retried next round");
            false
        }
    }
}

async fn round(shard: &Shard, before: i64, limit: usize) -> Result<UndeliveredRound, String> {
    let (reply, wait) = oneshot::channel();
    let cmd = StoreCmd::Undelivered {
        before,
        limit,
        reply,
    };
    submit(&shard.pod.store, cmd, STATUS_PATIENCE)
        .await
        .map_err(|e| format!("{e:?}"))?;
    wait.await.map_err(|_| "store thread ended".to_string())?
}

/// The event's body beside `type` and `id` (docs/PROTOCOL.md, "Webhooks").
fn event(u: &Undelivered, pod: &str) -> WebhookEvent {
    WebhookEvent {
        kind: "message.undelivered",
        fields: json!({
            "message_id": u.id,
            "sender_id": u.sender_id,
            "reciever_id": u.reciever_id,
            "status": u.status.as_str(),
            "created_at": rfc3339_micros(u.created_at),
            "pod": pod,
        }),
    }
}
