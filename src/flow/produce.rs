//! Step 4: produce an envelope to every place a user is connected (the owning shards of
//! this pod, or the pods' topics in distributed mode). Messages (`route`), carbons, status
//! frames (`status`), receipts and typing all leave through here.

use std::sync::Arc;

use crate::backend::bus::Envelope;
use crate::shard::Shard;

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
    let lookup = shard.routes.lookup(user).await;
    produce_to(shard, lookup, env).await
}

/// [`produce`] for a frame a device may miss (status, carbon, receipt, typing): the places
/// may come from the route cache ([`RouteTable::lookup_recent`]).
///
/// [`RouteTable::lookup_recent`]: crate::backend::routes::RouteTable::lookup_recent
pub async fn produce_best_effort(shard: &Shard, user: &str, env: Arc<Envelope>) -> Produced {
    let lookup = shard.routes.lookup_recent(user).await;
    produce_to(shard, lookup, env).await
}

async fn produce_to(
    shard: &Shard,
    lookup: Result<Vec<crate::backend::Location>, crate::backend::routes::RouteError>,
    env: Arc<Envelope>,
) -> Produced {
    let locations = match lookup {
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
