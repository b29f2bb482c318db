//! Pod-wide socket accounting for the connection caps (`--max-connections`,
//! `--max-connections-per-ip`, `--max-connections-per-user`). Touched when a socket opens,
//! upgrades and closes, never per frame, so one atomic and two mutex-guarded maps shared by
//! the shards cost nothing on the message path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::limit::{Held, SharedLimit};

/// See the module doc.
pub struct SocketCaps {
    /// Accepted sockets not yet closed: upgraded connections and handshakes in progress.
    open: AtomicUsize,
    max: usize,
    per_ip: u32,
    by_ip: Mutex<HashMap<IpAddr, u32>>,
    per_user: u32,
    by_user: Mutex<HashMap<String, u32>>,
    /// Handshakes per address per second (0: no limit), and each address's bucket.
    handshake_rate: u32,
    handshakes: Mutex<HashMap<IpAddr, Bucket>>,
    /// Frames per user per second (0: no limit), and the buckets of connected users, held by
    /// each shard with a connection of theirs.
    user_frame_rate: u32,
    user_buckets: Mutex<Held<Arc<SharedLimit>>>,
}

/// A token bucket of one second's worth of handshakes.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

/// Addresses remembered before the full (idle) buckets are dropped.
const HANDSHAKE_ADDRESSES: usize = 4096;

impl SocketCaps {
    /// `max` open sockets per pod; `per_ip` upgraded connections per client address (0: no
    /// limit).
    pub fn new(max: usize, per_ip: u32) -> SocketCaps {
        SocketCaps {
            open: AtomicUsize::new(0),
            max,
            per_ip,
            by_ip: Mutex::default(),
            per_user: 0,
            by_user: Mutex::default(),
            handshake_rate: 0,
            handshakes: Mutex::default(),
            user_frame_rate: 0,
            user_buckets: Mutex::default(),
        }
    }

    /// `rate` text frames per user per second over all of the user's connections on the pod
    /// (0: no limit).
    pub fn frames_per_user(mut self, rate: u32) -> SocketCaps {
        self.user_frame_rate = rate;
        self
    }

    pub fn user_frame_rate(&self) -> u32 {
        self.user_frame_rate
    }

    /// `user`'s bucket, for a shard's first connection of the user.
    pub fn hold_user_bucket(&self, user: &str, now_us: i64) -> Arc<SharedLimit> {
        let rate = self.user_frame_rate;
        let mut held = self.user_buckets.lock().unwrap_or_else(|e| e.into_inner());
        held.hold(user, || Arc::new(SharedLimit::new(rate, now_us)))
    }

    /// Given back by a shard whose last connection of `user` closed.
    pub fn release_user_bucket(&self, user: &str) {
        let mut held = self.user_buckets.lock().unwrap_or_else(|e| e.into_inner());
        held.let_go(user);
    }

    /// `rate` handshakes per address per second (0: no limit).
    pub fn handshakes_per_ip(mut self, rate: u32) -> SocketCaps {
        self.handshake_rate = rate;
        self
    }

    pub fn limits_handshakes(&self) -> bool {
        self.handshake_rate > 0
    }

    /// Spends one of `ip`'s handshake tokens at `now`; false when its bucket is empty.
    pub fn take_handshake(&self, ip: IpAddr, now: std::time::Instant) -> bool {
        let rate = f64::from(self.handshake_rate);
        let mut map = self.handshakes.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= HANDSHAKE_ADDRESSES && !map.contains_key(&ip) {
            // Forget the addresses whose bucket has refilled: they are as if never seen.
            map.retain(|_, b| b.tokens + rate * (now - b.at).as_secs_f64() < rate);
        }
        let b = map.entry(ip).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        b.tokens = (b.tokens + rate * (now - b.at).as_secs_f64()).min(rate);
        b.at = now;
        if b.tokens < 1.0 {
            return false;
        }
        b.tokens -= 1.0;
        true
    }

    /// `per_user` upgraded connections per user (0: no limit).
    pub fn per_user(mut self, per_user: u32) -> SocketCaps {
        self.per_user = per_user;
        self
    }

    pub fn opened(&self) {
        self.open.fetch_add(1, Relaxed);
    }

