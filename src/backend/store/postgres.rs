//! The distributed store: one Postgres schema shared by every pod of a deployment.
//!
//! [`MessageStore`] is blocking and lives on the store thread, while tokio-postgres is async.
//! The store therefore owns a current-thread tokio runtime and drives every call with
//! `block_on`. The connection task is spawned on that runtime: it only makes progress inside
//! `block_on`, which is exactly when the store waits for a reply, so no extra thread is needed.
//!
//! A batch costs a constant number of round trips whatever its size ([`batch`]), and a lost
//! connection is reopened on the next call, so the writer's retries ride out a restart of the
//! server.

mod batch;
mod conversations;
mod group;
mod migrate;
mod outbox;
mod presence;
mod prune;
mod statuses;
mod undelivered;

pub use outbox::{StatusEvent, StatusOutbox};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::group::{GroupOp, GroupOutcome, GroupRefusal};
use super::{
    HistoryPage, MessageStore, NewMessage, PendingMessage, PruneRound, ReadState, RowKind,
    StatusUpdate, StoreError, StuckAfter, MAX_READ_STATES,
};
use super::{InsertResult, UndeliveredRound, UpdateResult};
use crate::protocol::Status;

/// Used when the URL sets no `connect_timeout`: a blackholed host must not hang startup.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a call waits for the server's reply: `statement_timeout` plus slack. A
/// connection that goes silent without a reset (a partition, a blackholed link) would
/// otherwise hold the store thread, and every sender of the pod with it, forever; on a
/// timeout the connection is dropped and the next call opens a new one. A COMMIT whose reply
/// never came is the ambiguous commit the batch's retry already resolves by looking its rows
/// up; the abandoned transaction keeps its row locks until the server drops it
/// (`idle_in_transaction_session_timeout`), so its users' inserts wait and retry meanwhile.
pub(super) const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// Postgres' earliest instant (4714-11-24 BC), in microseconds since the Unix epoch.
const PG_MIN_MICROS: i64 = -210_866_803_200_000_000;

/// Session settings. Limits: a statement stuck behind a lock or a slow server fails (and the
/// writer retries its batch) instead of holding the store thread, and so every sender,
/// forever.
///
/// Plans: one generic plan per prepared statement and connection, made with sequential
/// scans priced out. Every statement of these sessions reads by index. Left to itself,
/// Postgres makes a generic plan after five runs and keeps it until the table is next
/// analyzed; made while `messages` was young (a new deployment or schema) or where autovacuum
/// is off, that plan scans the whole table for every batch, so the cost per message grows
/// with the table (perf/RESULTS.md §17b). Custom plans for every run avoided that but spent a
/// fifth of Postgres' CPU planning (§24). A table with no index for a query is still
/// scanned: `enable_seqscan = off` only prices the scan, it does not forbid it.
const SESSION_SETTINGS: &str = "SET statement_timeout = '10s'; SET lock_timeout = '5s';
     SET idle_in_transaction_session_timeout = '30s'; SET plan_cache_mode = force_generic_plan;
     SET enable_seqscan = off";

/// Advances (creating if needed) the counters a batch takes positions from, each by the
/// number of new rows that need it, in (kind, id) order, and returns their new values. Every
/// inserting transaction takes its counters in this one statement and in this one order, so
/// two pods with overlapping users wait for each other instead of deadlocking; the row locks
/// are held until COMMIT, so for one stream a larger position can never become visible
/// before a smaller one (migrations/postgres/0004). Transactions that share no user or
/// conversation never wait for each other. One row version per counter and batch.
const BUMP_SQL: &str = "INSERT INTO counters AS c (kind, id, last)
     SELECT * FROM unnest($1::int2[], $2::text[], $3::int8[]) AS u(kind, id, n)
     ORDER BY kind, id
     ON CONFLICT (kind, id) DO UPDATE SET last = c.last + EXCLUDED.last
     RETURNING kind, id, last";

const PENDING_SQL: &str = "SELECT rpos, cseq, id, sender_id, reciever_id, payload, created_at,
            status
     FROM messages WHERE reciever_id = $1 AND status <> 'DELIVERED' AND rpos > $2
     ORDER BY rpos LIMIT $3";
