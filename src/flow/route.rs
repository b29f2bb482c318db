//! Step 3: look up where the recipient is connected and produce the message to each place.

use std::rc::Rc;
use std::sync::Arc;

use crate::backend::bus::{Envelope, Except};
use crate::backend::store::{NewMessage, Positions};
use crate::protocol::{encode_message, MessageView, Status};
use crate::shard::{Shard, ShardMsg};

use super::produce::{produce, Produced};

/// Routes a freshly stored message in its own task (the inbox loop must not wait), and its
/// carbon to the sender's other devices. `conn` is the sending connection on this shard.
pub fn spawn_route(shard: &Rc<Shard>, msg: NewMessage, at: Positions, conn: u64) {
    spawn_counted(shard, move |shard| async move {
        route_message(&shard, msg, at, conn).await
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

/// The `message` frame of a stored message for the devices of its recipient, or of its sender
/// (`carbon`), encoded once for every device and shard. `view.pos` is that user's position.
pub fn envelope(view: MessageView<'_>, carbon: bool) -> Arc<Envelope> {
    let user = if carbon {
        view.sender_id
    } else {
        view.reciever_id
    };
    Arc::new(Envelope {
        user: user.to_owned(),
        frame: encode_message(view).into(),
        message_id: Some(view.id.to_owned()),
        seq: view.pos,
        carbon,
        group: false,
        born: if carbon { 0 } else { view.created_at_micros },
        except: None,
    })
}

async fn route_message(shard: &Rc<Shard>, msg: NewMessage, at: Positions, conn: u64) {
    let view = MessageView {
        id: &msg.id,
        sender_id: &msg.sender_id,
        reciever_id: &msg.reciever_id,
        message: &msg.payload,
        created_at_micros: msg.created_at,
        cseq: at.cseq,
        pos: at.rpos,
        group: None,
    };
    if msg.sender_id != msg.reciever_id && shard.pod.carbons_wanted() {
        send_carbon(shard, view, at.spos, conn);
    }
    let env = envelope(view, false);
    match shard.routes.home_of(&env.user) {
        Some(home) if home != shard.id => forward(shard, home, env).await,
        _ => route_envelope(shard, env).await,
    }
}

/// The sender's other devices learn of the message, at its place in the sender's stream.
/// Best effort, like a status frame: a device that misses it sees a hole in `pos` and gets
/// the message from its next sync.
fn send_carbon(shard: &Rc<Shard>, view: MessageView<'_>, spos: i64, conn: u64) {
    let mut carbon = envelope(MessageView { pos: spos, ..view }, true);
    if let Some(env) = Arc::get_mut(&mut carbon) {
        env.except = Some(except(shard, conn));
    }
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let user = carbon.user.clone();
        super::produce::produce_best_effort(&shard, &user, carbon).await;
    })
    .detach();
}

/// Connection `conn` of this shard, named pod-wide.
pub fn except(shard: &Shard, conn: u64) -> Except {
    Except {
        pod: shard.settings().pod_id.clone(),
        shard: shard.id,
        conn,
    }
}

/// A frame for `user`'s v2 devices only (a read receipt, a typing indicator: no message, no
/// status), skipping connection `conn` of this shard, which sent it.
pub fn v2_envelope(
    shard: &Shard,
    user: &str,
    frame: tungstenite::Utf8Bytes,
    conn: u64,
) -> Arc<Envelope> {
    Arc::new(Envelope {
        user: user.to_owned(),
        frame,
        message_id: None,
        seq: 0,
        carbon: true,
        group: false,
        born: 0,
        except: Some(except(shard, conn)),
    })
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
        crate::failpoints::crash_point("after_produce_before_sent");
        if let Some(id) = &env.message_id {
            super::status::advance(shard, id, Status::Sent).await;
        }
    }
}
