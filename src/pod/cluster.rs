//! Startup and shutdown of the distributed mode's clients: Postgres (store thread), Redis
//! (route thread), Kafka (producer and one consumer per shard).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{MeshSink, StartError};
use crate::backend::kafka::{self, ConsumerHandle, KafkaBus, KafkaProducer};
use crate::backend::redis_routes::{RedisRouteConfig, RedisRouter, RedisRoutes};
use crate::backend::store::{
    spawn_writer, EventSink, PostgresStore, StoreEvent, StoreHandle, StoreTuning,
};
use crate::config::Config;
use crate::flow::redrive::RedriveSettings;
use crate::metrics::Metrics;
use crate::protocol::rfc3339_micros;
use crate::shard::{Mesh, ShardMsg};

/// What every shard of a distributed pod shares: handles to cloned per shard.
pub struct ClusterShared {
    pub routes: RedisRoutes,
    pub bus: KafkaBus,
    pub redrive: RedriveSettings,
}

/// The pod-wide clients, stopped after the shards.
pub struct ClusterParts {
    router: RedisRouter,
    producer: KafkaProducer,
    consumers: Vec<ConsumerHandle>,
}

/// Store outcomes go to the shards as in the embedded mode; status changes are also
/// published on `<prefix>message-status` for other services (the seed's auth/user service).
struct ClusterSink {
    mesh: MeshSink,
    bus: KafkaBus,
    topic: String,
}

impl EventSink for ClusterSink {
    fn emit(&self, events: Vec<StoreEvent>) {
        for event in &events {
            let StoreEvent::StatusChanged(c) = event else {
                continue;
            };
            let json = serde_json::json!({
                "id": c.id, "status": c.status.as_str(), "sender_id": c.sender_id,
                "reciever_id": c.reciever_id, "at": rfc3339_micros(c.at),
            });
            if !self.bus.send_unacked(&self.topic, &c.id, &json.to_string()) {
                tracing::warn!("status event not queued (producer queue full)");
            }
        }
        self.mesh.emit(events);
    }
}

fn err(what: &str) -> impl Fn(String) -> StartError + '_ {
    move |e| StartError::Backend(format!("{what}: {e}"))
}

/// Connects everything, creates the topics and starts the store thread.
pub fn start(
    config: &Config,
    mesh: &Mesh,
    tuning: StoreTuning,
    metrics: &Arc<Metrics>,
) -> Result<(StoreHandle, JoinHandle<()>, ClusterShared, ClusterParts), StartError> {
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
    let store = PostgresStore::connect(pg_url, &c.postgres_schema)?;
    let lost_mesh = mesh.clone();
    let on_lost = Box::new(move || {
        for inbox in lost_mesh.iter() {
            let _ = inbox.try_send(ShardMsg::LeaseLost); // A full inbox: the shard is busy anyway.
        }
    });
    let route_cfg = RedisRouteConfig {
        url: redis_url.clone(),
        prefix: c.prefix.clone(),
        pod: pod.clone(),
        lease: Duration::from_millis(c.route_lease_ms),
    };
    let router = RedisRouter::start(route_cfg, on_lost).map_err(err("redis"))?;
    let topic = kafka::pod_topic(&c.prefix, &pod);
    kafka::ensure_topic(brokers, &topic, shards as i32).map_err(err("kafka"))?;
    let status_topic = kafka::status_topic(&c.prefix);
    kafka::ensure_topic(brokers, &status_topic, 1).map_err(err("kafka"))?;
    let producer = KafkaProducer::start(brokers).map_err(err("kafka"))?;
    let bus = producer.bus(&c.prefix);
    let sink = ClusterSink {
        mesh: MeshSink { mesh: mesh.clone() },
        bus: bus.clone(),
        topic: status_topic,
    };
    let (handle, thread) = spawn_writer(store, sink, tuning, metrics.clone());
    let group = format!("{}{}", c.prefix, pod);
    let consumers = (0..shards)
        .map(|i| {
            kafka::spawn_consumer(
                c.kafka_fetch_wait_ms,
                brokers,
                &group,
                &topic,
                i as i32,
                mesh[i].clone(),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(err("kafka"))?;
    tracing::info!(%topic, partitions = shards, "distributed mode: kafka, redis, postgres connected");
    let shared = ClusterShared {
        routes: router.handle(),
        bus,
        redrive: RedriveSettings {
            interval: Duration::from_millis(c.redrive_interval_ms),
            none_after: Duration::from_millis(c.redrive_none_after_ms),
            sent_after: Duration::from_millis(c.redrive_sent_after_ms),
        },
    };
    Ok((
        handle,
        thread,
        shared,
        ClusterParts {
            router,
            producer,
            consumers,
        },
    ))
}

impl ClusterParts {
    /// Stops consumers (committing handed offsets), flushes the producer, stops the routes.
    pub fn stop(self) {
        for c in self.consumers {
            c.stop();
        }
        self.producer.stop();
        self.router.stop();
    }
}
