//! The embedded default store: one SQLite database in WAL mode under `--data-dir`.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::group::{GroupOp, GroupOutcome, GroupRefusal};
use super::GroupAnswer;
use super::{
    HistoryPage, InsertResult, MessageStore, NewMessage, Original, PendingMessage, Positions,
    PruneRound, ReadState, RowKind, StatusChange, StatusUpdate, StoreError, StuckAfter,
    UndeliveredRound, UpdateResult, MAX_READ_STATES,
};
use crate::protocol::Status;
use counters::{Counters, Keys};
use row::{IdText, StoredId, StoredStatus};

mod checkpoint;
mod conversations;
mod counters;
mod group;
mod presence;
mod prune;
mod row;
mod undelivered;

/// Versioned migrations, applied in order, each exactly once (recorded in `schema_migrations`).
const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        include_str!("../../../migrations/sqlite/0001_messages.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/sqlite/0002_redrive_claims.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/sqlite/0003_compact_rows.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/sqlite/0004_streams.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/sqlite/0005_groups.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/sqlite/0006_presence.sql"),
    ),
    (7, include_str!("../../../migrations/sqlite/0007_marks.sql")),
    (
        8,
        include_str!("../../../migrations/sqlite/0008_conversation_order.sql"),
    ),
];

/// WAL pages written before SQLite checkpoints them into the database file.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// The store connection's page cache unless `--store-cache-mib` says otherwise: above what a
/// fresh pod's hot pages needed under load (perf/RESULTS.md §28), with room for a pod whose
/// recent rows span more pages than a fresh run's.
pub const DEFAULT_CACHE_MIB: u32 = 32;

