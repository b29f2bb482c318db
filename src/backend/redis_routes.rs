//! The distributed route table in Redis: the seed's `user → pod`, generalised to devices.
//!
//! Key `<prefix>route:<user>` is a sorted set whose members are `pod/shard` places holding a
//! live connection of the user, scored by lease expiry (ms since the epoch). Lookups read only
//! unexpired members, so a crashed pod's routes vanish by themselves. One thread per pod talks
//! to Redis and pipelines whatever requests queued meanwhile into one round trip.
//!
//! Fencing: the thread renews every route it holds each third of the lease. If it could not
//! renew for a whole lease (the pod was paused or cut off), other pods may have seen those
//! routes expire and the users reconnect elsewhere; rather than resurrect them, it calls
//! `on_lease_lost`, which closes the pod's connections with 4009 so the clients reconnect and
//! register afresh.
//!
//! Lookups for frames a device may miss (status frames, carbons) are answered from each
//! shard's cache while Redis vouches for it ([`cache`]); message lookups always ask Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use futures::channel::oneshot;

use super::routes::RouteError;
use cache::{CacheShared, Fetched, Invalidation};

/// Requests queued at most before the shards wait.
const QUEUE: usize = 65_536;
/// Requests pipelined in one round trip at most.
const PIPELINE: usize = 1024;

enum Req {
    Register {
        user: String,
        at: u16,
        reply: oneshot::Sender<Result<(), RouteError>>,
    },
    Unregister {
        user: String,
        at: u16,
    },
    Lookup {
        user: String,
        reply: oneshot::Sender<Result<Fetched, RouteError>>,
    },
    /// Serve what is queued before, then end the thread (shard handles may outlive the pod's
    /// shutdown in leaked tasks, so the channel closing is not relied upon).
    Stop,
}

/// Settings of the Redis route table.
pub struct RedisRouteConfig {
    pub url: String,
    pub prefix: String,
    pub pod: Arc<str>,
    pub lease: Duration,
    /// Set while lease renewals fail (`/readyz`).
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    /// `--route-cache-max-age-ms`; zero turns the shards' caches (and tracking) off.
    pub cache_max_age: Duration,
    /// Shards of the pod: one cache, and one invalidation channel, each.
    pub shards: usize,
}

/// Invalidations queued per shard at most; beyond, the caches start over instead.
const INVALIDATIONS: usize = 16_384;

/// The pod-wide Redis thread. Cloning [`RedisRouter::handle`] gives each shard its table.
pub struct RedisRouter {
    tx: Option<Sender<Req>>,
    pod: Arc<str>,
    cache: Arc<CacheShared>,
    invalidations: Vec<Receiver<Invalidation>>,
    thread: Option<JoinHandle<()>>,
}

impl RedisRouter {
    /// Connects (failing clearly when Redis is unreachable) and starts the thread.
    pub fn start(
        cfg: RedisRouteConfig,
        on_lease_lost: Box<dyn Fn() + Send>,
    ) -> Result<RedisRouter, String> {
        let cache = Arc::new(CacheShared::new(cfg.cache_max_age));
        let client = open_client(&cfg.url, cache.enabled())?;
        let (push_tx, pushes) = std::sync::mpsc::channel();
        let tracking = cache.enabled().then_some(&push_tx);
        let mut conn = connect(&client, &cfg.pod, tracking)
            .map_err(|e| format!("redis at {}: {e}", cfg.url))?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut conn)
            .map_err(|e| format!("redis at {}: {e}", cfg.url))?;
        supported(&info).map_err(|e| format!("redis at {}: {e}", cfg.url))?;
        let fence = fence::Fence::new(&cfg.prefix, &cfg.pod, cfg.lease);
        fence.acquire(&mut conn)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let pod = cfg.pod.clone();
        let (senders, invalidations) = (0..cfg.shards)
            .map(|_| crossbeam_channel::bounded(INVALIDATIONS))
            .unzip();
        let worker = Worker {
            client,
            conn: Some(conn),
            route_prefix: format!("{}route:", cfg.prefix),
            cfg,
            rx,
            held: HashMap::new(),
            last_renewed: Instant::now(),
            fence,
            on_lease_lost,
            cache: cache.clone(),
            invalidations: senders,
            pushes,
            push_tx,
            round: 0,
        };
        let thread = std::thread::Builder::new()
            .name("redis-routes".into())
            .spawn(move || worker.run())
            .map_err(|e| e.to_string())?;
        Ok(RedisRouter {
            tx: Some(tx),
            pod,
            cache,
            invalidations,
            thread: Some(thread),
        })
    }

    /// What the shards build their route table handles from.
    pub fn handles(&self) -> RouteHandles {
        RouteHandles::new(
            self.tx.clone().expect("router running"),
            self.pod.clone(),
            self.cache.clone(),
            self.invalidations.clone(),
        )
    }

    /// Stops the thread after it served everything queued.
    pub fn stop(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Req::Stop); // Err: the thread already ended.
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join(); // A panic was already reported by the thread itself.
        }
    }
}

