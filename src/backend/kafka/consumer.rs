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

use super::{HEADER_BORN, HEADER_CARBON, HEADER_EXCEPT, HEADER_GROUP, HEADER_ID, HEADER_SEQ};
use crate::backend::bus::{Consumed, Envelope, Except};

/// Hands a consumed record to the owning shard, blocking while its inbox is full; `false`
/// once the shard stopped.
pub type HandOff = Box<dyn Fn(Consumed) -> bool + Send>;

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

/// Starts the consumer of `topic`/`partition` in group `group`, feeding `hand_off`. A group
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
    hand_off: HandOff,
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
        hand_off,
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
        .filter(|o| matches!(o, Offset::Offset(_)));
    match (offset, new_from_end) {
        (Some(o), _) => Ok(o),
        (None, false) => Ok(Offset::Beginning),
        // The end as of now, as a number: librdkafka resolves `Offset::End` at its first
        // fetch, after the pod already serves, and would skip what was produced meanwhile.
        (None, true) => consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(15))
            .map(|(_, high)| Offset::Offset(high))
            .map_err(|e| format!("kafka watermarks of {topic}/{partition}: {e}")),
    }
}

struct Poller {
    consumer: BaseConsumer,
    topic: String,
    partition: i32,
    hand_off: HandOff,
    acks: Sender<i64>,
    handed: Receiver<i64>,
}

impl Poller {
    fn run(self, stop: &AtomicBool) {
        let mut last_warn = std::time::Instant::now() - Duration::from_secs(60);
        let mut gaps = Gaps::default();
        while !stop.load(Ordering::Relaxed) {
            self.store_handed();
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    if !gaps.accept(m.offset()) {
                        self.refetch(gaps.expected());
                        continue;
                    }
                    let record = Consumed {
                        env: envelope(&m),
                        offset: m.offset(),
                        ack: self.acks.clone(),
                    };
                    if !(self.hand_off)(record) {
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

    /// Seeks back to the first offset not seen (see [`Gaps`]).
    fn refetch(&self, from: i64) {
        tracing::warn!(
            partition = self.partition,
            from,
            "kafka fetch skipped offsets; fetching them again"
        );
        let at = Offset::Offset(from);
        if let Err(e) = self
            .consumer
            .seek(&self.topic, self.partition, at, Duration::from_secs(5))
        {
            tracing::warn!(partition = self.partition, error = %e, "kafka seek");
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

/// Offsets seen on one partition. Our topics have neither compaction nor transactions, so
/// their offsets have no holes; yet the consumer was caught receiving offsets with holes from
/// the tansu broker, skipping records it had acknowledged and still holds (perf/RESULTS.md
/// §9e): those messages reached no device. A record beyond the next expected offset is
/// therefore not handed on; the consumer seeks back once to fetch the skipped ones, and if the
/// same hole comes back it is real and accepted. A record *below* the expected offset is
/// handed on: after a seek nothing beyond the hole was handed, so it is no repeat of ours,
/// and after an offset reset (a broker that lost records reuses their offsets) it may be new.
/// Connections drop copies of what they were already given.
#[derive(Default)]
struct Gaps {
    /// The offset after the last one handed on.
    next: Option<i64>,
    /// The hole a seek was already tried for.
    retried: Option<i64>,
}

impl Gaps {
    /// Whether to hand on the record at `offset`; `false` asks for a refetch.
    fn accept(&mut self, offset: i64) -> bool {
        match self.next {
            Some(next) if offset > next && self.retried != Some(next) => {
                self.retried = Some(next);
                false
            }
            _ => {
                self.next = Some(offset + 1);
                true
            }
        }
    }

    fn expected(&self) -> i64 {
        self.next.unwrap_or(0)
    }
}

fn envelope(m: &BorrowedMessage<'_>) -> Arc<Envelope> {
    let text = |b: Option<&[u8]>| {
        b.and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned)
    };
    let (mut id, mut seq, mut carbon, mut group, mut except) = (None, 0, false, false, None);
    let mut born = 0;
    if let Some(headers) = m.headers() {
        for h in headers.iter() {
            match h.key {
                HEADER_ID => id = text(h.value),
                HEADER_SEQ => seq = text(h.value).and_then(|s| s.parse().ok()).unwrap_or(0),
                HEADER_CARBON => carbon = true,
                HEADER_GROUP => group = true,
                HEADER_BORN => born = text(h.value).and_then(|s| s.parse().ok()).unwrap_or(0),
                HEADER_EXCEPT => except = text(h.value).as_deref().and_then(Except::from_header),
                _ => {}
            }
        }
    }
    Arc::new(Envelope {
        user: text(m.key()).unwrap_or_default(),
        frame: text(m.payload()).unwrap_or_default().into(),
        message_id: id,
        seq,
        carbon,
        group,
        born,
        except,
    })
}

#[cfg(test)]
mod tests {
    use super::Gaps;

    #[test]
    fn a_hole_is_refetched_once_and_lower_offsets_are_handed_on() {
        let mut g = Gaps::default();
        assert!(g.accept(10) && g.accept(11));
        // 12 and 13 skipped: refetch from 12.
        assert!(!g.accept(14));
        assert_eq!(g.expected(), 12);
        assert!(g.accept(12) && g.accept(13) && g.accept(14));
        // An offset reset (a broker that lost records reuses offsets): handed on.
        assert!(g.accept(13));
        assert!(g.accept(14));
        // A hole that comes back after its refetch is real.
        assert!(!g.accept(20));
        assert!(g.accept(20));
        assert_eq!(g.expected(), 21);
    }
}
