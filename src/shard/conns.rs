//! The shard's slice of the connection map: user → that user's connections on this shard.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use smallvec::SmallVec;

use crate::shard::outbox::{Out, Outbox};

/// One live connection, as the shard sees it.
pub struct ConnEntry {
    pub user: Rc<str>,
    pub outbox: Rc<RefCell<Outbox>>,
}

/// See the module doc.
#[derive(Default)]
pub struct Conns {
    by_id: HashMap<u64, ConnEntry>,
    /// Inline room for two connections: almost every user has one or two devices per shard,
    /// and a `Vec` cost each connected user a heap block of its own.
    by_user: HashMap<Rc<str>, SmallVec<[u64; 2]>>,
}

impl Conns {
    pub fn insert(&mut self, id: u64, user: Rc<str>, outbox: Rc<RefCell<Outbox>>) {
        self.by_user.entry(user.clone()).or_default().push(id);
        self.by_id.insert(id, ConnEntry { user, outbox });
    }

    /// A server API request acting as `user` (`socket::api`): it is answered like a
    /// connection (by id) but is not one of the user's places, so it takes none of their
    /// messages.
    pub fn insert_request(&mut self, id: u64, user: Rc<str>, outbox: Rc<RefCell<Outbox>>) {
        self.by_id.insert(id, ConnEntry { user, outbox });
    }

    pub fn remove(&mut self, id: u64) {
        let Some(entry) = self.by_id.remove(&id) else {
            return;
        };
        if let Some(ids) = self.by_user.get_mut(&entry.user) {
            ids.retain(|c| *c != id);
            if ids.is_empty() {
                self.by_user.remove(&entry.user);
            }
        }
    }

    /// Records that the store answered a send of connection `id` (if it is still here).
    pub fn send_answered(&self, id: u64) {
        if let Some(e) = self.by_id.get(&id) {
            e.outbox.borrow_mut().send_answered();
        }
    }

    /// Calls `f` with the id and outbox of every connection of `user` on this shard. A
    /// visitor, not a returned `Vec`: this runs once per delivered frame and must not allocate.
    pub fn each_outbox_of(&self, user: &str, mut f: impl FnMut(u64, &RefCell<Outbox>)) {
        let Some(ids) = self.by_user.get(user) else {
            return;
        };
        for (&id, entry) in ids.iter().filter_map(|id| Some(id).zip(self.by_id.get(id))) {
            f(id, &entry.outbox);
        }
    }

    /// Queues a frame for one connection; false if it is gone or overflowed.
    pub fn push_to(&self, id: u64, out: Out) -> bool {
        self.by_id
            .get(&id)
            .is_some_and(|e| e.outbox.borrow_mut().push(out))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Calls `f` with every outbox on this shard (keepalive sweep, lease loss, shutdown),
    /// without allocating.
    pub fn for_each_outbox(&self, mut f: impl FnMut(&RefCell<Outbox>)) {
        for entry in self.by_id.values() {
            f(&entry.outbox);
        }
    }
}
