//! The store thread: a batch that cannot be committed is reported to every sender as failed
//! and nothing of it is announced; status updates of one message fold in a batch, and a
//! refused ack does not take the pod's own update down with it.

use std::sync::{Arc, Mutex};

use super::*;
use crate::backend::store::group::GroupOp;
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
    fn history(
        &mut self,
        _: &str,
        _: i64,
        _: usize,
    ) -> Result<crate::backend::store::HistoryPage, StoreError> {
        Err(StoreError::Query("disk I/O error".into()))
    }
    fn prune(
        &mut self,
        _: i64,
        _: i64,
        _: usize,
    ) -> Result<crate::backend::store::PruneRound, StoreError> {
        Err(StoreError::Query("disk I/O error".into()))
    }
    fn undelivered(
        &mut self,
        _: i64,
        _: usize,
    ) -> Result<crate::backend::store::UndeliveredRound, StoreError> {
        Err(StoreError::Query("disk I/O error".into()))
    }
    fn sent_statuses(
        &mut self,
        _: &str,
        _: &[String],
    ) -> Result<Vec<(String, Status)>, StoreError> {
        Err(StoreError::Query("disk I/O error".into()))
    }
    fn mark_read(
        &mut self,
        _: &crate::backend::store::ReadState,
        _: &str,
    ) -> Result<Option<i64>, StoreError> {
        Err(StoreError::Query("disk I/O error".into()))
    }
    fn reads_of(&mut self, _: &str) -> Result<Vec<crate::backend::store::ReadState>, StoreError> {
        Err(StoreError::Query("disk I/O error".into()))
    }
    fn claim_stuck(
        &mut self,
        _: i64,
        _: crate::backend::store::StuckAfter,
        _: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        Ok(Vec::new())
    }
    fn park(&mut self, _: &[String], _: i64) -> Result<(), StoreError> {
        Ok(())
    }
    fn status_of(&mut self, _: &str) -> Result<Option<Status>, StoreError> {
        Ok(None)
    }

    fn group(&mut self, _: &GroupOp) -> Result<GroupAnswer, StoreError> {
        Err(StoreError::Query("broken".into()))
    }

    fn record_seen(&mut self, _: &[(String, i64)]) -> Result<(), StoreError> {
        Err(StoreError::Query("broken".into()))
    }

    fn peers_seen(
        &mut self,
        _: &str,
        _: &[String],
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        Err(StoreError::Query("broken".into()))
    }

    fn conversation(
        &mut self,
        _: &str,
        _: i64,
        _: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        Err(StoreError::Query("broken".into()))
    }

    fn conversations_of(
        &mut self,
        _: &str,
        _: usize,
    ) -> Result<Vec<crate::backend::store::ConversationSummary>, StoreError> {
        Err(StoreError::Query("broken".into()))
    }

    fn last_seen(&mut self, _: &[String]) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        Err(StoreError::Query("broken".into()))
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
    let (tx, rx) = crossbeam_channel::unbounded();
    let reply = ReplyTo { shard: 0, conn: 7 };
    for id in ["m1", "m2"] {
        let msg = message(id);
        tx.send(StoreCmd::Insert { msg, reply }).unwrap();
    }
    let update = StatusUpdate {
        id: "m0".into(),
        status: Status::Sent,
        recipient: None,
        at: 2,
    };
    tx.send(StoreCmd::Status {
        update,
        reply: None,
    })
    .unwrap();
    let (synced, sync) = crossbeam_channel::bounded(1);
    tx.send(StoreCmd::Sync(synced)).unwrap();
    // Everything is queued before the thread starts, so it is one batch: a command taken
    // alone after an idle spell would be a batch (and three attempts) of its own.
    let writer = Writer::new(
        store,
        sink.clone(),
        rx,
        StoreTuning::default(),
        metrics.clone(),
    );
    let thread = std::thread::spawn(move || writer.run());
    sync.recv().unwrap();
    assert_eq!(*attempts.lock().unwrap(), 3, "two retries before giving up");
    tx.send(StoreCmd::Stop).unwrap();
    thread.join().unwrap();
    // The kept status update is tried again with the last batch, then given up.
    assert!(*attempts.lock().unwrap() >= 6);
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

/// SQLite whose commits fail from the `fail_from`-th on (counting from 1), as a database
/// lost mid-run would.
struct FailingFrom {
    inner: crate::backend::store::sqlite::SqliteStore,
    commits: usize,
    fail_from: usize,
}

