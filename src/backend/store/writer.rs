//! The store's own thread: group commit, then answers through an [`EventSink`].

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use futures::channel::oneshot;

use crate::metrics::Metrics;
use batch::{Batch, Deferred, Queued};

use super::{
    InsertResult, MessageStore, NewMessage, PendingMessage, StatusChange, StatusUpdate,
    UpdateResult,
};

use super::group::GroupOp;

/// A group operation's answer: its outcome, or why it was refused.
pub type GroupAnswer = Result<super::group::GroupOutcome, super::group::GroupRefusal>;

/// Where an answer goes: a connection on a shard of this pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    pub shard: usize,
    pub conn: u64,
}

/// Work for the store thread.
pub enum StoreCmd {
    /// Store a message; answered with [`StoreEvent::Inserted`] or [`StoreEvent::InsertFailed`].
    Insert { msg: NewMessage, reply: ReplyTo },
    /// Move a status forward; acks carry `reply` so a refusal can be reported.
    Status {
        update: StatusUpdate,
        reply: Option<ReplyTo>,
    },
    /// Undelivered messages for a connecting recipient, read after everything queued before.
    Pending {
        recipient: String,
        after_seq: i64,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<PendingMessage>, String>>,
    },
    /// A page of a user's stream for a device's sync, read after everything queued before
    /// (see [`MessageStore::history`]).
    History {
        user: String,
        after_pos: i64,
        limit: usize,
        reply: oneshot::Sender<Result<super::HistoryPage, String>>,
    },
    /// A read receipt (see [`MessageStore::mark_read`]).
    Read {
        read: super::ReadState,
        peer: String,
        reply: oneshot::Sender<Result<Option<i64>, String>>,
    },
    /// The receipts a syncing device needs (see [`MessageStore::reads_of`]).
    ReadsOf {
        user: String,
        reply: oneshot::Sender<Result<Vec<super::ReadState>, String>>,
    },
    /// One retention round (see [`MessageStore::prune`]).
    Prune {
        before: i64,
        after_seq: i64,
        window: usize,
        reply: oneshot::Sender<Result<super::PruneRound, String>>,
    },
    /// Statuses of messages a user sent (see [`MessageStore::sent_statuses`]).
    SentStatuses {
        sender: String,
        ids: Vec<String>,
        reply: oneshot::Sender<Result<Vec<(String, crate::protocol::Status)>, String>>,
    },
    /// One round of the undelivered sweep (see [`MessageStore::undelivered`]).
    Undelivered {
        before: i64,
        limit: usize,
        reply: oneshot::Sender<Result<super::UndeliveredRound, String>>,
    },
    /// Claims messages for the redrive (see [`MessageStore::claim_stuck`]).
    Claim {
        now: i64,
        after: super::StuckAfter,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<PendingMessage>, String>>,
    },
    /// Takes messages out of the redrive for a while (see [`MessageStore::park`]); a failure
    /// only means they are claimed again sooner.
    Park { ids: Vec<String>, now: i64 },
    /// A user was seen now (a connection opened or closed): recorded once per batch for every
    /// user seen in it (see [`MessageStore::record_seen`]).
    Seen { user: String, at: i64 },
    /// Presence of `users` as `asker` may see it (see [`MessageStore::peers_seen`]).
    Presence {
        asker: String,
        users: Vec<String>,
        reply: oneshot::Sender<Result<Vec<super::LastSeen>, String>>,
    },
    /// A group operation, its own transaction (see [`MessageStore::group`]).
    Group {
        op: super::group::GroupOp,
        reply: oneshot::Sender<Result<GroupAnswer, String>>,
    },
    /// A read of the server API (history, conversations, presence), run on the store thread
    /// after everything queued before it; the closure sends its own answer.
    Query(QueryFn),
    /// Answered once everything queued before it is committed.
    Sync(Sender<()>),
    /// Commit what is queued, then end the thread.
    Stop,
}

/// A read the server API runs on the store thread: one call on the store, whose result the
/// closure sends back itself (a new question needs no new command).
pub type QueryFn = Box<dyn FnOnce(&mut dyn MessageStore) + Send>;

