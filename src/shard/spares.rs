//! Descriptors held in reserve for the shards' accept loops (`socket::listener`). Out of
//! descriptors (EMFILE/ENFILE), the kernel keeps a pending connection in the backlog and every
//! accept fails again; a shard then frees a spare, accepts that connection in its slot and
//! closes it at once, so the client sees the connection end instead of hanging until its
//! timeout.
//!
//! One pool for the pod, because the descriptor table is the process's: a slot one shard
//! frees may be taken by any thread's next open or accept, another shard's included. With a
//! spare per shard, a shard whose slot was taken that way stayed without one until some socket
//! closed, and every connection the kernel queued on its listener hung meanwhile
//! (`tests/caps.rs`). With one pool, whichever accept
//! next finds it short tops it up, and any shard sheds with any spare.

use std::fs::File;

use crossbeam_channel::{Receiver, Sender};

/// Spares the pool keeps: enough for several shards shedding at once.
pub const SPARES: usize = 4;

/// See the module doc.
pub struct Spares {
    put: Sender<File>,
    take: Receiver<File>,
}

impl Default for Spares {
    fn default() -> Spares {
        let (put, take) = crossbeam_channel::bounded(SPARES);
        let spares = Spares { put, take };
        spares.refill();
        spares
    }
}

impl Spares {
    /// One spare out of the pool, to be closed; `None` when the pool is empty.
    pub fn take(&self) -> Option<File> {
        self.take.try_recv().ok()
    }

    /// Tops the pool up; false when a descriptor could not be opened for it. One load when
    /// the pool is full, as it is whenever the pod is not out of descriptors.
    pub fn refill(&self) -> bool {
        while self.put.len() < SPARES {
            let Ok(spare) = File::open("/dev/null") else {
                return false;
            };
            // Full meanwhile (another shard topped it up): the extra one closes here.
            let _ = self.put.try_send(spare);
        }
        true
    }

    pub fn len(&self) -> usize {
        self.put.len()
    }

    pub fn is_empty(&self) -> bool {
        self.put.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_taken_by_one_user_is_replaced_by_whoever_refills() {
        let spares = std::sync::Arc::new(Spares::default());
        assert_eq!(spares.len(), SPARES);
        drop(spares.take().expect("a spare"));
        drop(spares.take().expect("another"));
        assert_eq!(spares.len(), SPARES - 2);
        let other = spares.clone();
        assert!(std::thread::spawn(move || other.refill()).join().unwrap());
        assert_eq!(spares.len(), SPARES);
        for _ in 0..SPARES {
            spares.take().expect("one of the pool");
        }
        assert!(spares.is_empty());
        assert!(spares.take().is_none());
    }
}
