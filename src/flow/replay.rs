//! The offline path: a connecting device first receives what is stored for it, oldest first,
//! before live messages (which are held meanwhile and merged without duplicates).
//!
//! - **v1** (no cursor): every message to the user below DELIVERED.
//! - **v2 sync** (`?since=N`): everything in the user's stream after position N, received or
//!   sent (carbons, each direct one followed by its status when past NONE), whatever its
//!   status: a second device catches up on what the first one already acknowledged. Retention that deleted part of that range is announced first;
//!   the stored read receipts that concern the user follow the messages.
//!
//! The route is registered *before* the first read, so a message is either in a page read or
//! routed live to this connection: there is no gap. Positions in a user's stream follow
//! commit order, so a live copy at or below the last replayed position was replayed already
//! (or, in v1, was DELIVERED to another device) and is skipped.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;

use crate::backend::routes::RouteError;
use crate::backend::store::{HistoryPage, PendingMessage, RowKind, StoreCmd};
use crate::protocol::{encode_status, encode_truncated, Status};
use crate::shard::outbox::{Out, Outbox};
use crate::shard::Shard;

use super::route::envelope;
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

/// Registers `user` here, then replays their stored messages into `outbox`: v1 without a
/// cursor, the v2 sync after position `since` with one.
pub async fn register_and_replay(
    shard: &Rc<Shard>,
    user: &str,
    outbox: &Rc<RefCell<Outbox>>,
    since: Option<i64>,
) -> Result<(), ReplayError> {
    outbox.borrow_mut().start_replay();
    shard.routes.register(user, shard.location()).await?;
    let settle = shard.routes.settle_after_register();
    if !settle.is_zero() {
        glommio::timer::sleep(settle).await;
    }
    let mut after = since.unwrap_or(0);
    let (mut announced, mut announced_reads) = (false, false);
    loop {
        let page = fetch_page(shard, user, after, since.is_some()).await?;
        if page.pruned_through > after && !announced {
            announced = true;
            let frame = encode_truncated(page.pruned_through);
            outbox.borrow_mut().push(Out::Text(frame.into()));
        }
        let full = page.messages.len() == PAGE;
        for m in page.messages {
            after = m.seq;
            push_replayed(shard, user, outbox, m).await?;
            outbox.borrow_mut().replayed_through(after);
        }
        if full {
            continue;
        }
        if since.is_some() && !announced_reads {
            announced_reads = true;
            let frames = super::read::reads_for_sync(shard, user).await;
            let frames = frames.map_err(ReplayError::Store)?;
            let mut ob = outbox.borrow_mut();
            for f in frames {
                ob.push(Out::Text(f.into()));
            }
        }
        let replay = outbox.borrow_mut().end_replay();
        if replay.overflowed {
            // Held live messages were dropped for space; they are stored, so read again.
            outbox.borrow_mut().start_replay();
            continue;
        }
        let mut ob = outbox.borrow_mut();
        for env in replay.held {
            ob.push_released(env);
        }
        return Ok(());
    }
}

/// One page: of the v1 replay (below DELIVERED) or of the user's whole stream (`sync`).
async fn fetch_page(
    shard: &Shard,
    user: &str,
    after: i64,
    sync: bool,
) -> Result<HistoryPage, ReplayError> {
    let user = user.to_owned();
    if sync {
        let (reply, wait) = oneshot::channel();
        let cmd = StoreCmd::History {
            user,
            after_pos: after,
            limit: PAGE,
            reply,
        };
        return ask(shard, cmd, wait).await;
    }
    let (reply, wait) = oneshot::channel();
    let cmd = StoreCmd::Pending {
        recipient: user,
        after_seq: after,
        limit: PAGE,
        reply,
    };
    let messages = ask(shard, cmd, wait).await?;
    Ok(HistoryPage {
        messages,
        pruned_through: 0,
    })
}

async fn ask<T>(
    shard: &Shard,
    cmd: StoreCmd,
    wait: oneshot::Receiver<Result<T, String>>,
) -> Result<T, ReplayError> {
    submit(&shard.pod.store, cmd, STATUS_PATIENCE)
        .await
        .map_err(|e| ReplayError::Store(format!("{e:?}")))?;
    wait.await
        .map_err(|_| ReplayError::Store("store thread ended".into()))?
        .map_err(ReplayError::Store)
}

/// Queues one stored message; `user` is the connection's, so a message from them is a carbon.
async fn push_replayed(
    shard: &Shard,
    user: &str,
    outbox: &Rc<RefCell<Outbox>>,
    m: PendingMessage,
) -> Result<(), ReplayError> {
    wait_for_room(outbox).await?;
    let (env, awaits_ack) = match m.kind {
        RowKind::Direct => {
            let carbon = m.reciever_id != user;
            // A DELIVERED message is never redriven, so it needs no ack from this device.
            (
                envelope(m.view(), carbon),
                !carbon && m.status < Status::Delivered,
            )
        }
        _ => super::group::row_envelope(&m, user),
    };
    let carbon = env.carbon;
    // The user's own direct message, read back by a syncing device: its status frames were
    // sent to the devices online at the time, so this one learns the status here.
    let status = (carbon && m.kind == RowKind::Direct && m.status > Status::None)
        .then(|| encode_status(&m.id, m.status));
    let pushed = {
        let mut ob = outbox.borrow_mut();
        ob.give_replayed(&m.id, m.seq, awaits_ack);
        ob.push(Out::Message(env)) && status.map_or(true, |f| ob.push_stored_status(f))
    };
    if !pushed {
        return Err(ReplayError::Closed);
    }
    if m.status == Status::None && !carbon {
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
