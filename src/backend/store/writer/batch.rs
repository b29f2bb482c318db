//! One group commit's worth of commands, with status updates of the same message folded.
//!
//! Under load the SENT of a message and its DELIVERED (the pod's own, or the recipient's ack)
//! often queue while the previous commit runs. Only the furthest status is then written and
//! announced: one UPDATE and one status frame to the sender instead of two. Statuses only move
//! forward, so the skipped one says nothing the later one does not; its time is lost (`sent_at`
//! takes the delivery time).
//!
//! An ack carries a recipient check: folded into it, the pod's own SENT would be lost if the
//! check failed (a client acking a message that is not addressed to it). The folded update is
//! therefore kept beside the ack and re-applied when the ack is refused ([`Queued::folded`]).

use std::collections::{HashMap, VecDeque};

use super::{ReplyTo, StoreCmd};
use crate::backend::store::{NewMessage, StatusUpdate};

/// A status update waiting for the commit.
#[derive(Debug)]
pub(super) struct Queued {
    pub update: StatusUpdate,
    /// Where a refusal goes (acks only).
    pub reply: Option<ReplyTo>,
    /// The pod's own update folded into this ack; applied after all if the ack is refused.
    pub folded: Option<StatusUpdate>,
}

impl Queued {
    pub fn own(update: StatusUpdate) -> Queued {
        Queued {
            update,
            reply: None,
            folded: None,
        }
    }

    fn is_ack(&self) -> bool {
        self.update.recipient.is_some() || self.reply.is_some()
    }
}

#[derive(Default)]
pub(super) struct Batch {
    pub inserts: Vec<(NewMessage, ReplyTo)>,
    pub updates: Vec<Queued>,
    /// Index in `updates` of the entry later updates of the same message fold into.
    by_id: HashMap<String, usize>,
    /// Updates folded into another one of the same message.
    pub coalesced: u64,
    pub after: Vec<StoreCmd>,
    /// Users seen (a connection opened or closed), recorded after the commit.
    pub seen: Vec<(String, i64)>,
    pub stop: bool,
}

impl Batch {
    pub fn take(&mut self, cmd: StoreCmd) {
        match cmd {
            StoreCmd::Insert { msg, reply } => self.inserts.push((msg, reply)),
            StoreCmd::Status { update, reply } => self.take_update(update, reply),
            StoreCmd::Stop => self.stop = true,
            StoreCmd::Seen { user, at } => self.seen.push((user, at)),
            other => self.after.push(other),
        }
    }

    fn take_update(&mut self, update: StatusUpdate, reply: Option<ReplyTo>) {
        let new = Queued {
            update,
            reply,
            folded: None,
        };
        // A group message's updates never fold: a member's ack is no SENT of the aggregate.
        if crate::protocol::group::is_group_message_id(&new.update.id) {
            self.updates.push(new);
            return;
        }
        let Some(&i) = self.by_id.get(&new.update.id) else {
            self.by_id.insert(new.update.id.clone(), self.updates.len());
            self.updates.push(new);
            return;
        };
        let queued = &mut self.updates[i];
        match (queued.is_ack(), new.is_ack()) {
            // Two acks (two devices): both are answered, nothing folds.
            (true, true) => {
                self.updates.push(new);
                return;
            }
            (false, false) => keep_furthest(&mut queued.update, new.update),
            // The pod's own update after the ack: kept only for the case the ack is refused.
            (true, false) => match &mut queued.folded {
                Some(own) => keep_furthest(own, new.update),
                None => queued.folded = Some(new.update),
            },
            // The ack after the pod's own update: the ack takes the place, the own one waits.
            (false, true) => {
                let own = std::mem::replace(queued, new);
                queued.folded = Some(own.update);
            }
        }
        self.coalesced += 1;
    }

    /// Takes back an update of a failed commit; later ones of the same message fold into it.
    fn restore(&mut self, queued: Queued) {
        self.by_id
            .entry(queued.update.id.clone())
            .or_insert(self.updates.len());
        self.updates.push(queued);
    }

    pub fn len(&self) -> usize {
        self.inserts.len() + self.updates.len() + self.after.len() + self.seen.len()
    }
}

fn keep_furthest(queued: &mut StatusUpdate, new: StatusUpdate) {
    if new.status > queued.status {
        *queued = new;
    }
}

/// Most status updates kept across failed commits (about 200 bytes each).
pub(super) const DEFERRED_MAX: usize = 65_536;

/// Status updates of commits that failed even after their retries (the store was down),
/// written with the next batch. Dropping them would leave acked messages at SENT: the
/// redrive would then show them again on the very connection that acked them, past its
/// memory of recent ids (found by the chaos suite's Postgres crash). They are forward-only
/// and idempotent, so writing one late or twice is harmless.
///
/// Kept updates are given up after [`DEFERRED_ROUNDS`] failed batches in a row, so that one
/// the store refuses for good (rather than because it is down) cannot fail every later
/// batch with it; those messages are then delivered again by the redrive or on replay
/// (at-least-once, as before this was kept).
#[derive(Default)]
pub(super) struct Deferred {
    updates: VecDeque<Queued>,
    /// Failed batches in a row since the kept updates were last written.
    rounds: u32,
}

/// About a minute and a half of retries (each round at least 850 ms: three attempts and
/// the retry interval), longer than a database restart.
pub(super) const DEFERRED_ROUNDS: u32 = 100;

impl Deferred {
    /// Keeps the updates of a failed batch; returns how many were given up (the oldest
    /// beyond the cap, or all after too many rounds).
    pub fn keep(&mut self, updates: Vec<Queued>) -> usize {
        self.updates.extend(updates);
        self.rounds += 1;
        if self.rounds > DEFERRED_ROUNDS {
            self.rounds = 0;
            let all = self.updates.len();
            self.updates.clear();
            return all;
        }
        let over = self.updates.len().saturating_sub(DEFERRED_MAX);
        self.updates.drain(..over);
        over
    }

    /// A batch committed: whatever it carried of the kept updates is written.
    pub fn committed(&mut self) {
        self.rounds = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// Moves every kept update into `batch`, before anything new folds into them.
    pub fn move_into(&mut self, batch: &mut Batch) {
        for q in self.updates.drain(..) {
            batch.restore(q);
        }
    }
}
