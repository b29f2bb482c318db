//! v2 presence: who of a set of users is online, and when the others were last seen,
//! visible only to users who share a conversation with them (`docs/PROTOCOL.md`, "Presence").
//!
//! Online is the route table's answer, not a stored flag: a user is online while some pod
//! holds a live route of theirs, so a pod that dies takes its users offline within its route
//! lease (distributed mode) without anyone writing anything. What is stored is the last time
//! a connection of the user opened or closed, recorded once per store batch for every user
//! seen in it: the cost of a connect or a disconnect is one queued command and one upsert.

use std::rc::Rc;

use futures::channel::oneshot;

use crate::backend::store::StoreCmd;
use crate::protocol::{encode_presence, now_micros, rfc3339_micros};
use crate::protocol::{ErrorCode, PresenceView};
use crate::shard::Shard;

use super::submit::{answer_later, ask_store};

/// A connection of `user` opened or closed now. Best effort and never waits: a full store
/// queue drops it (the next open or close records the user again).
pub fn seen(shard: &Shard, user: &str) {
    let cmd = StoreCmd::Seen {
        user: user.to_owned(),
        at: now_micros(),
    };
    let _ = shard.pod.store.try_submit(cmd);
}

/// Answers a presence frame of connection `conn` of `asker`, in its own task.
pub fn on_presence(shard: &Rc<Shard>, conn: u64, asker: &str, users: Vec<String>) {
    let (s, asker) = (shard.clone(), asker.to_owned());
    answer_later(
        shard,
        conn,
        "presence unavailable; ask again later",
        async move { Ok(encode_presence(&answer(&s, &asker, users).await?)) },
    );
}

async fn answer(
    shard: &Shard,
    asker: &str,
    users: Vec<String>,
) -> Result<Vec<PresenceView>, ErrorCode> {
    let (reply, wait) = oneshot::channel();
    let asker = asker.to_owned();
    let cmd = StoreCmd::Presence {
        asker,
        users,
        reply,
    };
    let peers = ask_store(shard, cmd, wait).await?;
    let mut views = Vec::with_capacity(peers.len());
    for (user, last) in peers {
        let places = shard.routes.lookup(&user).await;
        let online = !places.map_err(|_| ErrorCode::StoreUnavailable)?.is_empty();
        views.push(PresenceView {
            user_id: user,
            online,
            last_seen: last.map(rfc3339_micros),
        });
    }
    Ok(views)
}
