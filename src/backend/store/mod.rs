//! Step 2 of the message path: durable storage, behind the [`MessageStore`] trait.
//!
//! Stores are blocking clients. Each runs on its own thread ([`writer`]), fed by a bounded
//! crossbeam channel that executors only ever `try_send` into; the thread group-commits whatever
//! accumulated while the previous batch was committing, then answers the shards through their
//! inboxes. `accepted` therefore reaches a client only after its batch committed.

#[cfg(test)]
mod conformance;
pub mod group;
mod postgres;
mod sqlite;
mod writer;

pub use postgres::{PostgresStore, StatusEvent, StatusOutbox};
pub use sqlite::{SqliteStore, DEFAULT_CACHE_MIB as SQLITE_DEFAULT_CACHE_MIB};
pub use writer::{
    spawn_writer, spawn_writers, EventSink, GroupAnswer, QueryFn, ReplyTo, StoreCmd, StoreEvent,
    StoreHandle, StoreTuning, SubmitError,
};

use crate::protocol::Status;

/// A message as the ingest step hands it to the store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Globally unique (UUIDv7), assigned by the receiving shard.
    pub id: String,
    pub sender_id: String,
    pub reciever_id: String,
    pub client_msg_id: Option<String>,
    pub payload: String,
    pub created_at: i64,
}

/// Where a committed message sits in the three orders protocol v2 exposes. Each comes from a
/// gapless counter (the `counters` table) bumped only for rows that are really inserted, in
/// the same transaction, so a hole never appears that a client could take for a loss.
///
/// A user's *stream* numbers everything the user receives or sends, in commit order: for one
/// user, a larger position never commits before a smaller one (SQLite: one writer; Postgres:
/// the counter's row lock is held until COMMIT). That is what lets a replay's cursor skip live
/// copies it already sent, and what makes one number a device's whole sync cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Positions {
    /// Position in the recipient's stream.
    pub rpos: i64,
    /// Position in the sender's stream (equal to `rpos` for a message to oneself).
    pub spos: i64,
    /// Position in the conversation (`protocol::conversation_id`), from 1, gapless.
    pub cseq: i64,
}

/// What happened to one inserted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertResult {
    /// Stored now, at status NONE, at these positions.
    Inserted { at: Positions },
    /// The sender already stored this `client_msg_id`: nothing new was stored. `original`
    /// says where the first one stands, so that the repeated `accepted` names the same
    /// conversation and positions: a v2 device whose first `accepted` was lost (an ambiguous
    /// commit, a crash) would otherwise never learn the position of its own message and keep
    /// a hole in its stream (found by the chaos suite's Postgres crash).
    Duplicate {
        id: String,
        status: Status,
        original: Option<Original>,
    },
}

/// The first message of a repeated `client_msg_id`: its recipient and its positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub reciever_id: String,
    pub at: Positions,
}

/// A requested forward move of a message's status.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub id: String,
    /// `Sent` or `Delivered`; a move to an earlier or equal status changes nothing.
    pub status: Status,
    /// For acks: the user who must be the message's recipient for the update to apply.
    pub recipient: Option<String>,
    pub at: i64,
}

/// A status change that was committed; the sender's devices and status events learn of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub id: String,
    pub status: Status,
    pub sender_id: String,
    pub reciever_id: String,
    pub at: i64,
}

/// How one status update ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateResult {
    Changed(StatusChange),
    /// Already at or beyond the requested status.
    Unchanged,
    /// No such message addressed to the given recipient (acks only).
    NotRecipient,
}

/// How long a message stays at a status before the redrive claims it, µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StuckAfter {
    pub none: i64,
    pub sent: i64,
}

