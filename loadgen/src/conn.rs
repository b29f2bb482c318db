//! One open connection, driven by one task: it writes what the executor queued for the
//! connection and reads frames into the executor's state, in the same poll. Sends never wait
//! on a socket (they append to the connection's write buffer), so the schedule stays
//! open-loop even when one peer stalls.
//!
//! The framing is [`super::wire`]'s; [`Link`] is the socket with its read buffer, used by the
//! handshake too (Engine.IO's open exchange) before the task takes it over.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

use super::connect::{io_kind, ConnectError};
use super::received::{Got, Received};
use super::wire::{self, Masks, WireError};
use super::worker::St;

/// How a connection ended, from the reader's point of view.
pub(crate) enum End {
    /// The peer sent a close frame with this code (`None`: without a code).
    Close(Option<u16>),
    /// The socket broke, or the peer broke the protocol: a kind to count by, and the text.
    Broken(String, String),
    /// The stream ended without a close frame.
    Eof,
}

/// Write buffers larger than this are given back once flushed (a burst to a stalled peer).
const KEEP_WRITE_BUFFER: usize = 64 * 1024;
/// Read-and-write rounds of one connection before it lets the executor's other tasks run.
const ROUNDS: usize = 16;

/// A socket and what was read from it but not parsed yet.
pub(crate) struct Link {
    stream: TcpStream,
    rx: Received,
}

impl Link {
    /// A socket right after the upgrade; `rest` are bytes read past the response head.
    pub fn new(stream: TcpStream, rest: Vec<u8>) -> Link {
        Link {
            stream,
            rx: Received::new(rest),
        }
    }

