//! Groups in the store (protocol v2, `docs/PROTOCOL.md` "Groups"): what the message path asks
//! of [`MessageStore::group`](super::MessageStore::group) and what it answers.
//!
//! A group message is stored once (`group_messages`) and takes a place in every member's
//! stream (`deliveries`: one small row per member, holding that member's position and
//! delivery status), so a device's one-number cursor covers its groups too. Membership
//! changes are events in the conversation, stored and delivered the same way. Every
//! operation is one transaction that takes the conversation's counter first: membership
//! changes and sends of one group are serialised by it (each send fans out to exactly the
//! members of its `seq`), and groups never wait for each other.
//!
//! Aggregates for the sender: SENT once the fan-out reached the members' places, DELIVERED
//! once every member of the group when it was sent (the sender aside) confirmed it, READ
//! once all of them read up to its `seq`. A member added later has read everything before
//! its `added` event (its receipt starts there), so it never holds back older messages.

use super::{NewMessage, Status};

/// One request about groups.
#[derive(Debug, Clone)]
pub enum GroupOp {
    /// Creates `group` with `by` and `members`; fails if it exists.
    Create { change: Change },
    /// Adds members (any member may); those already in are skipped.
    Add { change: Change },
    /// Removes members: the creator may remove anyone, anyone may remove themselves.
    Remove { change: Change },
    /// A message to a group (`msg.reciever_id` is the group, `msg.id` a group message id).
    /// `system`: sent by the application's system sender through the server API, which
    /// needs no membership; it takes a place in its own stream like a member's own copy,
    /// so its idempotency keys and `accepted` positions work as a member's do.
    Send { msg: NewMessage, system: bool },
    /// `user` has read `group` up to `seq` (clamped, forward only).
    Read {
        group: String,
        user: String,
        seq: i64,
    },
    /// The members of `group`, asked by `user` (who must be one).
    Members { group: String, user: String },
    /// Per-member state of group message `id`, asked by `user` (a member of its group).
    Receipts { id: String, user: String },
}

/// A membership change, as stored in its event.
#[derive(Debug, Clone)]
pub struct Change {
    pub group: String,
    pub by: String,
    pub members: Vec<String>,
    /// The event's id ([`crate::protocol::group::new_group_message_id`]).
    pub event_id: String,
    pub at: i64,
    /// Most members the group may have after the change (`--max-group-members`).
    pub max_members: usize,
}

/// Why a group operation was refused; nothing was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRefusal {
    /// `group_create` of an id that exists.
    Exists,
    /// No such group, or the asking user is not a member (the same answer: a stranger does
    /// not learn which groups exist).
    Unknown,
    /// The change would take the group past its size limit.
    Full,
    /// Removing someone else without being the group's creator.
    NotAllowed,
    /// The change changes nothing (adding members who are all in, removing non-members).
    NoChange,
}

/// A message or membership event stored now (or found stored: `duplicate`), and the places
/// it takes in the members' streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fanout {
    pub id: String,
    pub group: String,
    pub cseq: i64,
    pub created_at: i64,
    /// Every stream it went into, with its position there: the members (for a removal, the
    /// removed ones too, who learn of it), the sender included.
    pub to: Vec<(String, i64)>,
    /// A repeated `client_msg_id`: nothing new was stored, this is the original (its status
    /// here, `to` holding only the sender's own place).
    pub duplicate: Option<Status>,
    /// For a membership change: the event stored (what really changed).
    pub event: Option<crate::protocol::group::GroupEvent>,
}

impl Fanout {
    /// The sender's (or actor's) position in its own stream.
    pub fn pos_of(&self, user: &str) -> i64 {
        (self.to.iter())
            .find(|(u, _)| u == user)
            .map_or(0, |(_, pos)| *pos)
    }
}

/// A read receipt that moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRead {
    pub seq: i64,
    /// The members, to announce it to.
    pub members: Vec<String>,
    /// Messages every member but their sender has now read: `(id, sender)`.
    pub read_by_all: Vec<(String, String)>,
}

/// The state of one group message, member by member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipts {
    pub id: String,
    pub group: String,
    pub cseq: i64,
    /// The aggregate (as the sender was told).
    pub status: Status,
    pub members: Vec<crate::protocol::group::MemberReceipt>,
}

/// What a group operation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Create, Add, Remove, Send.
    Fanned(Fanout),
    /// Read: `None` when it did not move (equal, lower, or an empty group).
    Read(Option<GroupRead>),
    Members {
        group: String,
        members: Vec<String>,
    },
    Receipts(Receipts),
}

/// Most messages one read receipt checks for "read by all": bounds a receipt's work when a
/// member catches up on a long backlog (older ones are then never announced READ).
pub const READ_ALL_WINDOW: i64 = 1_000;