/// A user's stream: two index range scans (received, sent) merged by position; a message to
/// oneself is read once, from the received side. Then how far retention deleted it.
/// Group rows (`deliveries`) are the third scan; the last column is the row's `RowKind`.
const HISTORY_SQL: &str = "SELECT * FROM (
         (SELECT rpos AS pos, cseq, id, sender_id, reciever_id, payload, created_at, status,
                 0 AS kind
          FROM messages WHERE reciever_id = $1 AND rpos > $2 ORDER BY rpos LIMIT $3)
         UNION ALL
         (SELECT spos, cseq, id, sender_id, reciever_id, payload, created_at, status, 0
          FROM messages WHERE sender_id = $1 AND spos > $2 AND reciever_id <> $1
          ORDER BY spos LIMIT $3)
         UNION ALL
         (SELECT d.pos, g.cseq, g.id, g.sender_id, g.group_id, g.payload, g.created_at,
                 d.status, 1 + g.event
          FROM deliveries d JOIN group_messages g ON g.id = d.message_id
          WHERE d.user_id = $1 AND d.pos > $2 ORDER BY d.pos LIMIT $3)) s
     ORDER BY pos LIMIT $3";
/// Forward only, and never past the conversation's last seq.
const READ_SQL: &str = "INSERT INTO reads AS r (user_id, conversation_id, peer, seq)
     SELECT $1, $2, $4, LEAST($3, last) FROM counters WHERE kind = 2 AND id = $2
     ON CONFLICT (user_id, conversation_id) DO UPDATE SET seq = EXCLUDED.seq
         WHERE EXCLUDED.seq > r.seq
     RETURNING seq";
const READS_OF_SQL: &str = "SELECT conversation_id, user_id, seq FROM reads WHERE user_id = $1
     UNION SELECT conversation_id, user_id, seq FROM reads WHERE peer = $1
     UNION SELECT r.conversation_id, r.user_id, r.seq FROM members m
         JOIN reads r ON r.conversation_id = m.group_id WHERE m.user_id = $1
     ORDER BY 1, 2 LIMIT $2";
const PRUNED_SQL: &str = "SELECT pruned FROM counters WHERE kind = 1 AND id = $1";
/// `SKIP LOCKED`: two pods sweeping at once claim disjoint rows; the claim commits with the
/// statement, and the restarted stuck clock keeps every other pod off those rows.
const CLAIM_SQL: &str = "WITH none_due AS (
         SELECT seq, COALESCE(stuck_since, created_at) AS since FROM messages
         WHERE status = 'NONE' AND COALESCE(stuck_since, created_at) < $2
         ORDER BY COALESCE(stuck_since, created_at) LIMIT $3 FOR UPDATE SKIP LOCKED),
     sent_due AS (
         SELECT seq, COALESCE(stuck_since, sent_at) AS since FROM messages
         WHERE status = 'SENT' AND COALESCE(stuck_since, sent_at) < $4
         ORDER BY COALESCE(stuck_since, sent_at) LIMIT $3 FOR UPDATE SKIP LOCKED),
     due AS (SELECT * FROM none_due UNION ALL SELECT * FROM sent_due),
     claimed AS (
         UPDATE messages m SET stuck_since = $1 FROM due
         WHERE m.seq = due.seq
         RETURNING due.since, m.seq, m.rpos, m.cseq, m.id, m.sender_id, m.reciever_id,
                   m.payload, m.created_at, m.status)
     SELECT rpos, cseq, id, sender_id, reciever_id, payload, created_at, status
     FROM claimed ORDER BY since, seq";
const PARK_SQL: &str = "UPDATE messages
     SET stuck_since = $2::timestamptz + greatest($2::timestamptz - created_at, interval '0')
     WHERE id = ANY($1)";
const STATUS_SQL: &str = "SELECT status FROM messages WHERE id = $1
     UNION ALL SELECT status FROM group_messages WHERE id = $1";

/// Postgres-backed [`MessageStore`], for the distributed mode.
pub struct PostgresStore {
    /// `None` after a failed reconnect; reopened by the next call.
    session: Option<Session>,
    config: Config,
    schema: String,
    rt: Runtime,
    /// Failpoint for tests: this many upcoming commits succeed on the server but report a lost
    /// connection, as when the COMMIT's reply never arrives.
    #[cfg(test)]
    lose_commit_replies: usize,
    /// [`REPLY_TIMEOUT`], shortened by tests.
    reply_timeout: Duration,
}

