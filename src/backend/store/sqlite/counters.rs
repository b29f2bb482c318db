//! One batch's view of the `counters` table (migration 0004): the last position handed out per
//! stream and per conversation. Read on first use, bumped in memory only for rows that were
//! really inserted, and written back once per key before the batch commits, so a batch of 64
//! messages between the same two users writes three counter rows, not 192.
//!
//! Streams are not written here: a stream's last position is the highest of its three indexes
//! (`messages_received`, `messages_sent`, and the group rows' `deliveries`) and what retention
//! deleted (`pruned`), read once per key. That saves two random b-tree pages per message
//! (perf/RESULTS.md §12). A direct conversation's `cseq` is not written either: its last is the
//! highest of `messages_conversation` in both directions, of what retention deleted, and of
//! the `last` a database written before this rule holds ([`direct_last_sql`]), one random page
//! fewer per message (§29). Only groups' counters, which no index of `messages` gives back, are
//! rows that every group message updates. (Postgres keeps all kinds as rows: they are its locks.)
//!
//! The store is the database's only writer, so it also keeps the committed values of recent
//! keys ([`Committed`]) and a key seen before costs no read: three point reads per message
//! otherwise.

use std::collections::HashMap;
use std::sync::LazyLock;

use rusqlite::{params, OptionalExtension, Transaction};

use crate::backend::store::{NewMessage, Positions, StoreError};
use crate::backend::store::{COUNTER_CONVERSATION, COUNTER_STREAM};

/// Counter values known to be committed, for keys used recently.
#[derive(Default)]
pub(super) struct Committed {
    last: HashMap<(i16, String), i64>,
}

/// Keys remembered; beyond that the memory is dropped and refilled from the table.
const COMMITTED_KEYS: usize = 100_000;

/// The in-memory kind of a direct conversation's counter: never a row's kind (its rows, made
/// by retention or by older databases, are `COUNTER_CONVERSATION`), so [`Counters::save`]
/// skips it.
const DIRECT: i16 = 100;

/// SQL for the last `cseq` of direct conversation `conv` between users `a` and `b` (the three
/// are SQL parameters such as `?3`): the newest message either way, or what retention deleted,
/// or the row an older database kept per message; 0 for a conversation without messages.
pub(super) fn direct_last_sql(conv: &str, a: &str, b: &str) -> String {
    format!(
        "max(coalesce((SELECT max(cseq) FROM messages WHERE sender_id = {a} AND reciever_id = {b}), 0),
             coalesce((SELECT max(cseq) FROM messages WHERE sender_id = {b} AND reciever_id = {a}), 0),
             coalesce((SELECT max(last, pruned) FROM counters WHERE kind = 2 AND id = {conv}), 0))"
    )
}

impl Committed {
    /// Takes the values of a batch that committed ([`Counters::bumped`]).
    pub(super) fn absorb(&mut self, dirty: Vec<((i16, String), i64)>) {
        if self.last.len() + dirty.len() > COMMITTED_KEYS {
            self.last.clear();
        }
        self.last.extend(dirty);
    }
}

pub(super) struct Counters<'c> {
    last: HashMap<(i16, String), (i64, bool)>,
    committed: &'c Committed,
}

/// The keys one message's positions come from.
pub(super) struct Keys {
    recipient: String,
    /// `None` for a message to oneself: one stream, one position.
    sender: Option<String>,
    conversation: String,
}

impl Keys {
    pub(super) fn of(m: &NewMessage) -> Keys {
        let to_self = m.sender_id == m.reciever_id;
        Keys {
            recipient: m.reciever_id.clone(),
            sender: (!to_self).then(|| m.sender_id.clone()),
            conversation: crate::protocol::direct_conversation_id(&m.sender_id, &m.reciever_id),
        }
    }

    fn sender(&self) -> &str {
        self.sender.as_deref().unwrap_or(&self.recipient)
    }
}

impl<'c> Counters<'c> {
    pub(super) fn new(committed: &'c Committed) -> Self {
        Counters {
            last: HashMap::new(),
            committed,
        }
    }

    /// The positions `m` gets if it is inserted now; nothing is taken yet.
    pub(super) fn next(&mut self, tx: &Transaction<'_>, k: &Keys) -> Result<Positions, StoreError> {
        let rpos = self.last(tx, COUNTER_STREAM, &k.recipient)? + 1;
        let spos = match &k.sender {
            Some(s) => self.last(tx, COUNTER_STREAM, s)? + 1,
            None => rpos,
        };
        let cseq = self.last_direct(tx, k)? + 1;
        Ok(Positions { rpos, spos, cseq })
    }

    /// The last `cseq` of `k`'s conversation, from memory or [`direct_last_sql`].
    fn last_direct(&mut self, tx: &Transaction<'_>, k: &Keys) -> Result<i64, StoreError> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {}", direct_last_sql("?1", "?2", "?3")));
        self.remembered((DIRECT, k.conversation.clone()), || {
            let mut q = tx.prepare_cached(&SQL)?;
            let args = params![k.conversation, k.sender(), k.recipient];
            Ok(q.query_row(args, |r| r.get(0))?)
        })
    }

