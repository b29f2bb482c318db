//! The offline path: a connecting recipient receives everything stored for them below
//! DELIVERED, oldest first, before live messages (which are held meanwhile and merged
//! without duplicates). The route is registered *before* the first read, so a message is
//! either in a page read or routed live to this connection: there is no gap. The store's
//! insertion order (`seq`) follows commit order, so a live copy with `seq` at or below the
//! last replayed one was replayed already (or was DELIVERED to another device) and is
//! skipped.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;

use crate::backend::bus::Envelope;
use crate::backend::routes::RouteError;
use crate::backend::store::{PendingMessage, StoreCmd};
use crate::protocol::{encode_message, MessageView, Status};
use crate::shard::outbox::{Out, Outbox};
use crate::shard::Shard;

use super::submit::{submit, STATUS_PATIENCE};

/// Messages read from the store per page.
pub const PAGE: usize = 256;

/// Why a connection could not be set up; it is closed with 1011.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("route registration failed: {0}")]
    Route(#[from] RouteError),
    #[error("store read failed: {0}")]
    Store(String),
    #[error("the connection closed during replay")]
    Closed,
}

/// Registers `user` here, then replays their stored messages into `outbox`.
pub async fn register_and_replay(
    shard: &Rc<Shard>,
    user: &str,
    outbox: &Rc<RefCell<Outbox>>,
) -> Result<(), ReplayError> {
    outbox.borrow_mut().start_replay();
    shard.routes.register(user, shard.location()).await?;
    let mut after = 0;
    loop {
        let page = fetch_page(shard, user, after).await?;
        let full = page.len() == PAGE;
        for m in page {
            after = m.seq;
            push_replayed(shard, outbox, m).await?;
            outbox.borrow_mut().replayed_through(after);
        }
        if full {
            continue;
        }
        let replay = outbox.borrow_mut().end_replay();
        if replay.overflowed {
            // Held live messages were dropped for space; they are stored, so read again.
            outbox.borrow_mut().start_replay();
            continue;
        }
        let mut ob = outbox.borrow_mut();
        for env in replay.held {
            ob.push(Out::Message(env));
        }
        return Ok(());
    }
}

async fn fetch_page(
    shard: &Shard,
    user: &str,
    after_seq: i64,
) -> Result<Vec<PendingMessage>, ReplayError> {
    let (reply, wait) = oneshot::channel();
    let cmd = StoreCmd::Pending {
        recipient: user.to_owned(),
        after_seq,
        limit: PAGE,
        reply,
    };
    submit(&shard.pod.store, cmd, STATUS_PATIENCE)
        .await
        .map_err(|e| ReplayError::Store(format!("{e:?}")))?;
    wait.await
        .map_err(|_| ReplayError::Store("store thread ended".into()))?
        .map_err(ReplayError::Store)
}

async fn push_replayed(
    shard: &Shard,
    outbox: &Rc<RefCell<Outbox>>,
    m: PendingMessage,
) -> Result<(), ReplayError> {
    wait_for_room(outbox).await?;
    let frame = encode_message(MessageView {
        id: &m.id,
        sender_id: &m.sender_id,
        reciever_id: &m.reciever_id,
        message: &m.payload,
        created_at_micros: m.created_at,
    });
    let env = Arc::new(Envelope {
        user: m.reciever_id,
        frame: frame.into(),
        message_id: Some(m.id.clone()),
        seq: m.seq,
    });
    let pushed = {
        let mut ob = outbox.borrow_mut();
        ob.seen_before(&m.id); // Replay may repeat an id; a later live copy of it may not.
        ob.push(Out::Message(env))
    };
    if !pushed {
        return Err(ReplayError::Closed);
    }
    if m.status == Status::None {
        super::status::advance(shard, &m.id, Status::Sent).await;
    }
    Ok(())
}

/// Replay paces itself to the writer instead of overflowing the outbox.
async fn wait_for_room(outbox: &Rc<RefCell<Outbox>>) -> Result<(), ReplayError> {
    loop {
        {
            let ob = outbox.borrow();
            if ob.is_finished() {
                return Err(ReplayError::Closed);
            }
            if ob.len() + 1 < ob.capacity() {
                return Ok(());
            }
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}
