//! One group commit as one transaction, with set-based statements: the round trips of a batch
//! do not grow with its size. Results match [`SqliteStore`](super::super::SqliteStore)'s, which
//! applies the same batch row by row, index for index.

use std::collections::HashMap;
use std::time::SystemTime;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement, Transaction};

use super::{parse_status, to_time, Session};
use crate::backend::store::{
    InsertResult, NewMessage, StatusChange, StatusUpdate, StoreError, UpdateResult,
};
use crate::protocol::Status;

/// Inserts a batch and hands out each row's `rseq` from its recipient's counter. The counter
/// rows are locked in recipient order (so two pods with overlapping recipients wait for each
/// other instead of deadlocking) and stay locked until COMMIT: for one recipient, a larger
/// `rseq` can therefore never become visible before a smaller one, which is all replay needs
/// (see migrations/postgres/0002). Different recipients never wait for each other.
///
/// `ON CONFLICT DO NOTHING` covers both unique keys: a resent `client_msg_id` (a duplicate)
/// and an `id` already stored, which is this very batch committed by an earlier attempt whose
/// COMMIT reply was lost; [`commit`] tells them apart afterwards. A skipped row leaves a gap
/// in its recipient's counter, which replay does not mind.
pub(super) const INSERT_SQL: &str = "WITH u AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::timestamptz[])
              WITH ORDINALITY AS u(id, sender_id, reciever_id, client_msg_id, payload,
                                   created_at, ord)),
     counts AS (SELECT reciever_id, count(*) AS n FROM u GROUP BY reciever_id),
     bumped AS (
         INSERT INTO recipients AS r (user_id, last_seq)
         SELECT reciever_id, n FROM counts ORDER BY reciever_id
         ON CONFLICT (user_id) DO UPDATE SET last_seq = r.last_seq + EXCLUDED.last_seq
         RETURNING user_id, last_seq)
     INSERT INTO messages
         (id, sender_id, reciever_id, client_msg_id, payload, created_at, rseq)
     SELECT u.id, u.sender_id, u.reciever_id, u.client_msg_id, u.payload, u.created_at,
            b.last_seq - c.n + row_number() OVER (PARTITION BY u.reciever_id ORDER BY u.ord)
     FROM u JOIN counts c USING (reciever_id) JOIN bumped b ON b.user_id = u.reciever_id
     ORDER BY u.ord
     ON CONFLICT DO NOTHING
     RETURNING id, rseq";

/// Rows of the batch already stored under their own id: an earlier attempt committed them.
const STORED_SQL: &str = "SELECT u.ord, m.rseq
     FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord) JOIN messages m USING (id)";

/// The first message of each duplicate's `(sender_id, client_msg_id)`.
const ORIGINALS_SQL: &str = "SELECT u.ord, m.id, m.status
     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(sender_id, client_msg_id, ord)
     JOIN messages m USING (sender_id, client_msg_id)";

/// Forward-only moves: SENT only from NONE, DELIVERED from anything below it (keeping the
/// first `sent_at`). An ack (recipient set) applies only to a message addressed to them.
const UPDATE_SQL: &str = "UPDATE messages m SET
         status = u.status,
         sent_at = CASE WHEN u.status = 'SENT' THEN u.at ELSE COALESCE(m.sent_at, u.at) END,
         delivered_at = CASE WHEN u.status = 'DELIVERED' THEN u.at ELSE m.delivered_at END
     FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
          WITH ORDINALITY AS u(id, status, recipient, at, ord)
     WHERE m.id = u.id
       AND (u.recipient IS NULL OR m.reciever_id = u.recipient)
       AND CASE u.status WHEN 'SENT' THEN m.status = 'NONE' ELSE m.status <> 'DELIVERED' END
     RETURNING u.ord, m.sender_id, m.reciever_id";

/// Which refused acks name the message's real recipient (then they are merely `Unchanged`).
const ADDRESSED_SQL: &str = "SELECT u.ord
     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(id, recipient, ord)
     WHERE EXISTS (SELECT 1 FROM messages m WHERE m.id = u.id AND m.reciever_id = u.recipient)";

pub(super) struct Statements {
    insert: Statement,
    stored: Statement,
    originals: Statement,
    update: Statement,
    addressed: Statement,
}

