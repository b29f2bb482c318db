//! The status outbox: committed status changes become rows of `status_events` in the very
//! transaction that changes the status ([`record`]), and a relay reads them in order and
//! deletes them once the broker acknowledged them ([`StatusOutbox`]). A pod killed between
//! the commit and the relay loses no event; the next relay (any pod) sends it.

use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Transaction};

use super::{describe, parse_status, start, to_micros, to_time};
use crate::backend::store::{StatusChange, StoreError};

const RECORD_SQL: &str =
    "INSERT INTO status_events (message_id, status, sender_id, reciever_id, at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])";

/// One relay at a time in a deployment (per schema), so the events of one message leave in
/// the order they were committed. The relay is off the message path: this is no serial point
/// for messages, only for announcing them.
const RELAY_LOCK: i32 = 0x6453_5203;

const TAKE_SQL: &str = "SELECT seq, message_id, status, sender_id, reciever_id, at
     FROM status_events ORDER BY seq LIMIT $1";

/// Appends the committed changes of a batch to the outbox, inside its transaction.
pub(super) async fn record(
    tx: &Transaction<'_>,
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
    tx.execute(RECORD_SQL, &params).await?;
    Ok(())
}

/// An outbox row: a committed status change waiting to be announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub seq: i64,
    pub change: StatusChange,
}

/// The relay's own connection to the outbox.
pub struct StatusOutbox {
    rt: Runtime,
    client: Client,
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
        let (client, _conn) = rt
            .block_on(start(config, schema))
            .map_err(StoreError::Query)?;
        Ok(StatusOutbox {
            rt,
            client,
            key,
            open: false,
        })
    }

    /// Whether the connection was lost (the relay then opens a new outbox).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Begins a relay round: `None` if another pod's relay holds the role, else up to
    /// `limit` events, oldest first, kept until [`finish`](Self::finish) or
    /// [`abort`](Self::abort).
    pub fn begin(&mut self, limit: i64) -> Result<Option<Vec<StatusEvent>>, StoreError> {
        let (client, key) = (&self.client, self.key);
        let round = async {
            client.batch_execute("BEGIN").await?;
            let lock = "SELECT pg_try_advisory_xact_lock($1, $2)";
            let held: bool = client.query_one(lock, &[&RELAY_LOCK, &key]).await?.get(0);
            if !held {
                return Ok(None);
            }
            Ok::<_, tokio_postgres::Error>(Some(client.query(TAKE_SQL, &[&limit]).await?))
        };
        self.open = true;
        let rows = match self.rt.block_on(round) {
            Ok(Some(rows)) => rows,
            Ok(None) => {
                self.abort();
                return Ok(None);
            }
            Err(e) => {
                self.abort();
                return Err(StoreError::Query(describe(&e)));
            }
        };
        rows.iter()
            .map(event_row)
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Deletes the events up to `through` (all acknowledged) and ends the round.
    pub fn finish(&mut self, through: i64) -> Result<(), StoreError> {
        let client = &self.client;
        let done = async {
            let del = "DELETE FROM status_events WHERE seq <= $1";
            client.execute(del, &[&through]).await?;
            client.batch_execute("COMMIT").await
        };
        self.open = false;
        self.rt
            .block_on(done)
            .map_err(|e| StoreError::Query(describe(&e)))
    }

    /// Ends the round without deleting anything: the events go out again next round.
    pub fn abort(&mut self) {
        if std::mem::take(&mut self.open) {
            let _ = self.rt.block_on(self.client.batch_execute("ROLLBACK"));
        }
    }
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
