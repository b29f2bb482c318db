//! One batch's view of the `counters` table (migration 0004): the last position handed out per
//! stream and per conversation. Read on first use, bumped in memory only for rows that were
//! really inserted, and written back once per key before the batch commits, so a batch of 64
//! messages between the same two users writes three counter rows, not 192.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Transaction};

use crate::backend::store::{NewMessage, Positions, StoreError};
use crate::backend::store::{COUNTER_CONVERSATION, COUNTER_STREAM};

#[derive(Default)]
pub(super) struct Counters {
    last: HashMap<(i16, String), (i64, bool)>,
}

/// The keys one message's positions come from.
pub(super) struct Keys {
    recipient: String,
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
}

impl Counters {
    /// The positions `m` gets if it is inserted now; nothing is taken yet.
    pub(super) fn next(&mut self, tx: &Transaction<'_>, k: &Keys) -> Result<Positions, StoreError> {
        let rpos = self.last(tx, COUNTER_STREAM, &k.recipient)? + 1;
        let spos = match &k.sender {
            Some(s) => self.last(tx, COUNTER_STREAM, s)? + 1,
            None => rpos,
        };
        let cseq = self.last(tx, COUNTER_CONVERSATION, &k.conversation)? + 1;
        Ok(Positions { rpos, spos, cseq })
    }

    /// Takes the positions [`next`](Self::next) offered: the row was inserted.
    pub(super) fn take(&mut self, k: Keys, at: Positions) {
        self.last
            .insert((COUNTER_STREAM, k.recipient), (at.rpos, true));
        if let Some(s) = k.sender {
            self.last.insert((COUNTER_STREAM, s), (at.spos, true));
        }
        self.last
            .insert((COUNTER_CONVERSATION, k.conversation), (at.cseq, true));
    }

    fn last(&mut self, tx: &Transaction<'_>, kind: i16, id: &str) -> Result<i64, StoreError> {
        if let Some((last, _)) = self.last.get(&(kind, id.to_owned())) {
            return Ok(*last);
        }
        let mut q = tx.prepare_cached("SELECT last FROM counters WHERE kind = ?1 AND id = ?2")?;
        let last = q
            .query_row(params![kind, id], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        self.last.insert((kind, id.to_owned()), (last, false));
        Ok(last)
    }

    /// Writes every bumped counter; part of the batch's transaction.
    pub(super) fn save(self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let mut up = tx.prepare_cached(
            "INSERT INTO counters (kind, id, last) VALUES (?1, ?2, ?3)
             ON CONFLICT (kind, id) DO UPDATE SET last = excluded.last",
        )?;
        for ((kind, id), (last, dirty)) in self.last {
            if dirty {
                up.execute(params![kind, id, last])?;
            }
        }
        Ok(())
    }
}

/// Records that retention deleted positions of these streams, up to the highest given.
pub(super) fn mark_pruned(
    tx: &Transaction<'_>,
    deleted: &HashMap<String, i64>,
) -> Result<(), StoreError> {
    let mut up = tx.prepare_cached(
        "UPDATE counters SET pruned = max(pruned, ?3) WHERE kind = ?1 AND id = ?2",
    )?;
    for (user, through) in deleted {
        up.execute(params![COUNTER_STREAM, user, through])?;
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
