//! Checkpoints of the embedded store's WAL on a thread of their own.
//!
//! A checkpoint copies the pages that commits appended to the WAL back into the database file
//! and fsyncs it. Run by SQLite's auto-checkpoint, it happens inside the commit that crossed
//! the threshold, on the one store thread every shard waits on: tens of ms every second or so
//! at a few thousand messages per second, which was most of the pod's p99 (perf/RESULTS.md
//! §23f). Here a second connection runs `PRAGMA wal_checkpoint(PASSIVE)` now and
//! then (see "How often" below); WAL mode lets it copy pages while the store thread keeps committing. The store
//! thread's own auto-checkpoint stays as the backstop that lets the WAL wrap around: when it
//! fires, the pages are already copied and it only finishes the last few frames, and while
//! this thread holds the checkpoint lock it is skipped rather than waited for.
//!
//! How often: a checkpoint writes every page the WAL holds a newer copy of, once, however
//! many commits rewrote it meanwhile, and a message dirties the same hot index leaves as the
//! messages before it. So the thread waits for about [`TARGET_FRAMES`] new frames (half the
//! backstop's threshold), between [`MIN_PERIOD`] and [`MAX_PERIOD`], judged from how fast the
//! WAL grew since the last checkpoint ([`Pace`]). Against a fixed 100 ms at 1,000 and 4,000
//! msg/s this wrote 76–78 % fewer bytes into the database file (perf/RESULTS.md §30).

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use rusqlite::Connection;

/// The shortest wait between two checkpoints (and the wait after a busy or failed one).
pub const MIN_PERIOD: Duration = Duration::from_millis(100);
/// The longest: at low load the WAL is folded back at least this often.
pub const MAX_PERIOD: Duration = Duration::from_secs(1);
/// New WAL frames (pages) a checkpoint waits for: 32 MiB of 4 KiB pages, half the store
/// thread's own auto-checkpoint threshold, so the backstop stays a backstop.
pub const TARGET_FRAMES: u64 = super::WAL_AUTOCHECKPOINT_PAGES as u64 / 2;

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
            .spawn(move || {
                let mut pace = Pace::new(Instant::now());
                loop {
                    match stopped.recv_timeout(pace.wait) {
                        Err(RecvTimeoutError::Timeout) => {
                            let done = checkpoint(&conn);
                            pace.after(done, Instant::now());
                        }
                        _ => return,
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// One passive checkpoint: `(frames in the WAL, frames copied back)`, or `None` when it was
/// busy (the store thread's backstop is running one) or failed. Those are left for the next
/// period: nothing is lost by a skipped checkpoint, the WAL only grows until one succeeds.
fn checkpoint(conn: &Connection) -> Option<(u64, u64)> {
    let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match r {
        Ok((0, log, copied)) if log >= 0 && copied >= 0 => Some((log as u64, copied as u64)),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "background checkpoint skipped");
            None
        }
    }
}

/// When the next checkpoint is due, from how fast the WAL grew.
#[derive(Debug)]
struct Pace {
    /// How long to wait before the next checkpoint.
    wait: Duration,
    /// When the last checkpoint ran.
    last: Instant,
    /// What it saw: frames in the WAL, frames copied back (the WAL restarts at frame 1 with
    /// the first commit after everything was copied).
    seen: (u64, u64),
}

impl Pace {
    fn new(now: Instant) -> Pace {
        Pace {
            wait: MIN_PERIOD,
            last: now,
            seen: (0, 0),
        }
    }

    /// Sets the next wait from a checkpoint's result at `now`, judging the frames new since
    /// the last one: none when nothing changed; all of them when the last checkpoint had
    /// copied everything (the first commit after that restarts the WAL at frame 1); else
    /// those past the frames seen then. A misjudged restart only moves the wait within its
    /// bounds.
    fn after(&mut self, done: Option<(u64, u64)>, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        let Some((log, copied)) = done else {
            self.wait = MIN_PERIOD;
            return;
        };
        let seen = std::mem::replace(&mut self.seen, (log, copied));
        let new = if seen == (log, copied) {
            0
        } else if seen.0 == seen.1 {
            log
        } else {
            log.saturating_sub(seen.0)
        };
        self.wait = match (new * 1_000_000).checked_div(elapsed.as_micros() as u64) {
            // Frames per second, so the wait that lets TARGET_FRAMES accumulate.
            Some(rate) if rate > 0 => Duration::from_secs_f64(TARGET_FRAMES as f64 / rate as f64),
            _ => MAX_PERIOD,
        }
        .clamp(MIN_PERIOD, MAX_PERIOD);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn paced(steps: &[(u64, Option<(u64, u64)>)]) -> Vec<Duration> {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        let mut at = t0;
        steps
            .iter()
            .map(|&(ms, done)| {
                at += Duration::from_millis(ms);
                pace.after(done, at);
                pace.wait
            })
            .collect()
    }

    /// A WAL that grows fast is checkpointed often, one that grows slowly or not at all is
    /// left for up to a second, and a busy checkpoint is tried again soon.
    #[test]
    fn the_wait_follows_how_fast_the_wal_grows() {
        let t = TARGET_FRAMES;
        let waits = paced(&[
            (100, Some((t * 2, t * 2))), // 2 × the target in 100 ms: as soon as allowed
            (100, Some((t / 4, t / 4))), // restarted: a quarter of the target in 100 ms
            (1000, Some((t / 4, t / 4))), // nothing new
            (1000, Some((t / 8, t / 8))), // restarted: an eighth in a second
            (1000, None),                // busy
        ]);
        assert_eq!(waits[0], MIN_PERIOD);
        assert_eq!(waits[1], Duration::from_millis(400));
        assert_eq!(waits[2], MAX_PERIOD);
        assert_eq!(waits[3], MAX_PERIOD, "an eighth per second would need 8 s");
        assert_eq!(waits[4], MIN_PERIOD);
    }

    /// After a partial checkpoint (a reader held frames back) the WAL cannot have restarted:
    /// only frames past those seen are new, and the ones left over are not counted twice.
    #[test]
    fn frames_seen_before_are_not_new() {
        let t = TARGET_FRAMES;
        let waits = paced(&[(100, Some((t, t / 2))), (500, Some((t * 2, t * 2)))]);
        assert_eq!(waits[0], MIN_PERIOD);
        assert_eq!(
            waits[1],
            Duration::from_millis(500),
            "t new frames in 500 ms"
        );
    }

    /// A database not in WAL mode has no WAL to measure (SQLite answers -1 frames): no
    /// figure, so the next try comes soon; a WAL database reports what it copied.
    #[test]
    fn a_checkpoint_reports_the_wal_or_nothing() {
        let memory = Connection::open_in_memory().unwrap();
        assert_eq!(checkpoint(&memory), None);
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join("c.db")).unwrap();
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        let (log, copied) = checkpoint(&db).expect("a WAL database reports its frames");
        assert!(log > 0 && copied == log, "{log} frames, {copied} copied");
    }
}
