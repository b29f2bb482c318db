//! Hand-off to the store thread: `try_send` only, so an executor never blocks.
//!
//! Back-pressure policy: while the store queue is full the caller (a connection's reader, so
//! that client stops being read) retries every 250 µs up to a patience window; after that an
//! insert is refused with `overloaded` and a status update is left for replay.

use std::time::{Duration, Instant};

use crate::backend::store::{StoreCmd, StoreHandle, SubmitError};

/// Patience for inserts: the client is told `overloaded` after this.
pub const INSERT_PATIENCE: Duration = Duration::from_secs(2);
/// Patience for status updates, which have no client waiting on them.
pub const STATUS_PATIENCE: Duration = Duration::from_secs(10);

/// Queues `cmd`, waiting (without blocking the executor) while the queue is full; gives the
/// command back when the patience ran out (`Full`) or the store thread is gone (`Stopped`).
#[allow(clippy::result_large_err)] // The command comes back by value; see `try_submit`.
pub async fn submit(
    store: &StoreHandle,
    mut cmd: StoreCmd,
    patience: Duration,
) -> Result<(), SubmitError> {
    let deadline = Instant::now() + patience;
    loop {
        match store.try_submit(cmd) {
            Ok(()) => return Ok(()),
            Err(SubmitError::Full(back)) if Instant::now() < deadline => {
                cmd = back;
                glommio::timer::sleep(Duration::from_micros(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The warning for a store command that was refused or failed and is not retried (an ack, a
/// status move, a read receipt: each is left for replay or carried by a later one), written
/// once per 10 s per shard with a count (`what` names the kind).
pub fn warn_dropped(shard: &crate::shard::Shard, what: &'static str) {
    if let Some(failed) = shard.store_failures.count_now() {
        let id = shard.id;
        tracing::warn!(shard = id, failed, what, "store commands refused or failed");
    }
}

/// Asks the store with `cmd` and waits for its answer on `wait`: a question a client is
/// waiting on (presence, statuses). A queue that stays full is `overloaded`, a store that
/// stopped or failed `store_unavailable`.
pub async fn ask_store<T>(
    shard: &crate::shard::Shard,
    cmd: StoreCmd,
    wait: futures::channel::oneshot::Receiver<Result<T, String>>,
) -> Result<T, crate::protocol::ErrorCode> {
    use crate::protocol::ErrorCode;
    if let Err(e) = submit(&shard.pod.store, cmd, STATUS_PATIENCE).await {
        return Err(match e {
            SubmitError::Full(_) => ErrorCode::Overloaded,
            SubmitError::Stopped(_) => ErrorCode::StoreUnavailable,
        });
    }
    match wait.await {
        Ok(Ok(answer)) => Ok(answer),
        _ => Err(ErrorCode::StoreUnavailable),
    }
}

/// Runs `answer` in a task of its own and queues the frame it gives for connection `conn`,
/// or, when it fails, an error frame with its code and `unavailable` as the message.
pub fn answer_later(
    shard: &std::rc::Rc<crate::shard::Shard>,
    conn: u64,
    unavailable: &'static str,
    answer: impl std::future::Future<Output = Result<String, crate::protocol::ErrorCode>> + 'static,
) {
    let s = shard.clone();
    shard.begin_work();
    glommio::spawn_local(async move {
        let frame = answer.await.unwrap_or_else(|code| {
            s.metrics().error(code);
            crate::protocol::encode_error(code, unavailable, None, None)
        });
        let out = crate::shard::outbox::Out::Text(frame.into());
        s.conns.borrow().push_to(conn, out);
        s.end_work();
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync_cmd() -> StoreCmd {
        StoreCmd::Sync(crossbeam_channel::bounded(1).0)
    }

    #[test]
    fn a_full_queue_hands_the_command_back_after_the_patience_then_stopped() {
        let (store, rx) = StoreHandle::detached(1);
        let ex = glommio::LocalExecutorBuilder::default().make().unwrap();
        ex.run(async move {
            submit(&store, sync_cmd(), Duration::ZERO).await.unwrap();
            let started = Instant::now();
            let full = submit(&store, sync_cmd(), Duration::from_millis(20)).await;
            assert!(matches!(full, Err(SubmitError::Full(StoreCmd::Sync(_)))));
            assert!(started.elapsed() >= Duration::from_millis(20));
            // Room appears while waiting: the command goes through.
            let drain = glommio::spawn_local({
                let rx = rx.clone();
                async move {
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                    rx.try_recv().unwrap();
                }
            });
            submit(&store, sync_cmd(), Duration::from_secs(1))
                .await
                .unwrap();
            drain.await;
            drop(rx);
            let stopped = submit(&store, sync_cmd(), Duration::from_secs(1)).await;
            assert!(matches!(stopped, Err(SubmitError::Stopped(_))));
        });
    }
}
