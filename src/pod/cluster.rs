//! Startup and shutdown of the distributed mode's clients: Postgres (store thread), Redis
//! (route thread), Kafka (producer and one consumer per shard).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::relay::StatusRelay;
use super::{MeshSink, StartError};
use crate::backend::kafka::{self, ConsumerHandle, KafkaProducer, ProducerSettings, Replication};
use crate::backend::redis_routes::{RedisRouteConfig, RedisRouter};
use crate::backend::store::{spawn_writers, PostgresStore, StoreHandle, StoreTuning};
use crate::config::{Config, Routing};
use crate::metrics::Metrics;
use crate::shard::{ClusterShared, Mesh, RedriveSettings, ShardMsg};

/// The pod-wide clients, stopped after the shards.
pub struct ClusterParts {
    router: RedisRouter,
    producer: KafkaProducer,
    consumers: Vec<ConsumerHandle>,
    relay: Option<StatusRelay>,
}

/// A started distributed mode: the store lanes, their threads and the pod-wide clients.
pub struct Started {
    pub store: StoreHandle,
    pub threads: Vec<JoinHandle<()>>,
    pub shared: ClusterShared,
    pub parts: ClusterParts,
}

fn err(what: &str) -> impl Fn(String) -> StartError + '_ {
    move |e| StartError::Backend(format!("{what}: {e}"))
}

/// Connects everything, creates the topics and starts the store threads.
pub fn start(
    config: &Config,
    mesh: &Mesh,
    tuning: StoreTuning,
    metrics: &Arc<Metrics>,
    lease_epoch: &Arc<AtomicU64>,
) -> Result<Started, StartError> {
    let c = &config.cluster;
    let (brokers, redis_url, pg_url) = match (&c.kafka_brokers, &c.redis_url, &c.postgres_url) {
        (Some(k), Some(r), Some(p)) => (k, r, p),
        _ => {
            return Err(StartError::Config(
                crate::config::ConfigError::PartialCluster,
            ))
        }
    };
    let pod: Arc<str> = config.pod_id().into();
    let shards = mesh.len();
    let stores = (0..c.postgres_flushers)
        .map(|_| PostgresStore::connect(pg_url, &c.postgres_schema))
        .collect::<Result<Vec<_>, _>>()?;
    let (lost_mesh, epoch) = (mesh.clone(), lease_epoch.clone());
    let on_lost = Box::new(move || {
        epoch.fetch_add(1, Ordering::Release); // Seen by every shard's next keepalive sweep.
        for inbox in lost_mesh.iter() {
            let _ = inbox.try_send(ShardMsg::LeaseLost); // Sooner, when there is room.
        }
    });
    let route_cfg = RedisRouteConfig {
        url: redis_url.clone(),
        prefix: c.prefix.clone(),
        pod: pod.clone(),
        lease: Duration::from_millis(c.route_lease_ms),
        failing: metrics.reach.routes_failing.clone(),
        cache_max_age: Duration::from_millis(c.route_cache_max_age_ms),
        shards,
    };
    let router = RedisRouter::start(route_cfg, on_lost).map_err(err("redis"))?;
    let broadcast = c.routing == Routing::Broadcast;
    let topic = match broadcast {
        true => kafka::broadcast_topic(&c.prefix),
        false => kafka::pod_topic(&c.prefix, &pod),
    };
    let replication = Replication {
        factor: c.kafka_replication_factor,
        min_insync: c.kafka_min_insync_replicas,
    };
    kafka::ensure_topic(brokers, &topic, shards as i32, replication).map_err(err("kafka"))?;
    let status_topic = kafka::status_topic(&c.prefix);
    kafka::ensure_topic(brokers, &status_topic, 1, replication).map_err(err("kafka"))?;
    let settings = ProducerSettings {
        timeout: Duration::from_millis(c.kafka_produce_timeout_ms),
        linger: Duration::from_millis(c.kafka_linger_ms),
        idempotence: c.kafka_idempotence,
        max_in_flight: c.kafka_max_in_flight,
    };
    let failing = metrics.reach.bus_failing.clone();
    let producer = KafkaProducer::start(brokers, settings, failing).map_err(err("kafka"))?;
    let bus = producer.bus(&c.prefix);
    let idle = Duration::from_millis(c.status_relay_idle_ms);
    let relay = match c.status_relay {
        true => Some(
            StatusRelay::start(&stores[0], bus.clone(), status_topic, idle)
                .map_err(err("postgres"))?,
        ),
        false => None,
    };
    let sink = MeshSink { mesh: mesh.clone() };
    let tuning = StoreTuning {
        pace: Duration::from_micros(c.postgres_commit_window_us),
        ..tuning
    };
    let (handle, threads) = spawn_writers(stores, sink, tuning, metrics.clone());
    let group = format!("{}{}", c.prefix, pod);
    let consumers = (0..shards)
        .map(|i| {
            kafka::spawn_consumer(
                broadcast,
                c.kafka_fetch_wait_ms,
                brokers,
                &group,
                &topic,
                i as i32,
                hand_to(mesh[i].clone()),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(err("kafka"))?;
    tracing::info!(%topic, partitions = shards, "distributed mode: kafka, redis, postgres connected");
    let shared = ClusterShared {
        routes: router.handles(),
        bus,
        redrive: RedriveSettings {
            interval: Duration::from_millis(c.redrive_interval_ms),
            none_after: Duration::from_millis(c.redrive_none_after_ms),
            // Broadcast has no route table to tell an offline recipient from a lost record:
            // redriving SENT would re-broadcast every offline user's backlog each window.
            sent_after: (!broadcast).then(|| Duration::from_millis(c.redrive_sent_after_ms)),
        },
        routing: c.routing,
    };
    Ok(Started {
        store: handle,
        threads,
        shared,
        parts: ClusterParts {
            router,
            producer,
            consumers,
            relay,
        },
    })
}

impl ClusterParts {
    /// Stops consumers (committing handed offsets), flushes the producer, stops the routes.
    pub fn stop(self) {
        for c in self.consumers {
            c.stop();
        }
        if let Some(r) = self.relay {
            r.stop();
        }
        self.producer.stop();
        self.router.stop();
    }
}

/// The consumer's hand-off into shard `inbox`.
fn hand_to(inbox: async_channel::Sender<ShardMsg>) -> kafka::HandOff {
    Box::new(move |record| inbox.send_blocking(ShardMsg::Consumed(record)).is_ok())
}
