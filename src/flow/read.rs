//! v2 read receipts: "`user` has read this conversation up to `seq`". Stored (forward only,
//! never past the conversation's last message), then announced to every v2 device of both
//! members but the connection that sent it. Not on the message path: each receipt is its own
//! small store transaction, answered to a task so the connection's reader never waits for it.
//! A syncing device gets the stored receipts that concern it after its replay
//! ([`reads_for_sync`]).

use std::rc::Rc;

use futures::channel::oneshot;

use crate::backend::store::{ReadState, StoreCmd};
use crate::protocol::{direct_conversation_members, encode_read};
use crate::shard::Shard;

use super::submit::{submit, STATUS_PATIENCE};

/// Handles a decoded read frame of connection `conn` (membership was checked by the decoder).
pub async fn on_read(shard: &Rc<Shard>, conn: u64, user: &str, conversation: &str, seq: i64) {
    let Some((lo, hi)) = direct_conversation_members(conversation) else {
        return;
    };
    let peer = if lo == user { hi } else { lo };
    let (reply, wait) = oneshot::channel();
    let read = ReadState {
        conversation_id: conversation.to_owned(),
        user_id: user.to_owned(),
        seq,
    };
    let cmd = StoreCmd::Read {
        read,
        peer: peer.to_owned(),
        reply,
    };
    if submit(&shard.pod.store, cmd, STATUS_PATIENCE)
        .await
        .is_err()
    {
        super::submit::warn_dropped(shard, "read receipt");
        return; // A later receipt (they are cumulative) carries this one.
    }
    let (shard, user, conversation) = (shard.clone(), user.to_owned(), conversation.to_owned());
    glommio::spawn_local(async move {
        if let Ok(Ok(Some(seq))) = wait.await {
            announce(&shard, conn, &user, &conversation, seq).await;
        }
    })
    .detach();
}

async fn announce(shard: &Shard, conn: u64, reader: &str, conversation: &str, seq: i64) {
    let Some((lo, hi)) = direct_conversation_members(conversation) else {
        return;
    };
    let frame: tungstenite::Utf8Bytes = encode_read(conversation, reader, seq).into();
    let members = if lo == hi { vec![lo] } else { vec![lo, hi] };
    for member in members {
        let env = super::route::v2_envelope(shard, member, frame.clone(), conn);
        super::produce::produce_best_effort(shard, member, env).await;
    }
}

/// The stored receipts a connecting v2 device of `user` needs, as `read` frames.
pub async fn reads_for_sync(shard: &Shard, user: &str) -> Result<Vec<String>, String> {
    let (reply, wait) = oneshot::channel();
    let cmd = StoreCmd::ReadsOf {
        user: user.to_owned(),
        reply,
    };
    submit(&shard.pod.store, cmd, STATUS_PATIENCE)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let states = wait.await.map_err(|_| "store thread ended".to_string())??;
    let frame = |r: ReadState| encode_read(&r.conversation_id, &r.user_id, r.seq);
    Ok(states.into_iter().map(frame).collect())
}
