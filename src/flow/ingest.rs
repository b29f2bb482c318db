//! Step 1: a text frame from a client becomes a store command.

use std::cell::RefCell;
use std::rc::Rc;

use crate::backend::store::{NewMessage, ReplyTo, StatusUpdate, StoreCmd, SubmitError};
use crate::protocol::group::is_group_id;
use crate::protocol::{
    decode_client_frame, encode_error, encode_token_accepted, now_micros, ClientFrame, ErrorCode,
    SendFrame, Status,
};
use crate::shard::outbox::{Out, Outbox};
use crate::shard::Shard;

use super::submit::{submit, INSERT_PATIENCE, STATUS_PATIENCE};

/// The connection a frame came from. The session passes its own outbox, so the per-frame
/// path needs no connection-map lookup.
pub struct Origin<'a> {
    pub conn: u64,
    pub user: &'a str,
    pub outbox: &'a Rc<RefCell<Outbox>>,
    /// A server API publish as the system sender (`socket::api`); never a socket's frame.
    pub system: bool,
}

/// Handles one text frame of a connection.
pub async fn on_text(shard: &Rc<Shard>, from: &Origin<'_>, text: &str) {
    match decode_client_frame(text, from.user, shard.settings().limits) {
        Ok(ClientFrame::Send(send)) => store_send(shard, from, send).await,
        Ok(ClientFrame::Ack { id }) => {
            from.outbox.borrow_mut().acked(&id);
            ack(shard, from.conn, from.user, &id).await
        }
        Ok(ClientFrame::AckMany { ids }) => {
            from.outbox.borrow_mut().acked_all(&ids);
            // One store command per id, batched by the store thread like separate acks.
            for id in &ids {
                ack(shard, from.conn, from.user, id).await;
            }
        }
        Ok(ClientFrame::Typing {
            conversation_id,
            active,
        }) if is_group_id(&conversation_id) => {
            if super::typing::admit(shard, from.conn, active, std::time::Instant::now()) {
                super::group::on_typing(shard, group_origin(from), &conversation_id, active)
            }
        }
        Ok(ClientFrame::Typing {
            conversation_id,
            active,
        }) => {
            let (conn, user) = (from.conn, from.user);
            super::typing::on_typing(shard, conn, user, &conversation_id, active).await
        }
        Ok(ClientFrame::Read {
            conversation_id,
            seq,
        }) if is_group_id(&conversation_id) => {
            super::group::on_read(shard, group_origin(from), &conversation_id, seq)
        }
        Ok(ClientFrame::Read {
            conversation_id,
            seq,
        }) => super::read::on_read(shard, from.conn, from.user, &conversation_id, seq).await,
        Ok(ClientFrame::Auth { token }) => refresh_token(shard, from, &token),
        Ok(ClientFrame::Group(frame)) => super::group::on_frame(shard, group_origin(from), frame),
        Ok(ClientFrame::Presence { users }) => {
            super::presence::on_presence(shard, from.conn, from.user, users)
        }
        Ok(ClientFrame::Statuses { ids }) => {
            super::statuses::on_statuses(shard, from.conn, from.user, ids)
        }
        Err(e) => {
            shard.metrics().error(e.code);
            let frame = encode_error(e.code, &e.message, e.client_msg_id.as_deref(), None);
            from.outbox.borrow_mut().push(Out::Text(frame.into()));
        }
    }
}

/// A fresh token on the open socket: the connection's expiry moves to the new token's, or
/// the token is refused and the old expiry stays.
fn refresh_token(shard: &Shard, from: &Origin<'_>, token: &str) {
    let now = now_micros() / 1_000_000;
    let frame = match shard.settings().auth.refresh(token, from.user, now) {
        Ok(at) => {
            from.outbox.borrow_mut().token_expires_at(at);
            encode_token_accepted(at)
        }
        Err(e) => {
            shard.metrics().error(ErrorCode::InvalidToken);
            encode_error(ErrorCode::InvalidToken, &e.to_string(), None, None)
        }
    };
    from.outbox.borrow_mut().push(Out::Text(frame.into()));
}