impl MessageStore for FailingFrom {
    fn commit(
        &mut self,
        inserts: &[NewMessage],
        updates: &[StatusUpdate],
    ) -> Result<(Vec<InsertResult>, Vec<UpdateResult>), StoreError> {
        self.commits += 1;
        if self.commits >= self.fail_from {
            return Err(StoreError::Query("disk I/O error".into()));
        }
        self.inner.commit(inserts, updates)
    }
    fn pending(
        &mut self,
        r: &str,
        after: i64,
        n: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        self.inner.pending(r, after, n)
    }
    fn history(
        &mut self,
        u: &str,
        after: i64,
        n: usize,
    ) -> Result<crate::backend::store::HistoryPage, StoreError> {
        self.inner.history(u, after, n)
    }
    fn prune(
        &mut self,
        before: i64,
        after: i64,
        n: usize,
    ) -> Result<crate::backend::store::PruneRound, StoreError> {
        self.inner.prune(before, after, n)
    }
    fn undelivered(
        &mut self,
        before: i64,
        n: usize,
    ) -> Result<crate::backend::store::UndeliveredRound, StoreError> {
        self.inner.undelivered(before, n)
    }
    fn sent_statuses(
        &mut self,
        sender: &str,
        ids: &[String],
    ) -> Result<Vec<(String, Status)>, StoreError> {
        self.inner.sent_statuses(sender, ids)
    }
    fn mark_read(
        &mut self,
        read: &crate::backend::store::ReadState,
        peer: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.inner.mark_read(read, peer)
    }
    fn reads_of(&mut self, u: &str) -> Result<Vec<crate::backend::store::ReadState>, StoreError> {
        self.inner.reads_of(u)
    }
    fn claim_stuck(
        &mut self,
        now: i64,
        after: crate::backend::store::StuckAfter,
        n: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        self.inner.claim_stuck(now, after, n)
    }
    fn park(&mut self, ids: &[String], now: i64) -> Result<(), StoreError> {
        self.inner.park(ids, now)
    }
    fn status_of(&mut self, id: &str) -> Result<Option<Status>, StoreError> {
        self.inner.status_of(id)
    }

    fn group(&mut self, op: &GroupOp) -> Result<GroupAnswer, StoreError> {
        self.inner.group(op)
    }

    fn record_seen(&mut self, seen: &[(String, i64)]) -> Result<(), StoreError> {
        self.inner.record_seen(seen)
    }

    fn peers_seen(
        &mut self,
        asker: &str,
        users: &[String],
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        self.inner.peers_seen(asker, users)
    }

    fn conversation(
        &mut self,
        id: &str,
        before: i64,
        limit: usize,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        self.inner.conversation(id, before, limit)
    }

    fn conversations_of(
        &mut self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<crate::backend::store::ConversationSummary>, StoreError> {
        self.inner.conversations_of(user, limit)
    }

    fn last_seen(&mut self, users: &[String]) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        self.inner.last_seen(users)
    }
}

/// A writer on a fresh SQLite store holding message `m1` (alice to bob), events collected.
fn writer_with_m1() -> (tempfile::TempDir, Writer<FailingFrom, Collect>, Collect) {
    let dir = tempfile::tempdir().unwrap();
    let inner = crate::backend::store::sqlite::SqliteStore::open(dir.path(), false).unwrap();
    let store = FailingFrom {
        inner,
        commits: 0,
        fail_from: usize::MAX,
    };
    let sink = Collect::default();
    let (_tx, rx) = crossbeam_channel::bounded(1);
    let metrics = Arc::new(Metrics::new(1));
    let mut writer = Writer::new(store, sink.clone(), rx, StoreTuning::default(), metrics);
    let mut insert = Batch::default();
    let reply = ReplyTo { shard: 0, conn: 7 };
    insert.take(StoreCmd::Insert {
        msg: message("m1"),
        reply,
    });
    writer.process(insert);
    (dir, writer, sink)
}

/// Commits the pod's own SENT of `m1` and an ack by `acker` in one batch (they fold).
fn sent_and_ack_in_one_batch(writer: &mut Writer<FailingFrom, Collect>, acker: &str) {
    let mut statuses = Batch::default();
    statuses.take(own("m1", Status::Sent, 10));
    statuses.take(ack("m1", acker, 20));
    writer.process(statuses);
}

/// The statuses announced in `events`, in order.
fn announced(events: &[StoreEvent]) -> Vec<Status> {
    let changes = events.iter().filter_map(|e| match e {
        StoreEvent::StatusChanged(c) => Some(c.status),
        _ => None,
    });
    changes.collect()
}

/// The statuses announced so far, in order; panics on a refused ack.
fn status_changes(sink: &Collect) -> Vec<Status> {
    let events = sink.0.lock().unwrap();
    assert!(!refused(&events), "unexpected refusal: {events:?}");
    announced(&events)
}

fn refused(events: &[StoreEvent]) -> bool {
    let is_refusal = |e: &StoreEvent| matches!(e, StoreEvent::AckRefused { id, .. } if id == "m1");
    events.iter().any(is_refusal)
}

