//! The server API's reads in the distributed store, as `sqlite/conversations.rs` answers
//! them: a conversation's history (migration 0009's index), a user's conversations with
//! unread counts (its last-seen read is in `presence.rs`).

use std::time::SystemTime;

use tokio_postgres::{Client, Row};

use super::{pending_row, to_micros};
use crate::backend::store::{ConversationSummary, PendingMessage, StoreError};
use crate::protocol::group::is_group_id;
use crate::protocol::{direct_conversation_id, direct_conversation_members};

const GROUP_SQL: &str = "SELECT cseq, cseq, id, sender_id, group_id, payload, created_at,
        status, 1 + event
     FROM group_messages WHERE group_id = $1 AND cseq < $2 ORDER BY cseq DESC LIMIT $3";
/// The two directions, each newest first from its own index range; a conversation with
/// oneself is one direction.
const DIRECT_SQL: &str = "SELECT * FROM (
         (SELECT cseq AS pos, cseq, id, sender_id, reciever_id, payload, created_at, status,
                 0 AS kind
          FROM messages WHERE sender_id = $1 AND reciever_id = $2 AND cseq < $3
          ORDER BY cseq DESC LIMIT $4)
         UNION ALL
         (SELECT cseq, cseq, id, sender_id, reciever_id, payload, created_at, status, 0
          FROM messages WHERE sender_id = $2 AND reciever_id = $1 AND $1 <> $2 AND cseq < $3
          ORDER BY cseq DESC LIMIT $4)) s
     ORDER BY pos DESC LIMIT $4";

/// See [`MessageStore::conversation`](crate::backend::store::MessageStore::conversation).
pub(super) async fn history(
    c: &Client,
    conversation: &str,
    before: i64,
    limit: usize,
) -> Result<Vec<PendingMessage>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = if is_group_id(conversation) {
        c.query(GROUP_SQL, &[&conversation, &before, &limit])
            .await?
    } else if let Some((a, b)) = direct_conversation_members(conversation) {
        c.query(DIRECT_SQL, &[&a, &b, &before, &limit]).await?
    } else {
        Vec::new()
    };
    rows.iter().map(pending_row).collect()
}

/// Per peer: the counter, the reader's receipt, the unread count (one index range) and when
/// the last row was created; peers come from the user's two stream indexes. Each row names
/// its conversation: without an ORDER BY the rows come in whatever order the plan makes.
const DIRECT_OF_SQL: &str = "SELECT p.conv, COALESCE(c.last, 0), COALESCE(r.seq, 0),
        (SELECT count(*) FROM messages m WHERE m.sender_id = p.peer AND m.reciever_id = $1
             AND p.peer <> $1 AND m.cseq > COALESCE(r.seq, 0)),
        (SELECT max(m.created_at) FROM messages m WHERE m.cseq = c.last
             AND ((m.sender_id = $1 AND m.reciever_id = p.peer)
               OR (m.sender_id = p.peer AND m.reciever_id = $1)))
     FROM unnest($2::text[], $3::text[]) AS p(peer, conv)
     LEFT JOIN counters c ON c.kind = 2 AND c.id = p.conv
     LEFT JOIN reads r ON r.user_id = $1 AND r.conversation_id = p.conv";
const PEERS_SQL: &str = "SELECT sender_id FROM messages WHERE reciever_id = $1
     UNION SELECT reciever_id FROM messages WHERE sender_id = $1";
const GROUPS_OF_SQL: &str = "SELECT m.group_id, COALESCE(c.last, 0), COALESCE(r.seq, 0),
        (SELECT count(*) FROM group_messages g WHERE g.group_id = m.group_id
             AND g.cseq > GREATEST(COALESCE(r.seq, 0), m.joined_seq) AND g.event = 0
             AND g.sender_id <> $1),
        (SELECT g.created_at FROM group_messages g
             WHERE g.group_id = m.group_id AND g.cseq = c.last)
     FROM members m
     LEFT JOIN counters c ON c.kind = 2 AND c.id = m.group_id
     LEFT JOIN reads r ON r.user_id = $1 AND r.conversation_id = m.group_id
     WHERE m.user_id = $1";

/// See [`MessageStore::conversations_of`](crate::backend::store::MessageStore::conversations_of).
pub(super) async fn of_user(
    c: &Client,
    user: &str,
    limit: usize,
) -> Result<Vec<ConversationSummary>, StoreError> {
    let peers: Vec<String> = (c.query(PEERS_SQL, &[&user]).await?.iter())
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let convs: Vec<String> = (peers.iter())
        .map(|p| direct_conversation_id(user, p))
        .collect();
    let direct = c.query(DIRECT_OF_SQL, &[&user, &peers, &convs]).await?;
    let mut out = Vec::with_capacity(direct.len());
    for row in direct {
        let conv: String = row.try_get(0)?;
        out.push(summary(&row, conv)?);
    }
    for row in c.query(GROUPS_OF_SQL, &[&user]).await? {
        let group: String = row.try_get(0)?;
        out.push(summary(&row, group)?);
    }
    ConversationSummary::sort_and_cut(&mut out, limit);
    Ok(out)
}

fn summary(r: &Row, conversation_id: String) -> Result<ConversationSummary, StoreError> {
    let last_at: Option<SystemTime> = r.try_get(4)?;
    Ok(ConversationSummary {
        conversation_id,
        last_seq: r.try_get(1)?,
        read_seq: r.try_get(2)?,
        unread: r.try_get(3)?,
        last_at: last_at.map(to_micros).transpose()?,
    })
}