/// One live connection and the statements prepared on it.
struct Session {
    st: Statements,
    client: Client,
    conn: JoinHandle<()>,
}

/// Prepared once per connection: every call then costs a single round trip per statement.
struct Statements {
    pending: Statement,
    history: Statement,
    pruned: Statement,
    read: Statement,
    reads_of: Statement,
    claim: Statement,
    park: Statement,
    status_of: Statement,
    batch: batch::Statements,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Query(describe(&e))
    }
}

impl PostgresStore {
    /// Connects to `url` (no TLS), creates `schema` if missing, uses it for the session and
    /// applies pending migrations. Pods starting together serialize on an advisory lock.
    pub fn connect(url: &str, schema: &str) -> Result<PostgresStore, StoreError> {
        let parsed = url.parse::<Config>();
        let location = match &parsed {
            Ok(config) => format!("{} (schema {schema})", redacted(config)),
            Err(_) => format!("an unparseable postgres url (schema {schema})"),
        };
        let open_err = |reason: String| StoreError::Open {
            location: location.clone(),
            reason,
        };
        let mut config = parsed.map_err(|e| open_err(describe(&e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| open_err(format!("cannot start the tokio runtime: {e}")))?;
        let session = rt.block_on(async {
            let (mut client, conn) = start(&config, schema).await.map_err(&open_err)?;
            migrate::migrate(&mut client, schema, &open_err).await?;
            Session::prepare((client, conn)).await.map_err(&open_err)
        })?;
        Ok(PostgresStore {
            session: Some(session),
            config,
            schema: schema.to_owned(),
            rt,
            #[cfg(test)]
            lose_commit_replies: 0,
            reply_timeout: REPLY_TIMEOUT,
        })
    }

    /// A connection of its own for the status relay (see [`StatusOutbox`]).
    pub fn outbox(&self) -> Result<StatusOutbox, StoreError> {
        StatusOutbox::connect(&self.config, &self.schema, schema_key(&self.schema))
    }

    /// The live session, reconnecting first if the previous connection was lost.
    fn session(&mut self) -> Result<(&Runtime, &mut Session), StoreError> {
        let session = match self.session.take().filter(|s| !s.client.is_closed()) {
            Some(s) => s,
            None => {
                let open = async {
                    let client = start(&self.config, &self.schema).await?;
                    Session::prepare(client).await
                };
                let wait = self.reply_timeout;
                let s = (self.rt)
                    .block_on(async { tokio::time::timeout(wait, open).await })
                    .unwrap_or_else(|_| Err(no_reply(wait)));
                let s = s.map_err(|e| StoreError::Query(format!("reconnecting: {e}")))?;
                tracing::info!(schema = %self.schema, "reconnected to postgres");
                s
            }
        };
        Ok((&self.rt, self.session.insert(session)))
    }

    /// Runs `call` on the live session within [`REPLY_TIMEOUT`]; a call that times out
    /// drops the session (closing its socket), so the next one reconnects.
    fn within<T>(
        &mut self,
        call: impl AsyncFnOnce(&mut Session) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let wait = self.reply_timeout;
        let (rt, s) = self.session()?;
        // The timer is made inside `block_on`: tokio's timers need the runtime's context.
        match rt.block_on(async { tokio::time::timeout(wait, call(s)).await }) {
            Ok(result) => result,
            Err(_) => {
                if let Some(s) = self.session.take() {
                    s.conn.abort();
                }
                tracing::warn!(schema = %self.schema, "postgres did not reply in time; connection dropped");
                Err(StoreError::Query(no_reply(wait)))
            }
        }
    }

    fn query(
        &mut self,
        pick: fn(&Statements) -> &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.within(async |s| Ok(s.client.query(pick(&s.st), params).await?))
    }
}

pub(super) fn no_reply(wait: Duration) -> String {
    format!("no reply from postgres within {wait:?}; connection dropped")
}

/// Opens a connection whose `search_path` is `schema` (which may not exist yet).
async fn start(config: &Config, schema: &str) -> Result<(Client, JoinHandle<()>), String> {
    let (client, conn) = config.connect(NoTls).await.map_err(|e| describe(&e))?;
    let conn = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %describe(&e), "postgres connection ended");
        }
    });
    let set = format!(
        "SET search_path TO {}; {SESSION_SETTINGS}",
        quote_ident(schema)
    );
    client.batch_execute(&set).await.map_err(|e| describe(&e))?;
    Ok((client, conn))
}

