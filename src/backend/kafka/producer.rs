//! The pod's one Kafka producer (idempotent by default, `acks=all`, `linger.ms=1`) and the per-shard
//! [`KafkaBus`] handles. Delivery reports, served by the producer's poll thread, resolve each
//! publish: SENT is recorded only for records the broker acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::HEADER_SEQ;
use super::{topic_of, HEADER_BORN, HEADER_CARBON, HEADER_EXCEPT, HEADER_GROUP, HEADER_ID};
use crate::backend::bus::{Bus, BusError, Envelope};
use crate::backend::Location;

type Reply = Option<oneshot::Sender<Result<(), BusError>>>;

/// Routes delivery reports back to the publishing task.
#[derive(Default)]
pub struct Reports {
    /// Failed deliveries: an outage fails every record in flight, and one line per record
    /// would bury everything else.
    failures: crate::metrics::LogEvery,
    /// Whether the latest delivery report was a failure (`/readyz`).
    failing: Arc<AtomicBool>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Reply>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let outcome = result
            .as_ref()
            .map(|_| ())
            .map_err(|(e, _)| BusError::Produce(e.to_string()));
        self.failing.store(outcome.is_err(), Ordering::Relaxed);
        if let Err(e) = &outcome {
            if let Some(n) = self.failures.count_now() {
                tracing::warn!(error = %e, failed = n, "kafka deliveries failed (latest error shown)");
            }
        }
        if let Some(reply) = *opaque {
            let _ = reply.send(outcome); // The publisher may have stopped waiting.
        }
    }
}

/// How the pod's producer sends.
#[derive(Debug, Clone, Copy)]
pub struct ProducerSettings {
    /// A record the broker has not acknowledged by then fails, and its message stays NONE
    /// for the redrive (which waits longer than this before claiming it).
    pub timeout: Duration,
    pub linger: Duration,
    /// See `--kafka-idempotence`.
    pub idempotence: bool,
    /// See `--kafka-max-in-flight`; 1 whatever it says without idempotence.
    pub max_in_flight: u8,
}

/// Requests in flight per broker: without sequence numbers a retried request behind a later
/// one would reorder them, so non-idempotent producers keep one.
fn in_flight(s: &ProducerSettings) -> u8 {
    match s.idempotence {
        true => s.max_in_flight.clamp(1, 5),
        false => 1,
    }
}