/// A frame over the connection's rate limit: answered `rate_limited` (with the send's
/// `client_msg_id`, or the ack's `id`, when the frame names one) and otherwise ignored.
pub fn refuse_rate_limited(shard: &Shard, from: &Origin<'_>, text: &str) {
    let (cmid, id) = match decode_client_frame(text, from.user, shard.settings().limits) {
        Ok(ClientFrame::Send(send)) => (send.client_msg_id, None),
        Ok(ClientFrame::Ack { id }) => (None, Some(id)),
        _ => (None, None),
    };
    shard.metrics().error(ErrorCode::RateLimited);
    let text = "too many frames on this connection; this one was not processed: resend it later";
    let frame = encode_error(ErrorCode::RateLimited, text, cmid.as_deref(), id.as_deref());
    from.outbox.borrow_mut().push(Out::Text(frame.into()));
}

/// The connection, owned, for the group steps' tasks.
fn group_origin(from: &Origin<'_>) -> super::group::From {
    super::group::From {
        conn: from.conn,
        user: from.user.to_owned(),
        system: from.system,
    }
}

async fn store_send(shard: &Rc<Shard>, from: &Origin<'_>, send: SendFrame<'_>) {
    if send.group {
        // The same flow control as a direct send: the answer gives the room back.
        futures::future::poll_fn(|cx| from.outbox.borrow_mut().poll_send_room(cx)).await;
        from.outbox.borrow_mut().send_started();
        return super::group::on_send(shard, group_origin(from), send);
    }
    let (conn, user, outbox) = (from.conn, from.user, from.outbox);
    if !shard.pod.user_exists(&send.reciever_id) {
        let code = ErrorCode::UnknownRecipient;
        shard.metrics().error(code);
        let text = "the user directory does not know the recipient; nothing was stored";
        let frame = encode_error(code, text, send.client_msg_id.as_deref(), None);
        outbox.borrow_mut().push(Out::Text(frame.into()));
        return;
    }
    let msg = NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        sender_id: user.to_owned(),
        reciever_id: send.reciever_id.into_owned(),
        client_msg_id: send.client_msg_id.map(|c| c.into_owned()),
        payload: send.payload.into_owned(),
        created_at: now_micros(),
    };
    let reply = ReplyTo {
        shard: shard.id,
        conn,
    };
    futures::future::poll_fn(|cx| outbox.borrow_mut().poll_send_room(cx)).await;
    shard.begin_work();
    outbox.borrow_mut().send_started();
    let Err(e) = submit(
        &shard.pod.store,
        StoreCmd::Insert { msg, reply },
        INSERT_PATIENCE,
    )
    .await
    else {
        return; // Answered by the store thread after the commit (flow::accept).
    };
    shard.end_work();
    outbox.borrow_mut().send_answered();
    let (code, cmd) = match e {
        SubmitError::Full(cmd) => (ErrorCode::Overloaded, cmd),
        SubmitError::Stopped(cmd) => (ErrorCode::StoreUnavailable, cmd),
    };
    let cmid = match &cmd {
        StoreCmd::Insert { msg, .. } => msg.client_msg_id.clone(),
        _ => None,
    };
    if let Some(failed) = shard.store_failures.count_now() {
        let id = shard.id;
        tracing::warn!(
            shard = id,
            conn,
            ?code,
            failed,
            "store commands refused or failed"
        );
    }
    shard.metrics().error(code);
    let text = "message not stored; resend it later with the same client_msg_id";
    let frame = encode_error(code, text, cmid.as_deref(), None);
    outbox.borrow_mut().push(Out::Text(frame.into()));
}

async fn ack(shard: &Rc<Shard>, conn: u64, user: &str, id: &str) {
    let update = StatusUpdate {
        id: id.to_owned(),
        status: Status::Delivered,
        recipient: Some(user.to_owned()),
        at: now_micros(),
    };
    let reply = Some(ReplyTo {
        shard: shard.id,
        conn,
    });
    if submit(
        &shard.pod.store,
        StoreCmd::Status { update, reply },
        STATUS_PATIENCE,
    )
    .await
    .is_err()
    {
        // The message stays below DELIVERED and is replayed on the next connect.
        super::submit::warn_dropped(shard, "ack");
    }
}
