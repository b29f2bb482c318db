//! Topic creation at startup, through the admin API.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;

/// Replication of the topics a pod creates.
#[derive(Debug, Clone, Copy)]
pub struct Replication {
    pub factor: i32,
    /// `min.insync.replicas`, capped at `factor`.
    pub min_insync: i32,
}

/// Makes sure `topic` exists with exactly `partitions` partitions. An existing topic with
/// another count is an error: its partitions would no longer map one-to-one onto shards. An
/// existing topic keeps its replication (changing it is an operator's reassignment).
pub fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replication: Replication,
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("kafka admin client: {e}"))?;
    // Fail fast and clearly when no broker answers, before any admin request waits.
    admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| format!("kafka at {brokers} unreachable: {e}"))?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    let min_insync = replication.min_insync.min(replication.factor).to_string();
    let new = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication.factor),
    )
    .set("min.insync.replicas", &min_insync);
    let created = futures::executor::block_on(admin.create_topics([&new], &opts))
        .map_err(|e| format!("kafka at {brokers}: cannot create topic {topic}: {e}"))?;
    for r in created {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(format!("kafka: cannot create topic {t}: {code}")),
        }
    }
    let found = visible_partitions(&admin, brokers, topic)?;
    if found != partitions {
        return Err(format!(
            "kafka topic {topic} has {found} partitions but this pod runs {partitions} shards"
        ));
    }
    Ok(())
}

/// The partition count of `topic` once the broker shows it. Topic creation propagates to
/// metadata asynchronously (in Apache Kafka as in tansu): a pod that lost the creation race
/// to another pod, or whose own creation was just acknowledged, can see the topic with no
/// partitions or with an error for a moment. That is waited out, up to a deadline.
fn visible_partitions(
    admin: &AdminClient<DefaultClientContext>,
    brokers: &str,
    topic: &str,
) -> Result<i32, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let meta = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| format!("kafka at {brokers}: metadata of {topic}: {e}"))?;
        let found = partition_count(&meta, topic);
        if found > 0 || std::time::Instant::now() >= deadline {
            return Ok(found);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many partitions `meta` shows for `topic`: 0 when it is missing or reported with an
/// error (not created, or not propagated yet).
pub fn partition_count(meta: &rdkafka::metadata::Metadata, topic: &str) -> i32 {
    meta.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32)
}