/// The producer and its poll thread.
pub struct KafkaProducer {
    inner: Arc<BaseProducer<Reports>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KafkaProducer {
    /// Starts the producer; `failing` follows its delivery reports.
    pub fn start(
        brokers: &str,
        s: ProducerSettings,
        failing: Arc<AtomicBool>,
    ) -> Result<KafkaProducer, String> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", s.idempotence.to_string())
            .set("acks", "all")
            // librdkafka's default (5 ms) adds 5 ms to every message; the flag's default is 1.
            .set("linger.ms", s.linger.as_millis().to_string())
            // Small produce requests must not wait for Nagle + delayed ACK (~40 ms on Linux).
            .set("socket.nagle.disable", "true")
            .set("message.timeout.ms", s.timeout.as_millis().to_string())
            .set(
                "max.in.flight.requests.per.connection",
                in_flight(&s).to_string(),
            );
        let inner: BaseProducer<Reports> = config
            .create_with_context(Reports {
                failures: Default::default(),
                failing,
            })
            .map_err(|e| format!("kafka producer: {e}"))?;
        let inner = Arc::new(inner);
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (inner.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("kafka-producer".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    p.poll(Duration::from_millis(100));
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(KafkaProducer {
            inner,
            stop,
            thread: Some(thread),
        })
    }

    /// A bus handle for one shard.
    pub fn bus(&self, prefix: &str) -> KafkaBus {
        KafkaBus {
            producer: self.inner.clone(),
            prefix: prefix.into(),
            latency: None,
        }
    }

    /// Flushes what is queued (bounded) and stops the poll thread.
    pub fn stop(mut self) {
        if let Err(e) = self.inner.flush(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "kafka flush at shutdown incomplete");
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One shard's producer handle.
#[derive(Clone)]
pub struct KafkaBus {
    producer: Arc<BaseProducer<Reports>>,
    prefix: String,
    /// The shard's produce histogram (`metrics::Latency::produce_of`), once it has one.
    latency: Option<prometheus_client::metrics::histogram::Histogram>,
}

impl KafkaBus {
    /// This handle, observing each record's time to acknowledgement in `histogram`.
    pub fn timed(mut self, histogram: prometheus_client::metrics::histogram::Histogram) -> Self {
        self.latency = Some(histogram);
        self
    }

    /// Queues a record for a blocking caller (the status relay thread), waiting while the
    /// producer queue is full; the receiver resolves with the broker's delivery report.
    pub fn send_reported(
        &self,
        topic: &str,
        key: &str,
        value: &str,
    ) -> Result<oneshot::Receiver<Result<(), BusError>>, BusError> {
        let (tx, rx) = oneshot::channel();
        let mut opaque = Box::new(Some(tx));
        loop {
            let record = BaseRecord::with_opaque_to(topic, opaque)
                .key(key)
                .payload(value);
            match self.producer.send(record) {
                Ok(()) => return Ok(rx),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    opaque = back.delivery_opaque;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(BusError::Produce(e.to_string())),
            }
        }
    }
}

impl Bus for KafkaBus {
    fn publish(
        &self,
        to: Location,
        env: Arc<Envelope>,
    ) -> LocalBoxFuture<'_, Result<(), BusError>> {
        async move {
            let topic = topic_of(&self.prefix, &to.pod);
            let started = std::time::Instant::now();
            let (tx, rx) = oneshot::channel();
            let mut opaque = Box::new(Some(tx));
            loop {
                let record = record(&topic, to.shard, &env, opaque);
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        opaque = back.delivery_opaque;
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => return Err(BusError::Produce(e.to_string())),
                }
            }
            let acked = rx.await;
            if let Some(h) = &self.latency {
                h.observe(started.elapsed().as_secs_f64());
            }
            acked.unwrap_or_else(|_| Err(BusError::Produce("producer stopped".into())))
        }
        .boxed_local()
    }
}

fn record<'a>(
    topic: &'a str,
    shard: u16,
    env: &'a Envelope,
    opaque: Box<Reply>,
) -> BaseRecord<'a, str, str, Box<Reply>> {
    let mut headers = OwnedHeaders::new();
    if let Some(id) = &env.message_id {
        let seq = env.seq.to_string();
        headers = headers
            .insert(Header {
                key: HEADER_ID,
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: HEADER_SEQ,
                value: Some(seq.as_str()),
            });
    }
    if env.born > 0 {
        headers = headers.insert(Header {
            key: HEADER_BORN,
            value: Some(env.born.to_string().as_str()),
        });
    }
    if env.carbon {
        headers = headers.insert(Header {
            key: HEADER_CARBON,
            value: Some("1"),
        });
    }
    if env.group {
        headers = headers.insert(Header {
            key: HEADER_GROUP,
            value: Some("1"),
        });
    }
    if let Some(except) = &env.except {
        headers = headers.insert(Header {
            key: HEADER_EXCEPT,
            value: Some(except.to_header().as_str()),
        });
    }
    BaseRecord::with_opaque_to(topic, opaque)
        .partition(i32::from(shard))
        .key(env.user.as_str())
        .payload(env.frame.as_str())
        .headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(idempotence: bool, max_in_flight: u8) -> ProducerSettings {
        ProducerSettings {
            timeout: Duration::from_secs(5),
            linger: Duration::from_millis(1),
            idempotence,
            max_in_flight,
        }
    }

    #[test]
    fn only_an_idempotent_producer_pipelines_requests() {
        assert_eq!(in_flight(&settings(true, 5)), 5);
        assert_eq!(in_flight(&settings(true, 1)), 1);
        assert_eq!(in_flight(&settings(false, 5)), 1);
        assert_eq!(in_flight(&settings(true, 9)), 5);
    }
}