impl Session {
    async fn prepare((client, conn): (Client, JoinHandle<()>)) -> Result<Session, String> {
        let st = async {
            let (pending, history, pruned, read, reads_of, claim, park, status_of, batch) = futures::try_join!(
                client.prepare(PENDING_SQL),
                client.prepare(HISTORY_SQL),
                client.prepare(PRUNED_SQL),
                client.prepare(READ_SQL),
                client.prepare(READS_OF_SQL),
                client.prepare(CLAIM_SQL),
                client.prepare(PARK_SQL),
                client.prepare(STATUS_SQL),
                batch::Statements::prepare(&client),
            )?;
            Ok::<_, tokio_postgres::Error>(Statements {
                pending,
                history,
                pruned,
                read,
                reads_of,
                claim,
                park,
                status_of,
                batch,
            })
        };
        let st = st.await.map_err(|e| describe(&e))?;
        Ok(Session { st, client, conn })
    }
}

impl Drop for PostgresStore {
    /// Closes the connection politely (Terminate) rather than cutting the socket.
    fn drop(&mut self) {
        if let Some(Session {
            st, client, conn, ..
        }) = self.session.take()
        {
            drop(st);
            drop(client);
            // The timer must be made inside the runtime: `block_on` enters it.
            let closed = async { tokio::time::timeout(Duration::from_secs(1), conn).await };
            let _ = self.rt.block_on(closed);
        }
    }
}

impl MessageStore for PostgresStore {
    fn commit(
        &mut self,
        inserts: &[NewMessage],
        updates: &[StatusUpdate],
    ) -> Result<(Vec<InsertResult>, Vec<UpdateResult>), StoreError> {
        if inserts.is_empty() && updates.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let result = self.within(async |s| batch::commit(s, inserts, updates).await);
        #[cfg(test)]
        if result.is_ok() && self.lose_commit_replies > 0 {
            self.lose_commit_replies -= 1;
            return Err(StoreError::Query(
                "connection lost after COMMIT (failpoint)".into(),
            ));
        }
        result
    }

    fn pending(
        &mut self,
        recipient: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(|st| &st.pending, &[&recipient, &after_seq, &limit])?;
        rows.iter().map(pending_row).collect()
    }

    fn history(
        &mut self,
        user: &str,
        after_pos: i64,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(|st| &st.history, &[&user, &after_pos, &limit])?;
        let messages = rows.iter().map(pending_row).collect::<Result<_, _>>()?;
        let pruned = self.query(|st| &st.pruned, &[&user])?;
        let pruned_through = match pruned.first() {
            Some(r) => r.try_get(0)?,
            None => 0,
        };
        Ok(HistoryPage {
            messages,
            pruned_through,
        })
    }

    fn mark_read(&mut self, read: &ReadState, peer: &str) -> Result<Option<i64>, StoreError> {
        let args: [&(dyn ToSql + Sync); 4] =
            [&read.user_id, &read.conversation_id, &read.seq, &peer];
        let rows = self.query(|st| &st.read, &args)?;
        Ok(rows.first().map(|r| r.try_get(0)).transpose()?)
    }

    fn reads_of(&mut self, user: &str) -> Result<Vec<ReadState>, StoreError> {
        let limit = MAX_READ_STATES as i64;
        let rows = self.query(|st| &st.reads_of, &[&user, &limit])?;
        let state = |r: &Row| {
            Ok(ReadState {
                conversation_id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                seq: r.try_get(2)?,
            })
        };
        rows.iter().map(state).collect()
    }

    fn prune(
        &mut self,
        before: i64,
        after_seq: i64,
        window: usize,
    ) -> Result<PruneRound, StoreError> {
        self.within(async |s| prune::prune(&mut s.client, before, after_seq, window).await)
    }

    fn undelivered(&mut self, before: i64, limit: usize) -> Result<UndeliveredRound, StoreError> {
        self.within(async |s| undelivered::sweep(&mut s.client, before, limit).await)
    }

    fn sent_statuses(
        &mut self,
        sender: &str,
        ids: &[String],
    ) -> Result<Vec<(String, Status)>, StoreError> {
        self.within(async |s| statuses::sent_statuses(&s.client, sender, ids).await)
    }

