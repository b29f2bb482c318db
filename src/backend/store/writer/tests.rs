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
    fn emit(&self, event: StoreEvent) {
        self.0.lock().unwrap().push(event);
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
