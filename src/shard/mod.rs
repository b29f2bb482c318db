//! Cores and channels: one [`Shard`] per executor thread, owning its slice of the pod.
//!
//! Nothing here is shared between shards except immutable settings and channel senders:
//! a shard's connections, its slice of the embedded route table and its counters live in
//! `RefCell`/`Cell`s that only its own executor touches. Shards talk through bounded
//! `async-channel` inboxes ([`ShardMsg`]); the store thread answers through the same inboxes.

mod caps;
mod cluster;
mod conns;
pub mod keepalive;
pub mod limit;
mod local;
pub mod outbox;
mod spares;

pub use caps::{default_max_connections, open_file_limit, HeldSlots, SocketCaps};
pub use cluster::{ClusterShared, RedriveSettings};
pub use conns::{ConnEntry, Conns};
pub use local::{BroadcastRoutes, LocalBus, LocalRoutes};
pub use spares::Spares;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use futures::channel::oneshot;

use crate::auth::Authenticator;
use crate::backend::bus::{Bus, Consumed, Envelope};
use crate::backend::routes::{Directory, RouteTable};
use crate::backend::store::{StoreEvent, StoreHandle};
use crate::backend::Location;
use crate::config::{DeliveryConfirm, Tuning};
use crate::protocol::Limits;

/// A message between shards, or from the store thread to a shard.
pub enum ShardMsg {
    /// Outcomes of one store commit for this shard, in commit order.
    Store(Vec<StoreEvent>),
    /// A frame for the local connections of `env.user` (step 5: consume on the owning core).
    Deliver(Arc<Envelope>),
    /// A stored message to route from here, the recipient's home shard (embedded table).
    Route(Arc<Envelope>),
    /// Embedded route table: `user` gained a connection on `shard`; `done` fires once visible.
    RouteAdd {
        user: String,
        shard: u16,
        done: oneshot::Sender<()>,
    },
    /// Embedded route table: `user` lost a connection on `shard`.
    RouteRemove { user: String, shard: u16 },
    /// Embedded route table: which shards hold connections of `user`?
    RouteLookup {
        user: String,
        reply: oneshot::Sender<Vec<u16>>,
    },
    /// A record consumed from this shard's Kafka partition: deliver it locally, then report
    /// `offset` on `ack` so the consumer may store it (at-least-once).
    Consumed(Consumed),
    /// The pod could not renew its route leases: close every connection with 4009.
    LeaseLost,
    /// The user directory deleted these users: close their connections here with 4010.
    UsersDeleted(Arc<[String]>),
    /// The server API disconnects `user`: close their connections here with 4012 and say
    /// how many there were.
    Disconnect {
        user: String,
        done: oneshot::Sender<usize>,
    },
    /// Work to run on this shard's executor: a connection upgraded on another shard for a
    /// user whose home shard this is (`socket::listener`, `--steer-connections`) starts here.
    /// Dropped unrun only when the shard stopped (the socket it holds then closes).
    Run(ShardWork),
    /// Begin the graceful shutdown of this shard.
    Shutdown,
}

/// Work another thread hands to a shard, run on the shard's executor ([`ShardMsg::Run`]).
pub type ShardWork = Box<dyn FnOnce(&Rc<Shard>) + Send>;

/// Sender side of every shard's inbox, indexed by shard.
pub type Mesh = Arc<Vec<async_channel::Sender<ShardMsg>>>;

/// Immutable, pod-wide settings derived once from the configuration.
pub struct Settings {
    pub pod_id: Arc<str>,
    pub auth: Authenticator,
    pub limits: Limits,
    /// Largest message on `/echo`; `None`: `/echo` is off.
    pub echo_max_message_bytes: Option<usize>,
    pub delivery: DeliveryConfirm,
    pub tuning: Tuning,
    /// Lower-cased allowed origins; empty allows every origin (`--allowed-origins`).
    pub allowed_origins: Vec<String>,
    /// How long delivered messages are kept (`--retention-secs`); `None`: forever.
    pub retention: Option<std::time::Duration>,
    /// `--webhook-undelivered-after-secs` when webhooks are on; `None`: no undelivered sweep.
    pub undelivered_after: Option<std::time::Duration>,
    /// The demo page's files (`--demo-dir`); `None`: `/demo/` is 404.
    pub demo: Option<Arc<crate::demo::DemoFiles>>,
    /// The server API's keys (`--api-keys`); empty: `/api/` is 404.
    pub api_keys: Vec<String>,
    /// Who publishes through the server API when no `sender_id` is given.
    pub api_system_sender: String,
}

/// What every shard can reach: settings, the mesh and the store thread.
pub struct PodShared {
    pub settings: Settings,
    pub mesh: Mesh,
    pub store: StoreHandle,
    /// Set in the distributed mode: Redis routes and the Kafka bus replace the embedded ones.
    pub cluster: Option<ClusterShared>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Bumped each time the pod lost its route leases (distributed mode). The keepalive sweep
    /// of every shard closes its connections when it sees a new value: unlike an inbox
    /// message, a counter cannot be dropped by a full inbox.
    pub lease_epoch: Arc<std::sync::atomic::AtomicU64>,
    /// Open sockets and per-address slots, for the connection caps.
    pub sockets: Arc<SocketCaps>,
    /// Descriptors in reserve for shedding connections when none is left (`spares`).
    pub spares: Spares,
    /// v2 (syncing) connections open on this pod. The embedded pod sends no carbons while it
    /// is 0: nobody could take one, and a carbon costs a route lookup and a frame encoding
    /// per message (perf/RESULTS.md §12). Written at connect and close only.
    pub syncing: std::sync::atomic::AtomicUsize,
    /// The auth service's user table (`--users-file`, `--users-topic`); `None`: every user
    /// a token names exists.
    pub users: Option<Arc<crate::backend::users::UserDirectory>>,
    /// Events for the application's backend (`--webhook-url`).
    pub webhooks: Option<crate::backend::webhook::Webhooks>,
}