impl Statements {
    pub(super) async fn prepare(c: &Client) -> Result<Statements, tokio_postgres::Error> {
        let (insert, stored, originals, update, addressed) = futures::try_join!(
            c.prepare(INSERT_SQL),
            c.prepare(STORED_SQL),
            c.prepare(ORIGINALS_SQL),
            c.prepare(UPDATE_SQL),
            c.prepare(ADDRESSED_SQL),
        )?;
        Ok(Statements {
            insert,
            stored,
            originals,
            update,
            addressed,
        })
    }
}

/// Inserts, then updates, in one transaction; results index for index.
pub(super) async fn commit(
    s: &mut Session,
    inserts: &[NewMessage],
    updates: &[StatusUpdate],
) -> Result<(Vec<InsertResult>, Vec<UpdateResult>), StoreError> {
    let st = &s.st.batch;
    let tx = s.client.transaction().await?;
    let ins = match inserts {
        [] => Vec::new(),
        _ => insert_all(&tx, st, inserts).await?,
    };
    let mut ups = vec![UpdateResult::Unchanged; updates.len()];
    for round in rounds(updates) {
        apply_round(&tx, st, updates, &round, &mut ups).await?;
    }
    refuse_strangers(&tx, st, updates, &mut ups).await?;
    let changes: Vec<&StatusChange> = (ups.iter())
        .filter_map(|u| match u {
            UpdateResult::Changed(c) => Some(c),
            _ => None,
        })
        .collect();
    super::outbox::record(&tx, &changes).await?;
    tx.commit().await?;
    Ok((ins, ups))
}

async fn insert_all(
    tx: &Transaction<'_>,
    st: &Statements,
    ms: &[NewMessage],
) -> Result<Vec<InsertResult>, StoreError> {
    let text = |f: fn(&NewMessage) -> &str| ms.iter().map(f).collect::<Vec<_>>();
    let (ids, senders) = (text(|m| &m.id), text(|m| &m.sender_id));
    let (recipients, payloads) = (text(|m| &m.reciever_id), text(|m| &m.payload));
    let cmids: Vec<Option<&str>> = ms.iter().map(|m| m.client_msg_id.as_deref()).collect();
    let created: Vec<SystemTime> = ms.iter().map(|m| to_time(m.created_at)).collect();
    let columns: [&(dyn ToSql + Sync); 6] =
        [&ids, &senders, &recipients, &cmids, &payloads, &created];
    let rows = tx.query(&st.insert, &columns).await?;
    let mut seqs = HashMap::with_capacity(rows.len());
    for row in &rows {
        seqs.insert(row.try_get::<_, &str>(0)?, row.try_get::<_, i64>(1)?);
    }
    // The first occurrence of an id is the row inserted; any other one is a duplicate.
    let mut results: Vec<Option<InsertResult>> = ms
        .iter()
        .map(|m| seqs.remove(m.id.as_str()))
        .map(|seq| seq.map(|seq| InsertResult::Inserted { seq }))
        .collect();
    find_stored(tx, st, ms, &mut results).await?;
    find_originals(tx, st, ms, &mut results).await?;
    let lost = |(m, r): (&NewMessage, Option<InsertResult>)| {
        r.ok_or_else(|| StoreError::Corrupt(format!("{} neither stored nor a duplicate", m.id)))
    };
    ms.iter().zip(results).map(lost).collect()
}

