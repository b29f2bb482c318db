//! One consumer thread per shard, assigned exactly partition *shard* of the pod's topic.
//!
//! At-least-once: a record's offset is stored (and later auto-committed) only after the shard
//! reports it handed the frame to the socket writers, or found nobody to hand it to (the
//! message then stays stored below DELIVERED, which is "recorded as pending").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{HEADER_ID, HEADER_SEQ};
use crate::backend::bus::Envelope;
use crate::shard::ShardMsg;

/// Stops a consumer thread (committing what was handed) when dropped via [`stop`](Self::stop).
pub struct ConsumerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ConsumerHandle {
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the consumer of `topic`/`partition` in group `group`, feeding `inbox`. A group
/// without a committed offset starts at the beginning of the partition, or at its end with
/// `new_from_end` (the broadcast topic: a new pod has no connections, and what was sent
/// before it started is in the store for replay).
pub fn spawn_consumer(
    new_from_end: bool,
    fetch_wait_ms: u64,
    brokers: &str,
    group: &str,
    topic: &str,
    partition: i32,
    inbox: async_channel::Sender<ShardMsg>,
) -> Result<ConsumerHandle, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        // Small fetch requests must not wait for Nagle + delayed ACK (~40 ms on Linux).
        .set("socket.nagle.disable", "true")
        .create()
        .map_err(|e| format!("kafka consumer: {e}"))?;
    let start = start_offset(&consumer, topic, partition, new_from_end)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, start)
        .map_err(|e| e.to_string())?;
    consumer
        .assign(&tpl)
        .map_err(|e| format!("kafka assign {topic}/{partition}: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (acks, handed) = crossbeam_channel::unbounded();
    let poller = Poller {
        consumer,
        topic: topic.into(),
        partition,
        inbox,
        acks,
        handed,
    };
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("kafka-consumer-{partition}"))
        .spawn(move || poller.run(&s))
        .map_err(|e| e.to_string())?;
    Ok(ConsumerHandle {
        stop,
        thread: Some(thread),
    })
}

/// The group's committed offset for the partition, fetched before the pod serves anyone (so a
/// slow coordinator lookup delays startup, not the first messages), or the beginning of the
/// partition for a new group.
fn start_offset(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    new_from_end: bool,
) -> Result<Offset, String> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(15))
        .map_err(|e| format!("kafka committed offsets of {topic}/{partition}: {e}"))?;
    let offset = committed
        .find_partition(topic, partition)
        .map(|p| p.offset())
        .filter(|o| matches!(o, Offset::Offset(_)))
        .unwrap_or(match new_from_end {
            true => Offset::End,
            false => Offset::Beginning,
        });
    Ok(offset)
}

struct Poller {
    consumer: BaseConsumer,
    topic: String,
    partition: i32,
    inbox: async_channel::Sender<ShardMsg>,
    acks: Sender<i64>,
    handed: Receiver<i64>,
}

impl Poller {
    fn run(self, stop: &AtomicBool) {
        let mut last_warn = std::time::Instant::now() - Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) {
            self.store_handed();
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    let msg = ShardMsg::Consumed {
                        env: envelope(&m),
                        offset: m.offset(),
                        ack: self.acks.clone(),
                    };
                    if self.inbox.send_blocking(msg).is_err() {
                        break; // The shard stopped; the offset stays uncommitted.
                    }
                }
                Some(Err(e)) if last_warn.elapsed() > Duration::from_secs(10) => {
                    // Rate-limited: a broker outage reports this on every poll.
                    tracing::warn!(partition = self.partition, error = %e, "kafka poll");
                    last_warn = std::time::Instant::now();
                }
                Some(Err(e)) => {
                    tracing::debug!(partition = self.partition, error = %e, "kafka poll")
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        self.store_handed();
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final offset commit");
        }
    }

    fn store_handed(&self) {
        if let Some(max) = self.handed.try_iter().max() {
            if let Err(e) = self.consumer.store_offset(&self.topic, self.partition, max) {
                tracing::warn!(partition = self.partition, error = %e, "store offset");
            }
        }
    }
}

fn envelope(m: &BorrowedMessage<'_>) -> Arc<Envelope> {
    let text = |b: Option<&[u8]>| {
        b.and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned)
    };
    let (mut id, mut seq) = (None, 0);
    if let Some(headers) = m.headers() {
        for h in headers.iter() {
            match h.key {
                HEADER_ID => id = text(h.value),
                HEADER_SEQ => seq = text(h.value).and_then(|s| s.parse().ok()).unwrap_or(0),
                _ => {}
            }
        }
    }
    Arc::new(Envelope {
        user: text(m.key()).unwrap_or_default(),
        frame: text(m.payload()).unwrap_or_default().into(),
        message_id: id,
        seq,
    })
}
