//! Webhooks to the application's backend (`--webhook-url`): one thread per pod POSTs each
//! event as JSON, signed with HMAC-SHA256 (`--webhook-secret`), in the order the pod produced
//! them.
//!
//! Never on the message path: shards `try_send` into a bounded queue (`--webhook-queue`)
//! and go on; an event that finds the queue full is dropped and counted
//! (`distrisocks_webhook_dropped_total`). A failed POST (no answer, or anything but 2xx) is
//! retried with doubling pauses from 100 ms up to 30 s, the same event until it is taken:
//! at least once, in order, for as long as the pod lives (the queue is in memory; a pod that
//! dies loses what it had not delivered).
//!
//! Each request carries `X-Distrisocks-Timestamp` (seconds since the epoch) and
//! `X-Distrisocks-Signature: sha256=<hex HMAC of "<timestamp>.<body>">`, so a receiver can
//! check both the sender and the freshness; `X-Distrisocks-Event-Id` is unique per event and
//! the same on every retry, for the receiver's deduplication.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::backend::stoppable::StoppableThread;
use crate::metrics::WebhookCounters;

/// One event for the application. The JSON body is `{"type": …, "id": …, …fields}`.
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    pub kind: &'static str,
    pub fields: serde_json::Value,
}

/// Where and how events are sent.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Vec<u8>,
    pub queue: usize,
    pub timeout: Duration,
}

/// The shards' side: a non-blocking hand-off and the counters.
#[derive(Clone)]
pub struct Webhooks {
    tx: crossbeam_channel::Sender<WebhookEvent>,
    pub counters: Arc<WebhookCounters>,
}

impl Webhooks {
    /// Events the queue can take now without dropping any.
    pub fn room(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX) - self.tx.len()
    }

    /// Queues `event`, or drops and counts it when the queue is full (never blocks).
    pub fn emit(&self, event: WebhookEvent) {
        if self.tx.try_send(event).is_err() {
            self.counters.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// The sending thread; [`stop`](Self::stop) ends it (what is still queued is lost).
pub struct WebhookThread(StoppableThread);

impl WebhookThread {
    pub fn start(
        config: WebhookConfig,
        counters: Arc<WebhookCounters>,
    ) -> Result<(Webhooks, WebhookThread), String> {
        let (tx, rx) = crossbeam_channel::bounded(config.queue.max(1));
        let mut sender = Sender::new(config, counters.clone());
        let thread = StoppableThread::spawn("webhooks", move |stop| sender.run(rx, stop))?;
        Ok((Webhooks { tx, counters }, WebhookThread(thread)))
    }

    pub fn stop(self) {
        self.0.stop()
    }
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(30);

struct Sender {
    config: WebhookConfig,
    agent: ureq::Agent,
    counters: Arc<WebhookCounters>,
}

impl Sender {
    fn new(config: WebhookConfig, counters: Arc<WebhookCounters>) -> Sender {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Sender {
            config,
            agent,
            counters,
        }
    }

    fn run(&mut self, rx: crossbeam_channel::Receiver<WebhookEvent>, stop: &AtomicBool) {
        while !stop.load(Relaxed) {
            let Ok(event) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            let body = body_of(&event);
            let mut pause = FIRST_RETRY;
            while !stop.load(Relaxed) {
                match self.post(&body) {
                    Ok(()) => {
                        self.counters.delivered.fetch_add(1, Relaxed);
                        break;
                    }
                    Err(e) => {
                        self.counters.retried.fetch_add(1, Relaxed);
                        tracing::debug!(error = %e, "webhook failed; retrying");
                        sleep_unless_stopped(pause, stop);
                        pause = (pause * 2).min(MAX_RETRY);
                    }
                }
            }
        }
    }

    fn post(&self, body: &Body) -> Result<(), String> {
        let ts = crate::protocol::now_micros() / 1_000_000;
        let signature = sign(&self.config.secret, ts, &body.json);
        let response = self
            .agent
            .post(&self.config.url)
            .header("Content-Type", "application/json")
            .header("X-Distrisocks-Event-Id", &body.id)
            .header("X-Distrisocks-Timestamp", ts.to_string())
            .header("X-Distrisocks-Signature", format!("sha256={signature}"))
            .send(body.json.as_str())
            .map_err(|e| e.to_string())?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            code => Err(format!("answered {code}")),
        }
    }
}

/// The pause between retries, cut short at shutdown.
fn sleep_unless_stopped(pause: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(50);
    let mut left = pause;
    while !left.is_zero() && !stop.load(Relaxed) {
        let now = left.min(step);
        std::thread::sleep(now);
        left -= now;
    }
}

struct Body {
    id: String,
    json: String,
}

fn body_of(event: &WebhookEvent) -> Body {
    let id = uuid::Uuid::now_v7().to_string();
    let mut json = serde_json::json!({"type": event.kind, "id": id});
    if let (Some(obj), Some(fields)) = (json.as_object_mut(), event.fields.as_object()) {
        obj.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Body {
        id,
        json: json.to_string(),
    }
}

/// Hex HMAC-SHA256 of `"<ts>.<body>"` under `secret`: what `X-Distrisocks-Signature` carries.
pub fn sign(secret: &[u8], ts: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_carries_its_type_id_and_fields_and_the_signature_covers_the_timestamp() {
        let e = WebhookEvent {
            kind: "user.connected",
            fields: serde_json::json!({"user_id": "alice"}),
        };
        let b = body_of(&e);
        let v: serde_json::Value = serde_json::from_str(&b.json).unwrap();
        assert_eq!(v["type"], "user.connected");
        assert_eq!(v["user_id"], "alice");
        assert_eq!(v["id"], b.id.as_str());
        let s = sign(b"k", 1_800_000_000, &b.json);
        assert_eq!(s.len(), 64);
        assert_ne!(s, sign(b"k", 1_800_000_001, &b.json));
        assert_ne!(s, sign(b"other", 1_800_000_000, &b.json));
        // Computed independently: python3 -c "import hmac,hashlib; print(hmac.new(b'k',
        // b'1800000000.{}', hashlib.sha256).hexdigest())"
        assert_eq!(
            sign(b"k", 1_800_000_000, "{}"),
            "cdd93e246b17200236861b3061e5be1099fa09298de6cebf58e528db933f5c62"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let hooks = Webhooks {
            tx,
            counters: Arc::default(),
        };
        let e = || WebhookEvent {
            kind: "user.connected",
            fields: serde_json::json!({}),
        };
        hooks.emit(e());
        hooks.emit(e());
        hooks.emit(e());
        assert_eq!(hooks.counters.dropped.load(Relaxed), 2);
    }
}
