//! The store thread's failure path: a batch that cannot be committed is reported to every
//! sender as failed and nothing of it is announced as stored or changed.

use std::sync::{Arc, Mutex};

use super::*;
use crate::backend::store::StoreError;
use crate::protocol::Status;

/// A store whose every commit fails, as a full disk or a lost database would.
struct BrokenStore {
    attempts: Arc<Mutex<u32>>,
}

impl MessageStore for BrokenStore {
    fn commit(
        &mut self,
        _: &[NewMessage],
        _: &[StatusUpdate],
    ) -> Result<(Vec<InsertResult>, Vec<UpdateResult>), StoreError> {
        *self.attempts.lock().unwrap() += 1;
        Err(StoreError::Query("disk I/O error".into()))
    }
    fn pending(&mut self, _: &str, _: i64, _: usize) -> Result<Vec<PendingMessage>, StoreError> {
        Err(StoreError::Query("disk I/O error".into()))
    }
    fn stuck(
        &mut self,
        _: i64,
        _: i64,
        _: i64,
        _: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        Ok(Vec::new())
    }
    fn status_of(&mut self, _: &str) -> Result<Option<Status>, StoreError> {
        Ok(None)
    }
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<StoreEvent>>>);

impl EventSink for Collect {
    fn emit(&self, events: Vec<StoreEvent>) {
        self.0.lock().unwrap().extend(events);
    }
}

fn message(id: &str) -> NewMessage {
    NewMessage {
        id: id.into(),
        sender_id: "alice".into(),
        reciever_id: "bob".into(),
        client_msg_id: Some(format!("c-{id}")),
        payload: "x".into(),
        created_at: 1,
    }
}

