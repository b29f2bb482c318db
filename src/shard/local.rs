//! The embedded route table and bus: the pod's own shard mesh stands in for Redis and Kafka.
//!
//! Route entries live on the user's home shard ([`home_shard`]), so every shard agrees on
//! where to ask without sharing a lock; publishing hands the envelope to the owning shard's
//! inbox, which is what SENT means in the embedded default.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::{Mesh, ShardMsg};
use crate::backend::bus::{Bus, BusError, Envelope};
use crate::backend::routes::{home_shard, Directory, RouteError, RouteTable};
use crate::backend::Location;

/// Embedded [`RouteTable`] for one shard.
pub struct LocalRoutes {
    pub shard: usize,
    pub pod: Arc<str>,
    pub mesh: Mesh,
    pub directory: Rc<RefCell<Directory>>,
}

impl LocalRoutes {
    fn home(&self, user: &str) -> usize {
        home_shard(user, self.mesh.len())
    }

    async fn send_home(&self, home: usize, msg: ShardMsg) -> Result<(), RouteError> {
        self.mesh[home]
            .send(msg)
            .await
            .map_err(|_| RouteError::ShardGone(home))
    }
}

impl RouteTable for LocalRoutes {
    fn register<'a>(
        &'a self,
        user: &'a str,
        at: Location,
    ) -> LocalBoxFuture<'a, Result<(), RouteError>> {
        async move {
            let home = self.home(user);
            if home == self.shard {
                self.directory.borrow_mut().add(user, at.shard);
                return Ok(());
            }
            let (done, wait) = oneshot::channel();
            let user = user.to_owned();
            self.send_home(
                home,
                ShardMsg::RouteAdd {
                    user,
                    shard: at.shard,
                    done,
                },
            )
            .await?;
            wait.await.map_err(|_| RouteError::ShardGone(home))
        }
        .boxed_local()
    }

    fn unregister<'a>(
        &'a self,
        user: &'a str,
        at: Location,
    ) -> LocalBoxFuture<'a, Result<(), RouteError>> {
        async move {
            let home = self.home(user);
            if home == self.shard {
                self.directory.borrow_mut().remove(user, at.shard);
                return Ok(());
            }
            let user = user.to_owned();
            self.send_home(
                home,
                ShardMsg::RouteRemove {
                    user,
                    shard: at.shard,
                },
            )
            .await
        }
        .boxed_local()
    }

    fn home_of(&self, user: &str) -> Option<usize> {
        Some(self.home(user))
    }

    fn lookup<'a>(
        &'a self,
        user: &'a str,
    ) -> LocalBoxFuture<'a, Result<Vec<Location>, RouteError>> {
        async move {
            let home = self.home(user);
            let shards = if home == self.shard {
                self.directory.borrow().shards_of(user)
            } else {
                let (reply, wait) = oneshot::channel();
                let user = user.to_owned();
                self.send_home(home, ShardMsg::RouteLookup { user, reply })
                    .await?;
                wait.await.map_err(|_| RouteError::ShardGone(home))?
            };
            let pod = &self.pod;
            Ok(shards
                .into_iter()
                .map(|shard| Location {
                    pod: pod.clone(),
                    shard,
                })
                .collect())
        }
        .boxed_local()
    }
}

/// `--routing broadcast`: connections register in the pod's own embedded table (no Redis
/// routes), and every user is "reachable" at one place, the broadcast topic's partition of
/// the user's home shard, which every pod consumes; the consuming home shard then finds the
/// local connections in its directory ([`crate::flow::consume::deliver_from_home`]).
pub struct BroadcastRoutes {
    pub local: LocalRoutes,
}

impl RouteTable for BroadcastRoutes {
    fn register<'a>(
        &'a self,
        user: &'a str,
        at: Location,
    ) -> LocalBoxFuture<'a, Result<(), RouteError>> {
        self.local.register(user, at)
    }

    fn unregister<'a>(
        &'a self,
        user: &'a str,
        at: Location,
    ) -> LocalBoxFuture<'a, Result<(), RouteError>> {
        self.local.unregister(user, at)
    }

    fn lookup<'a>(
        &'a self,
        user: &'a str,
    ) -> LocalBoxFuture<'a, Result<Vec<Location>, RouteError>> {
        let at = Location {
            pod: crate::backend::BROADCAST.into(),
            shard: self.local.home(user) as u16,
        };
        async move { Ok(vec![at]) }.boxed_local()
    }
}

/// Embedded [`Bus`]: an envelope goes straight into the owning shard's inbox.
pub struct LocalBus {
    pub pod: Arc<str>,
    pub mesh: Mesh,
}

impl Bus for LocalBus {
    fn publish(
        &self,
        to: Location,
        env: Arc<Envelope>,
    ) -> LocalBoxFuture<'_, Result<(), BusError>> {
        async move {
            if to.pod != self.pod {
                return Err(BusError::UnknownPod(to.pod.to_string()));
            }
            let inbox = self
                .mesh
                .get(usize::from(to.shard))
                .ok_or(BusError::ShardGone(to.shard))?;
            inbox
                .send(ShardMsg::Deliver(env))
                .await
                .map_err(|_| BusError::ShardGone(to.shard))
        }
        .boxed_local()
    }
}