/// A stored message read back: below DELIVERED for a v1 replay or the redrive, or any
/// message of a user's stream for a v2 sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    /// Position in the stream of the user it was read for ([`Positions`]): the recipient's
    /// (`rpos`) for replay and redrive; for a sync, the reader's, which is `spos` when the
    /// reader sent it. Replay and sync are in this order.
    pub seq: i64,
    /// Position in its conversation.
    pub cseq: i64,
    pub id: String,
    pub sender_id: String,
    pub reciever_id: String,
    pub payload: String,
    pub created_at: i64,
    /// For a group row: the reader's own delivery status (DELIVERED for what they sent).
    pub status: Status,
    pub kind: RowKind,
}

/// What a row of a user's stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A one-to-one message (`reciever_id` is a user).
    Direct,
    /// A group message (`reciever_id` is the group).
    Group,
    /// A group membership event (`reciever_id` is the group, `sender_id` who made the
    /// change, `payload` a [`crate::protocol::group::GroupEvent`]).
    GroupEvent,
}

impl RowKind {
    /// The stored spelling: 0, 1, 2.
    pub fn from_i64(n: i64) -> RowKind {
        match n {
            1 => RowKind::Group,
            2 => RowKind::GroupEvent,
            _ => RowKind::Direct,
        }
    }
}

impl PendingMessage {
    /// The `message` frame's fields, for the stream it was read for (`pos` = `seq`).
    pub fn view(&self) -> crate::protocol::MessageView<'_> {
        crate::protocol::MessageView {
            id: &self.id,
            sender_id: &self.sender_id,
            reciever_id: &self.reciever_id,
            message: &self.payload,
            created_at_micros: self.created_at,
            cseq: self.cseq,
            pos: self.seq,
            group: (self.kind != RowKind::Direct).then_some(self.reciever_id.as_str()),
        }
    }
}

/// A read receipt: `user_id` has read `conversation_id` up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    pub conversation_id: String,
    pub user_id: String,
    pub seq: i64,
}

/// Most receipts one sync sends, in conversation order: a bound on one connect's work (a user
/// with more conversations gets the rest live, as they move).
pub const MAX_READ_STATES: usize = 10_000;

/// One page of a user's stream for a device's sync.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryPage {
    pub messages: Vec<PendingMessage>,
    /// Every position of this stream up to here may have been deleted by retention (0: none
    /// was). A cursor below it is told so instead of seeing a silent gap.
    pub pruned_through: i64,
}

/// What one [`MessageStore::prune`] round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneRound {
    pub deleted: usize,
    /// The last insertion position the window covered; `None`: no rows after `after_seq`.
    pub scanned_through: Option<i64>,
    /// The window reached rows created at or after `before`: the rest is too young.
    pub reached_recent: bool,
}

/// A direct message still below DELIVERED when the undelivered sweep reached it
/// ([`MessageStore::undelivered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    pub id: String,
    pub sender_id: String,
    pub reciever_id: String,
    pub status: Status,
    /// µs since the epoch.
    pub created_at: i64,
}

/// What one round of the undelivered sweep did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UndeliveredRound {
    /// The messages looked at that are still below DELIVERED.
    pub found: Vec<Undelivered>,
    /// How many messages the round looked at (`limit`: more may be waiting).
    pub looked_at: usize,
}

/// A user, and when a connection of theirs last opened or closed (µs; `None`: never).
pub type LastSeen = (String, Option<i64>);

/// One conversation of a user, for the server API's conversation list
/// ([`MessageStore::conversations_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub conversation_id: String,
    /// The conversation's last position (`cseq`).
    pub last_seq: i64,
    /// How far the user has read it (their read receipt; 0: never).
    pub read_seq: i64,
    /// Messages from others after `read_seq` (in a group: and after the user joined).
    pub unread: i64,
    /// When its last message or event was created (µs); `None` once retention deleted it.
    pub last_at: Option<i64>,
}

impl ConversationSummary {
    /// Most recent first (one whose last row retention deleted goes last), then by id so the
    /// order is stable; at most `limit`.
    pub fn sort_and_cut(list: &mut Vec<ConversationSummary>, limit: usize) {
        list.sort_by(|x, y| {
            (y.last_at.cmp(&x.last_at)).then_with(|| x.conversation_id.cmp(&y.conversation_id))
        });
        list.truncate(limit);
    }
}

