//! The shards' side of the Redis route table: requests to the route thread, and each shard's
//! cache for status frames and carbons.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::cache::{CacheShared, Invalidation, ShardCache};
use super::Req;
use crate::backend::routes::{RouteError, RouteTable};
use crate::backend::Location;

/// The shards' way to the route thread, shared pod-wide; [`RouteHandles::for_shard`] makes
/// each shard's table.
pub struct RouteHandles {
    tx: Sender<Req>,
    pod: Arc<str>,
    cache: Arc<CacheShared>,
    invalidations: Vec<Receiver<Invalidation>>,
}

impl RouteHandles {
    pub(super) fn new(
        tx: Sender<Req>,
        pod: Arc<str>,
        cache: Arc<CacheShared>,
        invalidations: Vec<Receiver<Invalidation>>,
    ) -> RouteHandles {
        RouteHandles {
            tx,
            pod,
            cache,
            invalidations,
        }
    }

    /// Shard `id`'s route table, with its own cache (its hits counted in `metrics`).
    pub fn for_shard(&self, id: usize, metrics: Arc<crate::metrics::Metrics>) -> RedisRoutes {
        RedisRoutes {
            id,
            metrics,
            tx: self.tx.clone(),
            pod: self.pod.clone(),
            cache: RefCell::new(ShardCache::new(
                self.cache.clone(),
                self.invalidations[id].clone(),
            )),
        }
    }
}

/// One shard's handle to the Redis route table.
pub struct RedisRoutes {
    tx: Sender<Req>,
    pod: Arc<str>,
    cache: RefCell<ShardCache>,
    id: usize,
    metrics: Arc<crate::metrics::Metrics>,
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

    /// Asks Redis; the answer also refreshes this shard's cache.
    async fn fetch(&self, user: &str) -> Result<Vec<Location>, RouteError> {
        let (reply, wait) = oneshot::channel();
        self.submit(Req::Lookup {
            user: user.into(),
            reply,
        })
        .await?;
        let fetched = wait.await.or_else(gone)??;
        let places = fetched.places.iter().map(|(at, _)| at.clone()).collect();
        self.cache.borrow_mut().fill(user, fetched);
        Ok(places)
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
        self.fetch(user).boxed_local()
    }

    fn settle_after_register(&self) -> Duration {
        self.cache.borrow().max_age()
    }

    fn lookup_recent<'a>(
        &'a self,
        user: &'a str,
    ) -> LocalBoxFuture<'a, Result<Vec<Location>, RouteError>> {
        let cached = self.cache.borrow_mut().get(user);
        match cached {
            Some(places) => {
                let hits = &self.metrics.shards[self.id].route_cache_hits;
                hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                futures::future::ready(Ok(places)).boxed_local()
            }
            None => self.fetch(user).boxed_local(),
        }
    }
}
