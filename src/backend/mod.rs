//! Backends behind traits: the message store, the route table and the bus.
//!
//! The embedded implementations here serve the default single-pod mode. The distributed mode
//! implements the same traits with Postgres, Redis and Kafka, so the message path does not
//! change with the deployment.

pub mod bus;
pub mod kafka;
pub mod redis_routes;
pub mod routes;
pub mod stoppable;
pub mod store;
pub mod users;
pub mod webhook;

use std::sync::Arc;

/// The pod of the one [`Location`] that `--routing broadcast` looks up for any user: "every
/// pod, at the user's home shard". Pod ids never contain `*`, so it names no real pod.
pub const BROADCAST: &str = "*";

/// Where a live connection can be reached: a shard of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub pod: Arc<str>,
    pub shard: u16,
}
