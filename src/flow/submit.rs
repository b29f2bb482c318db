//! Hand-off to the store thread: `try_send` only, so an executor never blocks.
//!
//! Back-pressure policy: while the store queue is full the caller (a connection's reader, so
//! that client stops being read) retries every 250 µs up to a patience window; after that an
//! insert is refused with `overloaded` and a status update is left for replay.

use std::time::{Duration, Instant};

use crate::backend::store::{StoreCmd, SubmitError};
use crate::shard::Shard;

/// Patience for inserts: the client is told `overloaded` after this.
pub const INSERT_PATIENCE: Duration = Duration::from_secs(2);
/// Patience for status updates, which have no client waiting on them.
pub const STATUS_PATIENCE: Duration = Duration::from_secs(10);

/// Queues `cmd`, waiting (without blocking the executor) while the queue is full.
#[allow(clippy::result_large_err)] // The command comes back by value; see `try_submit`.
pub async fn submit(
    shard: &Shard,
    mut cmd: StoreCmd,
    patience: Duration,
) -> Result<(), SubmitError> {
    let deadline = Instant::now() + patience;
    loop {
        match shard.pod.store.try_submit(cmd) {
            Ok(()) => return Ok(()),
            Err(SubmitError::Full(back)) if Instant::now() < deadline => {
                cmd = back;
                glommio::timer::sleep(Duration::from_micros(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
