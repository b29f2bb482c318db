//! The directory fed from the auth service's Kafka topic (`--users-topic`): every pod reads
//! every partition from the beginning (no consumer group, no committed offsets: the topic is
//! the table, ideally compacted, key = user id) and keeps tailing it.
//!
//! A pod serves only once it has read every partition up to the end it saw at startup:
//! before that, every recipient would look unknown. A record whose value is empty (a
//! compaction tombstone) deletes its key's user; a malformed record is logged and skipped
//! (it is another service's data; stopping every pod for it would be worse).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{OnDeleted, UserDirectory, UserEvent};
use crate::backend::stoppable::StoppableThread;

/// Longest wait for the catch-up at startup.
const CATCH_UP: Duration = Duration::from_secs(60);
/// Records applied as one directory update at most.
const BATCH: usize = 1024;

/// The tailing thread; [`stop`](Self::stop) ends it.
pub struct TopicFeeder(StoppableThread);

impl TopicFeeder {
    /// Reads `topic` up to its current end into `dir`, then tails it on a thread.
    pub fn start(
        brokers: &str,
        topic: &str,
        dir: Arc<UserDirectory>,
        on_deleted: OnDeleted,
    ) -> Result<TopicFeeder, String> {
        let consumer = assign_all(brokers, topic)?;
        let mut feeder = Feeder {
            consumer,
            dir,
            on_deleted,
        };
        feeder.catch_up(topic)?;
        tracing::info!(users = feeder.dir.len(), topic, "user directory loaded");
        let tail = move |stop: &AtomicBool| {
            while !stop.load(Ordering::Relaxed) {
                feeder.poll_batch(Duration::from_millis(200));
            }
        };
        StoppableThread::spawn("users-topic", tail).map(TopicFeeder)
    }

    pub fn stop(self) {
        self.0.stop()
    }
}

/// A consumer assigned every partition of `topic` from the beginning. The group id is never
/// used for offsets (nothing is committed); librdkafka requires one.
fn assign_all(brokers: &str, topic: &str) -> Result<BaseConsumer, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}.directory"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("socket.nagle.disable", "true")
        .create()
        .map_err(|e| format!("kafka consumer: {e}"))?;
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("kafka at {brokers}: metadata of users topic {topic}: {e}"))?;
    let partitions = crate::backend::kafka::partition_count(&meta, topic);
    if partitions == 0 {
        return Err(format!(
            "users topic {topic} does not exist (the auth service owns it)"
        ));
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| format!("kafka assign {topic}: {e}"))?;
    Ok(consumer)
}

struct Feeder {
    consumer: BaseConsumer,
    dir: Arc<UserDirectory>,
    on_deleted: OnDeleted,
}

impl Feeder {
    /// Polls until every partition's position reached the high watermark seen now.
    fn catch_up(&mut self, topic: &str) -> Result<(), String> {
        let deadline = Instant::now() + CATCH_UP;
        let assigned = self.consumer.assignment().map_err(|e| e.to_string())?;
        let (mut ends, mut next) = (Vec::new(), Vec::new());
        for el in assigned.elements() {
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, el.partition(), Duration::from_secs(10))
                .map_err(|e| format!("users topic {topic}: watermarks: {e}"))?;
            ends.push((el.partition(), high));
            next.push(low); // What retention or compaction removed is not waited for.
        }
        while ends.iter().zip(&next).any(|((_, high), at)| at < high) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "users topic {topic} not read to its end within {CATCH_UP:?}"
                ));
            }
            for (p, offset) in self.poll_batch(Duration::from_millis(100)) {
                if let Some(i) = ends.iter().position(|(q, _)| *q == p) {
                    next[i] = next[i].max(offset + 1);
                }
            }
        }
        Ok(())
    }

    /// Applies what one poll round brings, as one update; returns (partition, offset) of
    /// every record seen.
    fn poll_batch(&mut self, wait: Duration) -> Vec<(i32, i64)> {
        let mut events = Vec::new();
        let mut seen = Vec::new();
        let mut timeout = wait;
        while seen.len() < BATCH {
            match self.consumer.poll(timeout) {
                Some(Ok(m)) => {
                    seen.push((m.partition(), m.offset()));
                    events.extend(record_event(&m));
                }
                Some(Err(e)) => tracing::warn!(error = %e, "users topic: consume failed"),
                None => break,
            }
            timeout = Duration::ZERO; // Take what is buffered, do not wait again.
        }
        if !events.is_empty() {
            let gone = self.dir.apply(events);
            if !gone.is_empty() {
                (self.on_deleted)(gone);
            }
        }
        seen
    }
}

/// The event of one record: its JSON value, or a deletion for a tombstone.
fn record_event(m: &BorrowedMessage<'_>) -> Option<UserEvent> {
    match m.payload() {
        None | Some([]) => {
            let key = std::str::from_utf8(m.key()?).ok()?;
            Some(UserEvent::Deleted {
                user_id: key.to_owned(),
            })
        }
        Some(value) => {
            let parsed = std::str::from_utf8(value)
                .map_err(|e| e.to_string())
                .and_then(UserEvent::parse);
            match parsed {
                Ok(event) => Some(event),
                Err(e) => {
                    let (partition, offset) = (m.partition(), m.offset());
                    tracing::warn!(partition, offset, error = %e, "users topic: record skipped");
                    None
                }
            }
        }
    }
}
