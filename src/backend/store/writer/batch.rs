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

use std::collections::HashMap;

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
    pub stop: bool,
}

impl Batch {
    pub fn take(&mut self, cmd: StoreCmd) {
        match cmd {
            StoreCmd::Insert { msg, reply } => self.inserts.push((msg, reply)),
            StoreCmd::Status { update, reply } => self.take_update(update, reply),
            StoreCmd::Stop => self.stop = true,
            other => self.after.push(other),
        }
    }

    fn take_update(&mut self, update: StatusUpdate, reply: Option<ReplyTo>) {
        let new = Queued {
            update,
            reply,
            folded: None,
        };
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

    /// Whether the batch writes anything (reads and syncs alone are never held back).
    pub fn writes(&self) -> bool {
        !self.inserts.is_empty() || !self.updates.is_empty()
    }

    pub fn len(&self) -> usize {
        self.inserts.len() + self.updates.len() + self.after.len()
    }
}

fn keep_furthest(queued: &mut StatusUpdate, new: StatusUpdate) {
    if new.status > queued.status {
        *queued = new;
    }
}