/// Most conversations one [`MessageStore::conversations_of`] answer lists.
pub const MAX_CONVERSATIONS: usize = 1000;

/// Counter kinds in the `counters` table.
pub(crate) const COUNTER_STREAM: i16 = 1;
pub(crate) const COUNTER_CONVERSATION: i16 = 2;

/// Failures of a store backend. The writer reports them to the clients concerned as
/// `store_unavailable`; nothing is acknowledged that was not committed.
/// Backend-neutral: each backend maps its driver's errors into these variants.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened or reached at startup.
    #[error("cannot open the store at {location}: {reason}")]
    Open { location: String, reason: String },
    /// A schema migration failed; the pod does not start on a half-migrated schema.
    #[error("migration {version} failed: {reason}")]
    Migration { version: u32, reason: String },
    /// A statement failed (disk full, connection lost, lock timeout...).
    #[error("store query failed: {0}")]
    Query(String),
    /// A stored value violates the schema's invariants.
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::Error as E;
        match e {
            // A column that does not decode (an unknown status number, a malformed id).
            E::FromSqlConversionFailure(..)
            | E::InvalidColumnType(..)
            | E::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Query(e.to_string()),
        }
    }
}

/// A durable message store. One instance lives on the writer thread; every call is blocking.
pub trait MessageStore: Send + 'static {
    /// Inserts `inserts` and applies `updates` in one transaction, in order. Results are
    /// returned index by index; an `Err` means nothing of the batch was committed.
    fn commit(
        &mut self,
        inserts: &[NewMessage],
        updates: &[StatusUpdate],
    ) -> Result<(Vec<InsertResult>, Vec<UpdateResult>), StoreError>;

    /// Messages to `recipient` below DELIVERED with `seq > after_seq`, in `seq` order.
    fn pending(
        &mut self,
        recipient: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<PendingMessage>, StoreError>;

    /// Every message of `user`'s stream (received or sent) with position `> after_pos`, in
    /// position order, and how far retention has deleted that stream.
    fn history(
        &mut self,
        user: &str,
        after_pos: i64,
        limit: usize,
    ) -> Result<HistoryPage, StoreError>;

    /// Records that `user` read `conversation` (whose other member is `peer`) up to `seq`,
    /// clamped to the conversation's last seq; returns the new value if it moved forward
    /// (never backwards), `None` otherwise (also for a conversation without messages). Its
    /// own transaction.
    fn mark_read(&mut self, read: &ReadState, peer: &str) -> Result<Option<i64>, StoreError>;

    /// The receipts a syncing device of `user` needs: its user's, and its peers' about the
    /// conversations they share; at most [`MAX_READ_STATES`].
    fn reads_of(&mut self, user: &str) -> Result<Vec<ReadState>, StoreError>;

    /// One round of retention: among the `window` rows inserted after `after_seq` (the
    /// table's insertion order), deletes those DELIVERED and created before `before`, and
    /// records in each affected stream how far it was pruned. Bounded work per call: the
    /// caller walks the table window by window (see `flow::retention`).
    fn prune(
        &mut self,
        before: i64,
        after_seq: i64,
        window: usize,
    ) -> Result<PruneRound, StoreError>;

    /// The undelivered sweep (`message.undelivered` webhooks): looks at up to `limit` direct
    /// messages past the sweep's mark, in insertion order, stopping at the first one created
    /// at or after `before`; moves the mark past those it looked at and returns the ones
    /// still below DELIVERED. Each message is looked at once, however many pods sweep (the
    /// mark's row is locked for the transaction, and a pod that finds it locked gets
    /// nothing). The first call only starts the mark, past the messages already older than
    /// `before`: what was stored before the sweep existed and is already late is not
    /// reported (a one-off scan of the table).
    fn undelivered(&mut self, before: i64, limit: usize) -> Result<UndeliveredRound, StoreError>;

    /// Claims messages the redrive must route again: at NONE and stuck for `after.none`
    /// (since creation, or since the last claim), or at SENT and stuck for `after.sent`
    /// (since SENT, or since the last claim); up to `limit` of each. Each claimed row's stuck
    /// clock restarts at `now`, so no other pod claims it meanwhile: with several pods, a
    /// stuck message is redriven by one at a time. Oldest first.
    fn claim_stuck(
        &mut self,
        now: i64,
        after: StuckAfter,
        limit: usize,
    ) -> Result<Vec<PendingMessage>, StoreError>;

    /// Takes messages out of the redrive until their age (from `created_at`) has doubled:
    /// their recipient had no live route at `now`, and the recipient's next connect replays
    /// them (they keep their status). Not for good: a route table can answer "no route" for
    /// a connected recipient for a moment (Redis emptied before the heartbeat wrote the
    /// routes again, a removal that arrived late over an abandoned connection, a lease gap),
    /// and such a recipient never reconnects to trigger the replay (perf/RESULTS.md §23b).
    /// Doubling keeps the look-ups for a recipient that is really away to O(log age) per
    /// message, while a young message is looked at again within seconds.
    fn park(&mut self, ids: &[String], now: i64) -> Result<(), StoreError>;

    /// The current status of those of `ids` that `sender` sent (a group message's aggregate,
    /// up to DELIVERED), in the order asked; other and unknown ids are left out.
    fn sent_statuses(
        &mut self,
        sender: &str,
        ids: &[String],
    ) -> Result<Vec<(String, Status)>, StoreError>;

    /// The messages of `conversation` (a direct conversation's id, or a group's) with a
    /// position below `before`, newest first, at most `limit`; `seq` carries the position
    /// (`cseq`), and a group's membership events are rows of kind `GroupEvent`. The server
    /// API's history: a page is two index range scans (a direct conversation's two
    /// directions) or one (a group), whatever the users' other traffic.
    fn conversation(
        &mut self,
        conversation: &str,
        before: i64,
        limit: usize,
    ) -> Result<Vec<PendingMessage>, StoreError>;

    /// The conversations `user` takes part in (direct ones with a message, and the groups
    /// they are a member of) with their unread counts, most recent first, at most `limit`.
    /// Its cost grows with the user's stored messages (finding their direct peers): a
    /// conversation-list screen's question, not a poll loop's.
    fn conversations_of(
        &mut self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError>;

    /// When each of `users` was last seen (`None`: never), in the order asked, for the server
    /// API, which sees everyone's presence.
    fn last_seen(&mut self, users: &[String]) -> Result<Vec<LastSeen>, StoreError>;

    /// Current status of a message (a group message's aggregate), for tests and tools.
    fn status_of(&mut self, id: &str) -> Result<Option<Status>, StoreError>;

    /// Records when these users were last seen (a connection opened or closed): forward
    /// only, one transaction for the lot.
    fn record_seen(&mut self, seen: &[(String, i64)]) -> Result<(), StoreError>;

    /// Of `users`, those who share a conversation with `asker` (a direct one with a message,
    /// or a group both are members of), with when each was last seen (`None`: never), in
    /// the order asked. Presence is visible only to them.
    fn peers_seen(&mut self, asker: &str, users: &[String]) -> Result<Vec<LastSeen>, StoreError>;

    /// One group operation, in its own transaction ([`group`]). `Ok(Err(_))`: refused,
    /// nothing stored.
    fn group(
        &mut self,
        op: &group::GroupOp,
    ) -> Result<Result<group::GroupOutcome, group::GroupRefusal>, StoreError>;

    /// Group operations that queued together, answered index for index. By default one
    /// transaction each; a store may commit them together (consecutive messages of one group
    /// dirty the same member pages, which a batch then writes once), and then a failure
    /// fails them all (nothing of them was stored).
    fn group_batch(&mut self, ops: &[group::GroupOp]) -> Vec<Result<GroupAnswer, StoreError>> {
        ops.iter().map(|op| self.group(op)).collect()
    }
}
