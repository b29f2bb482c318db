//! Step 4: on the core that owns the connections, an envelope reaches each device's outbox.

use std::sync::Arc;

use crate::backend::bus::Envelope;
use crate::shard::Shard;

/// Queues `env` on every connection of `env.user` on this shard. A user who disconnected
/// meanwhile simply has no outbox here: the message stays stored below DELIVERED.
pub fn deliver_local(shard: &Shard, env: Arc<Envelope>) {
    let conns = shard.conns.borrow();
    conns.each_outbox_of(&env.user, |outbox| {
        outbox.borrow_mut().push_live(env.clone());
    });
}
