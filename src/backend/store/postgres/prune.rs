//! Retention on Postgres: one window of the table per call, in one transaction, and the
//! oldest group rows every member has. Locks are
//! taken in the inserting batches' order (the streams' counters in (kind, id) order, then
//! message rows), so a prune and a batch wait for each other instead of deadlocking.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tokio_postgres::Client;

use super::{to_micros, to_time};
use crate::backend::store::{PruneRound, StoreError};

const WINDOW_SQL: &str = "SELECT max(seq), max(created_at) FROM
     (SELECT seq, created_at FROM messages WHERE seq > $1 ORDER BY seq LIMIT $2) w";

/// The counters of every stream the delete may touch, locked in order.
const LOCK_SQL: &str = "SELECT 1 FROM counters WHERE kind = 1 AND id IN (
         SELECT sender_id FROM messages
         WHERE seq > $1 AND seq <= $2 AND status = 'DELIVERED' AND created_at < $3
         UNION
         SELECT reciever_id FROM messages
         WHERE seq > $1 AND seq <= $2 AND status = 'DELIVERED' AND created_at < $3)
     ORDER BY kind, id FOR UPDATE";

const DELETE_SQL: &str = "DELETE FROM messages
     WHERE seq > $1 AND seq <= $2 AND status = 'DELIVERED' AND created_at < $3
     RETURNING sender_id, reciever_id, spos, rpos";

const MARK_SQL: &str = "UPDATE counters c SET pruned = GREATEST(c.pruned, u.through)
     FROM unnest($1::text[], $2::int8[]) AS u(id, through)
     WHERE c.kind = 1 AND c.id = u.id";

pub(super) async fn prune(
    client: &mut Client,
    before: i64,
    after_seq: i64,
    window: usize,
) -> Result<PruneRound, StoreError> {
    let window = i64::try_from(window).unwrap_or(i64::MAX);
    let tx = client.transaction().await?;
    let groups = prune_groups(&tx, before, window).await?;
    let row = tx.query_one(WINDOW_SQL, &[&after_seq, &window]).await?;
    let (through, newest): (Option<i64>, Option<SystemTime>) = (row.try_get(0)?, row.try_get(1)?);
    let Some(through) = through else {
        tx.commit().await?;
        return Ok(PruneRound {
            deleted: groups,
            ..PruneRound::default()
        });
    };
    let cutoff = to_time(before);
    let range: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&after_seq, &through, &cutoff];
    tx.query(LOCK_SQL, &range).await?;
    let gone = tx.query(DELETE_SQL, &range).await?;
    let mut marks: BTreeMap<String, i64> = BTreeMap::new();
    for r in &gone {
        for (user, pos) in [
            (r.try_get(0)?, r.try_get(2)?),
            (r.try_get(1)?, r.try_get(3)?),
        ] {
            let slot = marks.entry(user).or_insert(0);
            *slot = (*slot).max(pos);
        }
    }
    let (ids, throughs): (Vec<String>, Vec<i64>) = marks.into_iter().unzip();
    tx.execute(MARK_SQL, &[&ids, &throughs]).await?;
    tx.commit().await?;
    let newest = newest.map(to_micros).transpose()?;
    Ok(PruneRound {
        deleted: gone.len() + groups,
        scanned_through: Some(through),
        reached_recent: newest.is_some_and(|t| t >= before),
    })
}

/// The oldest group rows every member has (up to `window`), older than `before`: their
/// members' stream counters are locked in (kind, id) order first, as every inserting
/// transaction takes them, then the rows go and the streams are marked pruned.
async fn prune_groups(
    tx: &tokio_postgres::Transaction<'_>,
    before: i64,
    window: i64,
) -> Result<usize, StoreError> {
    let due = "SELECT id FROM group_messages WHERE status = 'DELIVERED' AND created_at < $1
               ORDER BY created_at LIMIT $2";
    let ids: Vec<String> = (tx.query(due, &[&to_time(before), &window]).await?.iter())
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let lock = "SELECT 1 FROM counters WHERE kind = 1 AND id IN (
                    SELECT user_id FROM deliveries WHERE message_id = ANY($1))
                ORDER BY kind, id FOR UPDATE";
    tx.query(lock, &[&ids]).await?;
    let gone = "DELETE FROM deliveries WHERE message_id = ANY($1) RETURNING user_id, pos";
    let mut marks: BTreeMap<String, i64> = BTreeMap::new();
    for r in tx.query(gone, &[&ids]).await? {
        let slot = marks.entry(r.try_get(0)?).or_insert(0);
        *slot = (*slot).max(r.try_get(1)?);
    }
    tx.execute("DELETE FROM group_messages WHERE id = ANY($1)", &[&ids])
        .await?;
    let (users, throughs): (Vec<String>, Vec<i64>) = marks.into_iter().unzip();
    tx.execute(MARK_SQL, &[&users, &throughs]).await?;
    Ok(ids.len())
}