    /// The value of `key` in this batch, else as last committed, else `load`ed (once).
    fn remembered(
        &mut self,
        key: (i16, String),
        load: impl FnOnce() -> Result<i64, StoreError>,
    ) -> Result<i64, StoreError> {
        if let Some((last, _)) = self.last.get(&key) {
            return Ok(*last);
        }
        let last = match self.committed.last.get(&key) {
            Some(&last) => last,
            None => load()?,
        };
        self.last.insert(key, (last, false));
        Ok(last)
    }

    /// Takes the positions [`next`](Self::next) offered: the row was inserted.
    pub(super) fn take(&mut self, k: Keys, at: Positions) {
        self.last
            .insert((COUNTER_STREAM, k.recipient), (at.rpos, true));
        if let Some(s) = k.sender {
            self.last.insert((COUNTER_STREAM, s), (at.spos, true));
        }
        self.last.insert((DIRECT, k.conversation), (at.cseq, true));
    }

    fn last(&mut self, tx: &Transaction<'_>, kind: i16, id: &str) -> Result<i64, StoreError> {
        self.remembered((kind, id.to_owned()), || {
            let sql = match kind {
                COUNTER_STREAM => {
                    "SELECT max(coalesce((SELECT max(rpos) FROM messages WHERE reciever_id = ?2), 0),
                            coalesce((SELECT max(spos) FROM messages WHERE sender_id = ?2), 0),
                            coalesce((SELECT max(pos) FROM deliveries WHERE user_id = ?2), 0),
                            coalesce((SELECT pruned FROM counters WHERE kind = ?1 AND id = ?2), 0))"
                }
                _ => "SELECT coalesce((SELECT last FROM counters WHERE kind = ?1 AND id = ?2), 0)",
            };
            let mut q = tx.prepare_cached(sql)?;
            Ok(q.query_row(params![kind, id], |r| r.get(0))?)
        })
    }

    /// Takes the next value of one counter (a group's row takes one per member stream).
    pub(super) fn bump(
        &mut self,
        tx: &Transaction<'_>,
        kind: i16,
        id: &str,
    ) -> Result<i64, StoreError> {
        let next = self.last(tx, kind, id)? + 1;
        self.last.insert((kind, id.to_owned()), (next, true));
        Ok(next)
    }

    /// The last value handed out (0: none), without taking one.
    pub(super) fn peek(
        &mut self,
        tx: &Transaction<'_>,
        kind: i16,
        id: &str,
    ) -> Result<i64, StoreError> {
        self.last(tx, kind, id)
    }

    /// The counters this batch bumped, for [`Committed::absorb`] once it committed.
    pub(super) fn bumped(self) -> Vec<((i16, String), i64)> {
        (self.last.into_iter())
            .filter_map(|(key, (last, dirty))| dirty.then_some((key, last)))
            .collect()
    }

    /// Writes every bumped counter; part of the batch's transaction.
    pub(super) fn save(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let mut up = tx.prepare_cached(
            "INSERT INTO counters (kind, id, last) VALUES (?1, ?2, ?3)
             ON CONFLICT (kind, id) DO UPDATE SET last = excluded.last",
        )?;
        for ((kind, id), (last, dirty)) in &self.last {
            if *dirty && *kind != COUNTER_STREAM && *kind != DIRECT {
                up.execute(params![kind, id, last])?;
            }
        }
        Ok(())
    }
}

/// What one retention round deleted: per stream (user) and per direct conversation, the
/// highest position or `cseq` gone.
#[derive(Default)]
pub(super) struct Deleted {
    pub(super) streams: HashMap<String, i64>,
    pub(super) conversations: HashMap<String, i64>,
}

impl Deleted {
    pub(super) fn stream(&mut self, user: String, pos: i64) {
        let slot = self.streams.entry(user).or_insert(0);
        *slot = (*slot).max(pos);
    }

    pub(super) fn conversation(&mut self, id: String, cseq: i64) {
        let slot = self.conversations.entry(id).or_insert(0);
        *slot = (*slot).max(cseq);
    }
}

/// Records how far retention deleted these streams and direct conversations, so their next
/// positions continue after what is gone.
pub(super) fn mark_pruned(tx: &Transaction<'_>, deleted: &Deleted) -> Result<(), StoreError> {
    let mut up = tx.prepare_cached(
        "INSERT INTO counters (kind, id, last, pruned) VALUES (?1, ?2, 0, ?3)
         ON CONFLICT (kind, id) DO UPDATE SET pruned = max(pruned, excluded.pruned)",
    )?;
    for (user, through) in &deleted.streams {
        up.execute(params![COUNTER_STREAM, user, through])?;
    }
    for (conversation, through) in &deleted.conversations {
        up.execute(params![COUNTER_CONVERSATION, conversation, through])?;
    }
    Ok(())
}

/// How far retention deleted `user`'s stream (0: nothing).
pub(super) fn pruned_through(tx: &rusqlite::Connection, user: &str) -> Result<i64, StoreError> {
    let mut q = tx.prepare_cached("SELECT pruned FROM counters WHERE kind = ?1 AND id = ?2")?;
    Ok(q.query_row(params![COUNTER_STREAM, user], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}
