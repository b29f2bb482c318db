//! Counters for `GET /metrics` (Prometheus text format).
//!
//! Each shard writes only its own cache-line-aligned slot with relaxed atomics, so counting
//! shares nothing on the hot path; a scrape sums the slots.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::protocol::ErrorCode;

/// Error codes in the order of [`ShardMetrics::errors`].
pub const ERROR_CODES: [ErrorCode; 23] = [
    ErrorCode::MalformedJson,
    ErrorCode::InvalidFrame,
    ErrorCode::UnknownType,
    ErrorCode::MissingRecipient,
    ErrorCode::InvalidRecipient,
    ErrorCode::MissingPayload,
    ErrorCode::PayloadTooLarge,
    ErrorCode::SenderMismatch,
    ErrorCode::InvalidClientMsgId,
    ErrorCode::MissingId,
    ErrorCode::TooManyIds,
    ErrorCode::NotRecipient,
    ErrorCode::InvalidConversation,
    ErrorCode::UnknownRecipient,
    ErrorCode::UnknownConversation,
    ErrorCode::GroupExists,
    ErrorCode::GroupFull,
    ErrorCode::NotAllowed,
    ErrorCode::NoChange,
    ErrorCode::InvalidToken,
    ErrorCode::Overloaded,
    ErrorCode::StoreUnavailable,
    ErrorCode::RateLimited,
];

/// One shard's counters.
#[derive(Default)]
#[repr(align(128))]
pub struct ShardMetrics {
    pub connections: AtomicI64,
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub status_sent: AtomicU64,
    pub status_delivered: AtomicU64,
    pub frames_out: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    pub ping_timeout_closes: AtomicU64,
    pub route_lost_closes: AtomicU64,
    pub stuck_write_drops: AtomicU64,
    pub errors: [AtomicU64; ERROR_CODES.len()],
}

