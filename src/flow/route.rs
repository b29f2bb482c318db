//! Step 3: look up where the recipient is connected and produce the message to each place.

use std::rc::Rc;
use std::sync::Arc;

use crate::backend::bus::Envelope;
use crate::backend::store::NewMessage;
use crate::protocol::{encode_message, MessageView, Status};
use crate::shard::{Shard, ShardMsg};

/// Routes a freshly stored message in its own task (the inbox loop must not wait).
pub fn spawn_route(shard: &Rc<Shard>, msg: NewMessage, seq: i64) {
    spawn_counted(shard, move |shard| async move {
        route_message(&shard, msg, seq).await
    });
}

/// Routes an envelope another shard forwarded here (this is the recipient's home shard).
pub fn spawn_route_here(shard: &Rc<Shard>, env: Arc<Envelope>) {
    spawn_counted(shard, move |shard| async move {
        route_envelope(&shard, env).await
    });
}

/// Runs a routing step as its own task, counted as in-flight work for the shutdown drain.
fn spawn_counted<F, Fut>(shard: &Rc<Shard>, step: F)
where
    F: FnOnce(Rc<Shard>) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    shard.begin_work();
    let shard = shard.clone();
    glommio::spawn_local(async move {
        step(shard.clone()).await;
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
        user: msg.reciever_id,
        frame: frame.into(),
        message_id: Some(msg.id),
        seq,
    });
    match shard.routes.home_of(&env.user) {
        Some(home) if home != shard.id => forward(shard, home, env).await,
        _ => route_envelope(shard, env).await,
    }
}

/// Hands the whole step to the recipient's home shard. If that fails (the pod is stopping),
/// the message stays at NONE and is replayed when the recipient connects.
async fn forward(shard: &Shard, home: usize, env: Arc<Envelope>) {
    if shard.pod.mesh[home]
        .send(ShardMsg::Route(env))
        .await
        .is_err()
    {
        tracing::warn!(
            shard = shard.id,
            home,
            "route hand-off failed; left for replay"
        );
    }
}

/// Delivers to every location of the recipient; SENT once at least one took it.
async fn route_envelope(shard: &Shard, env: Arc<Envelope>) {
    // No live connection: the message stays at NONE and is replayed when the user connects.
    if deliver_to_user(shard, &env.user, env.clone()).await > 0 {
        if let Some(id) = &env.message_id {
            super::status::advance(shard, id, Status::Sent).await;
        }
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
