//! One group commit as one transaction, with set-based statements: the round trips of a batch
//! do not grow with its size. Results match [`SqliteStore`](super::super::SqliteStore)'s, which
//! applies the same batch row by row, index for index.

use std::collections::HashMap;
use std::time::SystemTime;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Row, Statement, Transaction};

use super::{parse_status, to_time, Session};
use crate::backend::store::{
    InsertResult, NewMessage, Original, Positions, StatusChange, StatusUpdate, StoreError,
    UpdateResult,
};

mod positions;
use crate::protocol::group::is_group_message_id;
use crate::protocol::Status;

/// The new rows, at the positions the batch computed. No `ON CONFLICT`: duplicates were
/// sorted out before, so a conflict here means another pod stored the same
/// `client_msg_id` meanwhile; the batch fails, and its retry answers it as a duplicate. Never
/// a hole in a stream.
pub(super) const INSERT_SQL: &str = "INSERT INTO messages
         (id, sender_id, reciever_id, client_msg_id, payload, created_at, rpos, spos, cseq)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                          $6::timestamptz[], $7::int8[], $8::int8[], $9::int8[])";

/// Rows of the batch already stored under their own id: an earlier attempt committed them.
const STORED_SQL: &str = "SELECT u.ord, m.rpos, m.spos, m.cseq
     FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord) JOIN messages m USING (id)";

/// The first message of each duplicate's `(sender_id, client_msg_id)`.
const ORIGINALS_SQL: &str = "SELECT u.ord, m.id, m.status, m.reciever_id, m.rpos, m.spos, m.cseq
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
    // Prepared on the session's connection; used by `insert_all` with a client or a transaction.
    bump: Statement,
    insert: Statement,
    stored: Statement,
    originals: Statement,
    update: Statement,
    addressed: Statement,
    /// The status outbox's insert: prepared like the rest, or every status batch would pay a
    /// Parse/Describe round trip and a plan for it.
    record: Statement,
}