impl ShardMetrics {
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ERROR_CODES.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// The store thread's counters.
#[derive(Default)]
pub struct StoreMetrics {
    pub batches: AtomicU64,
    pub commands: AtomicU64,
    pub commit_micros: AtomicU64,
    pub commit_micros_max: AtomicU64,
    pub failed_batches: AtomicU64,
    /// Status updates folded into a later update of the same message in the same batch.
    pub coalesced: AtomicU64,
    /// The last commit (of any lane) failed.
    pub failing: AtomicBool,
}

impl StoreMetrics {
    pub fn record(&self, commands: usize, micros: u64, ok: bool) {
        self.batches.fetch_add(1, Relaxed);
        self.commands.fetch_add(commands as u64, Relaxed);
        self.commit_micros.fetch_add(micros, Relaxed);
        self.commit_micros_max.fetch_max(micros, Relaxed);
        if !ok {
            self.failed_batches.fetch_add(1, Relaxed);
        }
        self.failing.store(!ok, Relaxed);
    }
}

/// Every counter of a pod.
pub struct Metrics {
    pub shards: Vec<ShardMetrics>,
    pub store: StoreMetrics,
    pub reach: Reachability,
    pub webhooks: Arc<WebhookCounters>,
}

/// The webhook thread's counters (`backend::webhook`).
#[derive(Default)]
pub struct WebhookCounters {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dropped: AtomicU64,
}

/// The backends' last known reachability, for `GET /readyz`. Each flag is written by the
/// thread that talks to that backend after every attempt (the store: each commit; Redis:
/// each lease renewal, every third of the lease; Kafka: each delivery report), so it says
/// what the last attempt met. The store's flag is [`StoreMetrics::failing`].
#[derive(Default)]
pub struct Reachability {
    pub routes_failing: Arc<AtomicBool>,
    pub bus_failing: Arc<AtomicBool>,
}

/// Queue depths sampled at scrape time.
pub struct Depths {
    pub inboxes: Vec<usize>,
    pub store_queue: usize,
}

impl Metrics {
    pub fn new(shards: usize) -> Metrics {
        Metrics {
            shards: (0..shards).map(|_| ShardMetrics::default()).collect(),
            store: StoreMetrics::default(),
            reach: Reachability::default(),
            webhooks: Arc::default(),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, depths: &Depths) -> String {
        let mut out = String::with_capacity(4096);
        let per_shard = |out: &mut String,
                         name: &str,
                         help: &str,
                         kind: &str,
                         f: &dyn Fn(&ShardMetrics) -> i64| {
            let _ = writeln!(
                out,
                "# HELP distrisocks_{name} {help}\n# TYPE distrisocks_{name} {kind}"
            );
            for (i, s) in self.shards.iter().enumerate() {
                let _ = writeln!(out, "distrisocks_{name}{{shard=\"{i}\"}} {}", f(s));
            }
        };
        let u = |a: &AtomicU64| a.load(Relaxed) as i64;
        per_shard(
            &mut out,
            "connections",
            "Open WebSocket connections.",
            "gauge",
            &|s| s.connections.load(Relaxed),
        );
        per_shard(
            &mut out,
            "messages_accepted_total",
            "Messages stored and accepted.",
            "counter",
            &|s| u(&s.accepted),
        );
        per_shard(
            &mut out,
            "messages_duplicate_total",
            "Idempotent resends answered with the first id.",
            "counter",
            &|s| u(&s.duplicates),
        );
        per_shard(
            &mut out,
            "messages_sent_total",
            "Committed NONE to SENT changes (counted on the sender's home shard).",
            "counter",
            &|s| u(&s.status_sent),
        );
        per_shard(
            &mut out,
            "messages_delivered_total",
            "Committed changes to DELIVERED.",
            "counter",
            &|s| u(&s.status_delivered),
        );
        per_shard(
            &mut out,
            "frames_written_total",
            "Frames flushed to sockets.",
            "counter",
            &|s| u(&s.frames_out),
        );
        per_shard(
            &mut out,
            "slow_consumer_closes_total",
            "Connections closed with 4008.",
            "counter",
            &|s| u(&s.slow_consumer_closes),
        );
        per_shard(
            &mut out,
            "ping_timeout_closes_total",
            "Connections closed with 4001 (no frame within the pong timeout after a ping).",
            "counter",
            &|s| u(&s.ping_timeout_closes),
        );
        per_shard(
            &mut out,
            "route_lost_closes_total",
            "Connections closed with 4009 (the pod's route leases lapsed; it is fenced).",
            "counter",
            &|s| u(&s.route_lost_closes),
        );
        per_shard(
            &mut out,
            "stuck_write_drops_total",
            "Connections dropped without a close frame: aborted while their socket took no bytes for the close grace (a peer that stopped reading).",
            "counter",
            &|s| u(&s.stuck_write_drops),
        );
        self.render_errors(&mut out);
        self.render_store(&mut out, depths);
        out
    }

    fn render_errors(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP distrisocks_errors_total Error frames sent, by code.\n# TYPE distrisocks_errors_total counter");
        for (i, code) in ERROR_CODES.iter().enumerate() {
            let n: u64 = self.shards.iter().map(|s| s.errors[i].load(Relaxed)).sum();
            let name = serde_json::to_string(code).unwrap_or_default();
            let _ = writeln!(out, "distrisocks_errors_total{{code={name}}} {n}");
        }
    }

    fn render_store(&self, out: &mut String, d: &Depths) {
        let s = &self.store;
        let lines = [
            (
                "store_batches_total",
                "counter",
                "Store transactions committed or failed.",
                s.batches.load(Relaxed),
            ),
            (
                "store_commands_total",
                "counter",
                "Commands applied in store transactions.",
                s.commands.load(Relaxed),
            ),
            (
                "store_commit_micros_total",
                "counter",
                "Time spent committing, microseconds.",
                s.commit_micros.load(Relaxed),
            ),
            (
                "store_commit_micros_max",
                "gauge",
                "Slowest commit so far, microseconds.",
                s.commit_micros_max.load(Relaxed),
            ),
            (
                "store_failed_batches_total",
                "counter",
                "Store batches that failed after retries.",
                s.failed_batches.load(Relaxed),
            ),
            (
                "store_status_coalesced_total",
                "counter",
                "Status updates folded into another update of the same message in the same store batch.",
                s.coalesced.load(Relaxed),
            ),
            (
                "webhook_delivered_total",
                "counter",
                "Webhook events the receiver took (2xx).",
                self.webhooks.delivered.load(Relaxed),
            ),
            (
                "webhook_retries_total",
                "counter",
                "Webhook POSTs that failed and were retried.",
                self.webhooks.retried.load(Relaxed),
            ),
            (
                "webhook_dropped_total",
                "counter",
                "Webhook events dropped because the queue (--webhook-queue) was full.",
                self.webhooks.dropped.load(Relaxed),
            ),
            (
                "store_queue_depth",
                "gauge",
                "Commands waiting for the store thread.",
                d.store_queue as u64,
            ),
        ];
        for (name, kind, help, v) in lines {
            let _ = writeln!(out, "# HELP distrisocks_{name} {help}\n# TYPE distrisocks_{name} {kind}\ndistrisocks_{name} {v}");
        }
        let _ = writeln!(out, "# HELP distrisocks_inbox_depth Messages waiting in a shard inbox.\n# TYPE distrisocks_inbox_depth gauge");
        for (i, n) in d.inboxes.iter().enumerate() {
            let _ = writeln!(out, "distrisocks_inbox_depth{{shard=\"{i}\"}} {n}");
        }
    }
}

/// A warning that can repeat thousands of times a second (every delivery of an outage, every
/// accept while out of descriptors), written as one line per [`LOG_EVERY`] with the count.
#[derive(Default)]
pub struct LogEvery {
    unlogged: AtomicU64,
    /// When the last line was written, in ms since the Unix epoch (0: never).
    logged_at_ms: AtomicU64,
}

/// See [`LogEvery`].
pub const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl LogEvery {
    /// [`count`](Self::count) at the current time.
    pub fn count_now(&self) -> Option<u64> {
        self.count(crate::protocol::now_micros().max(0) as u64 / 1000)
    }

    /// Counts one occurrence; returns how many to report now (this one included), if a line
    /// is due.
    pub fn count(&self, now_ms: u64) -> Option<u64> {
        self.unlogged.fetch_add(1, Relaxed);
        let last = self.logged_at_ms.load(Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        let won = due
            && self
                .logged_at_ms
                .compare_exchange(last, now_ms.max(1), Relaxed, Relaxed)
                .is_ok();
        won.then(|| self.unlogged.swap(0, Relaxed).max(1))
    }
}

#[cfg(test)]
mod log_every_tests {
    use super::LogEvery;

    #[test]
    fn a_repeated_warning_is_logged_once_per_window_with_its_count() {
        let log = LogEvery::default();
        assert_eq!(
            log.count(1_000),
            Some(1),
            "the first occurrence is reported at once"
        );
        assert_eq!(log.count(1_001), None);
        assert_eq!(log.count(5_000), None);
        assert_eq!(log.count(11_000), Some(3), "two held back plus this one");
        assert_eq!(log.count(11_500), None);
    }
}