#[test]
fn a_refused_ack_does_not_swallow_the_sent_folded_into_it() {
    let (_dir, mut writer, sink) = writer_with_m1();
    sent_and_ack_in_one_batch(&mut writer, "mallory");
    let events = sink.0.lock().unwrap();
    assert!(refused(&events), "the stranger's ack is refused");
    assert_eq!(
        announced(&events),
        [Status::Sent],
        "the pod's own SENT still applies"
    );
    assert_eq!(writer.store.status_of("m1").unwrap(), Some(Status::Sent));
}

#[test]
fn a_sent_unfolded_from_a_refused_ack_that_cannot_be_stored_is_kept_for_the_next_batch() {
    let (_dir, mut writer, sink) = writer_with_m1();
    // The status batch commits; the commit that re-applies the SENT fails (with retries).
    writer.store.fail_from = writer.store.commits + 2;
    sent_and_ack_in_one_batch(&mut writer, "mallory");
    let events = sink.0.lock().unwrap();
    assert!(refused(&events), "the refusal still reaches the acker");
    assert_eq!(
        announced(&events),
        [],
        "nothing is announced that was not stored"
    );
    let failed = writer
        .metrics
        .store
        .failed_batches
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(failed, 1);
    assert_eq!(
        writer.store.inner.status_of("m1").unwrap(),
        Some(Status::None)
    );
    assert!(
        !writer.deferred.is_empty(),
        "the SENT waits for the next batch"
    );
}

/// A status batch that fails even after its retries (the store is down) is not dropped: an
/// acked message left at SENT would be redriven onto the connection that acked it. Its
/// updates go with the next batch once the store is back, and are announced then.
#[test]
fn status_updates_of_a_failed_commit_are_written_with_the_next_batch() {
    let (_dir, mut writer, sink) = writer_with_m1();
    writer.store.fail_from = writer.store.commits + 1;
    sent_and_ack_in_one_batch(&mut writer, "bob");
    assert_eq!(
        status_changes(&sink),
        [],
        "nothing announced that is not stored"
    );
    writer.store.fail_from = usize::MAX;
    let mut next = Batch::default();
    writer.deferred.move_into(&mut next);
    next.take(own("m1", Status::Sent, 30)); // A later own update folds into the kept ack.
    writer.process(next);
    assert_eq!(status_changes(&sink), [Status::Delivered]);
    assert_eq!(
        writer.store.status_of("m1").unwrap(),
        Some(Status::Delivered)
    );
    assert!(writer.deferred.is_empty());
}

/// An update the store refuses for good is given up after a bounded number of failed
/// batches instead of failing every batch after it.
#[test]
fn kept_updates_are_given_up_after_too_many_failed_batches() {
    let (_dir, mut writer, _sink) = writer_with_m1();
    writer.store.fail_from = writer.store.commits + 1;
    let mut kept = Batch::default();
    kept.take(own("m1", Status::Sent, 10));
    let updates = std::mem::take(&mut kept.updates);
    assert_eq!(writer.deferred.keep(updates), 0);
    for _ in 1..batch::DEFERRED_ROUNDS {
        assert_eq!(writer.deferred.keep(Vec::new()), 0);
    }
    assert_eq!(writer.deferred.keep(Vec::new()), 1, "given up");
    assert!(writer.deferred.is_empty());
}

#[test]
fn an_ack_folded_over_the_sent_commits_once_as_delivered() {
    let (_dir, mut writer, sink) = writer_with_m1();
    sent_and_ack_in_one_batch(&mut writer, "bob");
    assert_eq!(status_changes(&sink), [Status::Delivered]);
}

/// A writer on a fresh SQLite store that paces by `pace` below `pace_below` commands, and
/// the sender of its queue.
fn paced_writer(
    pace: Duration,
    pace_below: usize,
) -> (
    tempfile::TempDir,
    Writer<crate::backend::store::sqlite::SqliteStore, Collect>,
    crossbeam_channel::Sender<StoreCmd>,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::backend::store::sqlite::SqliteStore::open(dir.path(), false).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let tuning = StoreTuning {
        pace,
        pace_below,
        ..StoreTuning::default()
    };
    let metrics = Arc::new(Metrics::new(1));
    let writer = Writer::new(store, Collect::default(), rx, tuning, metrics);
    (dir, writer, tx)
}

/// An insert of message `id` answered to connection 7 of shard 0.
fn insert(id: &str) -> StoreCmd {
    StoreCmd::Insert {
        msg: message(id),
        reply: ReplyTo { shard: 0, conn: 7 },
    }
}

