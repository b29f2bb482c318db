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

/// The `message` frame of a stored message, encoded once for every device and shard.
pub fn envelope(
    id: &str,
    sender_id: &str,
    reciever_id: String,
    payload: &str,
    created_at: i64,
    seq: i64,
) -> Arc<Envelope> {
    let frame = encode_message(MessageView {
        id,
        sender_id,
        reciever_id: &reciever_id,
        message: payload,
        created_at_micros: created_at,
    });
    Arc::new(Envelope {
        user: reciever_id,
        frame: frame.into(),
        message_id: Some(id.to_owned()),
        seq,
    })
}

async fn route_message(shard: &Rc<Shard>, msg: NewMessage, seq: i64) {
    let NewMessage {
        id,
        sender_id,
        reciever_id,
        payload,
        created_at,
        ..
    } = msg;
    let env = envelope(&id, &sender_id, reciever_id, &payload, created_at, seq);
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
    if let Produced::Reached(_) = produce(shard, &env.user, env.clone()).await {
        if let Some(id) = &env.message_id {
            super::status::advance(shard, id, Status::Sent).await;
        }
    }
}

/// What producing to a user's places came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produced {
    /// This many places (at least one) took the envelope.
    Reached(usize),
    /// The route table knows no live connection of the user.
    Offline,
    /// The lookup or every publish failed; the message stays for a retry.
    Failed,
}

/// Produces `env` to every location of `user`.
pub async fn produce(shard: &Shard, user: &str, env: Arc<Envelope>) -> Produced {
    let locations = match shard.routes.lookup(user).await {
        Ok(l) if l.is_empty() => return Produced::Offline,
        Ok(l) => l,
        Err(e) => {
            if let Some(failed) = shard.route_failures.count_now() {
                let id = shard.id;
                tracing::warn!(shard = id, error = %e, failed, "route lookups or publishes failed; left for replay");
            }
            return Produced::Failed;
        }
    };
    let mut reached = 0;
    for at in locations {
        match shard.bus.publish(at, env.clone()).await {
            Ok(()) => reached += 1,
            Err(e) => {
                if let Some(failed) = shard.route_failures.count_now() {
                    let id = shard.id;
                    tracing::warn!(shard = id, error = %e, failed, "route lookups or publishes failed; left for replay");
                }
            }
        }
    }
    match reached {
        0 => Produced::Failed,
        n => Produced::Reached(n),
    }
}
