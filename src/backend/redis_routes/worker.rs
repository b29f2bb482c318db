//! The Redis thread: pipelined batches and the lease heartbeat.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crossbeam_channel::RecvTimeoutError;

use super::cache::{local_ms, tell, Fetched};
use super::reply::parse_members;
use super::{connect, Req, Worker, PIPELINE};
use crate::backend::routes::RouteError;

/// Adds `member` with lease expiry `expiry`, or moves its expiry later; never earlier
/// (`ZADD GT`, Redis 6.2+). A connection this thread gave up on (a timeout) may still carry
/// requests that Redis runs after those of the next connection: without GT such a late
/// renewal would move a live route's expiry back into the past, and look-ups would miss a
/// connected user until the next heartbeat.
fn zadd_later(pipe: &mut redis::Pipeline, key: &str, member: &str, expiry: i64) {
    pipe.cmd("ZADD")
        .arg(key)
        .arg("GT")
        .arg(expiry)
        .arg(member)
        .ignore();
}

impl Worker {
    /// Now on the Redis server's clock (as of the last heartbeat's reading).
    fn now_ms(&self) -> i64 {
        self.cache.server_now_ms()
    }

    /// Reads the server's `TIME` and updates the offset to this host's clock.
    fn sync_clock(&mut self) -> Result<(), RouteError> {
        let mut pipe = redis::pipe();
        pipe.cmd("TIME");
        let before = local_ms();
        let reply = self.query(&pipe)?;
        let after = local_ms();
        let (secs, micros): (i64, i64) = reply
            .first()
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or_else(|| RouteError::Unavailable("bad TIME reply".into()))?;
        let server = secs * 1000 + micros / 1000;
        self.cache.set_clock_offset(server - (before + after) / 2);
        Ok(())
    }

