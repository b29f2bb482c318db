//! Step 3: look up where the recipient is connected and produce the message to each place.

use std::rc::Rc;
use std::sync::Arc;

use crate::backend::bus::Envelope;
use crate::backend::store::NewMessage;
use crate::protocol::{encode_message, MessageView, Status};
use crate::shard::Shard;

/// Routes a freshly stored message in its own task (the inbox loop must not wait).
pub fn spawn_route(shard: &Rc<Shard>, msg: NewMessage, seq: i64) {
    shard.begin_work();
    let shard = shard.clone();
    glommio::spawn_local(async move {
        route_message(&shard, msg, seq).await;
        shard.end_work();
    })
    .detach();
}

async fn route_message(shard: &Rc<Shard>, msg: NewMessage, seq: i64) {
    let frame = encode_message(MessageView {
        id: &msg.id,
        sender_id: &msg.sender_id,
        reciever_id: &msg.reciever_id,
        message: &msg.payload,
        created_at_micros: msg.created_at,
    });
    let env = Arc::new(Envelope {
        user: msg.reciever_id.clone(),
        frame: frame.into(),
        message_id: Some(msg.id.clone()),
        seq,
    });
    // No live connection: the message stays at NONE and is replayed when the user connects.
    if deliver_to_user(shard, &msg.reciever_id, env).await > 0 {
        super::status::advance(shard, &msg.id, Status::Sent).await;
    }
}

/// Produces `env` to every location of `user`; returns how many accepted it.
pub async fn deliver_to_user(shard: &Shard, user: &str, env: Arc<Envelope>) -> usize {
    let locations = match shard.routes.lookup(user).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(shard = shard.id, error = %e, "route lookup failed; left for replay");
            return 0;
        }
    };
    let mut reached = 0;
    for at in locations {
        match shard.bus.publish(at, env.clone()).await {
            Ok(()) => reached += 1,
            Err(e) => {
                tracing::warn!(shard = shard.id, error = %e, "publish failed; left for replay")
            }
        }
    }
    reached
}