/// Fills in the rows an earlier attempt of this batch stored (an ambiguous commit): they are
/// answered as inserted, with the `rseq` they got then, so the sender hears `accepted` once
/// for a message stored once.
async fn find_stored(
    tx: &Transaction<'_>,
    st: &Statements,
    ms: &[NewMessage],
    results: &mut [Option<InsertResult>],
) -> Result<(), StoreError> {
    let missing: Vec<usize> = (0..ms.len()).filter(|&i| results[i].is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = missing.iter().map(|&i| ms[i].id.as_str()).collect();
    for row in tx.query(&st.stored, &[&ids]).await? {
        let seq = row.try_get(1)?;
        results[missing[ord(&row, missing.len())?]] = Some(InsertResult::Inserted { seq });
    }
    Ok(())
}

/// Fills in each duplicate (a `None` in `results`) with what its first message is now.
async fn find_originals(
    tx: &Transaction<'_>,
    st: &Statements,
    ms: &[NewMessage],
    results: &mut [Option<InsertResult>],
) -> Result<(), StoreError> {
    let dups: Vec<usize> = (0..ms.len()).filter(|&i| results[i].is_none()).collect();
    if dups.is_empty() {
        return Ok(());
    }
    let senders: Vec<&str> = dups.iter().map(|&i| ms[i].sender_id.as_str()).collect();
    let cmids: Vec<Option<&str>> = dups
        .iter()
        .map(|&i| ms[i].client_msg_id.as_deref())
        .collect();
    for row in tx.query(&st.originals, &[&senders, &cmids]).await? {
        results[dups[ord(&row, dups.len())?]] = Some(InsertResult::Duplicate {
            id: row.try_get(1)?,
            status: parse_status(row.try_get(2)?)?,
        });
    }
    Ok(())
}

/// Splits the updates into rounds in which each id appears at most once (Postgres updates a
/// row at most once per statement): round k holds the k-th update of every id. Updates of
/// different ids touch different rows, so only the order within one id matters, and rounds
/// keep it. Moves to NONE change nothing and are left out.
///
/// Each round is sorted by id, so a round takes its row locks in id order and two pods
/// updating the same messages wait for each other instead of deadlocking. (A later round can
/// still lock a row the first one skipped; Postgres detects that rare deadlock, the batch
/// fails, and the writer retries it.)
fn rounds(updates: &[StatusUpdate]) -> Vec<Vec<usize>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, u) in updates.iter().enumerate() {
        if u.status == Status::None {
            continue;
        }
        let k = seen.entry(u.id.as_str()).or_insert(0);
        if *k == rounds.len() {
            rounds.push(Vec::new());
        }
        rounds[*k].push(i);
        *k += 1;
    }
    for round in &mut rounds {
        round.sort_unstable_by(|&a, &b| updates[a].id.cmp(&updates[b].id));
    }
    rounds
}

async fn apply_round(
    tx: &Transaction<'_>,
    st: &Statements,
    updates: &[StatusUpdate],
    round: &[usize],
    results: &mut [UpdateResult],
) -> Result<(), StoreError> {
    let ids: Vec<&str> = round.iter().map(|&i| updates[i].id.as_str()).collect();
    let statuses: Vec<&str> = round.iter().map(|&i| updates[i].status.as_str()).collect();
    let recipients: Vec<Option<&str>> = round
        .iter()
        .map(|&i| updates[i].recipient.as_deref())
        .collect();
    let ats: Vec<SystemTime> = round.iter().map(|&i| to_time(updates[i].at)).collect();
    let params: [&(dyn ToSql + Sync); 4] = [&ids, &statuses, &recipients, &ats];
    for row in tx.query(&st.update, &params).await? {
        let i = round[ord(&row, round.len())?];
        let u = &updates[i];
        results[i] = UpdateResult::Changed(StatusChange {
            id: u.id.clone(),
            status: u.status,
            sender_id: row.try_get(1)?,
            reciever_id: row.try_get(2)?,
            at: u.at,
        });
    }
    Ok(())
}

/// Acks that changed nothing are `NotRecipient` unless the message exists and is addressed to
/// the acking user. Whether it is never changes within a batch, so one query checks them all.
async fn refuse_strangers(
    tx: &Transaction<'_>,
    st: &Statements,
    updates: &[StatusUpdate],
    results: &mut [UpdateResult],
) -> Result<(), StoreError> {
    let acks: Vec<usize> = (0..updates.len())
        .filter(|&i| results[i] == UpdateResult::Unchanged && updates[i].status != Status::None)
        .filter(|&i| updates[i].recipient.is_some())
        .collect();
    if acks.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = acks.iter().map(|&i| updates[i].id.as_str()).collect();
    let recipients: Vec<Option<&str>> = acks
        .iter()
        .map(|&i| updates[i].recipient.as_deref())
        .collect();
    let mut addressed = vec![false; acks.len()];
    for row in tx.query(&st.addressed, &[&ids, &recipients]).await? {
        addressed[ord(&row, acks.len())?] = true;
    }
    for (&i, ok) in acks.iter().zip(addressed) {
        if !ok {
            results[i] = UpdateResult::NotRecipient;
        }
    }
    Ok(())
}

/// The 0-based position from a `WITH ORDINALITY` column 0 (1-based), checked against `len`.
fn ord(row: &Row, len: usize) -> Result<usize, StoreError> {
    let n: i64 = row.try_get(0)?;
    usize::try_from(n - 1)
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| StoreError::Corrupt(format!("ordinality {n} out of 1..={len}")))
}