    /// The next complete frame already read, without I/O; `None` when it needs more.
    pub fn next_frame(&mut self) -> Result<Option<Got<'_>>, WireError> {
        self.rx.next_frame()
    }

    /// Reads once into the buffer. `Ok(0)`: the peer closed the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let spare = self.rx.spare();
        let n = std::task::ready!(Pin::new(&mut self.stream).poll_read(cx, spare))?;
        self.rx.filled(n);
        Poll::Ready(Ok(n))
    }

    async fn fill(&mut self) -> Result<(), ConnectError> {
        match futures::future::poll_fn(|cx| self.poll_fill(cx)).await {
            Ok(0) => Err(ConnectError::new("eof", "closed during open")),
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The next text message (pings answered on the way); for the Engine.IO open exchange.
    pub async fn next_text(&mut self) -> Result<String, ConnectError> {
        let protocol = |e: WireError| ConnectError::new("protocol", e.to_string());
        loop {
            let ping = match self.next_frame().map_err(protocol)? {
                Some(Got::Text(t)) => return Ok(t.to_owned()),
                Some(Got::Close(code)) => {
                    let text = format!("closed during open: {code:?}");
                    return Err(ConnectError::new("closed", text));
                }
                Some(Got::Ping(p)) => p.to_vec(),
                Some(Got::Nothing) => continue,
                None => {
                    self.fill().await?;
                    continue;
                }
            };
            self.send_now(wire::PONG, &ping).await?;
        }
    }

    /// Writes one frame and waits until it is written (the handshake's few frames).
    pub async fn send_now(&mut self, opcode: u8, payload: &[u8]) -> Result<(), ConnectError> {
        let mut out = Vec::new();
        wire::encode(
            &mut out,
            opcode,
            payload,
            Masks::new(crate::now_us()).next(),
        );
        Ok(self.stream.write_all(&out).await?)
    }
}

/// Frames waiting for one connection's socket, already encoded.
pub(crate) struct OutQ {
    buf: Vec<u8>,
    written: usize,
    /// Frames in `buf` since it was last empty.
    frames: usize,
    masks: Masks,
    waker: Option<Waker>,
    /// No more frames will come: the task writes what is queued, then only reads.
    closing: bool,
    /// The connection is gone; sends to it are skipped.
    dead: bool,
    /// Counted out of the executor's open writers (closed and flushed, or dead).
    writer_done: bool,
}

pub(crate) type Out = Rc<RefCell<OutQ>>;

impl OutQ {
    fn new(seed: u64) -> OutQ {
        OutQ {
            buf: Vec::new(),
            written: 0,
            frames: 0,
            masks: Masks::new(seed),
            waker: None,
            closing: false,
            dead: false,
            writer_done: false,
        }
    }

    pub fn push(&mut self, text: &str) {
        if self.dead || self.closing {
            return;
        }
        self.frame(wire::TEXT, text.as_bytes());
    }

    fn frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = self.masks.next();
        wire::encode(&mut self.buf, opcode, payload, mask);
        self.frames += 1;
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Queues a close frame as the last frame.
    pub fn close(&mut self) {
        if !self.closing && !self.dead {
            self.frame(wire::CLOSE, &[]);
        }
        self.closing = true;
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Frames queued and not written yet.
    pub fn backlog(&self) -> usize {
        self.frames
    }

    pub fn alive(&self) -> bool {
        !self.dead && !self.closing
    }

    fn mark_dead(&mut self) {
        self.dead = true;
        self.buf = Vec::new();
        (self.written, self.frames) = (0, 0);
    }

    /// Writes what is queued; `Ready(true)` when something was written.
    fn poll_flush(&mut self, link: &mut Link, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut wrote = false;
        while self.written < self.buf.len() {
            let stream = Pin::new(&mut link.stream);
            match stream.poll_write(cx, &self.buf[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => (self.written, wrote) = (self.written + n, true),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if wrote => return Poll::Ready(Ok(true)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.written > 0 {
            self.buf.clear();
            if self.buf.capacity() > KEEP_WRITE_BUFFER {
                self.buf = Vec::new();
            }
            (self.written, self.frames) = (0, 0);
        }
        Poll::Ready(Ok(wrote))
    }
}

/// Registers connection `idx` of the executor and starts its task.
pub(crate) fn start(st: &St, idx: usize, link: Link) {
    let out: Out = Rc::new(RefCell::new(OutQ::new(
        crate::now_us() ^ (idx as u64) << 40,
    )));
    let task = glommio::spawn_local(run(st.clone(), idx, out.clone(), link));
    let mut w = st.borrow_mut();
    w.conns[idx] = Some(out);
    w.open_writers += 1;
    w.tasks.push(task);
}

async fn run(st: St, idx: usize, out: Out, mut link: Link) {
    // Frames that came with the upgrade's answer (or after Engine.IO's open) are in the
    // buffer already; `drive` parses only after a read, which may never come.
    let end = match dispatch(&st, idx, &out, &mut link) {
        Some(end) => end,
        None => futures::future::poll_fn(|cx| drive(&st, idx, &out, &mut link, cx)).await,
    };
    out.borrow_mut().mark_dead();
    writer_done(&st, &out);
    st.borrow_mut().on_end(end);
}

/// Counts the connection out of the executor's open writers, once.
fn writer_done(st: &St, out: &Out) {
    let mut q = out.borrow_mut();
    if !q.writer_done {
        q.writer_done = true;
        st.borrow_mut().open_writers -= 1;
    }
}

/// One poll of the connection: write, read and hand on frames until neither makes progress.
fn drive(st: &St, idx: usize, out: &Out, link: &mut Link, cx: &mut Context<'_>) -> Poll<End> {
    for _ in 0..ROUNDS {
        let wrote = match out.borrow_mut().poll_flush(link, cx) {
            Poll::Ready(Ok(wrote)) => wrote,
            Poll::Ready(Err(e)) => return Poll::Ready(End::Broken(io_kind(&e), e.to_string())),
            Poll::Pending => false,
        };
        let flushed_close = {
            let q = out.borrow();
            q.closing && q.buf.is_empty() && !q.writer_done
        };
        if flushed_close {
            writer_done(st, out);
        }
        let read = match link.poll_fill(cx) {
            Poll::Ready(Ok(0)) => return Poll::Ready(End::Eof),
            Poll::Ready(Ok(_)) => true,
            Poll::Ready(Err(e)) => return Poll::Ready(End::Broken(io_kind(&e), e.to_string())),
            Poll::Pending => false,
        };
        if read {
            if let Some(end) = dispatch(st, idx, out, link) {
                let _ = out.borrow_mut().poll_flush(link, cx); // The close reply, best effort.
                return Poll::Ready(end);
            }
        }
        if !wrote && !read {
            let mut q = out.borrow_mut();
            if q.buf.is_empty() {
                q.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// Hands every complete frame in the buffer on; `Some` when the connection ends.
fn dispatch(st: &St, idx: usize, out: &Out, link: &mut Link) -> Option<End> {
    loop {
        match link.next_frame() {
            Ok(None) => return None,
            Ok(Some(Got::Text(t))) => st.borrow_mut().on_text(idx, t),
            Ok(Some(Got::Ping(p))) => out.borrow_mut().frame(wire::PONG, p),
            Ok(Some(Got::Close(code))) => {
                let mut q = out.borrow_mut();
                if !q.closing {
                    q.frame(wire::CLOSE, &wire::close_payload(code));
                    q.closing = true;
                }
                return Some(End::Close(code));
            }
            Ok(Some(Got::Nothing)) => {}
            Err(e) => return Some(End::Broken("protocol".to_owned(), e.to_string())),
        }
    }
}
