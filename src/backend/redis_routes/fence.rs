//! Fencing of pod ids. A pod id names a Kafka topic and its consumer group: two live
//! processes with one id would both consume and commit the same partitions. So a pod holds
//! `<prefix>pod:<id>` in Redis, a key with a random token and the route lease as its expiry,
//! renewed with every route heartbeat. A second process with the same id waits one lease for
//! the key (a crashed predecessor's expires) and then refuses to start; a pod that finds its
//! key taken by another process at a heartbeat (it was paused past its lease) is fenced: it
//! closes its connections and exits, and its supervisor restarts it once the other is gone.

use std::time::{Duration, Instant};

/// Takes the key if free, renews it if ours; 0 if another process holds it.
const CLAIM: &str = "local v = redis.call('GET', KEYS[1])
if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0";

/// Deletes the key only if it is still ours.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then
return redis.call('DEL', KEYS[1]) end return 0";

/// This pod's hold on its id.
pub(super) struct Fence {
    pub key: String,
    token: String,
    lease: Duration,
}

impl Fence {
    pub fn new(prefix: &str, pod: &str, lease: Duration) -> Fence {
        Fence {
            key: format!("{prefix}pod:{pod}"),
            token: uuid::Uuid::new_v4().to_string(),
            lease,
        }
    }

    /// Takes or renews the key; `Ok(false)` when another live process holds it.
    pub fn claim(&self, conn: &mut redis::Connection) -> redis::RedisResult<bool> {
        let ms = self.lease.as_millis() as u64;
        let held: i64 = redis::Script::new(CLAIM)
            .key(&self.key)
            .arg(&self.token)
            .arg(ms)
            .invoke(conn)?;
        Ok(held == 1)
    }

    /// Claims at startup, waiting up to one lease (plus a second) for a predecessor's key
    /// to expire.
    pub fn acquire(&self, conn: &mut redis::Connection) -> Result<(), String> {
        let deadline = Instant::now() + self.lease + Duration::from_secs(1);
        loop {
            if self.claim(conn).map_err(|e| e.to_string())? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "pod id is held by another live process (redis key {}): \
                     two pods with one id would consume the same partitions",
                    self.key
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Gives the id up at a clean stop, so a successor starts at once.
    pub fn release(&self, conn: &mut redis::Connection) {
        let released: redis::RedisResult<i64> = redis::Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.token)
            .invoke(conn);
        if let Err(e) = released {
            tracing::warn!(error = %e, "pod id not released; it expires after one lease");
        }
    }
}
