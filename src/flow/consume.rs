//! Step 4: on the core that owns the connections, an envelope reaches each device's outbox.

use std::rc::Rc;
use std::sync::Arc;

use crate::backend::bus::Envelope;
use crate::config::Routing;
use crate::shard::{Shard, ShardMsg};

/// Queues `env` on every connection of `env.user` on this shard (but the one it excepts). A
/// user who disconnected meanwhile simply has no outbox here: the message stays stored below
/// DELIVERED.
pub fn deliver_local(shard: &Shard, env: Arc<Envelope>) {
    let skip = (env.except.as_ref())
        .filter(|e| e.shard == shard.id && e.pod == shard.settings().pod_id)
        .map(|e| e.conn);
    let conns = shard.conns.borrow();
    let mut handed = false;
    conns.each_outbox_of(&env.user, |id, outbox| {
        if Some(id) != skip {
            outbox.borrow_mut().push_live(env.clone());
            handed = true;
        }
    });
    if handed && env.born > 0 {
        let micros = crate::protocol::now_micros()
            .saturating_sub(env.born)
            .max(0);
        shard.handoff.observe(micros as f64 / 1e6);
    }
}

/// A record consumed from this shard's partition: with pod topics it is for connections on
/// this shard; with `--routing broadcast` this is the user's home shard, which hands it on.
pub fn on_consumed(shard: &Rc<Shard>, env: Arc<Envelope>) {
    match shard.pod.cluster.as_ref().map(|c| c.routing) {
        Some(Routing::Broadcast) => deliver_from_home(shard, env),
        _ => deliver_local(shard, env),
    }
}

/// `--routing broadcast`: a record consumed by the user's home shard (partition = home shard)
/// goes to every shard of this pod holding a connection of the user, found in the home
/// shard's directory; a pod without such connections drops it. Hand-offs to other shards
/// run as tasks: the inbox loop never waits on another shard.
fn deliver_from_home(shard: &Rc<Shard>, env: Arc<Envelope>) {
    let shards = shard.directory.borrow().shards_of(&env.user);
    for at in shards.into_iter().map(usize::from) {
        if at == shard.id {
            deliver_local(shard, env.clone());
            continue;
        }
        let (inbox, env) = (shard.pod.mesh[at].clone(), env.clone());
        glommio::spawn_local(async move {
            // A stopping shard: the message stays SENT and is replayed on reconnect.
            let _ = inbox.send(ShardMsg::Deliver(env)).await;
        })
        .detach();
    }
}
