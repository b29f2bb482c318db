//! The distributed bus: the seed's Kafka pod topics. Topic `<prefix><pod>` has one partition
//! per shard; shard *i* of the pod consumes exactly partition *i* (so "partitions = consumers
//! of the group" is literally the shard count). Records carry the client frame as the value,
//! the user as the key and the message id and store seq in headers, so a consumer never
//! parses JSON. Every Kafka client runs on its own thread; shards only enqueue.

mod admin;
mod consumer;
mod producer;

pub use admin::{ensure_topic, partition_count, Replication};
pub use consumer::{spawn_consumer, ConsumerHandle, HandOff};
pub use producer::{KafkaBus, KafkaProducer, ProducerSettings};

/// Header carrying the message id of a `message` frame.
pub const HEADER_ID: &str = "ds-id";
/// Header carrying the store insertion seq of a `message` frame.
pub const HEADER_SEQ: &str = "ds-seq";
/// When the message was created (`Envelope::born`, µs), for the hand-off histogram.
pub const HEADER_BORN: &str = "ds-born";
/// Present on a carbon: a copy of a message for its sender's other devices.
pub const HEADER_CARBON: &str = "ds-carbon";
/// Present on group traffic (`Envelope::group`): for v2 devices only.
pub const HEADER_GROUP: &str = "ds-group";
/// The connection a carbon skips (`Except::to_header`).
pub const HEADER_EXCEPT: &str = "ds-except";

/// The topic a pod consumes (`--routing pod-topic`).
pub fn pod_topic(prefix: &str, pod: &str) -> String {
    format!("{prefix}{pod}")
}

/// The one topic every pod consumes (`--routing broadcast`): partition *i* holds the messages
/// of users whose home shard is *i*.
pub fn broadcast_topic(prefix: &str) -> String {
    format!("{prefix}broadcast")
}

/// Where records for `pod` go: its own topic, or the broadcast topic for [`BROADCAST`].
pub fn topic_of(prefix: &str, pod: &str) -> String {
    match pod {
        crate::backend::BROADCAST => broadcast_topic(prefix),
        _ => pod_topic(prefix, pod),
    }
}

/// The topic of status events for other services.
pub fn status_topic(prefix: &str) -> String {
    format!("{prefix}message-status")
}
