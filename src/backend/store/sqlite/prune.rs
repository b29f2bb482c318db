//! Retention on SQLite: one window of the table per call, in one transaction, and the oldest
//! group rows every member has. The newest row
//! is never deleted, so the rowid (`seq`, without AUTOINCREMENT) is never handed out twice
//! (migration 0003's condition).

use rusqlite::{params, Connection};

use super::counters::{self, Deleted};
use crate::backend::store::{PruneRound, StoreError};

pub(super) fn prune(
    conn: &mut Connection,
    before: i64,
    after_seq: i64,
    window: usize,
) -> Result<PruneRound, StoreError> {
    let tx = conn.transaction()?;
    let mut deleted = Deleted::default();
    let groups = prune_groups(&tx, before, window, &mut deleted)?;
    let (through, newest): (Option<i64>, Option<i64>) = tx.query_row(
        "SELECT max(seq), max(created_at) FROM
             (SELECT seq, created_at FROM messages WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
        params![after_seq, window as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some(through) = through else {
        counters::mark_pruned(&tx, &deleted)?;
        tx.commit()?;
        return Ok(PruneRound {
            deleted: groups,
            ..PruneRound::default()
        });
    };
    let mut n = groups;
    {
        let mut del = tx.prepare_cached(
            "DELETE FROM messages
             WHERE seq > ?1 AND seq <= ?2 AND status = 2 AND created_at < ?3
               AND seq < (SELECT max(seq) FROM messages)
             RETURNING sender_id, reciever_id, spos, rpos, cseq",
        )?;
        let mut rows = del.query(params![after_seq, through, before])?;
        while let Some(r) = rows.next()? {
            n += 1;
            let (sender, recipient): (String, String) = (r.get(0)?, r.get(1)?);
            let conversation = crate::protocol::direct_conversation_id(&sender, &recipient);
            deleted.conversation(conversation, r.get(4)?);
            deleted.stream(sender, r.get(2)?);
            deleted.stream(recipient, r.get(3)?);
        }
    }
    counters::mark_pruned(&tx, &deleted)?;
    tx.commit()?;
    Ok(PruneRound {
        deleted: n,
        scanned_through: Some(through),
        reached_recent: newest.is_some_and(|t| t >= before),
    })
}

/// The oldest group messages and events (up to `window`) that every member has and that are
/// older than `before`, with their places in the members' streams, which are marked pruned.
/// Independent of the direct messages' window: group rows are few and found by age.
fn prune_groups(
    tx: &rusqlite::Transaction<'_>,
    before: i64,
    window: usize,
    deleted: &mut Deleted,
) -> Result<usize, StoreError> {
    let ids: Vec<String> = tx
        .prepare_cached(
            "SELECT id FROM group_messages WHERE status = 2 AND created_at < ?1
             ORDER BY created_at LIMIT ?2",
        )?
        .query_map(params![before, window as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut places =
        tx.prepare_cached("DELETE FROM deliveries WHERE message_id = ?1 RETURNING user_id, pos")?;
    let mut row = tx.prepare_cached("DELETE FROM group_messages WHERE id = ?1")?;
    for id in &ids {
        let mut rows = places.query([id])?;
        while let Some(r) = rows.next()? {
            deleted.stream(r.get(0)?, r.get(1)?);
        }
        row.execute([id])?;
    }
    Ok(ids.len())
}
