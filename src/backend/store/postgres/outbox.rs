//! The status outbox: committed status changes become rows of `status_events` in the very
//! transaction that changes the status ([`record`]), and a relay reads them in order and
//! deletes them once the broker acknowledged them ([`StatusOutbox`]). A pod killed between
//! the commit and the relay loses no event; the next relay (any pod) sends it.

use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Statement, Transaction};

use super::{describe, parse_status, start, to_micros, to_time};
use crate::backend::store::{StatusChange, StoreError};

pub(super) const RECORD_SQL: &str =
    "INSERT INTO status_events (message_id, status, sender_id, reciever_id, at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])";

/// One relay at a time in a deployment (per schema), so the events of one message leave in
/// the order they were committed. The relay is off the message path: this is no serial point
/// for messages, only for announcing them.
const RELAY_LOCK: i32 = 0x6453_5203;

const TAKE_SQL: &str = "SELECT seq, message_id, status, sender_id, reciever_id, at
     FROM status_events ORDER BY seq LIMIT $1";
const LOCK_SQL: &str = "SELECT pg_try_advisory_xact_lock($1, $2)";
const DELETE_SQL: &str = "DELETE FROM status_events WHERE seq <= $1";

/// The relay's statements, prepared once per connection: a round then costs one round trip
/// per statement instead of two (an unnamed statement is parsed again at every call).
struct Prepared {
    lock: Statement,
    take: Statement,
    delete: Statement,
}

impl Prepared {
    async fn on(c: &Client) -> Result<Prepared, tokio_postgres::Error> {
        let (lock, take, delete) = futures::try_join!(
            c.prepare(LOCK_SQL),
            c.prepare(TAKE_SQL),
            c.prepare(DELETE_SQL)
        )?;
        Ok(Prepared { lock, take, delete })
    }
}

/// Appends the committed changes of a batch to the outbox, inside its transaction.
pub(super) async fn record(
    tx: &Transaction<'_>,
    statement: &Statement,
    changes: &[&StatusChange],
) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&StatusChange) -> &str| changes.iter().map(|c| f(c)).collect::<Vec<_>>();
    let (ids, senders) = (text(|c| &c.id), text(|c| &c.sender_id));
    let recipients = text(|c| &c.reciever_id);
    let statuses: Vec<&str> = changes.iter().map(|c| c.status.as_str()).collect();
    let ats: Vec<_> = changes.iter().map(|c| to_time(c.at)).collect();
    let params: [&(dyn ToSql + Sync); 5] = [&ids, &statuses, &senders, &recipients, &ats];
    tx.execute(statement, &params).await?;
    Ok(())
}

/// An outbox row: a committed status change waiting to be announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub seq: i64,
    pub change: StatusChange,
}

/// The relay's own connection to the outbox. A lost or silent connection is replaced at the
/// next round, so the relay outlives a Postgres restart or a network cut.
pub struct StatusOutbox {
    rt: Runtime,
    /// `None` after the connection was lost or gave no reply in time.
    client: Option<(Client, Prepared)>,
    config: Config,
    schema: String,
    key: i32,
    open: bool,
}

impl StatusOutbox {
    pub(super) fn connect(config: &Config, schema: &str, key: i32) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| StoreError::Query(e.to_string()))?;
        let mut outbox = StatusOutbox {
            rt,
            client: None,
            config: config.clone(),
            schema: schema.to_owned(),
            key,
            open: false,
        };
        outbox.ensure_open()?;
        Ok(outbox)
    }

    /// Opens a connection when there is none (or it was lost).
    fn ensure_open(&mut self) -> Result<(), StoreError> {
        if self.client.as_ref().is_some_and(|(c, _)| !c.is_closed()) {
            return Ok(());
        }
        let start = timeout(start(&self.config, &self.schema));
        let (client, _conn) = (self.rt.block_on(start))
            .unwrap_or_else(|_| Err(super::no_reply(super::REPLY_TIMEOUT)))
            .map_err(StoreError::Query)?;
        let prepared = match self.rt.block_on(timeout(Prepared::on(&client))) {
            Ok(p) => p.map_err(|e| StoreError::Query(describe(&e)))?,
            Err(_) => return Err(StoreError::Query(super::no_reply(super::REPLY_TIMEOUT))),
        };
        self.client = Some((client, prepared));
        Ok(())
    }

    /// Runs `call` within the store's reply timeout; forgets the connection on any failure,
    /// so the next round starts on a fresh one (a failed round's transaction is gone with it).
    fn within<T>(
        &mut self,
        call: impl AsyncFnOnce(&Client, &Prepared) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        if let Err(e) = self.ensure_open() {
            self.open = false;
            return Err(e);
        }
        let Some((client, prepared)) = &self.client else {
            return Err(StoreError::Query("no connection".into()));
        };
        let result = match self.rt.block_on(timeout(call(client, prepared))) {
            Ok(r) => r.map_err(|e| StoreError::Query(describe(&e))),
            Err(_) => Err(StoreError::Query(super::no_reply(super::REPLY_TIMEOUT))),
        };
        if result.is_err() {
            self.client = None;
            self.open = false;
        }
        result
    }

    /// Begins a relay round: `None` if another pod's relay holds the role, else up to
    /// `limit` events, oldest first, kept until [`finish`](Self::finish) or
    /// [`abort`](Self::abort).
    pub fn begin(&mut self, limit: i64) -> Result<Option<Vec<StatusEvent>>, StoreError> {
        let key = self.key;
        self.open = true;
        let round = self.within(async |client, st| {
            // BEGIN and the lock in one round trip (tokio-postgres pipelines the two).
            let params: [&(dyn ToSql + Sync); 2] = [&RELAY_LOCK, &key];
            let ((), lock) = futures::try_join!(
                client.batch_execute("BEGIN"),
                client.query_one(&st.lock, &params)
            )?;
            if !lock.get::<_, bool>(0) {
                return Ok(None);
            }
            Ok(Some(client.query(&st.take, &[&limit]).await?))
        });
        let Some(rows) = round? else {
            self.abort();
            return Ok(None);
        };
        rows.iter()
            .map(event_row)
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Deletes the events up to `through` (all acknowledged) and ends the round.
    pub fn finish(&mut self, through: i64) -> Result<(), StoreError> {
        self.within(async |client, st| {
            let params: [&(dyn ToSql + Sync); 1] = [&through];
            let (_, ()) = futures::try_join!(
                client.execute(&st.delete, &params),
                client.batch_execute("COMMIT")
            )?;
            Ok(())
        })?;
        self.open = false;
        Ok(())
    }

    /// Ends the round without deleting anything: the events go out again next round.
    pub fn abort(&mut self) {
        if std::mem::take(&mut self.open) {
            let _ = self.within(async |client, _| client.batch_execute("ROLLBACK").await);
        }
    }
}

/// `f` within the store's reply timeout. The timer is made when the future is first
/// polled, inside `block_on`: tokio's timers need the runtime's context.
async fn timeout<F: std::future::Future>(f: F) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::time::timeout(super::REPLY_TIMEOUT, f).await
}

fn event_row(r: &tokio_postgres::Row) -> Result<StatusEvent, StoreError> {
    Ok(StatusEvent {
        seq: r.try_get(0)?,
        change: StatusChange {
            id: r.try_get(1)?,
            status: parse_status(r.try_get(2)?)?,
            sender_id: r.try_get(3)?,
            reciever_id: r.try_get(4)?,
            at: to_micros(r.try_get(5)?)?,
        },
    })
}