    pub(super) fn run(mut self) {
        if let Err(e) = self.sync_clock() {
            tracing::warn!(error = %e, "redis clock not read; using this host's until the next heartbeat");
        }
        let beat = self.cfg.lease / 3;
        let mut next_beat = Instant::now() + beat;
        loop {
            let wait = next_beat.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(first) => {
                    let mut batch = vec![first];
                    batch.extend(self.rx.try_iter().take(PIPELINE - 1));
                    let stop = batch.iter().any(|r| matches!(r, Req::Stop));
                    self.serve(batch);
                    if stop {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_beat {
                self.heartbeat();
                next_beat = Instant::now() + beat;
            }
        }
        if let Some(conn) = self.conn.as_mut() {
            self.fence.release(conn);
        }
    }

    fn key(&self, user: &str) -> String {
        format!("{}route:{user}", self.cfg.prefix)
    }

    fn member(&self, shard: u16) -> String {
        format!("{}/{shard}", self.cfg.pod)
    }

    /// Runs `pipe`, on a new connection if there is none. When the connection it had failed
    /// (Redis restarted, or something between closed it while the thread was idle), the batch
    /// is sent once more on a new one: every command this thread sends is idempotent (reads,
    /// `ZADD GT`, `ZREM`, `PEXPIRE`, `TIME`), and otherwise the batch's messages would wait for
    /// the redrive. The invalidations read meanwhile reach the shards before the caller
    /// answers anyone ([`super::cache`]).
    fn query(&mut self, pipe: &redis::Pipeline) -> Result<Vec<redis::Value>, RouteError> {
        let had = self.conn.is_some();
        match self.query_once(pipe) {
            Err(e) if had => {
                tracing::debug!(error = %e, "redis connection lost; batch sent again");
                self.query_once(pipe)
            }
            result => result,
        }
    }

    fn query_once(&mut self, pipe: &redis::Pipeline) -> Result<Vec<redis::Value>, RouteError> {
        if self.conn.is_none() {
            let tracking = self.cache.enabled().then_some(&self.push_tx);
            self.conn = connect(&self.client, &self.cfg.pod, tracking).ok();
            // Nothing read on the old connection is tracked on this one.
            self.cache.flush();
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(RouteError::Unavailable("redis unreachable".into()));
        };
        let began = Instant::now();
        self.round += 1;
        let result = pipe.query(conn).map_err(|e| {
            self.conn = None; // Reconnect on the next batch.
            self.cache.flush();
            RouteError::Unavailable(e.to_string())
        });
        self.dispatch_invalidations();
        if result.is_ok() {
            self.cache.completed(began);
        }
        result
    }

    /// Hands the invalidation pushes read so far to every shard's cache.
    fn dispatch_invalidations(&mut self) {
        for push in self.pushes.try_iter() {
            match (push.kind, push.data.first()) {
                (redis::PushKind::Invalidate, Some(redis::Value::Array(keys))) => {
                    for key in keys {
                        let key: String = redis::from_redis_value(key).unwrap_or_default();
                        if let Some(user) = key.strip_prefix(&self.route_prefix) {
                            tell(&self.invalidations, &self.cache, user, self.round);
                        }
                    }
                }
                // No keys: Redis flushed its tracking table (FLUSHALL, eviction); or the
                // connection closed.
                (redis::PushKind::Invalidate | redis::PushKind::Disconnection, _) => {
                    self.cache.flush()
                }
                _ => {}
            }
        }
    }

    fn serve(&mut self, batch: Vec<Req>) {
        let mut pipe = redis::pipe();
        let expiry = self.now_ms() + self.cfg.lease.as_millis() as i64;
        let ttl = self.cfg.lease.as_millis() as i64 * 2;
        for req in &batch {
            match req {
                Req::Register { user, at, .. } => {
                    *self.held.entry((user.clone(), *at)).or_default() += 1;
                    let key = self.key(user);
                    // Drop members whose lease ran out (a crashed pod's), then add ours.
                    let expired = expiry - self.cfg.lease.as_millis() as i64;
                    pipe.cmd("ZREMRANGEBYSCORE")
                        .arg(&key)
                        .arg("-inf")
                        .arg(expired)
                        .ignore();
                    zadd_later(&mut pipe, &key, &self.member(*at), expiry);
                    pipe.pexpire(&key, ttl).ignore();
                }
                Req::Unregister { user, at } => self.release(&mut pipe, user, *at),
                Req::Stop => {}
                Req::Lookup { user, .. } => {
                    pipe.cmd("ZRANGEBYSCORE")
                        .arg(self.key(user))
                        .arg(self.now_ms())
                        .arg("+inf")
                        .arg("WITHSCORES");
                }
            }
        }
        let result = self.query(&pipe);
        self.answer(batch, result);
    }

    fn release(&mut self, pipe: &mut redis::Pipeline, user: &str, at: u16) {
        let k = (user.to_owned(), at);
        let Some(n) = self.held.get_mut(&k) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.held.remove(&k);
            pipe.zrem(self.key(user), self.member(at)).ignore();
        }
    }

    fn answer(&self, batch: Vec<Req>, result: Result<Vec<redis::Value>, RouteError>) {
        let mut values = match &result {
            Ok(v) => v.clone().into_iter(),
            Err(_) => Vec::new().into_iter(),
        };
        let err = |r: &Result<Vec<redis::Value>, RouteError>| match r {
            Err(e) => RouteError::Unavailable(e.to_string()),
            Ok(_) => RouteError::Unavailable("short redis reply".into()),
        };
        for req in batch {
            // A dropped receiver means the asking task ended; nothing to answer.
            match req {
                Req::Register { reply, .. } => {
                    let _ = reply.send(result.as_ref().map(|_| ()).map_err(|_| err(&result)));
                }
                Req::Unregister { .. } | Req::Stop => {}
                Req::Lookup { reply, .. } => {
                    let fetched = values
                        .next()
                        .map(|v| Fetched {
                            places: parse_members(v),
                            round: self.round,
                            epoch: self.cache.epoch(),
                        })
                        .ok_or_else(|| err(&result));
                    let _ = reply.send(fetched);
                }
            }
        }
    }

    /// Renews the pod id's key; exits the process if another process took it meanwhile.
    fn renew_fence(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match self.fence.claim(conn) {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(key = %self.fence.key, "fenced: another process holds this pod id; closing connections and exiting");
                (self.on_lease_lost)();
                std::thread::sleep(std::time::Duration::from_millis(200)); // Let the 4009 closes go out.
                std::process::exit(3);
            }
            Err(e) => tracing::warn!(error = %e, "pod id lease renewal failed"),
        }
    }

    /// Renews every held route; declares the leases lost after a whole lease without success.
    ///
    /// A renewal counts from when it *started*: the expiries it writes (and the pod id's key)
    /// are computed then. Counting from its end let a pod paused just past its lease wake up,
    /// find less than a lease elapsed, re-take its expired id and carry on with connections
    /// whose routes other pods had seen expire (the SIGSTOP test caught it under load).
    fn heartbeat(&mut self) {
        let started = Instant::now();
        if self.last_renewed.elapsed() >= self.cfg.lease {
            tracing::error!("route leases not renewed for a whole lease; closing connections");
            (self.on_lease_lost)();
            self.last_renewed = Instant::now();
            self.cfg.failing.store(true, Relaxed);
            return;
        }
        if let Err(e) = self.sync_clock() {
            tracing::warn!(error = %e, "route lease renewal failed");
            self.cfg.failing.store(true, Relaxed);
            return;
        }
        self.renew_fence();
        let expiry = self.now_ms() + self.cfg.lease.as_millis() as i64;
        let ttl = self.cfg.lease.as_millis() as i64 * 2;
        let held: Vec<(String, u16)> = self.held.keys().cloned().collect();
        for chunk in held.chunks(PIPELINE) {
            let mut pipe = redis::pipe();
            for (user, at) in chunk {
                let key = self.key(user);
                zadd_later(&mut pipe, &key, &self.member(*at), expiry);
                pipe.pexpire(&key, ttl).ignore();
            }
            if let Err(e) = self.query(&pipe) {
                tracing::warn!(error = %e, "route lease renewal failed");
                self.cfg.failing.store(true, Relaxed);
                return;
            }
        }
        self.last_renewed = started;
        self.cfg.failing.store(false, Relaxed);
    }
}
