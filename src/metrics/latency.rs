//! Latency histograms (prometheus-client's): how long the store takes to commit a batch, how
//! long a message takes from its arrival to the recipient's connection, how long the broker
//! takes to acknowledge a record. The questions an operator asks first when p99 moves.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A histogram's shard label.
type ShardLabel = [(&'static str, usize); 1];
type PerShard = Family<ShardLabel, Histogram, fn() -> Histogram>;

/// 100 µs doubling to ~52 s: a commit, a hand-off in a quiet pod, and one that waited for a
/// redrive (tens of seconds) all land in a bucket of their own size.
fn buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 20))
}

/// See the module doc. A shard observes only its own histogram, taken once at startup
/// ([`Latency::handoff_of`], [`Latency::produce_of`]): prometheus-client's histogram takes a
/// lock to observe, which stays uncontended that way.
pub struct Latency {
    /// One store batch's commit, retries included (the store threads).
    pub store_commit: Histogram,
    handoff: PerShard,
    produce: PerShard,
}

impl Latency {
    pub fn new(shards: usize) -> Latency {
        let latency = Latency {
            store_commit: buckets(),
            handoff: Family::new_with_constructor(buckets),
            produce: Family::new_with_constructor(buckets),
        };
        // Every shard's series exists from the start, so dashboards see zeros, not gaps.
        for shard in 0..shards {
            latency.handoff_of(shard);
        }
        latency
    }

    /// The histogram of messages handed to connections on `shard`: from the moment the pod
    /// that took the message created it (before its commit) to the owning core queueing it
    /// for the recipient's connection. Across pods the two clocks differ by their skew.
    pub fn handoff_of(&self, shard: usize) -> Histogram {
        self.handoff.get_or_create(&[("shard", shard)]).clone()
    }

    /// The histogram of Kafka records produced by `shard`: from the send to the broker's
    /// acknowledgement (or failure).
    pub fn produce_of(&self, shard: usize) -> Histogram {
        self.produce.get_or_create(&[("shard", shard)]).clone()
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "store_commit_seconds",
            "Time to commit one store batch, retries included",
            self.store_commit.clone(),
        );
        registry.register(
            "handoff_seconds",
            "From a message's arrival at a pod to its recipient's connection on the owning core (live deliveries; redriven ones included)",
            self.handoff.clone(),
        );
        registry.register(
            "kafka_produce_seconds",
            "From producing a record to the broker's acknowledgement (distributed mode)",
            self.produce.clone(),
        );
    }
}