/// Outcomes the store thread reports after each commit.
#[derive(Debug)]
pub enum StoreEvent {
    Inserted {
        reply: ReplyTo,
        msg: NewMessage,
        result: InsertResult,
    },
    InsertFailed {
        reply: ReplyTo,
        msg: NewMessage,
        error: String,
    },
    StatusChanged(StatusChange),
    AckRefused {
        reply: ReplyTo,
        id: String,
    },
}

/// Receives store outcomes; implemented by the pod, which forwards them to shard inboxes.
/// `emit` may block (back-pressure from a full inbox) but must never wait on the store.
pub trait EventSink: Send + 'static {
    /// The outcomes of one commit, in order. One call per batch lets the pod hand each shard
    /// one inbox message (one cross-thread wake-up) per commit instead of one per event.
    fn emit(&self, events: Vec<StoreEvent>);
}

/// Tuning of the store thread.
#[derive(Debug, Clone, Copy)]
pub struct StoreTuning {
    /// Commands queued before executors see `overloaded` (default 65536).
    pub queue: usize,
    /// Most commands in one transaction (default 2048): bounds commit latency under load.
    pub batch_max: usize,
    /// Group-commit pacing (default zero: commit what is there): while commands keep coming,
    /// the next batch is taken no sooner than this long after the previous commit ended,
    /// unless `pace_below` commands are already queued; the first command after an idle
    /// spell commits at once (see `Writer::run`). Where a transaction costs much more than a
    /// command (Postgres: several round trips and a WAL flush each), this trades a bounded
    /// latency for fewer, fuller transactions; under high load batches fill by themselves.
    pub pace: Duration,
    /// See `pace`.
    pub pace_below: usize,
}

impl Default for StoreTuning {
    fn default() -> Self {
        StoreTuning {
            queue: 65_536,
            batch_max: 2048,
            pace: Duration::ZERO,
            pace_below: 64,
        }
    }
}

impl std::fmt::Debug for StoreCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            StoreCmd::Insert { .. } => "Insert",
            StoreCmd::Status { .. } => "Status",
            StoreCmd::Pending { .. } => "Pending",
            StoreCmd::History { .. } => "History",
            StoreCmd::Prune { .. } => "Prune",
            StoreCmd::Read { .. } => "Read",
            StoreCmd::ReadsOf { .. } => "ReadsOf",
            StoreCmd::Claim { .. } => "Claim",
            StoreCmd::Undelivered { .. } => "Undelivered",
            StoreCmd::SentStatuses { .. } => "SentStatuses",
            StoreCmd::Park { .. } => "Park",
            StoreCmd::Group { .. } => "Group",
            StoreCmd::Seen { .. } => "Seen",
            StoreCmd::Presence { .. } => "Presence",
            StoreCmd::Query(_) => "Query",
            StoreCmd::Sync(_) => "Sync",
            StoreCmd::Stop => "Stop",
        };
        f.write_str(name)
    }
}

/// Starts one store thread.
pub fn spawn_writer<S: MessageStore, E: EventSink>(
    store: S,
    sink: E,
    tuning: StoreTuning,
    metrics: Arc<Metrics>,
) -> (StoreHandle, JoinHandle<()>) {
    let (tx, handle) = spawn_lane(0, store, sink, tuning, metrics);
    (
        StoreHandle {
            lanes: vec![tx].into(),
        },
        handle,
    )
}

/// Starts one store thread per store (a pool of flushers, each on its own connection).
pub fn spawn_writers<S: MessageStore, E: EventSink + Clone>(
    stores: Vec<S>,
    sink: E,
    tuning: StoreTuning,
    metrics: Arc<Metrics>,
) -> (StoreHandle, Vec<JoinHandle<()>>) {
    let (lanes, threads): (Vec<_>, Vec<_>) = (stores.into_iter().enumerate())
        .map(|(i, store)| spawn_lane(i, store, sink.clone(), tuning, metrics.clone()))
        .unzip();
    (
        StoreHandle {
            lanes: lanes.into(),
        },
        threads,
    )
}

