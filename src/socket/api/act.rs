//! A write of the server API acts as a user: its frame takes the path a socket's frame takes
//! (`flow::ingest`, every check included), and the first frame addressed to the request is
//! its answer.
//!
//! The request is registered in the shard's connection map by id only
//! ([`Conns::insert_request`](crate::shard::Conns::insert_request)): every step that
//! answers a connection by id (`accepted`, an error, a group's answer) answers it, while it
//! is none of the user's places, so no message, carbon or status reaches it.

use std::cell::RefCell;
use std::rc::Rc;

use crate::flow::ingest::{on_text, Origin};
use crate::shard::outbox::{Out, Outbox};
use crate::shard::Shard;

/// Room in the request's outbox: it takes one answer, and maybe a keepalive ping.
const ANSWERS: usize = 8;

/// Runs `frame` as `user` (`system`: as the application's system sender, which may send to a
/// group it is not a member of) and returns the first frame answered to it; `None` when the
/// pod shuts down first (the request's outbox is closed with every connection).
pub async fn as_user(shard: &Rc<Shard>, user: &str, system: bool, frame: &str) -> Option<String> {
    let conn = shard.next_conn_id();
    let outbox = Rc::new(RefCell::new(Outbox::new(ANSWERS)));
    (shard.conns.borrow_mut()).insert_request(conn, user.into(), outbox.clone());
    // Removed whether the answer comes or the request is dropped (its timeout).
    let _registered = Registered { shard, conn };
    let origin = Origin {
        conn,
        user,
        outbox: &outbox,
        system,
    };
    on_text(shard, &origin, frame).await;
    loop {
        match futures::future::poll_fn(|cx| outbox.borrow_mut().poll_next(cx)).await {
            Out::Text(text) => return Some(text.to_string()),
            Out::Close(..) => return None,
            _ => {} // A keepalive ping: nobody to send it to.
        }
    }
}

struct Registered<'a> {
    shard: &'a Shard,
    conn: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shard.conns.borrow_mut().remove(self.conn);
    }
}
