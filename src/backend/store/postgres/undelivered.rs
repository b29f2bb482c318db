//! The undelivered sweep on Postgres. The mark's row is locked `FOR UPDATE SKIP LOCKED`, so
//! with several pods one sweeps at a time and each row is looked at once. `seq` is handed out
//! before commit, so a row may commit after the sweep passed its `seq`; the sweep stops at
//! the first row younger than `before`, and a transaction is bounded by `statement_timeout`
//! (10 s), so only a message whose commit took longer than the configured delay can be
//! missed (docs/PROTOCOL.md, "Webhooks").

use std::time::SystemTime;

use tokio_postgres::Client;

use super::{parse_status, to_micros};
use crate::backend::store::{StoreError, Undelivered, UndeliveredRound};
use crate::protocol::Status;

const MARK: &str = "undelivered";

const LOCK_SQL: &str = "SELECT seq FROM marks WHERE name = $1 FOR UPDATE SKIP LOCKED";
const START_SQL: &str = "INSERT INTO marks (name, seq) SELECT $1, coalesce(max(seq), 0)
     FROM messages WHERE created_at < $2 ON CONFLICT (name) DO NOTHING";
const ROWS_SQL: &str = "SELECT seq, id, sender_id, reciever_id, status, created_at
     FROM messages WHERE seq > $1 ORDER BY seq LIMIT $2";
const MOVE_SQL: &str = "UPDATE marks SET seq = $2 WHERE name = $1";

pub(super) async fn sweep(
    client: &mut Client,
    before: i64,
    limit: usize,
) -> Result<UndeliveredRound, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = client.transaction().await?;
    let Some(mark) = tx.query_opt(LOCK_SQL, &[&MARK]).await? else {
        // No mark yet (start it), or another pod holds it (nothing to do this round).
        tx.execute(START_SQL, &[&MARK, &super::to_time(before)])
            .await?;
        tx.commit().await?;
        return Ok(UndeliveredRound::default());
    };
    let mark: i64 = mark.try_get(0)?;
    let (mut found, mut looked_at, mut through) = (Vec::new(), 0, mark);
    for r in tx.query(ROWS_SQL, &[&mark, &limit]).await? {
        let created_at = to_micros(r.try_get::<_, SystemTime>(5)?)?;
        if created_at >= before {
            break;
        }
        looked_at += 1;
        through = r.try_get(0)?;
        let status = parse_status(r.try_get::<_, &str>(4)?)?;
        if status < Status::Delivered {
            found.push(Undelivered {
                id: r.try_get(1)?,
                sender_id: r.try_get(2)?,
                reciever_id: r.try_get(3)?,
                status,
                created_at,
            });
        }
    }
    if through != mark {
        tx.execute(MOVE_SQL, &[&MARK, &through]).await?;
    }
    tx.commit().await?;
    Ok(UndeliveredRound { found, looked_at })
}