fn spawn_lane<S: MessageStore, E: EventSink>(
    lane: usize,
    store: S,
    sink: E,
    tuning: StoreTuning,
    metrics: Arc<Metrics>,
) -> (Sender<StoreCmd>, JoinHandle<()>) {
    let (tx, rx) = crossbeam_channel::bounded(tuning.queue);
    let name = match lane {
        0 => "store-writer".to_owned(),
        n => format!("store-writer-{n}"),
    };
    let handle = std::thread::Builder::new()
        .name(name)
        .spawn(move || Writer::new(store, sink, rx, tuning, metrics).run())
        .expect("spawn store thread");
    (tx, handle)
}

struct Writer<S, E> {
    store: S,
    sink: E,
    rx: Receiver<StoreCmd>,
    tuning: StoreTuning,
    metrics: Arc<Metrics>,
    /// Status updates of failed commits, retried with the next batch.
    deferred: Deferred,
}

/// How often kept status updates are retried while no command comes.
const DEFERRED_RETRY: Duration = Duration::from_millis(500);

impl<S: MessageStore, E: EventSink> Writer<S, E> {
    /// A store thread's state before its first command: nothing kept from failed commits.
    fn new(
        store: S,
        sink: E,
        rx: Receiver<StoreCmd>,
        tuning: StoreTuning,
        metrics: Arc<Metrics>,
    ) -> Self {
        let deferred = Deferred::default();
        Writer {
            store,
            sink,
            rx,
            tuning,
            metrics,
            deferred,
        }
    }

    /// Commits batch after batch. While commands keep coming (the last batch had some), the
    /// next window starts right after the commit and is slept through before the queue is
    /// looked at, instead of blocking on the queue: commands that arrive meanwhile wait at
    /// most what is left of that window, and the shards that queue them wake nobody (a
    /// channel send only makes a system call for a receiver parked on it). At 1,000 msg/s
    /// that is one wake-up per commit fewer for the store thread and a futex wake fewer per
    /// command for the shards (perf/RESULTS.md §25). A window that brought nothing parks the
    /// thread on the queue again; the next command then commits at once and opens the next
    /// window (§26), so a lone message at low load waits for no window at all.
    fn run(mut self) {
        let _span = tracing::info_span!("store_writer").entered();
        let mut window = None;
        while let Some(first) = self.next_command(window) {
            let mut batch = Batch::default();
            self.deferred.move_into(&mut batch);
            if let Some(cmd) = first {
                batch.take(cmd);
            }
            // No wait here: after an idle spell the first command commits at once (waiting
            // would only add latency when nothing else is coming); under load windows chain
            // from commit to commit, so commits per second stay bounded by the window.
            self.gather(&mut batch);
            let (stop, busy) = (batch.stop, batch.len() > 0);
            self.process(batch);
            if stop {
                break;
            }
            window = (busy && !self.tuning.pace.is_zero()).then(std::time::Instant::now);
        }
        tracing::info!("store writer stopped");
    }

