//! The writer task of a connection (step 4's socket write): drains the outbox, batching
//! whatever is queued into one flush, and keeps the connection alive with pings.

use std::cell::{Cell, RefCell};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use futures::future::{select, Either};
use futures::SinkExt;
use glommio::Task;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

use super::outbox::{Out, Outbox};
use crate::config::DeliveryConfirm;
use crate::protocol::codes::close;
use crate::protocol::Status;
use crate::shard::Shard;

/// Most frames written before one flush.
const BATCH: usize = 64;

type Sink = async_tungstenite::WebSocketSender<glommio::net::TcpStream>;

/// Starts the writer. With `keepalive`, pings on quiet connections and closes dead ones.
pub fn spawn(
    shard: &Rc<Shard>,
    sink: Sink,
    outbox: &Rc<RefCell<Outbox>>,
    last_seen: &Rc<Cell<Instant>>,
    keepalive: bool,
) -> Task<()> {
    let w = Writer {
        shard: shard.clone(),
        sink,
        outbox: outbox.clone(),
        last_seen: last_seen.clone(),
        keepalive,
        ping_sent: None,
    };
    glommio::spawn_local(w.run())
}

struct Writer {
    shard: Rc<Shard>,
    sink: Sink,
    outbox: Rc<RefCell<Outbox>>,
    last_seen: Rc<Cell<Instant>>,
    keepalive: bool,
    /// When the outstanding ping was sent, if one is.
    ping_sent: Option<Instant>,
}

enum Step {
    Continue,
    Stop,
}

impl Writer {
    async fn run(mut self) {
        loop {
            // The two arms are boxed: their state (frames being fed, a status update in
            // flight) exists only while writing, so an idle connection's task stays small.
            let step = match self.next_event().await {
                Some(out) => Box::pin(self.write_batch(out)).await,
                None => Box::pin(self.keepalive_tick()).await,
            };
            if !matches!(step, Ok(Step::Continue)) {
                break;
            }
        }
        self.outbox.borrow_mut().finish();
        // A close reply tungstenite queued while reading (the peer closed first) must still go
        // out, even when our own last write failed on the closing connection.
        let _ = self.sink.flush().await;
    }

    /// The next outbox item, or `None` when the keepalive timer fired first.
    async fn next_event(&mut self) -> Option<Out> {
        let outbox = self.outbox.clone();
        let next = futures::future::poll_fn(move |cx| outbox.borrow_mut().poll_next(cx));
        if !self.keepalive {
            return Some(next.await);
        }
        let wait = self.next_tick().saturating_duration_since(Instant::now());
        match select(pin!(next), pin!(glommio::timer::sleep(wait))).await {
            Either::Left((out, _)) => Some(out),
            Either::Right(_) => None,
        }
    }

    fn next_tick(&self) -> Instant {
        let t = &self.shard.settings().tuning;
        match self.ping_sent {
            Some(sent) => sent + t.pong_timeout(),
            None => self.last_seen.get() + t.ping_interval(),
        }
    }

    async fn keepalive_tick(&mut self) -> Result<Step, tungstenite::Error> {
        let now = Instant::now();
        if let Some(sent) = self.ping_sent {
            if self.last_seen.get() >= sent {
                self.ping_sent = None; // Something arrived after the ping: alive.
            } else if now >= self.next_tick() {
                self.send_close(close::PING_TIMEOUT, "no pong").await;
                return Ok(Step::Stop);
            }
            return Ok(Step::Continue);
        }
        if now >= self.next_tick() {
            self.ping_sent = Some(now);
            self.sink.send(Message::Ping(Default::default())).await?;
        }
        Ok(Step::Continue)
    }

    async fn write_batch(&mut self, first: Out) -> Result<Step, tungstenite::Error> {
        let mut delivered = Vec::new();
        let mut next = Some(first);
        let mut count = 0;
        while let Some(out) = next.take() {
            match out {
                Out::Close(code, reason) => {
                    if code == close::SLOW_CONSUMER {
                        let m = self.shard.metrics();
                        m.slow_consumer_closes.fetch_add(1, Relaxed);
                    }
                    self.sink.flush().await?;
                    self.mark_delivered(delivered).await;
                    self.send_close(code, reason).await;
                    return Ok(Step::Stop);
                }
                Out::Text(t) => self.sink.feed(Message::Text(t)).await?,
                Out::Echo(m) => self.sink.feed(m).await?,
                Out::Message(env) => {
                    self.sink.feed(Message::Text(env.frame.clone())).await?;
                    delivered.extend(env.message_id.clone());
                }
            }
            count += 1;
            if count < BATCH {
                next = self.outbox.borrow_mut().try_next();
            }
        }
        self.sink.flush().await?;
        self.shard
            .metrics()
            .frames_out
            .fetch_add(count as u64, Relaxed);
        self.mark_delivered(delivered).await;
        Ok(Step::Continue)
    }

    /// In `write` mode a flushed message is DELIVERED (the seed's rule).
    async fn mark_delivered(&self, ids: Vec<String>) {
        if self.shard.settings().delivery != DeliveryConfirm::Write {
            return;
        }
        for id in ids {
            crate::flow::status::advance(&self.shard, &id, Status::Delivered).await;
        }
    }

    async fn send_close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        // The peer may be gone already; the socket is dropped right after either way.
        let _ = self.sink.send(Message::Close(Some(frame))).await;
    }
}

#[cfg(test)]
pub(super) fn future_size() -> usize {
    fn of<F: std::future::Future>(_: impl Fn(Writer) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    of(Writer::run) + std::mem::size_of::<Writer>()
}
