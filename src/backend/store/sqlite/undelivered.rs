//! The undelivered sweep on SQLite: one pod, one writer, so `seq` order is commit order and
//! the mark never passes a row that commits later.

use rusqlite::{params, Connection, OptionalExtension};

use super::row::{IdText, StoredStatus};
use crate::backend::store::{StoreError, Undelivered, UndeliveredRound};
use crate::protocol::Status;

const MARK: &str = "undelivered";

pub(super) fn sweep(
    conn: &mut Connection,
    before: i64,
    limit: usize,
) -> Result<UndeliveredRound, StoreError> {
    let tx = conn.transaction()?;
    let mark: Option<i64> = tx
        .query_row("SELECT seq FROM marks WHERE name = ?1", [MARK], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(mark) = mark else {
        tx.execute(
            "INSERT INTO marks (name, seq)
             SELECT ?1, coalesce(max(seq), 0) FROM messages WHERE created_at < ?2",
            params![MARK, before],
        )?;
        tx.commit()?;
        return Ok(UndeliveredRound::default());
    };
    let (found, looked_at, through) = {
        let mut st = tx.prepare_cached(
            "SELECT seq, id, sender_id, reciever_id, status, created_at FROM messages
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let mut rows = st.query(params![mark, limit as i64])?;
        let (mut out, mut looked_at, mut through) = (Vec::new(), 0, mark);
        while let Some(r) = rows.next()? {
            let created_at: i64 = r.get(5)?;
            if created_at >= before {
                break;
            }
            looked_at += 1;
            through = r.get(0)?;
            let StoredStatus(status) = r.get(4)?;
            if status < Status::Delivered {
                let IdText(id) = r.get(1)?;
                let (sender_id, reciever_id) = (r.get(2)?, r.get(3)?);
                out.push(Undelivered {
                    id,
                    sender_id,
                    reciever_id,
                    status,
                    created_at,
                });
            }
        }
        (out, looked_at, through)
    };
    if through != mark {
        // An idle round writes nothing: no WAL frame and no fsync, four times a second.
        tx.execute(
            "UPDATE marks SET seq = ?2 WHERE name = ?1",
            params![MARK, through],
        )?;
    }
    tx.commit()?;
    Ok(UndeliveredRound { found, looked_at })
}
