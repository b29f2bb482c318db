//! Step 5: statuses. Requests go to the store; committed changes come back from it and are
//! sent to the sender's devices. Because only committed changes are announced, and the store
//! applies them in order with "never backwards" guards, a sender never sees a status regress.

use std::rc::Rc;
use std::sync::Arc;

use crate::backend::bus::Envelope;
use crate::backend::store::{StatusChange, StatusUpdate, StoreCmd};
use crate::protocol::{encode_status, now_micros, Status};
use crate::shard::Shard;

use super::submit::{submit, STATUS_PATIENCE};

/// Asks the store to move `id` forward to `status`.
pub async fn advance(shard: &Shard, id: &str, status: Status) {
    advance_for(shard, id, status, None).await
}

/// [`advance`], for the copy of `recipient` when given (a group message's member: its
/// DELIVERED is per member, `--delivery-confirm write`).
pub async fn advance_for(shard: &Shard, id: &str, status: Status, recipient: Option<String>) {
    let update = StatusUpdate {
        id: id.to_owned(),
        status,
        recipient,
        at: now_micros(),
    };
    if submit(
        &shard.pod.store,
        StoreCmd::Status {
            update,
            reply: None,
        },
        STATUS_PATIENCE,
    )
    .await
    .is_err()
    {
        // Not lost: the message stays at its lower status and is replayed.
        super::submit::warn_dropped(shard, "status");
    }
}

/// A committed change reached the sender's home shard: tell the sender's devices.
pub fn on_status_changed(shard: &Rc<Shard>, change: StatusChange) {
    let m = shard.metrics();
    let counter = match change.status {
        Status::Delivered => &m.status_delivered,
        _ => &m.status_sent,
    };
    crate::metrics::ShardMetrics::inc(counter);
    let env = Arc::new(Envelope {
        user: change.sender_id,
        frame: encode_status(&change.id, change.status).into(),
        message_id: None,
        seq: 0,
        carbon: false,
        group: false,
        born: 0,
        except: None,
    });
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let user = env.user.clone();
        super::produce::produce_best_effort(&shard, &user, env).await;
    })
    .detach();
}