/// Leases are written with `ZADD GT` (see `worker::zadd_later`), which Redis has since 6.2;
/// an older server would refuse every route write, so the pod refuses to start instead.
fn supported(info: &str) -> Result<(), String> {
    let version = (info.lines())
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(str::trim)
        .ok_or("INFO server names no redis_version")?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (6, 2) {
        return Err(format!(
            "version {version}; distriSocks needs Redis 6.2 or newer (ZADD GT)"
        ));
    }
    Ok(())
}

/// The client for `url`; RESP3 when the caches need tracking's invalidation pushes.
fn open_client(url: &str, resp3: bool) -> Result<redis::Client, String> {
    use redis::IntoConnectionInfo;
    let mut info = url
        .into_connection_info()
        .map_err(|e| format!("redis url: {e}"))?;
    if resp3 {
        info.redis.protocol = redis::ProtocolVersion::RESP3;
    }
    redis::Client::open(info).map_err(|e| format!("redis url: {e}"))
}

/// The Redis client name of a pod's route connection: `distrisocks-routes-` and the pod id,
/// with anything but letters, digits, `-`, `_` and `.` as `_` (a name has no spaces).
pub fn connection_name(pod: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    let id: String = pod.chars().map(|c| if safe(c) { c } else { '_' }).collect();
    format!("distrisocks-routes-{id}")
}

/// A connection with timeouts, named `distrisocks-routes-<pod>` in `CLIENT LIST`; with
/// `tracking`, it sends invalidations of every key it reads there (`CLIENT TRACKING ON`, on
/// this same connection: see [`cache`]).
fn connect(
    client: &redis::Client,
    pod: &str,
    tracking: Option<&std::sync::mpsc::Sender<redis::PushInfo>>,
) -> redis::RedisResult<redis::Connection> {
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(connection_name(pod))
        .exec(&mut conn)?;
    if let Some(pushes) = tracking {
        conn.set_push_sender(pushes.clone());
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .exec(&mut conn)?;
    }
    Ok(conn)
}

struct Worker {
    client: redis::Client,
    conn: Option<redis::Connection>,
    cfg: RedisRouteConfig,
    rx: Receiver<Req>,
    /// Live connections per (user, shard) on this pod: what the heartbeat renews.
    held: HashMap<(String, u16), u32>,
    last_renewed: Instant,
    fence: fence::Fence,
    on_lease_lost: Box<dyn Fn() + Send>,
    /// `<prefix>route:`, stripped from invalidated keys to name their users.
    route_prefix: String,
    /// The shards' caches: freshness, epoch, and the Redis server's clock (see [`cache`]).
    cache: Arc<CacheShared>,
    invalidations: Vec<Sender<Invalidation>>,
    /// Tracking's invalidation pushes, read by the connection during each round trip.
    pushes: std::sync::mpsc::Receiver<redis::PushInfo>,
    push_tx: std::sync::mpsc::Sender<redis::PushInfo>,
    /// Round trips so far; tags invalidations and lookups ([`cache`]).
    round: u64,
}

mod cache;
mod fence;
mod handle;
mod reply;
mod worker;

pub use handle::{RedisRoutes, RouteHandles};

#[cfg(test)]
mod tests {
    #[test]
    fn redis_before_6_2_is_refused_with_its_version() {
        let info = |v: &str| format!("# Server\r\nredis_version:{v}\r\nredis_mode:standalone\r\n");
        assert!(super::supported(&info("7.0.15")).is_ok());
        assert!(super::supported(&info("6.2.0")).is_ok());
        assert!(super::supported(&info("10.0.1")).is_ok());
        let old = super::supported(&info("6.0.16")).unwrap_err();
        assert!(
            old.contains("version 6.0.16") && old.contains("6.2"),
            "{old}"
        );
        assert!(super::supported(&info("5.0.7")).is_err());
        assert!(super::supported("# Server\r\n").is_err(), "no version line");
    }
}
