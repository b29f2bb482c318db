//! The writer of a connection (step 4's socket write): drains the outbox, batching whatever
//! is queued into one flush. Pings are queued in the outbox by the shard's keepalive sweep
//! ([`crate::shard::keepalive`]) and written like any other frame.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use futures::future::{select, Either, FutureExt};
use futures::SinkExt;
use glommio::Task;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

use crate::config::DeliveryConfirm;
use crate::protocol::codes::close;
use crate::protocol::Status;
use crate::shard::outbox::{Out, Outbox};
use crate::shard::Shard;
use crate::socket::session::CLOSE_GRACE;

/// Most frames written before one flush.
const BATCH: usize = 64;

type Sink = async_tungstenite::WebSocketSender<glommio::net::TcpStream>;

/// The writer of one connection, driven inside the connection's own task (see
/// [`super::session`]); [`spawn`] runs it as a task of its own for the echo socket.
pub fn writer(shard: &Rc<Shard>, sink: Sink, outbox: &Rc<RefCell<Outbox>>) -> Writer {
    Writer {
        shard: shard.clone(),
        sink,
        outbox: outbox.clone(),
    }
}

/// Starts the writer as its own task.
pub fn spawn(shard: &Rc<Shard>, sink: Sink, outbox: &Rc<RefCell<Outbox>>) -> Task<()> {
    glommio::spawn_local(writer(shard, sink, outbox).run())
}

pub struct Writer {
    shard: Rc<Shard>,
    sink: Sink,
    outbox: Rc<RefCell<Outbox>>,
}

enum Step {
    Continue,
    Stop,
}

impl Writer {
    /// Writes until a close was sent or the connection broke.
    pub async fn run(mut self) {
        let outbox = self.outbox.clone();
        let stuck = loop {
            let out = futures::future::poll_fn(|cx| outbox.borrow_mut().poll_next(cx)).await;
            // Boxed: the batch's state (frames being fed, a status update in flight, the race
            // against an abort and its grace timer) exists only while writing, so an idle
            // connection's task stays small.
            match Box::pin(self.write_or_give_up(out, &outbox)).await {
                Ok(Ok(Step::Continue)) => {}
                Ok(_) => break None,
                Err(code) => break Some(code),
            }
        };
        self.outbox.borrow_mut().finish();
        if let Some(code) = stuck {
            let m = self.shard.metrics();
            m.stuck_write_drops.fetch_add(1, Relaxed);
            if code == close::SLOW_CONSUMER {
                m.slow_consumer_closes.fetch_add(1, Relaxed);
            }
            return; // The socket takes nothing: no flush could end.
        }
        // A close reply tungstenite queued while reading (the peer closed first) must still go
        // out, even when our own last write failed on the closing connection.
        let _ = self.sink.flush().await;
    }

    /// One batch, raced against an abort of the connection: a peer that stopped reading would
    /// hold the write forever, and the close frame behind it. After an abort the write gets a
    /// short grace, then the connection is given up (`Err` with the abort's close code) and
    /// dropped without a close frame.
    async fn write_or_give_up(
        &mut self,
        out: Out,
        outbox: &Rc<RefCell<Outbox>>,
    ) -> Result<Result<Step, tungstenite::Error>, u16> {
        let write = std::pin::pin!(self.write_batch(out));
        let aborted = futures::future::poll_fn(|cx| outbox.borrow_mut().poll_aborted(cx));
        match select(write, aborted).await {
            Either::Left((step, _)) => Ok(step),
            Either::Right((code, write)) => glommio::timer::timeout(CLOSE_GRACE, write.map(Ok))
                .await
                .map_err(|_| code),
        }
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
                Out::Ping => self.sink.feed(Message::Ping(Default::default())).await?,
                Out::Message(env) => {
                    self.sink.feed(Message::Text(env.frame.clone())).await?;
                    if !env.carbon {
                        delivered.extend(env.message_id.clone()); // A carbon moves no status.
                    }
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
