//! The current status of messages a user sent, asked by one of their devices: a status frame
//! goes to the devices online when the status changes, so a device that was offline asks
//! for the messages whose ticks it still shows below DELIVERED (`docs/PROTOCOL.md`,
//! "statuses"). Only the asker's own messages are answered; any other id is left out, so
//! the frame tells nobody anything about messages of others.

use std::rc::Rc;

use futures::channel::oneshot;

use crate::backend::store::StoreCmd;
use crate::protocol::encode_statuses;
use crate::shard::Shard;

use super::submit::{answer_later, ask_store};

/// Answers a statuses frame of connection `conn` of `sender`, in its own task.
pub fn on_statuses(shard: &Rc<Shard>, conn: u64, sender: &str, ids: Vec<String>) {
    let (s, sender) = (shard.clone(), sender.to_owned());
    answer_later(
        shard,
        conn,
        "statuses unavailable; ask again later",
        async move {
            let (reply, wait) = oneshot::channel();
            let cmd = StoreCmd::SentStatuses { sender, ids, reply };
            Ok(encode_statuses(&ask_store(&s, cmd, wait).await?))
        },
    );
}
