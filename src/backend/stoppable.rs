//! A named thread that runs until asked to stop: the shape of every pod-wide loop beside
//! the executors (the user directory's feeders, the webhook sender, the status relay).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// See the module doc. [`stop`](Self::stop) raises the flag the loop polls and joins it.
pub struct StoppableThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StoppableThread {
    /// Runs `body` on a thread called `name`; `body` returns once the flag it is given is set.
    pub fn spawn(
        name: &str,
        body: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> Result<StoppableThread, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&flag))
            .map_err(|e| format!("cannot start thread {name}: {e}"))?;
        Ok(StoppableThread {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join(); // A panicked loop has nothing left to stop.
        }
    }
}
