//! Retention (`--retention-secs`): shard 0 of each pod walks the message table window by
//! window and deletes DELIVERED messages older than the retention; undelivered ones stay
//! until they are delivered. Each stream records how far it was pruned, so a device syncing
//! from below that hears `history_truncated` instead of meeting a silent gap.
//!
//! Every round is one bounded store command on the store thread's FIFO, between batches: a
//! large backlog is worked off over many rounds and never holds inserts for long. With
//! several pods each one prunes; their rounds overlap harmlessly (a row is deleted once).

use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;

use crate::backend::store::{PruneRound, StoreCmd};
use crate::protocol::now_micros;
use crate::shard::Shard;

use super::submit::{submit, STATUS_PATIENCE};

/// Rows looked at per round.
pub const WINDOW: usize = 2_000;

/// Runs until the shard drains. A pass walks from the oldest row until it reaches rows
/// younger than the retention, then waits `interval` (a quarter of the retention, between
/// 100 ms and 60 s) and starts again from the oldest.
pub async fn run(shard: Rc<Shard>, retention: Duration) {
    let interval = (retention / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut after = 0;
    while !shard.draining.get() {
        let before = now_micros() - retention.as_micros() as i64;
        match round(&shard, before, after).await {
            Ok(r) => {
                if r.deleted > 0 {
                    tracing::debug!(deleted = r.deleted, "retention round");
                }
                match r.scanned_through {
                    Some(through) if !r.reached_recent => {
                        after = through;
                        continue;
                    }
                    _ => after = 0,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention round failed; retried next pass");
                after = 0;
            }
        }
        glommio::timer::sleep(interval).await;
    }
}

async fn round(shard: &Shard, before: i64, after_seq: i64) -> Result<PruneRound, String> {
    let (reply, wait) = oneshot::channel();
    let cmd = StoreCmd::Prune {
        before,
        after_seq,
        window: WINDOW,
        reply,
    };
    submit(&shard.pod.store, cmd, STATUS_PATIENCE)
        .await
        .map_err(|e| format!("{e:?}"))?;
    wait.await.map_err(|_| "store thread ended".to_string())?
}
