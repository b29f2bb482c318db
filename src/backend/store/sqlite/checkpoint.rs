//! Checkpoints of the embedded store's WAL on a thread of their own.
//!
//! A checkpoint copies the pages that commits appended to the WAL back into the database file
//! and fsyncs it. Run by SQLite's auto-checkpoint, it happens inside the commit that crossed
//! the threshold, on the one store thread every shard waits on: tens of ms every second or so
//! at a few thousand messages per second, which was most of the pod's p99 (perf/RESULTS.md
//! §23f). Here a second connection runs `PRAGMA wal_checkpoint(PASSIVE)` every
//! [`PERIOD`]; WAL mode lets it copy pages while the store thread keeps committing. The store
//! thread's own auto-checkpoint stays as the backstop that lets the WAL wrap around: when it
//! fires, the pages are already copied and it only finishes the last few frames, and while
//! this thread holds the checkpoint lock it is skipped rather than waited for.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use rusqlite::Connection;

/// How often the thread checkpoints what was committed meanwhile.
pub const PERIOD: Duration = Duration::from_millis(100);

/// The checkpoint thread; stopped and joined on drop.
pub struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to `path` and starts checkpointing it.
    pub fn start(path: PathBuf) -> Result<Checkpointer, String> {
        let conn = Connection::open(&path).map_err(|e| e.to_string())?;
        // No waiting for locks: a busy checkpoint is simply tried again next period. (Its
        // fsync of the database file happens with any `synchronous` setting.)
        conn.execute_batch("PRAGMA busy_timeout=0;")
            .map_err(|e| e.to_string())?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || loop {
                match stopped.recv_timeout(PERIOD) {
                    Err(RecvTimeoutError::Timeout) => checkpoint(&conn),
                    _ => return,
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// One passive checkpoint. Busy (the store thread's backstop is running one) and failures
/// are left for the next period: nothing is lost by a skipped checkpoint, the WAL only
/// grows until one succeeds.
fn checkpoint(conn: &Connection) {
    let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    if let Err(e) = r {
        tracing::debug!(error = %e, "background checkpoint skipped");
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join(); // A panic was reported by the thread itself.
        }
    }
}