/// Taking a batch never waits, however small it is: the pacing is the open window that
/// `next_command` sleeps out (tested below), and a command after an idle spell commits at once.
#[test]
fn a_batch_takes_what_is_queued_without_waiting() {
    let pace = Duration::from_secs(2);
    let (_dir, writer, tx) = paced_writer(pace, 2);
    let gathered = |first: StoreCmd| {
        let mut batch = Batch::default();
        batch.take(first);
        let started = std::time::Instant::now();
        writer.gather(&mut batch);
        (batch.len(), started.elapsed())
    };
    let (n, waited) = gathered(insert("m1"));
    assert!(n == 1 && waited < pace / 2, "{n} after {waited:?}");
    tx.send(insert("m3")).unwrap();
    tx.send(insert("m4")).unwrap();
    assert_eq!(gathered(insert("m2")).0, 3, "everything queued comes along");
    let (sync, _) = crossbeam_channel::bounded(1);
    let (n, waited) = gathered(StoreCmd::Sync(sync));
    assert!(n == 1 && waited < pace / 2, "{n} after {waited:?}");
}

/// While commands keep coming, a window opens at each commit: the store thread sleeps out
/// what is left of it and then takes what came meanwhile without blocking on the queue (so
/// a command waits at most the rest of the window, and its sender wakes nobody); a full
/// batch already waiting is taken at once.
#[test]
fn an_open_window_is_slept_out_then_what_came_is_taken_without_blocking() {
    let pace = Duration::from_secs(2);
    let (_dir, writer, tx) = paced_writer(pace, 2);
    let is_insert = |c: Option<Option<StoreCmd>>| matches!(c, Some(Some(StoreCmd::Insert { .. })));
    // A window opened 1.5 s ago: the command sent now waits the ~0.5 s left, not a window.
    let opened = std::time::Instant::now() - Duration::from_millis(1500);
    tx.send(insert("m1")).unwrap();
    let started = std::time::Instant::now();
    assert!(is_insert(writer.next_command(Some(opened))));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_millis(1500),
        "waited {waited:?}"
    );
    // A full batch (pace_below = 2) waiting: taken at once, though the window just opened.
    tx.send(insert("m2")).unwrap();
    tx.send(insert("m3")).unwrap();
    let started = std::time::Instant::now();
    assert!(is_insert(writer.next_command(Some(started))));
    assert!(started.elapsed() < pace, "waited {:?}", started.elapsed());
    // Without a window (idle), the next command is taken as it comes.
    let started = std::time::Instant::now();
    assert!(is_insert(writer.next_command(None)));
    assert!(started.elapsed() < pace);
}

/// Group operations the store cannot run are each answered with the error (the connection
/// turns it into `store_unavailable`, nothing stored), and nothing is announced.
#[test]
fn group_operations_the_store_cannot_run_are_each_answered_with_the_error() {
    let sink = Collect::default();
    let store = BrokenStore {
        attempts: Arc::new(Mutex::new(0)),
    };
    let metrics = Arc::new(Metrics::new(1));
    let (handle, thread) = spawn_writer(store, sink.clone(), StoreTuning::default(), metrics);
    let waits: Vec<_> = ["g:a", "g:b"]
        .iter()
        .map(|group| {
            let (reply, wait) = futures::channel::oneshot::channel();
            let op = GroupOp::Members {
                group: group.to_string(),
                user: "alice".into(),
            };
            handle.try_submit(StoreCmd::Group { op, reply }).unwrap();
            wait
        })
        .collect();
    for wait in waits {
        let answer = futures::executor::block_on(wait).expect("answered");
        assert!(
            matches!(answer, Err(e) if e.contains("broken")),
            "an error, not a refusal"
        );
    }
    handle.stop();
    thread.join().unwrap();
    assert!(sink.0.lock().unwrap().is_empty(), "nothing announced");
}

/// After an idle spell the first command commits at once (a lone message at low load waits
/// for no window); the commit opens a window, and a command that comes within it waits the
/// window out, so that under load commits stay at most one per window.
#[test]
fn the_first_command_after_idle_commits_at_once_and_opens_a_window() {
    let pace = Duration::from_secs(2);
    let (_dir, writer, tx) = paced_writer(pace, 64);
    let sink = writer.sink.clone();
    let thread = std::thread::spawn(move || writer.run());
    let answered = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().len() < n {
            assert!(std::time::Instant::now() < deadline, "{n} answers in 10 s");
            std::thread::yield_now();
        }
        std::time::Instant::now()
    };
    let sent = std::time::Instant::now();
    tx.send(insert("m1")).unwrap();
    let first = answered(1);
    assert!(
        first - sent < pace / 2,
        "idle: committed after {:?}",
        first - sent
    );
    tx.send(insert("m2")).unwrap();
    let second = answered(2);
    assert!(
        second - first >= pace * 3 / 4,
        "within the window: committed after {:?}",
        second - first
    );
    tx.send(StoreCmd::Stop).unwrap();
    thread.join().unwrap();
}
