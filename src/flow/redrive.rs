//! The redrive (distributed mode): messages stuck at NONE (produce failed, broker down, pod
//! died between commit and produce) or at SENT for too long (their pod died before delivery)
//! are routed again. A broker outage or a pod crash delays messages; it never loses one.
//!
//! The sweep pages through stuck messages with a cursor, so a backlog for offline users
//! (which legitimately stays NONE) cannot starve newer stuck messages. A message is redriven
//! at most once per `sent_after` window, so a device that never acks is not flooded.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use crate::backend::store::{NewMessage, PendingMessage, StoreCmd};
use crate::protocol::now_micros;
use crate::shard::Shard;

use super::submit::{submit, STATUS_PATIENCE};

/// Stuck messages read per sweep.
const PAGE: usize = 512;

/// Timing of the redrive.
#[derive(Debug, Clone, Copy)]
pub struct RedriveSettings {
    pub interval: Duration,
    pub none_after: Duration,
    pub sent_after: Duration,
}

/// Runs until the shard drains.
pub async fn run(shard: Rc<Shard>, s: RedriveSettings) {
    let mut cursor = 0;
    let mut recent: HashMap<String, Instant> = HashMap::new();
    while !shard.draining.get() {
        glommio::timer::sleep(s.interval).await;
        let now = now_micros();
        let none_before = now - s.none_after.as_micros() as i64;
        let sent_before = now - s.sent_after.as_micros() as i64;
        let page = match stuck(&shard, cursor, none_before, sent_before).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "redrive query failed");
                continue;
            }
        };
        cursor = if page.len() < PAGE {
            0
        } else {
            page.last().map_or(0, |m| m.seq)
        };
        recent.retain(|_, at| at.elapsed() < s.sent_after);
        for m in page {
            if recent.contains_key(&m.id) {
                continue;
            }
            recent.insert(m.id.clone(), Instant::now());
            tracing::debug!(seq = m.seq, "redrive");
            super::route::spawn_route(&shard, into_new(m.clone()), m.seq);
        }
    }
}

async fn stuck(
    shard: &Shard,
    after_seq: i64,
    none_before: i64,
    sent_before: i64,
) -> Result<Vec<PendingMessage>, String> {
    let (reply, wait) = oneshot::channel();
    let cmd = StoreCmd::Stuck {
        after_seq,
        none_before,
        sent_before,
        limit: PAGE,
        reply,
    };
    submit(&shard.pod.store, cmd, STATUS_PATIENCE)
        .await
        .map_err(|e| format!("{e:?}"))?;
    wait.await.map_err(|_| "store thread ended".to_string())?
}

fn into_new(m: PendingMessage) -> NewMessage {
    NewMessage {
        id: m.id,
        sender_id: m.sender_id,
        reciever_id: m.reciever_id,
        client_msg_id: None,
        payload: m.payload,
        created_at: m.created_at,
    }
}
