//! The server API's reads in the embedded store: a conversation's history (migration 0008's
//! index) and a user's conversations with unread counts. Its last-seen read is with the
//! other presence reads, in `presence.rs`.

use rusqlite::{params, Connection, OptionalExtension};

use crate::backend::store::{ConversationSummary, PendingMessage, StoreError};
use crate::protocol::direct_conversation_members;
use crate::protocol::group::is_group_id;

/// See [`MessageStore::conversation`](crate::backend::store::MessageStore::conversation).
/// An id that is neither a direct conversation nor a group has no messages.
pub(super) fn history(
    conn: &Connection,
    conversation: &str,
    before: i64,
    limit: usize,
) -> Result<Vec<PendingMessage>, StoreError> {
    let limit = limit as i64;
    let rows = if is_group_id(conversation) {
        let mut q = conn.prepare_cached(
            "SELECT cseq, cseq, id, sender_id, group_id, payload, created_at, status, 1 + event
             FROM group_messages WHERE group_id = ?1 AND cseq < ?2
             ORDER BY cseq DESC LIMIT ?3",
        )?;
        let rows = q.query_map(params![conversation, before, limit], super::pending_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    } else if let Some((a, b)) = direct_conversation_members(conversation) {
        // The two directions, each newest first from its own index range; a conversation
        // with oneself is one direction.
        let mut q = conn.prepare_cached(
            "SELECT * FROM (
                 SELECT * FROM (SELECT cseq AS pos, cseq, id, sender_id, reciever_id, payload,
                         created_at, status, 0 FROM messages
                     WHERE sender_id = ?1 AND reciever_id = ?2 AND cseq < ?3
                     ORDER BY cseq DESC LIMIT ?4)
                 UNION ALL
                 SELECT * FROM (SELECT cseq AS pos, cseq, id, sender_id, reciever_id, payload,
                         created_at, status, 0 FROM messages
                     WHERE sender_id = ?2 AND reciever_id = ?1 AND ?1 <> ?2 AND cseq < ?3
                     ORDER BY cseq DESC LIMIT ?4))
             ORDER BY 1 DESC LIMIT ?4",
        )?;
        let rows = q.query_map(params![a, b, before, limit], super::pending_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    Ok(rows)
}

/// See [`MessageStore::conversations_of`](crate::backend::store::MessageStore::conversations_of).
pub(super) fn of_user(
    conn: &Connection,
    user: &str,
    limit: usize,
) -> Result<Vec<ConversationSummary>, StoreError> {
    let mut out = direct_of(conn, user)?;
    out.extend(groups_of(conn, user)?);
    ConversationSummary::sort_and_cut(&mut out, limit);
    Ok(out)
}

fn direct_of(conn: &Connection, user: &str) -> Result<Vec<ConversationSummary>, StoreError> {
    let mut peers = conn.prepare_cached(
        "SELECT sender_id FROM messages WHERE reciever_id = ?1
         UNION SELECT reciever_id FROM messages WHERE sender_id = ?1",
    )?;
    let peers = peers.query_map([user], |r| r.get::<_, String>(0))?;
    static ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {},
                    COALESCE((SELECT seq FROM reads WHERE user_id = ?1 AND conversation_id = ?3), 0)",
            super::counters::direct_last_sql("?3", "?1", "?2")
        )
    });
    let mut one = conn.prepare_cached(&ONE)?;
    let mut unread = conn.prepare_cached(
        "SELECT count(*) FROM messages
         WHERE sender_id = ?2 AND reciever_id = ?1 AND ?1 <> ?2 AND cseq > ?3",
    )?;
    let mut last_at = conn.prepare_cached(
        "SELECT max(created_at) FROM (
             SELECT created_at FROM messages WHERE sender_id = ?1 AND reciever_id = ?2 AND cseq = ?3
             UNION ALL
             SELECT created_at FROM messages WHERE sender_id = ?2 AND reciever_id = ?1 AND cseq = ?3)",
    )?;
    let mut out = Vec::new();
    for peer in peers {
        let peer = peer?;
        let id = crate::protocol::direct_conversation_id(user, &peer);
        let (last_seq, read_seq): (i64, i64) =
            one.query_row(params![user, peer, id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        out.push(ConversationSummary {
            unread: unread.query_row(params![user, peer, read_seq], |r| r.get(0))?,
            last_at: last_at.query_row(params![user, peer, last_seq], |r| r.get(0))?,
            conversation_id: id,
            last_seq,
            read_seq,
        });
    }
    Ok(out)
}

fn groups_of(conn: &Connection, user: &str) -> Result<Vec<ConversationSummary>, StoreError> {
    let mut groups = conn.prepare_cached(
        "SELECT m.group_id, m.joined_seq,
                COALESCE((SELECT last FROM counters WHERE kind = 2 AND id = m.group_id), 0),
                COALESCE((SELECT seq FROM reads
                          WHERE user_id = ?1 AND conversation_id = m.group_id), 0)
         FROM members m WHERE m.user_id = ?1",
    )?;
    let rows = groups.query_map([user], |r| {
        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    let mut unread = conn.prepare_cached(
        "SELECT count(*) FROM group_messages
         WHERE group_id = ?1 AND cseq > ?2 AND event = 0 AND sender_id <> ?3",
    )?;
    let mut last_at = conn.prepare_cached(
        "SELECT created_at FROM group_messages WHERE group_id = ?1 AND cseq = ?2",
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (group, joined, last_seq, read_seq): (String, i64, i64, i64) = row?;
        out.push(ConversationSummary {
            unread: unread.query_row(params![group, read_seq.max(joined), user], |r| r.get(0))?,
            last_at: (last_at.query_row(params![group, last_seq], |r| r.get(0))).optional()?,
            conversation_id: group,
            last_seq,
            read_seq,
        });
    }
    Ok(out)
}