/// SQLite-backed [`MessageStore`].
pub struct SqliteStore {
    conn: Connection,
    /// Background WAL checkpoints (`with_background_checkpoints`); declared after `conn`,
    /// so it is stopped after the store thread's connection closed.
    checkpointer: Option<checkpoint::Checkpointer>,
    /// Counter values of recent keys, as committed (see `counters`).
    committed: counters::Committed,
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/distrisocks.db` and applies pending migrations.
    /// `full_sync` chooses `synchronous=FULL` (survives power loss) over `NORMAL` (survives a
    /// process crash only); with group commit the cost of FULL is one fsync per batch.
    pub fn open(dir: &Path, full_sync: bool) -> Result<Self, StoreError> {
        let path = dir.join("distrisocks.db");
        let open_err = |e: rusqlite::Error| StoreError::Open {
            location: path.display().to_string(),
            reason: e.to_string(),
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        let sync = if full_sync { "FULL" } else { "NORMAL" };
        // wal_autocheckpoint: at the default 1000 pages the WAL was folded into the database
        // every few batches, rewriting the same hot index pages each time; 16k pages (64 MiB of
        // WAL) took criterion `store/insert_batch_64` from 8.2k to 12.9-13.9k inserts/s (RESULTS §8b).
        // mmap showed no gain in that bench, nor in a running pod (RESULTS §28). The page
        // cache did in a running pod, whose indexes outgrow SQLite's 2 MiB default within
        // seconds: see `with_cache_mib`.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=5000;
             PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES};
             PRAGMA cache_size=-{kib};",
            kib = DEFAULT_CACHE_MIB * 1024
        ))
        .map_err(open_err)?;
        let mut store = SqliteStore {
            conn,
            checkpointer: None,
            committed: Default::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Caps this connection's page cache at `mib` MiB (it only grows as pages are used).
    /// With too small a cache, commits re-read from the kernel the pages it evicted and spill
    /// dirty pages to the WAL before the commit writes them again.
    pub fn with_cache_mib(self, mib: u32) -> Result<Self, StoreError> {
        let kib = i64::from(mib) * 1024;
        self.conn
            .execute_batch(&format!("PRAGMA cache_size=-{kib};"))?;
        Ok(self)
    }

    /// Checkpoints the WAL on a thread of its own instead of inside the store thread's
    /// commits (see [`checkpoint`]), on the database this store opened. The pod's store does;
    /// tests that read the files may not.
    pub fn with_background_checkpoints(mut self) -> Result<Self, StoreError> {
        let path = self.conn.path().unwrap_or_default().to_owned();
        let open_err = |reason: String| StoreError::Open {
            location: path.clone(),
            reason,
        };
        if path.is_empty() {
            return Err(open_err(
                "an in-memory database has no WAL to checkpoint".into(),
            ));
        }
        let checkpointer =
            checkpoint::Checkpointer::start(path.as_str().into()).map_err(open_err)?;
        self.checkpointer = Some(checkpointer);
        Ok(self)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )?;
        for &(version, sql) in MIGRATIONS {
            let tx = self.conn.transaction()?;
            let done: Option<u32> = tx
                .query_row(
                    "SELECT version FROM schema_migrations WHERE version = ?1",
                    [version],
                    |r| r.get(0),
                )
                .optional()?;
            if done.is_none() {
                let fail = |e: rusqlite::Error| StoreError::Migration {
                    version,
                    reason: e.to_string(),
                };
                tx.execute_batch(sql).map_err(fail)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                    params![version, crate::protocol::now_micros()],
                )
                .map_err(fail)?;
            }
            tx.commit()?;
        }
        Ok(())
    }
}

/// Inserts `m` at the next positions of its streams and conversation; a repeated
/// `client_msg_id` inserts nothing and takes no position.
fn insert_one(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    m: &NewMessage,
) -> Result<InsertResult, StoreError> {
    let keys = Keys::of(m);
    let at = counters.next(tx, &keys)?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO messages
             (id, sender_id, reciever_id, client_msg_id, payload, created_at, rpos, spos, cseq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING",
    )?;
    let n = ins.execute(params![
        StoredId::of(&m.id),
        m.sender_id,
        m.reciever_id,
        m.client_msg_id,
        m.payload,
        m.created_at,
        at.rpos,
        at.spos,
        at.cseq
    ])?;
    if n == 1 {
        counters.take(keys, at);
        return Ok(InsertResult::Inserted { at });
    }
    let mut q = tx.prepare_cached(
        "SELECT id, status, reciever_id, rpos, spos, cseq FROM messages
         WHERE sender_id = ?1 AND client_msg_id = ?2",
    )?;
    let (id, status, original): (IdText, StoredStatus, Original) =
        q.query_row(params![m.sender_id, m.client_msg_id], |r| {
            let at = Positions {
                rpos: r.get(3)?,
                spos: r.get(4)?,
                cseq: r.get(5)?,
            };
            let reciever_id = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, Original { reciever_id, at }))
        })?;
    Ok(InsertResult::Duplicate {
        id: id.0,
        status: status.0,
        original: Some(original),
    })
}

fn update_one(tx: &Transaction<'_>, u: &StatusUpdate) -> Result<UpdateResult, StoreError> {
    if crate::protocol::group::is_group_message_id(&u.id) {
        return group::update(tx, u);
    }
    // The WHERE clause is what keeps statuses from ever moving backwards.
    let sql = match u.status {
        Status::None => return Ok(UpdateResult::Unchanged),
        Status::Sent => {
            "UPDATE messages SET status = 1, sent_at = ?2
             WHERE id = ?1 AND status = 0 AND (?3 IS NULL OR reciever_id = ?3)
             RETURNING sender_id, reciever_id"
        }
        Status::Delivered => {
            "UPDATE messages SET status = 2, delivered_at = ?2, sent_at = COALESCE(sent_at, ?2)
             WHERE id = ?1 AND status < 2 AND (?3 IS NULL OR reciever_id = ?3)
             RETURNING sender_id, reciever_id"
        }
    };
    let mut st = tx.prepare_cached(sql)?;
    let row: Option<(String, String)> = st
        .query_row(params![StoredId::of(&u.id), u.at, u.recipient], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((sender_id, reciever_id)) = row {
        return Ok(UpdateResult::Changed(StatusChange {
            id: u.id.clone(),
            status: u.status,
            sender_id,
            reciever_id,
            at: u.at,
        }));
    }
    let Some(recipient) = &u.recipient else {
        return Ok(UpdateResult::Unchanged);
    };
    let mut q = tx.prepare_cached("SELECT 1 FROM messages WHERE id = ?1 AND reciever_id = ?2")?;
    let exists = q.exists(params![StoredId::of(&u.id), recipient])?;
    Ok(if exists {
        UpdateResult::Unchanged
    } else {
        UpdateResult::NotRecipient
    })
}

/// The columns every read of `messages` selects, in [`pending_row`]'s order, after the
/// position (the last one is the row's [`RowKind`]).
const READ_COLUMNS: &str = "cseq, id, sender_id, reciever_id, payload, created_at, status, 0";

fn pending_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingMessage> {
    Ok(PendingMessage {
        seq: r.get(0)?,
        cseq: r.get(1)?,
        id: r.get::<_, IdText>(2)?.0,
        sender_id: r.get(3)?,
        reciever_id: r.get(4)?,
        payload: r.get(5)?,
        created_at: r.get(6)?,
        status: r.get::<_, StoredStatus>(7)?.0,
        kind: RowKind::from_i64(r.get(8)?),
    })
}

fn set_stuck_since<'a>(
    tx: &Transaction<'_>,
    ids: impl Iterator<Item = &'a str>,
    at: i64,
) -> Result<(), StoreError> {
    let mut q = tx.prepare_cached("UPDATE messages SET stuck_since = ?2 WHERE id = ?1")?;
    for id in ids {
        q.execute(params![StoredId::of(id), at])?;
    }
    Ok(())
}

impl MessageStore for SqliteStore {
    fn commit(
        &mut self,
        inserts: &[NewMessage],
        updates: &[StatusUpdate],
    ) -> Result<(Vec<InsertResult>, Vec<UpdateResult>), StoreError> {
        let tx = self.conn.transaction()?;
        let mut counters = Counters::new(&self.committed);
        let ins = inserts
            .iter()
            .map(|m| insert_one(&tx, &mut counters, m))
            .collect::<Result<Vec<_>, _>>()?;
        counters.save(&tx)?;
        let bumped = counters.bumped();
        let ups = updates
            .iter()
            .map(|u| update_one(&tx, u))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        self.committed.absorb(bumped);
        Ok((ins, ups))
    }

    fn pending(
        &mut self,
        recipient: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        let mut q = self.conn.prepare_cached(&format!(
            "SELECT rpos, {READ_COLUMNS} FROM messages
             WHERE reciever_id = ?1 AND status < 2 AND rpos > ?2
             ORDER BY rpos LIMIT ?3"
        ))?;
        let rows = q.query_map(params![recipient, after_seq, limit as i64], pending_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn history(
        &mut self,
        user: &str,
        after_pos: i64,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        // Three index range scans (received, sent, group rows) merged by position; a
        // message to oneself is read once, from the received side.
        let mut q = self.conn.prepare_cached(&format!(
            "SELECT * FROM (
                 SELECT * FROM (SELECT rpos, {READ_COLUMNS} FROM messages
                     WHERE reciever_id = ?1 AND rpos > ?2 ORDER BY rpos LIMIT ?3)
                 UNION ALL
                 SELECT * FROM (SELECT spos, {READ_COLUMNS} FROM messages
                     WHERE sender_id = ?1 AND spos > ?2 AND reciever_id <> ?1
                     ORDER BY spos LIMIT ?3)
                 UNION ALL
                 SELECT * FROM (SELECT d.pos, g.cseq, g.id, g.sender_id, g.group_id, g.payload,
                         g.created_at, d.status, 1 + g.event
                     FROM deliveries d JOIN group_messages g ON g.id = d.message_id
                     WHERE d.user_id = ?1 AND d.pos > ?2 ORDER BY d.pos LIMIT ?3))
             ORDER BY 1 LIMIT ?3"
        ))?;
        let rows = q.query_map(params![user, after_pos, limit as i64], pending_row)?;
        let messages = rows.collect::<Result<Vec<_>, _>>()?;
        let pruned_through = counters::pruned_through(&self.conn, user)?;
        Ok(HistoryPage {
            messages,
            pruned_through,
        })
    }

    fn mark_read(&mut self, read: &ReadState, peer: &str) -> Result<Option<i64>, StoreError> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "INSERT INTO reads (user_id, conversation_id, peer, seq)
                 SELECT ?1, ?2, ?4, min(?3, last) FROM (SELECT {} AS last) WHERE last > 0
                 ON CONFLICT (user_id, conversation_id) DO UPDATE SET seq = excluded.seq
                     WHERE excluded.seq > reads.seq
                 RETURNING seq",
                counters::direct_last_sql("?2", "?1", "?4")
            )
        });
        let mut q = self.conn.prepare_cached(&SQL)?;
        let args = params![read.user_id, read.conversation_id, read.seq, peer];
        Ok(q.query_row(args, |r| r.get(0)).optional()?)
    }

    fn reads_of(&mut self, user: &str) -> Result<Vec<ReadState>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT conversation_id, user_id, seq FROM reads WHERE user_id = ?1
             UNION SELECT conversation_id, user_id, seq FROM reads WHERE peer = ?1
             UNION SELECT r.conversation_id, r.user_id, r.seq FROM members m
                 JOIN reads r ON r.conversation_id = m.group_id WHERE m.user_id = ?1
             ORDER BY 1, 2 LIMIT ?2",
        )?;
        let row = |r: &rusqlite::Row<'_>| {
            Ok(ReadState {
                conversation_id: r.get(0)?,
                user_id: r.get(1)?,
                seq: r.get(2)?,
            })
        };
        let rows = q.query_map(params![user, MAX_READ_STATES as i64], row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn prune(
        &mut self,
        before: i64,
        after_seq: i64,
        window: usize,
    ) -> Result<PruneRound, StoreError> {
        prune::prune(&mut self.conn, before, after_seq, window)
    }

    fn undelivered(&mut self, before: i64, limit: usize) -> Result<UndeliveredRound, StoreError> {
        undelivered::sweep(&mut self.conn, before, limit)
    }

    fn sent_statuses(
        &mut self,
        sender: &str,
        ids: &[String],
    ) -> Result<Vec<(String, Status)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let table = match crate::protocol::group::is_group_message_id(id) {
                true => "group_messages",
                false => "messages",
            };
            let sql = format!("SELECT status FROM {table} WHERE id = ?1 AND sender_id = ?2");
            let mut st = self.conn.prepare_cached(&sql)?;
            let found: Option<StoredStatus> = st
                .query_row(params![StoredId::of(id), sender], |r| r.get(0))
                .optional()?;
            out.extend(found.map(|s| (id.clone(), s.0)));
        }
        Ok(out)
    }

    fn claim_stuck(
        &mut self,
        now: i64,
        after: StuckAfter,
        limit: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        let tx = self.conn.transaction()?;
        let claimed = {
            let mut q = tx.prepare_cached(
                "SELECT rpos, cseq, id, sender_id, reciever_id, payload, created_at, status, 0 FROM (
                     SELECT * FROM (
                         SELECT *, COALESCE(stuck_since, created_at) AS since FROM messages
                         WHERE status = 0 AND COALESCE(stuck_since, created_at) < ?1
                         ORDER BY since, seq LIMIT ?2)
                     UNION ALL
                     SELECT * FROM (
                         SELECT *, COALESCE(stuck_since, sent_at) AS since FROM messages
                         WHERE status = 1 AND COALESCE(stuck_since, sent_at) < ?3
                         ORDER BY since, seq LIMIT ?2))
                 ORDER BY since, seq",
            )?;
            let none_before = now.saturating_sub(after.none);
            let sent_before = now.saturating_sub(after.sent);
            let args = params![none_before, limit as i64, sent_before];
            let rows = q.query_map(args, pending_row)?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        set_stuck_since(&tx, claimed.iter().map(|m| m.id.as_str()), now)?;
        tx.commit()?;
        Ok(claimed)
    }

    fn park(&mut self, ids: &[String], now: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut q = tx.prepare_cached(
                "UPDATE messages SET stuck_since = ?2 + max(?2 - created_at, 0) WHERE id = ?1",
            )?;
            for id in ids {
                q.execute(params![StoredId::of(id), now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn status_of(&mut self, id: &str) -> Result<Option<Status>, StoreError> {
        let table = match crate::protocol::group::is_group_message_id(id) {
            true => "group_messages",
            false => "messages",
        };
        let s: Option<StoredStatus> = self
            .conn
            .query_row(
                &format!("SELECT status FROM {table} WHERE id = ?1"),
                [StoredId::of(id)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(s.map(|s| s.0))
    }

    fn record_seen(&mut self, seen: &[(String, i64)]) -> Result<(), StoreError> {
        presence::record(&mut self.conn, seen)
    }

    fn peers_seen(
        &mut self,
        asker: &str,
        users: &[String],
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        presence::peers(&self.conn, asker, users)
    }

    fn conversation(
        &mut self,
        conversation: &str,
        before: i64,
        limit: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        conversations::history(&self.conn, conversation, before, limit)
    }

    fn conversations_of(
        &mut self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<super::ConversationSummary>, StoreError> {
        conversations::of_user(&self.conn, user, limit)
    }

    fn last_seen(&mut self, users: &[String]) -> Result<Vec<super::LastSeen>, StoreError> {
        presence::last_seen(&self.conn, users)
    }

    fn group(&mut self, op: &GroupOp) -> Result<Result<GroupOutcome, GroupRefusal>, StoreError> {
        let mut answers = self.group_batch(std::slice::from_ref(op));
        answers.pop().expect("one answer per operation")
    }

    /// One transaction for the lot: a refusal writes nothing (every check comes before the
    /// first write, `sqlite/group.rs`), so refused and stored operations can share it.
    fn group_batch(&mut self, ops: &[GroupOp]) -> Vec<Result<GroupAnswer, StoreError>> {
        let run = |store: &mut SqliteStore| -> Result<Vec<GroupAnswer>, StoreError> {
            let tx = store.conn.transaction()?;
            let mut counters = Counters::new(&store.committed);
            let answers = (ops.iter())
                .map(|op| group::apply(&tx, &mut counters, op))
                .collect::<Result<Vec<_>, _>>()?;
            counters.save(&tx)?;
            let bumped = counters.bumped();
            tx.commit()?;
            store.committed.absorb(bumped);
            Ok(answers)
        };
        match run(self) {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            Err(e) => {
                let text = e.to_string();
                ops.iter()
                    .map(|_| Err(StoreError::Query(text.clone())))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests;