/// Whether every member but `sender` has read up to `cseq`, given the group's two lowest
/// receipts (ascending): the lowest receipt that is not the sender's decides.
pub(crate) fn others_have_read(lowest: &[(String, i64)], sender: &str, cseq: i64) -> bool {
    (lowest.iter())
        .find(|(u, _)| u != sender)
        .is_some_and(|(_, seq)| *seq >= cseq)
}

/// A group row about to be stored: a message, or a membership event.
pub(crate) struct Row<'a> {
    pub id: &'a str,
    pub group: &'a str,
    pub sender: &'a str,
    pub client_msg_id: Option<&'a str>,
    pub event: bool,
    pub payload: &'a str,
    pub at: i64,
}

impl<'a> Row<'a> {
    pub(crate) fn message(m: &'a NewMessage) -> Row<'a> {
        Row {
            id: &m.id,
            group: &m.reciever_id,
            sender: &m.sender_id,
            client_msg_id: m.client_msg_id.as_deref(),
            event: false,
            payload: &m.payload,
            at: m.created_at,
        }
    }

    /// The event of `change`; `payload` is its plan's event, as JSON.
    pub(crate) fn event(change: &'a Change, payload: &'a str) -> Row<'a> {
        Row {
            id: &change.event_id,
            group: &change.group,
            sender: &change.by,
            client_msg_id: None,
            event: true,
            payload,
            at: change.at,
        }
    }
}

/// What a membership change does, decided from the members before it by the same rules on
/// both backends; they only read the members and write the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub event: crate::protocol::group::GroupEvent,
    /// Whose streams get the event: the members after a create or an add; the members
    /// before a removal (the removed learn of it that way).
    pub to: Vec<String>,
    /// Who joins (create, add) or leaves (remove).
    pub moving: Vec<String>,
}

impl Change {
    fn plan(&self, event: &str, moving: Vec<String>, to: Vec<String>) -> Plan {
        let members = moving.clone();
        let event = crate::protocol::group::GroupEvent {
            event: event.into(),
            members,
        };
        Plan { event, to, moving }
    }

    pub(crate) fn plan_create(&self) -> Result<Plan, GroupRefusal> {
        let all = unique(Some(&self.by), &self.members);
        if all.len() > self.max_members {
            return Err(GroupRefusal::Full);
        }
        Ok(self.plan("created", all.clone(), all))
    }

    pub(crate) fn plan_add(&self, current: Vec<String>) -> Result<Plan, GroupRefusal> {
        let new: Vec<String> = (unique(None, &self.members).into_iter())
            .filter(|m| !current.contains(m))
            .collect();
        if new.is_empty() {
            return Err(GroupRefusal::NoChange);
        }
        if current.len() + new.len() > self.max_members {
            return Err(GroupRefusal::Full);
        }
        let mut all = current;
        all.extend(new.iter().cloned());
        Ok(self.plan("added", new, all))
    }

    /// The creator removes anyone; anyone removes themselves (`left`).
    pub(crate) fn plan_remove(
        &self,
        current: Vec<String>,
        creator: &str,
    ) -> Result<Plan, GroupRefusal> {
        if self.members.iter().any(|m| *m != self.by) && self.by != creator {
            return Err(GroupRefusal::NotAllowed);
        }
        let gone: Vec<String> = (unique(None, &self.members).into_iter())
            .filter(|m| current.contains(m))
            .collect();
        if gone.is_empty() {
            return Err(GroupRefusal::NoChange);
        }
        let kind = if gone == [self.by.clone()] {
            "left"
        } else {
            "removed"
        };
        Ok(self.plan(kind, gone, current))
    }
}

/// `first` (if any), then every user of `rest` once, in order: the protocol decoder already
/// drops repeats, but the store does not rely on its callers for its keys.
pub(crate) fn unique(first: Option<&str>, rest: &[String]) -> Vec<String> {
    let mut out: Vec<String> = first.map(str::to_owned).into_iter().collect();
    for u in rest {
        if !out.contains(u) {
            out.push(u.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::others_have_read;

    #[test]
    fn the_lowest_receipt_but_the_senders_decides_read_by_all() {
        let low = [("bob".to_string(), 3), ("carol".to_string(), 7)];
        assert!(
            others_have_read(&low, "bob", 7),
            "bob's own receipt does not count"
        );
        assert!(!others_have_read(&low, "bob", 8));
        assert!(others_have_read(&low, "alice", 3));
        assert!(!others_have_read(&low, "alice", 4), "bob has not read 4");
        let alone = [("alice".to_string(), 9)];
        assert!(
            !others_have_read(&alone, "alice", 1),
            "nobody else to read it"
        );
    }
}
