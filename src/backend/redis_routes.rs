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

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::routes::{RouteError, RouteTable};
use super::Location;

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
        reply: oneshot::Sender<Result<Vec<Location>, RouteError>>,
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
}

/// The pod-wide Redis thread. Cloning [`RedisRouter::handle`] gives each shard its table.
pub struct RedisRouter {
    tx: Option<Sender<Req>>,
    pod: Arc<str>,
    thread: Option<JoinHandle<()>>,
}

impl RedisRouter {
    /// Connects (failing clearly when Redis is unreachable) and starts the thread.
    pub fn start(
        cfg: RedisRouteConfig,
        on_lease_lost: Box<dyn Fn() + Send>,
    ) -> Result<RedisRouter, String> {
        let client =
            redis::Client::open(cfg.url.as_str()).map_err(|e| format!("redis url: {e}"))?;
        let mut conn = connect(&client).map_err(|e| format!("redis at {}: {e}", cfg.url))?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut conn)
            .map_err(|e| format!("redis at {}: {e}", cfg.url))?;
        supported(&info).map_err(|e| format!("redis at {}: {e}", cfg.url))?;
        let fence = fence::Fence::new(&cfg.prefix, &cfg.pod, cfg.lease);
        fence.acquire(&mut conn)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let pod = cfg.pod.clone();
        let worker = Worker {
            client,
            conn: Some(conn),
            cfg,
            rx,
            held: HashMap::new(),
            last_renewed: Instant::now(),
            clock_offset_ms: 0,
            fence,
            on_lease_lost,
        };
        let thread = std::thread::Builder::new()
            .name("redis-routes".into())
            .spawn(move || worker.run())
            .map_err(|e| e.to_string())?;
        Ok(RedisRouter {
            tx: Some(tx),
            pod,
            thread: Some(thread),
        })
    }

    /// A route table handle for one shard.
    pub fn handle(&self) -> RedisRoutes {
        RedisRoutes {
            tx: self.tx.clone().expect("router running"),
            pod: self.pod.clone(),
        }
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

fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(conn)
}

/// One shard's handle to the Redis route table.
#[derive(Clone)]
pub struct RedisRoutes {
    tx: Sender<Req>,
    pod: Arc<str>,
}

impl RedisRoutes {
    async fn submit(&self, mut req: Req) -> Result<(), RouteError> {
        loop {
            match self.tx.try_send(req) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::TrySendError::Full(r)) => {
                    req = r;
                    glommio::timer::sleep(Duration::from_micros(250)).await;
                }
                Err(_) => return Err(RouteError::Unavailable("route thread stopped".into())),
            }
        }
    }

    fn own(&self, at: &Location) -> Result<u16, RouteError> {
        if at.pod != self.pod {
            return Err(RouteError::Unavailable(format!("not this pod: {}", at.pod)));
        }
        Ok(at.shard)
    }
}

fn gone<T>(_: oneshot::Canceled) -> Result<T, RouteError> {
    Err(RouteError::Unavailable("route thread stopped".into()))
}

impl RouteTable for RedisRoutes {
    fn register<'a>(
        &'a self,
        user: &'a str,
        at: Location,
    ) -> LocalBoxFuture<'a, Result<(), RouteError>> {
        async move {
            let (reply, wait) = oneshot::channel();
            let at = self.own(&at)?;
            self.submit(Req::Register {
                user: user.into(),
                at,
                reply,
            })
            .await?;
            wait.await.or_else(gone)?
        }
        .boxed_local()
    }

    fn unregister<'a>(
        &'a self,
        user: &'a str,
        at: Location,
    ) -> LocalBoxFuture<'a, Result<(), RouteError>> {
        async move {
            let at = self.own(&at)?;
            self.submit(Req::Unregister {
                user: user.into(),
                at,
            })
            .await
        }
        .boxed_local()
    }

    fn lookup<'a>(
        &'a self,
        user: &'a str,
    ) -> LocalBoxFuture<'a, Result<Vec<Location>, RouteError>> {
        async move {
            let (reply, wait) = oneshot::channel();
            self.submit(Req::Lookup {
                user: user.into(),
                reply,
            })
            .await?;
            wait.await.or_else(gone)?
        }
        .boxed_local()
    }
}

struct Worker {
    client: redis::Client,
    conn: Option<redis::Connection>,
    cfg: RedisRouteConfig,
    rx: Receiver<Req>,
    /// Live connections per (user, shard) on this pod: what the heartbeat renews.
    held: HashMap<(String, u16), u32>,
    last_renewed: Instant,
    /// Redis server time minus this host's clock, ms, read at every heartbeat: lease expiries
    /// are written and compared in the server's time, so pods whose clocks disagree still
    /// agree on when a lease ran out.
    clock_offset_ms: i64,
    fence: fence::Fence,
    on_lease_lost: Box<dyn Fn() + Send>,
}

mod fence;
mod worker;

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