impl PodShared {
    /// Whether `user` may connect or be sent messages.
    pub fn user_exists(&self, user: &str) -> bool {
        self.users.as_ref().map_or(true, |d| d.knows(user))
    }

    /// Whether a message's carbon could reach anyone: always with other pods (their
    /// devices are unknown here), else only with a v2 connection on this pod.
    pub fn carbons_wanted(&self) -> bool {
        self.cluster.is_some() || self.syncing.load(std::sync::atomic::Ordering::Relaxed) > 0
    }
}

/// One core's state. Owned by its executor through `Rc`; see the module doc.
pub struct Shard {
    pub id: usize,
    pub pod: Arc<PodShared>,
    /// Live connections on this shard. Dropped entries end nothing by themselves: each
    /// connection task removes its own entry when it ends.
    pub conns: RefCell<Conns>,
    /// Every socket read of this shard lands here (`--read-buffer-bytes`); a connection keeps
    /// only the bytes of a frame still incomplete (`socket::frame`), so an idle one holds none.
    pub read_buf: RefCell<Box<[u8]>>,
    /// Per-address slots held by this shard's connections, by connection id (only with
    /// `--max-connections-per-ip`; see `socket::session`).
    pub ip_slots: RefCell<std::collections::HashMap<u64, std::net::IpAddr>>,
    /// The per-user frame buckets of this shard's connected users (only with
    /// `--max-frames-per-user-per-sec`), held once per connection; see `shard::limit`.
    pub user_buckets: RefCell<limit::Held<Arc<limit::SharedLimit>>>,
    /// v2 sync cursors (`?since=`) of connections being set up, by connection id.
    pub sync_cursors: RefCell<std::collections::HashMap<u64, i64>>,
    /// Token expiries (seconds since the epoch) of connections being set up, by connection
    /// id: parked here, like the cursors, so the connection's task does not carry them.
    pub token_expiries: RefCell<std::collections::HashMap<u64, i64>>,
    /// The last typing frame each connection sent through (`flow::typing`'s rate limit).
    pub typing: RefCell<std::collections::HashMap<u64, (std::time::Instant, bool)>>,
    /// Warnings an outage repeats for every message (a route or publish failed, the store
    /// refused or failed a command), written once per 10 s with their count.
    pub route_failures: crate::metrics::LogEvery,
    pub store_failures: crate::metrics::LogEvery,
    /// This shard's slice of the embedded route table (users whose home shard this is).
    pub directory: Rc<RefCell<Directory>>,
    pub routes: Box<dyn RouteTable>,
    pub bus: Box<dyn Bus>,
    /// Messages handed to the store or being routed and not finished yet; shutdown waits
    /// for zero within its patience window.
    pub in_flight: Cell<usize>,
    /// Set at shutdown: readers stop taking new frames.
    pub draining: Cell<bool>,
    /// This shard's hand-off histogram (`metrics::Latency::handoff_of`).
    pub handoff: prometheus_client::metrics::histogram::Histogram,
    next_conn: Cell<u64>,
}

impl Shard {
    pub fn new(
        id: usize,
        pod: Arc<PodShared>,
        directory: Rc<RefCell<Directory>>,
        routes: Box<dyn RouteTable>,
        bus: Box<dyn Bus>,
    ) -> Self {
        let read_buf = vec![0; pod.settings.tuning.read_buffer_bytes.max(1)];
        let handoff = pod.metrics.latency.handoff_of(id);
        Shard {
            id,
            pod,
            conns: RefCell::new(Conns::default()),
            read_buf: RefCell::new(read_buf.into()),
            ip_slots: RefCell::default(),
            user_buckets: RefCell::default(),
            sync_cursors: RefCell::default(),
            token_expiries: RefCell::default(),
            typing: RefCell::default(),
            route_failures: Default::default(),
            store_failures: Default::default(),
            directory,
            routes,
            bus,
            in_flight: Cell::new(0),
            draining: Cell::new(false),
            handoff,
            next_conn: Cell::new(1),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.pod.settings
    }

    pub fn shard_count(&self) -> usize {
        self.pod.mesh.len()
    }

    /// This shard as a route location.
    pub fn location(&self) -> Location {
        Location {
            pod: self.pod.settings.pod_id.clone(),
            shard: self.id as u16,
        }
    }

    /// This shard's counters (its own slot: no sharing with other shards).
    pub fn metrics(&self) -> &crate::metrics::ShardMetrics {
        &self.pod.metrics.shards[self.id]
    }

    pub fn next_conn_id(&self) -> u64 {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        id
    }

    pub fn begin_work(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
    }

    pub fn end_work(&self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
    }
}
