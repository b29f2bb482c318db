//! Presence in the distributed store (migration 0007), as `sqlite/presence.rs` answers it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tokio_postgres::Client;

use super::{to_micros, to_time};
use crate::backend::store::{LastSeen, StoreError};
use crate::protocol::direct_conversation_id;

/// One statement; users in key order (two pods recording the same users lock their rows in
/// one order), each once (a statement may update a row only once).
pub(super) async fn record(c: &Client, seen: &[(String, i64)]) -> Result<(), StoreError> {
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for (user, at) in seen {
        let slot = latest.entry(user.as_str()).or_insert(*at);
        *slot = (*slot).max(*at);
    }
    let users: Vec<&str> = latest.keys().copied().collect();
    let ats: Vec<SystemTime> = latest.values().map(|&at| to_time(at)).collect();
    let sql = "INSERT INTO presence AS p (user_id, last_seen)
               SELECT * FROM unnest($1::text[], $2::timestamptz[])
               ON CONFLICT (user_id)
               DO UPDATE SET last_seen = GREATEST(p.last_seen, EXCLUDED.last_seen)";
    c.execute(sql, &[&users, &ats]).await?;
    Ok(())
}

pub(super) async fn peers(
    c: &Client,
    asker: &str,
    users: &[String],
) -> Result<Vec<(String, Option<i64>)>, StoreError> {
    let dms: Vec<String> = users
        .iter()
        .map(|u| direct_conversation_id(asker, u))
        .collect();
    let sql = "SELECT u.id, p.last_seen
               FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(id, dm, ord)
               LEFT JOIN presence p ON p.user_id = u.id
               WHERE u.id = $1
                  OR EXISTS (SELECT 1 FROM counters c WHERE c.kind = 2 AND c.id = u.dm)
                  OR EXISTS (SELECT 1 FROM members a JOIN members b
                             ON b.group_id = a.group_id AND b.user_id = u.id
                             WHERE a.user_id = $1)
               ORDER BY u.ord";
    let rows = c.query(sql, &[&asker, &users, &dms]).await?;
    let row = |r: &tokio_postgres::Row| -> Result<(String, Option<i64>), StoreError> {
        let seen: Option<SystemTime> = r.try_get(1)?;
        Ok((r.try_get(0)?, seen.map(to_micros).transpose()?))
    };
    rows.iter().map(row).collect()
}

/// See [`MessageStore::last_seen`](crate::backend::store::MessageStore::last_seen).
pub(super) async fn last_seen(c: &Client, users: &[String]) -> Result<Vec<LastSeen>, StoreError> {
    let sql = "SELECT u.id, p.last_seen
               FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)
               LEFT JOIN presence p ON p.user_id = u.id ORDER BY u.ord";
    let rows = c.query(sql, &[&users]).await?;
    let row = |r: &tokio_postgres::Row| -> Result<LastSeen, StoreError> {
        let seen: Option<SystemTime> = r.try_get(1)?;
        Ok((r.try_get(0)?, seen.map(to_micros).transpose()?))
    };
    rows.iter().map(row).collect()
}
