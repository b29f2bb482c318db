//! One open connection: a reader task that feeds every frame into the executor's state (which
//! answers pings by reading, as tungstenite replies to pings while reading) and a writer task
//! that drains a small per-connection queue. Sends therefore never wait on a socket: the
//! schedule stays open-loop even when one peer stalls.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use futures::{SinkExt, StreamExt};
use glommio::net::TcpStream;
use tungstenite::error::ProtocolError;
use tungstenite::Message;

use super::connect::Ws;
use super::worker::St;

/// How a connection ended, from the reader's point of view.
pub(crate) enum End {
    /// The peer sent a close frame with this code (`None`: without a code).
    Close(Option<u16>),
    /// The socket broke: error kind and text.
    Broken(String, String),
    /// The stream ended without a close frame.
    Eof,
}

/// Frames waiting for one connection's writer.
#[derive(Default)]
pub(crate) struct OutQ {
    items: VecDeque<Message>,
    waker: Option<Waker>,
    /// No more frames will come: the writer sends what is queued and stops.
    closing: bool,
    /// The connection is gone; sends to it are skipped.
    dead: bool,
}

pub(crate) type Out = Rc<RefCell<OutQ>>;

impl OutQ {
    pub fn push(&mut self, m: Message) {
        if self.dead || self.closing {
            return;
        }
        self.items.push_back(m);
        self.wake();
    }

    /// Queues a close frame as the last frame.
    pub fn close(&mut self) {
        if !self.closing && !self.dead {
            self.items.push_back(Message::Close(None));
        }
        self.closing = true;
        self.wake();
    }

    pub fn backlog(&self) -> usize {
        self.items.len()
    }

    pub fn alive(&self) -> bool {
        !self.dead && !self.closing
    }

    fn mark_dead(&mut self) {
        self.dead = true;
        self.items.clear();
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Everything queued, `None` once closed and empty (or dead).
    fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Option<VecDeque<Message>>> {
        if self.dead {
            return Poll::Ready(None);
        }
        if !self.items.is_empty() {
            return Poll::Ready(Some(std::mem::take(&mut self.items)));
        }
        if self.closing {
            return Poll::Ready(None);
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Registers connection `idx` of the executor and starts its two tasks.
pub(crate) fn start(st: &St, idx: usize, ws: Ws) {
    let (tx, rx) = ws.split();
    let out: Out = Rc::default();
    let reader = glommio::spawn_local(read_loop(st.clone(), idx, out.clone(), rx));
    let writer = glommio::spawn_local(write_loop(st.clone(), out.clone(), tx));
    let mut w = st.borrow_mut();
    w.conns[idx] = Some(out);
    w.open_writers += 1;
    w.tasks.push(reader);
    w.tasks.push(writer);
}

async fn read_loop(st: St, idx: usize, out: Out, mut rx: WebSocketReceiver<TcpStream>) {
    let end = loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => st.borrow_mut().on_text(idx, t.as_str()),
            Some(Ok(Message::Close(f))) => break End::Close(f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {} // Pings are answered by tungstenite itself.
            Some(Err(e)) => break broken(e),
            None => break End::Eof,
        }
    };
    out.borrow_mut().mark_dead();
    st.borrow_mut().on_end(end);
}

fn broken(e: tungstenite::Error) -> End {
    let kind = match &e {
        tungstenite::Error::Io(io) => super::connect::io_kind(io),
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            "reset_without_close".to_owned()
        }
        tungstenite::Error::Protocol(_) => "protocol".to_owned(),
        _ => "ws_error".to_owned(),
    };
    End::Broken(kind, e.to_string())
}

/// Writes queued frames in batches: one flush per batch, like the gateway's own writer.
async fn write_loop(st: St, out: Out, mut tx: WebSocketSender<TcpStream>) {
    loop {
        let next = futures::future::poll_fn(|cx| out.borrow_mut().poll_take(cx)).await;
        let Some(batch) = next else { break };
        if write_batch(&mut tx, batch).await.is_err() {
            out.borrow_mut().mark_dead();
            break;
        }
    }
    st.borrow_mut().open_writers -= 1;
}

async fn write_batch(
    tx: &mut WebSocketSender<TcpStream>,
    batch: VecDeque<Message>,
) -> Result<(), tungstenite::Error> {
    for m in batch {
        tx.feed(m).await?;
    }
    tx.flush().await
}