impl Statements {
    pub(super) async fn prepare(c: &Client) -> Result<Statements, tokio_postgres::Error> {
        let (bump, insert, stored, originals, update, addressed, record) = futures::try_join!(
            c.prepare(super::BUMP_SQL),
            c.prepare(INSERT_SQL),
            c.prepare(STORED_SQL),
            c.prepare(ORIGINALS_SQL),
            c.prepare(UPDATE_SQL),
            c.prepare(ADDRESSED_SQL),
            c.prepare(super::outbox::RECORD_SQL),
        )?;
        Ok(Statements {
            bump,
            insert,
            stored,
            originals,
            update,
            addressed,
            record,
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
    // A group message's updates, one by one, in batch order (see `group::update`).
    for (i, u) in updates.iter().enumerate() {
        if is_group_message_id(&u.id) {
            ups[i] = super::group::update(&tx, u).await?;
        }
    }
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
    super::outbox::record(&tx, &st.record, &changes).await?;
    tx.commit().await?;
    Ok((ins, ups))
}

/// Bumps the batch's counters as if every row were new while finding what is already
/// stored (one pipelined round trip, the bump first, so the checks run under its locks), then
/// inserts: two round trips. When something was already stored, the bump is rolled back to
/// its savepoint and redone with the right counts (a third).
pub(super) async fn insert_all(
    tx: &impl GenericClient,
    st: &Statements,
    ms: &[NewMessage],
) -> Result<Vec<InsertResult>, StoreError> {
    let mut results: Vec<Option<InsertResult>> = vec![None; ms.len()];
    let mut plan = positions::Plan::new(ms, &mut results);
    let optimistic = plan.bump_arrays();
    let bump: [&(dyn ToSql + Sync); 3] = [&optimistic.0, &optimistic.1, &optimistic.2];
    // Polled in this order, so the savepoint and the bump are sent (and run) first.
    let ((), mut bumped, stored, originals) = futures::try_join!(
        async { Ok(tx.batch_execute("SAVEPOINT bump").await?) },
        async { Ok(tx.query(&st.bump, &bump).await?) },
        find_stored(tx, st, ms),
        find_originals(tx, st, ms),
    )?;
    if !(stored.is_empty() && originals.is_empty()) {
        results = vec![None; ms.len()];
        for (i, r) in stored.into_iter().chain(originals) {
            results[i].get_or_insert(r);
        }
        tx.batch_execute("ROLLBACK TO SAVEPOINT bump").await?;
        plan = positions::Plan::new(ms, &mut results);
        let (k, i, n) = plan.bump_arrays();
        bumped = match k.is_empty() {
            true => Vec::new(),
            false => tx.query(&st.bump, &[&k, &i, &n]).await?,
        };
    }
    let fresh = plan.assign(ms, &bumped, &mut results)?;
    positions::fill_in_batch_originals(ms, &mut results);
    let rows = positions::Columns::of(ms, &fresh);
    if fresh.iter().any(Option::is_some) {
        tx.execute(&st.insert, &rows.params()).await?;
    }
    let lost = |(m, r): (&NewMessage, Option<InsertResult>)| {
        r.ok_or_else(|| StoreError::Corrupt(format!("{} neither stored nor a duplicate", m.id)))
    };
    ms.iter().zip(results).map(lost).collect()
}

/// Fills in the rows an earlier attempt of this batch stored (an ambiguous commit): they are
/// answered as inserted, at the positions they got then, so the sender hears `accepted` once
/// for a message stored once. Runs after the bump statement in the same pipeline, so it sees
/// every commit of the users' earlier holders.
async fn find_stored(
    tx: &impl GenericClient,
    st: &Statements,
    ms: &[NewMessage],
) -> Result<Vec<(usize, InsertResult)>, StoreError> {
    let ids: Vec<&str> = ms.iter().map(|m| m.id.as_str()).collect();
    let rows = tx.query(&st.stored, &[&ids]).await?;
    let found = |row: &Row| {
        let at = Positions {
            rpos: row.try_get(1)?,
            spos: row.try_get(2)?,
            cseq: row.try_get(3)?,
        };
        Ok((ord(row, ms.len())?, InsertResult::Inserted { at }))
    };
    rows.iter().map(found).collect()
}

/// Fills in each message whose `(sender_id, client_msg_id)` is already stored with what its
/// first message is now (unless `find_stored` found the message itself).
async fn find_originals(
    tx: &impl GenericClient,
    st: &Statements,
    ms: &[NewMessage],
) -> Result<Vec<(usize, InsertResult)>, StoreError> {
    let keyed: Vec<usize> = (0..ms.len())
        .filter(|&i| ms[i].client_msg_id.is_some())
        .collect();
    let mut found = Vec::new();
    if keyed.is_empty() {
        return Ok(found);
    }
    let senders: Vec<&str> = keyed.iter().map(|&i| ms[i].sender_id.as_str()).collect();
    let cmids: Vec<Option<&str>> = keyed
        .iter()
        .map(|&i| ms[i].client_msg_id.as_deref())
        .collect();
    let rows = tx.query(&st.originals, &[&senders, &cmids]).await?;
    for row in rows {
        let i = keyed[ord(&row, keyed.len())?];
        let id: String = row.try_get(1)?;
        if id != ms[i].id {
            let status = parse_status(row.try_get(2)?)?;
            let at = Positions {
                rpos: row.try_get(4)?,
                spos: row.try_get(5)?,
                cseq: row.try_get(6)?,
            };
            let reciever_id = row.try_get(3)?;
            let original = Some(Original { reciever_id, at });
            found.push((
                i,
                InsertResult::Duplicate {
                    id,
                    status,
                    original,
                },
            ));
        }
    }
    Ok(found)
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
        if u.status == Status::None || is_group_message_id(&u.id) {
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
        .filter(|&i| updates[i].recipient.is_some() && !is_group_message_id(&updates[i].id))
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
