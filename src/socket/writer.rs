//! The writer of a connection (step 4's socket write): drains the outbox, batching whatever
//! is queued into one flush. Pings are queued in the outbox by the shard's keepalive sweep
//! ([`crate::shard::keepalive`]) and written like any other frame.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use futures::future::{select, Either, FutureExt};

use super::frame::{self, BINARY, PING, PONG, TEXT};
use super::wire::{Wire, CLOSE_GRACE};
use crate::config::DeliveryConfirm;
use crate::protocol::codes::close;
use crate::protocol::Status;
use crate::shard::outbox::{Out, Outbox};
use crate::shard::Shard;

/// Most frames written in one batch (one `write` when the socket takes it all).
const BATCH: usize = 64;

/// The writer of one connection, driven inside the connection's own task (see
/// [`super::session`] and [`super::echo`]).
pub fn writer<'a>(shard: &Rc<Shard>, wire: &'a Wire, outbox: &Rc<RefCell<Outbox>>) -> Writer<'a> {
    Writer {
        shard: shard.clone(),
        wire,
        outbox: outbox.clone(),
    }
}

pub struct Writer<'a> {
    shard: Rc<Shard>,
    wire: &'a Wire,
    outbox: Rc<RefCell<Outbox>>,
}

enum Step {
    Continue,
    Stop,
}

impl Writer<'_> {
    /// Writes until a close was sent or the connection broke.
    pub async fn run(self) {
        let outbox = self.outbox.clone();
        let stuck = loop {
            let out = futures::future::poll_fn(|cx| outbox.borrow_mut().poll_next(cx)).await;
            // Boxed: the batch's state (its bytes being written, a status update in flight,
            // the race against an abort and its grace timer) exists only while writing, so
            // an idle connection's task stays small.
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
        }
    }

    /// One batch, raced against an abort of the connection: a peer that stopped reading would
    /// hold the write forever, and the close frame behind it. After an abort the write gets a
    /// short grace, then the connection is given up (`Err` with the abort's close code) and
    /// dropped without a close frame.
    async fn write_or_give_up(
        &self,
        out: Out,
        outbox: &Rc<RefCell<Outbox>>,
    ) -> Result<io::Result<Step>, u16> {
        let write = std::pin::pin!(self.write_batch(out));
        let aborted = futures::future::poll_fn(|cx| outbox.borrow_mut().poll_aborted(cx));
        match select(write, aborted).await {
            Either::Left((step, _)) => Ok(step),
            Either::Right((code, write)) => glommio::timer::timeout(CLOSE_GRACE, write.map(Ok))
                .await
                .map_err(|_| code),
        }
    }

    /// Encodes up to [`BATCH`] queued frames (or `--write-buffer-bytes` of them) into one
    /// buffer and writes it; the buffer lives only as long as the batch.
    async fn write_batch(&self, first: Out) -> io::Result<Step> {
        let mut bytes = Vec::new();
        let mut delivered = Vec::new();
        let mut next = Some(first);
        let mut count = 0;
        let mut step = Step::Continue;
        let most = self.shard.settings().tuning.write_buffer_bytes;
        while let Some(out) = next.take() {
            match out {
                Out::Close(code, reason) => {
                    if code == close::SLOW_CONSUMER {
                        let m = self.shard.metrics();
                        m.slow_consumer_closes.fetch_add(1, Relaxed);
                    }
                    let code = (code != close::NO_STATUS).then_some((code, reason));
                    frame::encode_close(&mut bytes, code);
                    step = Step::Stop;
                }
                Out::Text(t) => frame::encode(&mut bytes, TEXT, t.as_bytes()),
                Out::Echo { binary, data } => {
                    frame::encode(&mut bytes, if binary { BINARY } else { TEXT }, &data)
                }
                Out::Ping => frame::encode(&mut bytes, PING, &[]),
                Out::Pong(payload) => frame::encode(&mut bytes, PONG, &payload),
                Out::Message(env) => {
                    frame::encode(&mut bytes, TEXT, env.frame.as_bytes());
                    if !env.carbon {
                        // A carbon moves no status; a group message moves its member's copy.
                        let member = env.group.then(|| env.user.clone());
                        delivered.extend(env.message_id.clone().map(|id| (id, member)));
                    }
                }
            }
            count += 1;
            if count < BATCH && bytes.len() < most && matches!(step, Step::Continue) {
                next = self.outbox.borrow_mut().try_next();
            }
        }
        self.wire.write_all(&bytes).await?;
        self.shard
            .metrics()
            .frames_out
            .fetch_add(count as u64, Relaxed);
        self.mark_delivered(delivered).await;
        Ok(step)
    }

    /// In `write` mode a flushed message is DELIVERED (the seed's rule).
    async fn mark_delivered(&self, ids: Vec<(String, Option<String>)>) {
        if self.shard.settings().delivery != DeliveryConfirm::Write {
            return;
        }
        for (id, member) in ids {
            let status = crate::flow::status::advance_for;
            status(&self.shard, &id, Status::Delivered, member).await;
        }
    }
}
