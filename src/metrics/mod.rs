//! Counters and latency histograms for `GET /metrics` (Prometheus text format).
//!
//! Each shard writes only its own cache-line-aligned slot with relaxed atomics, so counting
//! shares nothing on the hot path; a scrape reads the slots. Histograms ([`latency`]) are
//! prometheus-client's, one per shard where a shard observes, so no two threads share one on
//! the message path. [`render`] encodes everything through prometheus-client's text encoder.

mod latency;
mod render;

pub use latency::Latency;

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
    pub route_cache_hits: AtomicU64,
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
    pub latency: Latency,
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
            latency: Latency::new(shards),
        }
    }

    /// The Prometheus text exposition (format 0.0.4), encoded by prometheus-client.
    pub fn render(self: &Arc<Self>, depths: Depths) -> String {
        render::render(self, depths)
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