#[test]
fn a_batch_that_cannot_commit_fails_every_insert_and_announces_nothing() {
    let attempts = Arc::new(Mutex::new(0));
    let sink = Collect::default();
    let store = BrokenStore {
        attempts: attempts.clone(),
    };
    let metrics = Arc::new(Metrics::new(1));
    let (handle, thread) =
        spawn_writer(store, sink.clone(), StoreTuning::default(), metrics.clone());
    let reply = ReplyTo { shard: 0, conn: 7 };
    for id in ["m1", "m2"] {
        handle
            .try_submit(StoreCmd::Insert {
                msg: message(id),
                reply,
            })
            .unwrap();
    }
    let update = StatusUpdate {
        id: "m0".into(),
        status: Status::Sent,
        recipient: None,
        at: 2,
    };
    handle
        .try_submit(StoreCmd::Status {
            update,
            reply: None,
        })
        .unwrap();
    handle.sync();
    handle.try_submit(StoreCmd::Stop).unwrap();
    thread.join().unwrap();
    let events = sink.0.lock().unwrap();
    let failed: Vec<_> = events
        .iter()
        .map(|e| match e {
            StoreEvent::InsertFailed {
                reply: r,
                msg,
                error,
            } => {
                assert_eq!(*r, reply);
                assert!(error.contains("disk I/O error"), "{error}");
                msg.id.clone()
            }
            other => panic!("only failures may be reported, got {other:?}"),
        })
        .collect();
    assert_eq!(failed, ["m1", "m2"]);
    assert_eq!(*attempts.lock().unwrap(), 3, "two retries before giving up");
    assert!(
        metrics
            .store
            .failed_batches
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

fn own(id: &str, status: Status, at: i64) -> StoreCmd {
    let update = StatusUpdate {
        id: id.into(),
        status,
        recipient: None,
        at,
    };
    StoreCmd::Status {
        update,
        reply: None,
    }
}

fn ack(id: &str, user: &str, at: i64) -> StoreCmd {
    let update = StatusUpdate {
        id: id.into(),
        status: Status::Delivered,
        recipient: Some(user.into()),
        at,
    };
    let reply = Some(ReplyTo { shard: 0, conn: 1 });
    StoreCmd::Status { update, reply }
}

#[test]
fn a_batch_keeps_the_furthest_status_of_a_message_and_every_ack() {
    let mut batch = Batch::default();
    batch.take(own("m1", Status::Sent, 1));
    batch.take(own("m1", Status::Delivered, 2));
    batch.take(own("m2", Status::Delivered, 3));
    batch.take(own("m2", Status::Sent, 4)); // Late SENT: must not move m2 back.
    batch.take(ack("m1", "bob", 5)); // Takes m1's place; the own update waits beside it.
    batch.take(ack("m1", "bob", 6)); // A second device: answered on its own.
    let got: Vec<_> = batch
        .updates
        .iter()
        .map(|q| {
            let folded = q.folded.as_ref().map(|f| (f.status, f.at));
            (
                q.update.id.as_str(),
                q.update.status,
                q.update.at,
                q.reply.is_some(),
                folded,
            )
        })
        .collect();
    let want = [
        (
            "m1",
            Status::Delivered,
            5,
            true,
            Some((Status::Delivered, 2)),
        ),
        ("m2", Status::Delivered, 3, false, None),
        ("m1", Status::Delivered, 6, true, None),
    ];
    assert_eq!(got, want);
    assert_eq!(batch.coalesced, 3);
}

#[test]
fn an_own_update_after_an_ack_waits_beside_it() {
    let mut batch = Batch::default();
    batch.take(ack("m1", "bob", 1));
    batch.take(own("m1", Status::Sent, 2));
    assert_eq!(batch.updates.len(), 1);
    let folded = batch.updates[0].folded.as_ref().map(|f| f.status);
    assert_eq!(folded, Some(Status::Sent));
}

#[test]
fn a_folded_status_is_committed_and_announced_once_at_the_furthest_status() {
    let (_dir, mut writer, sink) = writer_with_m1();
    let mut statuses = Batch::default();
    statuses.take(own("m1", Status::Sent, 10));
    statuses.take(own("m1", Status::Delivered, 20));
    writer.process(statuses);
    assert_eq!(status_changes(&sink), [Status::Delivered]);
    assert_eq!(
        writer.store.status_of("m1").unwrap(),
        Some(Status::Delivered)
    );
    let folded = writer
        .metrics
        .store
        .coalesced
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(folded, 1);
}

/// A writer on a fresh SQLite store holding message `m1` (alice to bob), events collected.
fn writer_with_m1() -> (
    tempfile::TempDir,
    Writer<crate::backend::store::sqlite::SqliteStore, Collect>,
    Collect,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::backend::store::sqlite::SqliteStore::open(dir.path(), false).unwrap();
    let sink = Collect::default();
    let (_tx, rx) = crossbeam_channel::bounded(1);
    let mut writer = Writer {
        store,
        sink: sink.clone(),
        rx,
        tuning: StoreTuning::default(),
        metrics: Arc::new(Metrics::new(1)),
    };
    let mut insert = Batch::default();
    let reply = ReplyTo { shard: 0, conn: 7 };
    insert.take(StoreCmd::Insert {
        msg: message("m1"),
        reply,
    });
    writer.process(insert);
    (dir, writer, sink)
}

/// The statuses announced so far, in order; panics on a refused ack.
fn status_changes(sink: &Collect) -> Vec<Status> {
    let events = sink.0.lock().unwrap();
    let changes = events.iter().filter_map(|e| match e {
        StoreEvent::StatusChanged(c) => Some(c.status),
        StoreEvent::AckRefused { .. } => panic!("unexpected refusal: {events:?}"),
        _ => None,
    });
    changes.collect()
}

#[test]
fn a_refused_ack_does_not_swallow_the_sent_folded_into_it() {
    let (_dir, mut writer, sink) = writer_with_m1();
    let mut statuses = Batch::default();
    statuses.take(own("m1", Status::Sent, 10));
    statuses.take(ack("m1", "mallory", 20));
    writer.process(statuses);
    let events = sink.0.lock().unwrap();
    let refused = events
        .iter()
        .any(|e| matches!(e, StoreEvent::AckRefused { id, .. } if id == "m1"));
    assert!(refused, "the stranger's ack is refused: {events:?}");
    let sent = events
        .iter()
        .any(|e| matches!(e, StoreEvent::StatusChanged(c) if c.status == Status::Sent));
    assert!(sent, "the pod's own SENT still applies: {events:?}");
    assert_eq!(writer.store.status_of("m1").unwrap(), Some(Status::Sent));
}

#[test]
fn an_ack_folded_over_the_sent_commits_once_as_delivered() {
    let (_dir, mut writer, sink) = writer_with_m1();
    let mut statuses = Batch::default();
    statuses.take(own("m1", Status::Sent, 10));
    statuses.take(ack("m1", "bob", 20));
    writer.process(statuses);
    assert_eq!(status_changes(&sink), [Status::Delivered]);
}
