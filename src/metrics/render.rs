//! `GET /metrics`: every counter and gauge read from the shards' slots at scrape time, and the
//! latency histograms, encoded by prometheus-client (text format 0.0.4) instead of by hand.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Depths, Metrics, ShardMetrics, ERROR_CODES};

pub(super) fn render(metrics: &Arc<Metrics>, depths: Depths) -> String {
    let mut registry = Registry::with_prefix("distrisocks");
    let now = Snapshot {
        metrics: metrics.clone(),
        depths,
    };
    registry.register_collector(Box::new(now));
    metrics.latency.register(&mut registry);
    let mut out = String::with_capacity(8192);
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("encoding into a String cannot fail");
    out
}

/// The counters as one scrape reads them.
struct Snapshot {
    metrics: Arc<Metrics>,
    depths: Depths,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics snapshot")
    }
}

type Read = fn(&ShardMetrics) -> u64;

/// Counters per shard: name (without `_total`, which the encoder adds), help, slot.
const SHARD_COUNTERS: [(&str, &str, Read); 10] = [
    ("messages_accepted", "Messages stored and accepted.", |s| u(&s.accepted)),
    ("messages_duplicate", "Idempotent resends answered with the first id.", |s| u(&s.duplicates)),
    ("messages_sent", "Committed NONE to SENT changes (counted on the sender's home shard).", |s| u(&s.status_sent)),
    ("messages_delivered", "Committed changes to DELIVERED.", |s| u(&s.status_delivered)),
    ("frames_written", "Frames flushed to sockets.", |s| u(&s.frames_out)),
    ("slow_consumer_closes", "Connections closed with 4008.", |s| u(&s.slow_consumer_closes)),
    ("ping_timeout_closes", "Connections closed with 4001 (no frame within the pong timeout after a ping).", |s| u(&s.ping_timeout_closes)),
    ("route_lost_closes", "Connections closed with 4009 (the pod's route leases lapsed; it is fenced).", |s| u(&s.route_lost_closes)),
    ("route_cache_hits", "Route lookups of status frames and carbons answered from the shard's cache (distributed mode, --route-cache-max-age-ms).", |s| u(&s.route_cache_hits)),
    ("stuck_write_drops", "Connections dropped without a close frame: aborted while their socket took no bytes for the close grace (a peer that stopped reading).", |s| u(&s.stuck_write_drops)),
];

fn u(a: &AtomicU64) -> u64 {
    a.load(Relaxed)
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        let connections = m.shards.iter().map(|s| s.connections.load(Relaxed));
        let help = "Open WebSocket connections.";
        per_shard(
            &mut enc,
            "connections",
            help,
            connections.map(ConstGauge::new),
        )?;
        for (name, help, read) in SHARD_COUNTERS {
            per_shard(
                &mut enc,
                name,
                help,
                m.shards.iter().map(|s| ConstCounter::new(read(s))),
            )?;
        }
        self.errors(&mut enc)?;
        self.store(&mut enc)?;
        let inboxes = self
            .depths
            .inboxes
            .iter()
            .map(|n| ConstGauge::new(*n as i64));
        per_shard(
            &mut enc,
            "inbox_depth",
            "Messages waiting in a shard inbox.",
            inboxes,
        )
    }
}

/// One series per shard, labelled `shard`.
fn per_shard<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl Iterator<Item = M>,
) -> Result<(), std::fmt::Error> {
    let mut values = values.peekable();
    let Some(kind) = values.peek().map(|v| v.metric_type()) else {
        return Ok(());
    };
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    for (shard, value) in values.enumerate() {
        let labels = [("shard", shard)];
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One unlabelled series.
fn single<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: M,
) -> Result<(), std::fmt::Error> {
    v.encode(enc.encode_descriptor(name, help, None, v.metric_type())?)
}

impl Snapshot {
    fn errors(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let help = "Error frames sent, by code.";
        let mut metric = enc.encode_descriptor("errors", help, None, MetricType::Counter)?;
        for (i, code) in ERROR_CODES.iter().enumerate() {
            let n: u64 = self
                .metrics
                .shards
                .iter()
                .map(|s| s.errors[i].load(Relaxed))
                .sum();
            let code = serde_json::to_value(code).unwrap_or_default();
            let labels = [("code", code.as_str().unwrap_or_default().to_owned())];
            ConstCounter::new(n).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn store(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (s, w) = (&self.metrics.store, &self.metrics.webhooks);
        let counters = [
            ("store_batches", "Store transactions committed or failed.", u(&s.batches)),
            ("store_commands", "Commands applied in store transactions.", u(&s.commands)),
            ("store_commit_micros", "Time spent committing, microseconds.", u(&s.commit_micros)),
            ("store_failed_batches", "Store batches that failed after retries.", u(&s.failed_batches)),
            ("store_status_coalesced", "Status updates folded into another update of the same message in the same store batch.", u(&s.coalesced)),
            ("webhook_delivered", "Webhook events the receiver took (2xx).", u(&w.delivered)),
            ("webhook_retries", "Webhook POSTs that failed and were retried.", u(&w.retried)),
            ("webhook_dropped", "Webhook events dropped because the queue (--webhook-queue) was full.", u(&w.dropped)),
        ];
        for (name, help, v) in counters {
            single(enc, name, help, ConstCounter::new(v))?;
        }
        let max = u(&s.commit_micros_max) as i64;
        single(
            enc,
            "store_commit_micros_max",
            "Slowest commit so far, microseconds.",
            ConstGauge::new(max),
        )?;
        let queued = self.depths.store_queue as i64;
        single(
            enc,
            "store_queue_depth",
            "Commands waiting for the store thread.",
            ConstGauge::new(queued),
        )
    }
}