    fn claim_stuck(
        &mut self,
        now: i64,
        after: StuckAfter,
        limit: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        let at = to_time(now);
        let none_before = to_time(now.saturating_sub(after.none));
        let sent_before = to_time(now.saturating_sub(after.sent));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 4] = [&at, &none_before, &limit, &sent_before];
        let rows = self.query(|st| &st.claim, &params)?;
        rows.iter().map(pending_row).collect()
    }

    fn park(&mut self, ids: &[String], now: i64) -> Result<(), StoreError> {
        if !ids.is_empty() {
            self.query(|st| &st.park, &[&ids, &to_time(now)])?;
        }
        Ok(())
    }

    fn status_of(&mut self, id: &str) -> Result<Option<Status>, StoreError> {
        let rows = self.query(|st| &st.status_of, &[&id])?;
        rows.first()
            .map(|r| parse_status(r.try_get(0)?))
            .transpose()
    }

    fn record_seen(&mut self, seen: &[(String, i64)]) -> Result<(), StoreError> {
        self.within(async |s| presence::record(&s.client, seen).await)
    }

    fn peers_seen(
        &mut self,
        asker: &str,
        users: &[String],
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        self.within(async |s| presence::peers(&s.client, asker, users).await)
    }

    fn conversation(
        &mut self,
        conversation: &str,
        before: i64,
        limit: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        self.within(async |s| conversations::history(&s.client, conversation, before, limit).await)
    }

    fn conversations_of(
        &mut self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<super::ConversationSummary>, StoreError> {
        self.within(async |s| conversations::of_user(&s.client, user, limit).await)
    }

    fn last_seen(&mut self, users: &[String]) -> Result<Vec<super::LastSeen>, StoreError> {
        self.within(async |s| presence::last_seen(&s.client, users).await)
    }

    fn group(&mut self, op: &GroupOp) -> Result<Result<GroupOutcome, GroupRefusal>, StoreError> {
        self.within(async |s| {
            let tx = s.client.transaction().await?;
            let answer = group::apply(&tx, op).await?;
            if answer.is_ok() {
                tx.commit().await?;
            }
            Ok(answer) // A refusal drops `tx`: rolled back.
        })
    }
}

fn pending_row(r: &Row) -> Result<PendingMessage, StoreError> {
    Ok(PendingMessage {
        seq: r.try_get(0)?,
        cseq: r.try_get(1)?,
        id: r.try_get(2)?,
        sender_id: r.try_get(3)?,
        reciever_id: r.try_get(4)?,
        payload: r.try_get(5)?,
        created_at: to_micros(r.try_get(6)?)?,
        status: parse_status(r.try_get(7)?)?,
        kind: match r.len() > 8 {
            true => RowKind::from_i64(r.try_get::<_, i32>(8)?.into()),
            false => RowKind::Direct,
        },
    })
}

fn parse_status(s: &str) -> Result<Status, StoreError> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s:?}")))
}

/// Microseconds since the Unix epoch as a `timestamptz` parameter. `SystemTime` travels in
/// Postgres' binary format, integer microseconds, so no float rounding can creep in. Instants
/// before Postgres' range are clamped to its start: only thresholds can be that old.
pub(super) fn to_time(micros: i64) -> SystemTime {
    let micros = micros.max(PG_MIN_MICROS);
    let d = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// The inverse of [`to_time`]; exact for every instant Postgres can store in an `i64`.
pub(super) fn to_micros(t: SystemTime) -> Result<i64, StoreError> {
    let corrupt = |_| StoreError::Corrupt(format!("timestamp {t:?} out of range"));
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).map_err(corrupt),
        Err(e) => i64::try_from(e.duration().as_micros())
            .map(|m| -m)
            .map_err(corrupt),
    }
}

/// The error and its causes: tokio-postgres' own text for a server error is just "db error".
fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text.replace('\n', "; ")
}

/// Where we connect, without the password.
fn redacted(config: &Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "postgres://{}@{}:{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        ports.join(","),
        config.get_dbname().unwrap_or("")
    )
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A fixed hash of the schema name (FNV-1a), the second key of the advisory locks
/// (migrations, the status relay). Computed here
/// rather than with `hashtext` so that it can never change under a Postgres upgrade while
/// pods of two versions run side by side.
fn schema_key(schema: &str) -> i32 {
    let h = schema.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    h as i32
}

#[cfg(test)]
mod tests;
