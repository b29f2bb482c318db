//! The current status of messages a user sent, asked by one of their devices: a status frame
//! goes to the devices online when the status changes, so a device that was offline asks
//! for the messages whose ticks it still shows below DELIVERED (`docs/PROTOCOL.md`,
//! "statuses"). Only the asker's own messages are answered; any other id is left out, so
//! the frame tells nobody anything about messages of others.

use std::rc::Rc;

use futures::channel::oneshot;

use crate::backend::store::{StoreCmd, SubmitError};
use crate::protocol::{encode_error, encode_statuses, ErrorCode, Status};
use crate::shard::outbox::Out;
use crate::shard::Shard;

use super::submit::{submit, STATUS_PATIENCE};

/// Answers a statuses frame of connection `conn` of `sender`, in its own task.
pub fn on_statuses(shard: &Rc<Shard>, conn: u64, sender: &str, ids: Vec<String>) {
    let (s, sender) = (shard.clone(), sender.to_owned());
    shard.begin_work();
    glommio::spawn_local(async move {
        let frame = match answer(&s, sender, ids).await {
            Ok(found) => encode_statuses(&found),
            Err(code) => {
                s.metrics().error(code);
                encode_error(code, "statuses unavailable; ask again later", None, None)
            }
        };
        s.conns.borrow().push_to(conn, Out::Text(frame.into()));
        s.end_work();
    })
    .detach();
}

async fn answer(
    shard: &Shard,
    sender: String,
    ids: Vec<String>,
) -> Result<Vec<(String, Status)>, ErrorCode> {
    let (reply, wait) = oneshot::channel();
    let cmd = StoreCmd::SentStatuses { sender, ids, reply };
    if let Err(e) = submit(&shard.pod.store, cmd, STATUS_PATIENCE).await {
        return Err(match e {
            SubmitError::Full(_) => ErrorCode::Overloaded,
            SubmitError::Stopped(_) => ErrorCode::StoreUnavailable,
        });
    }
    match wait.await {
        Ok(Ok(found)) => Ok(found),
        _ => Err(ErrorCode::StoreUnavailable),
    }
}