    /// The next command; `Some(None)` when kept updates are due for a retry and none came,
    /// `None` when every sender is gone. With a `window` open (see [`run`](Self::run)), the
    /// rest of it is slept through first and a command that came meanwhile is taken without
    /// blocking.
    fn next_command(&self, window: Option<std::time::Instant>) -> Option<Option<StoreCmd>> {
        if let Some(opened) = window {
            // A full batch waiting already is committed at once, as by `gather`.
            if self.rx.len() < self.tuning.pace_below {
                let end = opened + self.tuning.pace;
                std::thread::sleep(end.saturating_duration_since(std::time::Instant::now()));
            }
            match self.rx.try_recv() {
                Ok(cmd) => return Some(Some(cmd)),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
        }
        if self.deferred.is_empty() {
            return self.rx.recv().ok().map(Some);
        }
        match self.rx.recv_timeout(DEFERRED_RETRY) {
            Ok(cmd) => Some(Some(cmd)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Some(None),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Takes what is queued, up to a full batch, without waiting: the only wait is the one
    /// [`next_command`](Self::next_command) sleeps out of an open window.
    fn gather(&self, batch: &mut Batch) {
        while !batch.stop && batch.len() < self.tuning.batch_max {
            match self.rx.try_recv() {
                Ok(cmd) => batch.take(cmd),
                Err(_) => break,
            }
        }
    }

    fn process(&mut self, batch: Batch) {
        let inserts: Vec<NewMessage> = batch.inserts.iter().map(|(m, _)| m.clone()).collect();
        let updates: Vec<StatusUpdate> = batch.updates.iter().map(|q| q.update.clone()).collect();
        let coalesced = &self.metrics.store.coalesced;
        coalesced.fetch_add(batch.coalesced, std::sync::atomic::Ordering::Relaxed);
        let mut refused_folds = Vec::new();
        if !inserts.is_empty() || !updates.is_empty() {
            let result = self.commit_timed(&inserts, &updates);
            refused_folds = match result {
                Ok((ins, ups)) => {
                    self.deferred.committed();
                    crate::failpoints::crash_point("after_commit_before_accepted");
                    self.report(batch.inserts, ins, batch.updates, ups)
                }
                Err(error) => {
                    self.report_failure(batch.inserts, &error);
                    let dropped = self.deferred.keep(batch.updates);
                    if dropped > 0 {
                        tracing::error!(dropped, "kept status updates given up");
                    }
                    Vec::new()
                }
            };
        }
        self.reapply_refused_folds(refused_folds);
        if !batch.seen.is_empty() {
            if let Err(e) = self.store.record_seen(&batch.seen) {
                // Presence is best effort: the next open or close records the user again.
                tracing::warn!(error = %e, n = batch.seen.len(), "last-seen times not recorded");
            }
        }
        let mut groups = Vec::new();
        for cmd in batch.after {
            match cmd {
                StoreCmd::Group { op, reply } => groups.push((op, reply)),
                other => {
                    self.answer_groups(std::mem::take(&mut groups));
                    self.answer_after_commit(other);
                }
            }
        }
        self.answer_groups(groups);
    }

    /// Group operations that queued together run as one store call (one transaction where
    /// the store can: see [`MessageStore::group_batch`]), in order.
    fn answer_groups(
        &mut self,
        groups: Vec<(GroupOp, oneshot::Sender<Result<GroupAnswer, String>>)>,
    ) {
        if groups.is_empty() {
            return;
        }
        let (ops, replies): (Vec<GroupOp>, Vec<_>) = groups.into_iter().unzip();
        let answers = self.store.group_batch(&ops);
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer.map_err(|e| e.to_string())); // The asker may be gone.
        }
    }

    /// Rare: acks refused for messages whose own update was folded into them; the own
    /// updates are committed now. If that commit fails too, they are kept for the next batch,
    /// as for any failed status batch.
    fn reapply_refused_folds(&mut self, folds: Vec<StatusUpdate>) {
        if folds.is_empty() {
            return;
        }
        match self.commit_timed(&[], &folds) {
            Ok((_, ups)) => {
                let unfolded = folds.into_iter().map(Queued::own).collect();
                self.report(Vec::new(), Vec::new(), unfolded, ups);
            }
            Err(error) => {
                let n = folds.len();
                tracing::warn!(n, error, "unfolded status updates kept for the next batch");
                self.deferred
                    .keep(folds.into_iter().map(Queued::own).collect());
            }
        }
    }

    fn commit_timed(
        &mut self,
        inserts: &[NewMessage],
        updates: &[StatusUpdate],
    ) -> Result<(Vec<InsertResult>, Vec<UpdateResult>), String> {
        let started = std::time::Instant::now();
        let result = self.commit_with_retry(inserts, updates);
        let micros = started.elapsed().as_micros() as u64;
        let n = inserts.len() + updates.len();
        self.metrics.store.record(n, micros, result.is_ok());
        (self.metrics.latency.store_commit).observe(started.elapsed().as_secs_f64());
        result
    }

    /// Transient failures (a locked database, a hiccup of a remote store) get two more tries.
    fn commit_with_retry(
        &mut self,
        inserts: &[NewMessage],
        updates: &[StatusUpdate],
    ) -> Result<(Vec<InsertResult>, Vec<UpdateResult>), String> {
        let mut last = String::new();
        for attempt in 0..3u32 {
            match self.store.commit(inserts, updates) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "store commit failed");
                    last = e.to_string();
                    std::thread::sleep(Duration::from_millis(50 << attempt));
                }
            }
        }
        Err(last)
    }

    /// Emits the outcomes of a commit; returns the folded own updates of refused acks.
    fn report(
        &self,
        inserts: Vec<(NewMessage, ReplyTo)>,
        ins: Vec<InsertResult>,
        updates: Vec<Queued>,
        ups: Vec<UpdateResult>,
    ) -> Vec<StatusUpdate> {
        let mut events = Vec::with_capacity(inserts.len() + updates.len());
        let mut refused_folds = Vec::new();
        for ((msg, reply), result) in inserts.into_iter().zip(ins) {
            events.push(StoreEvent::Inserted { reply, msg, result });
        }
        for (q, result) in updates.into_iter().zip(ups) {
            match result {
                UpdateResult::Changed(c) => events.push(StoreEvent::StatusChanged(c)),
                UpdateResult::NotRecipient => {
                    refused_folds.extend(q.folded);
                    if let Some(reply) = q.reply {
                        let id = q.update.id;
                        events.push(StoreEvent::AckRefused { reply, id });
                    }
                }
                UpdateResult::Unchanged => {}
            }
        }
        if !events.is_empty() {
            self.sink.emit(events);
        }
        refused_folds
    }

    /// Status updates of a failed batch are not reported now: they are kept and written with
    /// the next batch ([`Deferred`]).
    fn report_failure(&self, inserts: Vec<(NewMessage, ReplyTo)>, error: &str) {
        tracing::error!(
            error,
            "store batch failed after retries; senders told store_unavailable, status updates kept"
        );
        let events: Vec<_> = inserts
            .into_iter()
            .map(|(msg, reply)| StoreEvent::InsertFailed {
                reply,
                msg,
                error: error.to_owned(),
            })
            .collect();
        if !events.is_empty() {
            self.sink.emit(events);
        }
    }

    fn answer_after_commit(&mut self, cmd: StoreCmd) {
        match cmd {
            StoreCmd::Pending {
                recipient,
                after_seq,
                limit,
                reply,
            } => {
                let r = self.store.pending(&recipient, after_seq, limit);
                // The connection may be gone already; then nobody waits for the answer.
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            StoreCmd::History {
                user,
                after_pos,
                limit,
                reply,
            } => {
                let r = self.store.history(&user, after_pos, limit);
                let _ = reply.send(r.map_err(|e| e.to_string())); // As for Pending.
            }
            StoreCmd::Read { read, peer, reply } => {
                let r = self.store.mark_read(&read, &peer);
                let _ = reply.send(r.map_err(|e| e.to_string())); // The reader may be gone.
            }
            StoreCmd::ReadsOf { user, reply } => {
                let r = self.store.reads_of(&user);
                let _ = reply.send(r.map_err(|e| e.to_string())); // As for Pending.
            }
            StoreCmd::Prune {
                before,
                after_seq,
                window,
                reply,
            } => {
                let r = self.store.prune(before, after_seq, window);
                let _ = reply.send(r.map_err(|e| e.to_string())); // The pruner may be gone.
            }
            StoreCmd::SentStatuses { sender, ids, reply } => {
                let r = self.store.sent_statuses(&sender, &ids);
                let _ = reply.send(r.map_err(|e| e.to_string())); // The asker may be gone.
            }
            StoreCmd::Undelivered {
                before,
                limit,
                reply,
            } => {
                let r = self.store.undelivered(before, limit);
                let _ = reply.send(r.map_err(|e| e.to_string())); // The sweeper may be gone.
            }
            StoreCmd::Claim {
                now,
                after,
                limit,
                reply,
            } => {
                let r = self.store.claim_stuck(now, after, limit);
                let _ = reply.send(r.map_err(|e| e.to_string())); // The sweeper may be gone.
            }
            StoreCmd::Park { ids, now } => {
                if let Err(e) = self.store.park(&ids, now) {
                    tracing::warn!(error = %e, n = ids.len(), "park failed; claimed again later");
                }
            }
            StoreCmd::Presence {
                asker,
                users,
                reply,
            } => {
                let r = self.store.peers_seen(&asker, &users);
                let _ = reply.send(r.map_err(|e| e.to_string())); // The asker may be gone.
            }
            StoreCmd::Query(query) => query(&mut self.store),
            StoreCmd::Sync(done) => {
                let _ = done.send(()); // The waiter may have given up; nothing to undo.
            }
            _ => {}
        }
    }
}

mod batch;
mod handle;

pub use handle::{StoreHandle, SubmitError};
#[cfg(test)]
mod tests;