    pub fn closed(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    /// More sockets are open than the cap allows: upgrades are refused (plain HTTP, such as
    /// `/healthz`, is still answered from the descriptors kept below the open-file limit).
    pub fn full(&self) -> bool {
        self.open.load(Relaxed) > self.max
    }

    pub fn limits_ips(&self) -> bool {
        self.per_ip > 0
    }

    pub fn limits_users(&self) -> bool {
        self.per_user > 0
    }

    /// Takes one of `ip`'s connection slots; false when it has none left.
    pub fn take_ip(&self, ip: IpAddr) -> bool {
        take(&self.by_ip, ip, self.per_ip)
    }

    /// Gives back a slot [`take_ip`](Self::take_ip) handed out.
    pub fn release_ip(&self, ip: IpAddr) {
        release(&self.by_ip, &ip);
    }

    /// Takes one of `user`'s connection slots; false when the user has none left.
    pub fn take_user(&self, user: &str) -> bool {
        take(&self.by_user, user.to_owned(), self.per_user)
    }

    /// Gives back a slot [`take_user`](Self::take_user) handed out.
    pub fn release_user(&self, user: &str) {
        release(&self.by_user, user);
    }
}

/// What an upgraded socket holds in [`SocketCaps`] (its place in the open count, its address's
/// and its user's slots) while it travels between shards. Dropped untaken (the shard it was
/// sent to stopped with it still queued), it gives them all back; [`keep`](Self::keep) hands
/// them to the connection, which gives them back when it closes.
pub struct HeldSlots {
    caps: Arc<SocketCaps>,
    ip: Option<IpAddr>,
    user: Option<String>,
    armed: bool,
}

impl HeldSlots {
    pub fn new(caps: Arc<SocketCaps>, ip: Option<IpAddr>, user: Option<String>) -> HeldSlots {
        let armed = true;
        HeldSlots {
            caps,
            ip,
            user,
            armed,
        }
    }

    /// The connection took the socket: it owns the slots from now on.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for HeldSlots {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(ip) = self.ip {
            self.caps.release_ip(ip);
        }
        if let Some(user) = &self.user {
            self.caps.release_user(user);
        }
        self.caps.closed();
    }
}

fn take<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, u32>>, key: K, cap: u32) -> bool {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    let n = map.entry(key).or_insert(0);
    if *n >= cap {
        return false;
    }
    *n += 1;
    true
}

fn release<K, Q>(map: &Mutex<HashMap<K, u32>>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// The default `--max-connections`: the open-file limit minus a reserve for the pod's own
/// files (store, WAL, io_uring rings, broker and Redis sockets) and for answering plain HTTP
/// while full: an eighth of the limit, at most 512 (19,488 under a 20,000 limit).
pub fn default_max_connections(open_file_limit: u64) -> usize {
    let reserve = (open_file_limit / 8).min(512);
    open_file_limit.saturating_sub(reserve) as usize
}

/// The process's soft open-file limit, if it can be read.
pub fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_counted_and_given_back() {
        let caps = SocketCaps::new(10, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert!(caps.take_ip(a) && caps.take_ip(a));
        assert!(!caps.take_ip(a), "a third connection from one address");
        assert!(caps.take_ip(b), "other addresses are not affected");
        caps.release_ip(a);
        assert!(caps.take_ip(a));
        caps.release_ip(a);
        caps.release_ip(a);
        assert!(
            caps.by_ip.lock().unwrap().get(&a).is_none(),
            "no entry left"
        );
    }

    #[test]
    fn slots_dropped_in_transit_are_given_back_and_kept_ones_are_not() {
        let caps = Arc::new(SocketCaps::new(1, 1).per_user(1));
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let take = |caps: &SocketCaps| {
            caps.opened();
            assert!(caps.take_ip(ip) && caps.take_user("alice"));
        };
        take(&caps);
        drop(HeldSlots::new(caps.clone(), Some(ip), Some("alice".into())));
        assert!(!caps.full(), "the socket left the open count");
        take(&caps); // Both slots were free again.
        HeldSlots::new(caps.clone(), Some(ip), Some("alice".into())).keep();
        assert!(!caps.take_ip(ip) && !caps.take_user("alice"), "still held");
        caps.opened();
        assert!(caps.full(), "the kept socket still counts");
    }

    #[test]
    fn per_user_slots_are_counted_and_given_back() {
        let caps = SocketCaps::new(10, 0).per_user(1);
        assert!(caps.limits_users() && !caps.limits_ips());
        assert!(caps.take_user("alice") && !caps.take_user("alice"));
        assert!(caps.take_user("bob"));
        caps.release_user("alice");
        assert!(caps.take_user("alice"));
        caps.release_user("alice");
        caps.release_user("bob");
        assert!(caps.by_user.lock().unwrap().is_empty(), "no entry left");
    }

    #[test]
    fn handshakes_per_address_refill_at_the_rate() {
        let caps = SocketCaps::new(10, 0).handshakes_per_ip(2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let t0 = std::time::Instant::now();
        assert!(caps.take_handshake(a, t0) && caps.take_handshake(a, t0));
        assert!(!caps.take_handshake(a, t0), "a third within the second");
        assert!(
            caps.take_handshake(b, t0),
            "other addresses are not affected"
        );
        let half = t0 + std::time::Duration::from_millis(500);
        assert!(
            caps.take_handshake(a, half),
            "one token back after half a second"
        );
        assert!(!caps.take_handshake(a, half));
    }

    #[test]
    fn full_means_above_the_cap() {
        let caps = SocketCaps::new(1, 0);
        caps.opened();
        assert!(!caps.full());
        caps.opened();
        assert!(caps.full());
        caps.closed();
        assert!(!caps.full());
    }

    #[test]
    fn the_default_cap_keeps_a_reserve_below_the_file_limit() {
        assert_eq!(default_max_connections(20_000), 19_488);
        assert_eq!(default_max_connections(256), 224);
        assert_eq!(default_max_connections(1_048_576), 1_048_064);
    }
}
