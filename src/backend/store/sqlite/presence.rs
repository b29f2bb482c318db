//! Presence in the embedded store (migration 0006): last-seen times, and who may see them.

use rusqlite::{params, Connection, OptionalExtension};

use crate::backend::store::{LastSeen, StoreError};
use crate::protocol::direct_conversation_id;

/// See [`MessageStore::record_seen`](crate::backend::store::MessageStore::record_seen).
pub(super) fn record(conn: &mut Connection, seen: &[(String, i64)]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut q = tx.prepare_cached(
            "INSERT INTO presence (user_id, last_seen) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
        )?;
        for (user, at) in seen {
            q.execute(params![user, at])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// See [`MessageStore::peers_seen`](crate::backend::store::MessageStore::peers_seen): a
/// direct conversation exists once it has a message (a row either way, or the counter row
/// retention or an older database left); a shared group is two member rows of one group.
pub(super) fn peers(
    conn: &Connection,
    asker: &str,
    users: &[String],
) -> Result<Vec<(String, Option<i64>)>, StoreError> {
    let mut q = conn.prepare_cached(
        "SELECT ?2 = ?1
             OR EXISTS (SELECT 1 FROM messages WHERE sender_id = ?1 AND reciever_id = ?2)
             OR EXISTS (SELECT 1 FROM messages WHERE sender_id = ?2 AND reciever_id = ?1)
             OR EXISTS (SELECT 1 FROM counters WHERE kind = 2 AND id = ?3)
             OR EXISTS (SELECT 1 FROM members a JOIN members b
                        ON b.group_id = a.group_id AND b.user_id = ?2 WHERE a.user_id = ?1),
         (SELECT last_seen FROM presence WHERE user_id = ?2)",
    )?;
    let mut out = Vec::new();
    for user in users {
        let dm = direct_conversation_id(asker, user);
        let (shared, seen): (bool, Option<i64>) =
            q.query_row(params![asker, user, dm], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if shared {
            out.push((user.clone(), seen));
        }
    }
    Ok(out)
}

/// See [`MessageStore::last_seen`](crate::backend::store::MessageStore::last_seen).
pub(super) fn last_seen(conn: &Connection, users: &[String]) -> Result<Vec<LastSeen>, StoreError> {
    let mut q = conn.prepare_cached("SELECT last_seen FROM presence WHERE user_id = ?1")?;
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let seen: Option<i64> = q.query_row([user], |r| r.get(0)).optional()?;
        out.push((user.clone(), seen));
    }
    Ok(out)
}
