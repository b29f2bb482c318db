//! The server API's reads (history, conversations, presence) and its disconnect: questions
//! to the store thread ([`StoreCmd::Query`]) and the route table, and an order to every shard.

use futures::channel::oneshot;
use serde_json::{json, Value};

use super::reply::{status_of, Reply};
use crate::backend::store::MAX_CONVERSATIONS;
use crate::backend::store::{MessageStore, PendingMessage, RowKind, StoreCmd, StoreError};
use crate::flow::submit::ask_store;
use crate::protocol::group::is_group_id;
use crate::protocol::{direct_conversation_members, encode_presence, rfc3339_micros};
use crate::protocol::{valid_user_id, PresenceView};
use crate::shard::{Shard, ShardMsg};

/// Most messages in one page of history, and the default.
const MAX_PAGE: i64 = 200;
const DEFAULT_PAGE: i64 = 50;
/// Most users one presence request names (as the socket's presence frame).
const MAX_PRESENCE_USERS: usize = 256;

/// Runs `read` on the store thread, after everything queued before it.
async fn ask<T: Send + 'static>(
    shard: &Shard,
    read: impl FnOnce(&mut dyn MessageStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Reply> {
    let (tx, rx) = oneshot::channel();
    let cmd = StoreCmd::Query(Box::new(move |store: &mut dyn MessageStore| {
        let _ = tx.send(read(store).map_err(|e| e.to_string())); // The request may be gone.
    }));
    ask_store(shard, cmd, rx).await.map_err(|code| {
        let code = serde_json::to_value(code).unwrap_or_default();
        let code = code.as_str().unwrap_or("store_unavailable");
        Reply::error(
            status_of(code),
            code,
            "the store cannot answer now; retry later",
        )
    })
}

/// An integer query parameter within `range`, `default` when absent; `Err`: the 400.
fn int_param(
    value: Option<String>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<i64, Reply> {
    let Some(text) = value else {
        return Ok(default);
    };
    match text.parse::<i64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => {
            let (lo, hi) = (range.start(), range.end());
            let text = format!("{name} must be an integer from {lo} to {hi}");
            Err(Reply::error(400, "invalid_request", &text))
        }
    }
}

/// `GET /conversations/{id}/messages?before=&limit=`: newest first; `next_before` continues.
pub async fn history(shard: &Shard, id: &str, q: impl Fn(&str) -> Option<String>) -> Reply {
    if !is_group_id(id) && direct_conversation_members(id).is_none() {
        let text = "a conversation id is a group's (g:…) or a direct one's (dm:…)";
        return Reply::error(400, "invalid_conversation", text);
    }
    let page = int_param(q("before"), "before", 1..=i64::MAX, i64::MAX).and_then(|before| {
        Ok((
            before,
            int_param(q("limit"), "limit", 1..=MAX_PAGE, DEFAULT_PAGE)?,
        ))
    });
    let (before, limit) = match page {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    let conversation = id.to_owned();
    let rows = ask(shard, move |s| {
        s.conversation(&conversation, before, limit as usize)
    })
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(reply) => return reply,
    };
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|m| m.cseq))
        .flatten()
        .filter(|seq| *seq > 1);
    let messages: Vec<Value> = rows.iter().map(message_json).collect();
    let body = json!({"conversation_id": id, "messages": messages, "next_before": next});
    Reply::ok(200, &body)
}

fn message_json(m: &PendingMessage) -> Value {
    json!({
        "id": m.id,
        "kind": if m.kind == RowKind::GroupEvent { "event" } else { "message" },
        "sender_id": m.sender_id,
        "reciever_id": m.reciever_id,
        "seq": m.cseq,
        "payload": m.payload,
        "created_at": rfc3339_micros(m.created_at),
        "status": m.status.as_str(),
    })
}

/// `GET /users/{id}/conversations?limit=`: most recent first, with unread counts.
pub async fn conversations(shard: &Shard, user: &str, q: impl Fn(&str) -> Option<String>) -> Reply {
    if !valid_user_id(user) {
        return Reply::bad_user_id();
    }
    let max = MAX_CONVERSATIONS as i64;
    let limit = match int_param(q("limit"), "limit", 1..=max, 100) {
        Ok(l) => l as usize,
        Err(reply) => return reply,
    };
    let who = user.to_owned();
    let list = match ask(shard, move |s| s.conversations_of(&who, limit)).await {
        Ok(list) => list,
        Err(reply) => return reply,
    };
    let list: Vec<Value> = (list.iter())
        .map(|c| {
            json!({
                "conversation_id": c.conversation_id,
                "last_seq": c.last_seq,
                "read_seq": c.read_seq,
                "unread": c.unread,
                "last_at": c.last_at.map(rfc3339_micros),
            })
        })
        .collect();
    Reply::ok(200, &json!({"user_id": user, "conversations": list}))
}

/// `POST /presence`: online from the route table, last seen from the store.
pub async fn presence(shard: &Shard, users: Vec<String>) -> Reply {
    if users.is_empty()
        || users.len() > MAX_PRESENCE_USERS
        || !users.iter().all(|u| valid_user_id(u))
    {
        let text = format!("users: 1 to {MAX_PRESENCE_USERS} user ids");
        return Reply::error(400, "invalid_request", &text);
    }
    let asked = users.clone();
    let seen = match ask(shard, move |s| s.last_seen(&asked)).await {
        Ok(seen) => seen,
        Err(reply) => return reply,
    };
    let mut views = Vec::with_capacity(seen.len());
    for (user, last) in seen {
        let Ok(places) = shard.routes.lookup(&user).await else {
            return Reply::error(503, "unavailable", "the route table cannot answer now");
        };
        views.push(PresenceView {
            user_id: user,
            online: !places.is_empty(),
            last_seen: last.map(rfc3339_micros),
        });
    }
    Reply::from_frame(encode_presence(&views), 200)
}

/// `POST /users/{id}/disconnect`: closes the user's connections on every shard of this pod
/// with 4012; other pods holding some are named (`other_pods`), to be asked in turn.
pub async fn disconnect(shard: &Shard, user: &str) -> Reply {
    if !valid_user_id(user) {
        return Reply::bad_user_id();
    }
    let mut closed = 0;
    for inbox in shard.pod.mesh.iter() {
        let (done, count) = oneshot::channel();
        let msg = ShardMsg::Disconnect {
            user: user.to_owned(),
            done,
        };
        if inbox.send(msg).await.is_ok() {
            closed += count.await.unwrap_or(0);
        }
    }
    let here = &shard.settings().pod_id;
    let mut others: Vec<String> = match shard.routes.lookup(user).await {
        Ok(places) => (places.iter().filter(|l| l.pod != *here))
            .map(|l| l.pod.to_string())
            .collect(),
        Err(_) => Vec::new(),
    };
    others.sort();
    others.dedup();
    Reply::ok(
        200,
        &json!({"user_id": user, "closed": closed, "other_pods": others}),
    )
}
