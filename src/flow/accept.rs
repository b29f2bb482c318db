//! Step 2: the store committed (or refused); the sender's connection hears of it.

use std::rc::Rc;

use crate::backend::store::{InsertResult, NewMessage};
use crate::protocol::{
    direct_conversation_id, encode_accepted, encode_error, Accepted, ErrorCode, Status,
};
use crate::shard::outbox::Out;
use crate::shard::Shard;

/// A committed insert: `accepted` to the sending connection, then route a new message.
/// A duplicate `client_msg_id` answers with the original id and status and routes nothing.
pub fn on_inserted(shard: &Rc<Shard>, conn: u64, msg: NewMessage, result: InsertResult) {
    shard.end_work();
    shard.conns.borrow().send_answered(conn);
    let client_msg_id = msg.client_msg_id.as_deref();
    let frame = match &result {
        InsertResult::Inserted { at } => {
            let conversation = direct_conversation_id(&msg.sender_id, &msg.reciever_id);
            encode_accepted(Accepted {
                id: &msg.id,
                client_msg_id,
                status: Status::None,
                conversation_id: Some(&conversation),
                at: Some((at.cseq, at.spos)),
            })
        }
        InsertResult::Duplicate {
            id,
            status,
            original,
        } => {
            let conversation = original
                .as_ref()
                .map(|o| direct_conversation_id(&msg.sender_id, &o.reciever_id));
            encode_accepted(Accepted {
                id,
                client_msg_id,
                status: *status,
                conversation_id: conversation.as_deref(),
                at: original.as_ref().map(|o| (o.at.cseq, o.at.spos)),
            })
        }
    };
    // The sender may have disconnected; the message is stored and routed all the same.
    shard.conns.borrow().push_to(conn, Out::Text(frame.into()));
    let m = shard.metrics();
    match &result {
        InsertResult::Inserted { .. } => crate::metrics::ShardMetrics::inc(&m.accepted),
        InsertResult::Duplicate { .. } => crate::metrics::ShardMetrics::inc(&m.duplicates),
    }
    if let InsertResult::Inserted { at } = result {
        super::route::spawn_route(shard, msg, at, conn);
    }
}

/// The store could not commit: nothing was stored, the client may resend.
pub fn on_insert_failed(shard: &Rc<Shard>, conn: u64, msg: NewMessage, error: &str) {
    shard.end_work();
    shard.conns.borrow().send_answered(conn);
    if let Some(failed) = shard.store_failures.count_now() {
        let id = shard.id;
        tracing::warn!(
            shard = id,
            conn,
            error,
            failed,
            "store commands refused or failed"
        );
    }
    let text = "the store failed; message not stored, resend it with the same client_msg_id";
    shard.metrics().error(ErrorCode::StoreUnavailable);
    let frame = encode_error(
        ErrorCode::StoreUnavailable,
        text,
        msg.client_msg_id.as_deref(),
        None,
    );
    shard.conns.borrow().push_to(conn, Out::Text(frame.into()));
}

/// An ack named a message that is not addressed to the acking user.
pub fn on_ack_refused(shard: &Rc<Shard>, conn: u64, id: &str) {
    let text = "no message with this id is addressed to you";
    shard.metrics().error(ErrorCode::NotRecipient);
    let frame = encode_error(ErrorCode::NotRecipient, text, None, Some(id));
    shard.conns.borrow().push_to(conn, Out::Text(frame.into()));
}
