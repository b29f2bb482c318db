//! The directory fed from a file (`--users-file`): one record per line, the same records as
//! the Kafka topic, folded in order. Useful for the embedded mode, where no topic exists, and
//! for a directory shipped as a config map. The file is read at startup (a malformed line
//! stops the pod with its line number) and again whenever its size or modification time
//! changes; a re-read that fails keeps the directory as it was and logs why.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{OnDeleted, UserDirectory, UserEvent};
use crate::backend::stoppable::StoppableThread;

/// How often the watcher looks at the file's metadata.
const POLL: Duration = Duration::from_millis(500);

/// Reads `path` into events: blank lines and lines starting with `#` are skipped.
pub fn read_events(path: &Path) -> Result<Vec<UserEvent>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("users file {}: {e}", path.display()))?;
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let event = UserEvent::parse(line)
            .map_err(|e| format!("users file {}:{}: {e}", path.display(), i + 1))?;
        events.push(event);
    }
    Ok(events)
}

/// The watcher thread; [`stop`](Self::stop) ends it.
pub struct FileFeeder(StoppableThread);

impl FileFeeder {
    /// Loads `path` into `dir` (an error stops the start) and watches it.
    pub fn start(
        path: PathBuf,
        dir: Arc<UserDirectory>,
        on_deleted: OnDeleted,
    ) -> Result<FileFeeder, String> {
        let mut seen = stamp(&path);
        dir.replace(read_events(&path)?);
        tracing::info!(users = dir.len(), file = %path.display(), "user directory loaded");
        let watch = move |stop: &AtomicBool| {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(POLL);
                let now = stamp(&path);
                if now != seen {
                    seen = now;
                    reload(&path, &dir, &on_deleted);
                }
            }
        };
        StoppableThread::spawn("users-file", watch).map(FileFeeder)
    }

    pub fn stop(self) {
        self.0.stop()
    }
}

fn reload(path: &Path, dir: &UserDirectory, on_deleted: &OnDeleted) {
    match read_events(path) {
        Ok(events) => {
            let gone = dir.replace(events);
            tracing::info!(
                users = dir.len(),
                deleted = gone.len(),
                "user directory reloaded"
            );
            if !gone.is_empty() {
                on_deleted(gone);
            }
        }
        Err(e) => tracing::warn!(error = %e, "user directory not reloaded; the previous one stays"),
    }
}

/// What tells a changed file apart: inode (a file replaced by a rename, as a config map or
/// an atomic writer does), size and modification time (`None`: unreadable).
fn stamp(path: &Path) -> Option<(u64, u64, SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.len(), meta.modified().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_line_is_named_by_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.jsonl");
        let text = "# users\n{\"type\":\"user.created\",\"user_id\":\"a\"}\n\n{\"type\":\"x\"}\n";
        std::fs::write(&path, text).unwrap();
        let e = read_events(&path).unwrap_err();
        assert!(e.contains("users.jsonl:4: unknown variant `x`"), "{e}");
        std::fs::write(&path, "{\"type\":\"user.created\",\"user_id\":\"a\"}\n").unwrap();
        assert_eq!(read_events(&path).unwrap().len(), 1);
        assert!(read_events(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_reload_with_a_bad_line_keeps_the_previous_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.jsonl");
        let users = UserDirectory::default();
        let deleted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = deleted.clone();
        let on_deleted: OnDeleted = Box::new(move |gone| seen.lock().unwrap().extend(gone));
        let line = |id: &str| format!("{{\"type\":\"user.created\",\"user_id\":\"{id}\"}}\n");
        std::fs::write(&path, line("a") + &line("b")).unwrap();
        reload(&path, &users, &on_deleted);
        assert!(users.knows("a") && users.knows("b"));
        std::fs::write(&path, line("a") + "{\"type\":\"user.deleted\"}\n").unwrap();
        reload(&path, &users, &on_deleted);
        assert!(users.knows("b"), "a bad file must not drop b");
        assert!(deleted.lock().unwrap().is_empty());
        std::fs::write(&path, line("a")).unwrap();
        reload(&path, &users, &on_deleted);
        assert!(!users.knows("b"));
        assert_eq!(*deleted.lock().unwrap(), ["b"]);
    }
}
