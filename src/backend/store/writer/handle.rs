//! The executors' side of the store threads: a non-blocking handle over one lane per thread.

use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use super::StoreCmd;

/// Why a command was not queued; the command is handed back.
#[derive(Debug)]
pub enum SubmitError {
    Full(StoreCmd),
    Stopped(StoreCmd),
}

/// Cheap, cloneable, non-blocking handle to the store threads (one lane per thread).
///
/// With several lanes (the distributed mode's flusher pool), a command's lane is a pure
/// function of what it touches: inserts and replay reads by recipient, status updates by
/// message id. So every insert for one recipient commits in submission order on one
/// connection (a sender's messages keep their order), the SENT and DELIVERED of a message
/// meet in one lane and fold, and lanes never contend for a recipient's row within a pod.
#[derive(Clone)]
pub struct StoreHandle {
    pub(super) lanes: Arc<[Sender<StoreCmd>]>,
}

impl StoreHandle {
    /// Queues `cmd` without blocking: executors call this. The error hands the command back
    /// by value (large, but boxing it would cost an allocation per message on the hot path).
    #[allow(clippy::result_large_err)]
    pub fn try_submit(&self, cmd: StoreCmd) -> Result<(), SubmitError> {
        let lane = &self.lanes[self.lane_of(&cmd)];
        lane.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(c) => SubmitError::Full(c),
            TrySendError::Disconnected(c) => SubmitError::Stopped(c),
        })
    }

    fn lane_of(&self, cmd: &StoreCmd) -> usize {
        let n = self.lanes.len();
        if n == 1 {
            return 0;
        }
        let key = match cmd {
            StoreCmd::Insert { msg, .. } => &msg.reciever_id,
            StoreCmd::Status { update, .. } => &update.id,
            StoreCmd::Pending { recipient, .. } => recipient,
            StoreCmd::History { user, .. } => user,
            _ => return 0,
        };
        lane_hash(key) % n
    }

    /// Blocks until everything queued so far, in every lane, is committed. Not for executors.
    pub fn sync(&self) {
        let waits: Vec<_> = (self.lanes.iter())
            .filter_map(|lane| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                lane.send(StoreCmd::Sync(tx)).ok().map(|_| rx)
            })
            .collect();
        for rx in waits {
            let _ = rx.recv(); // Err only if the thread ended, which also means "committed".
        }
    }

    /// Asks every store thread to commit what is queued and end.
    pub fn stop(&self) {
        for lane in self.lanes.iter() {
            let _ = lane.send(StoreCmd::Stop); // Err: that thread already ended.
        }
    }

    /// A handle whose commands nobody executes: tests read them from the receiver.
    #[cfg(test)]
    pub(crate) fn detached(
        capacity: usize,
    ) -> (StoreHandle, crossbeam_channel::Receiver<StoreCmd>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let lanes = vec![tx].into();
        (StoreHandle { lanes }, rx)
    }

    /// Commands waiting, over all lanes, for metrics.
    pub fn queued(&self) -> usize {
        self.lanes.iter().map(Sender::len).sum()
    }
}

/// FNV-1a: stable, cheap, and spreads short user ids and UUIDs evenly enough for lanes.
fn lane_hash(key: &str) -> usize {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h as usize
}
