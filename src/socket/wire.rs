//! One upgraded connection's socket, read and written by the connection's one task: the
//! reader and the writer ([`super::writer`]) are two futures of that task and take turns on
//! the stream, each only inside a poll. Reads land in the shard's buffer and only an
//! incomplete frame is copied out (see [`super::frame`]).
//!
//! [`next_data`] is the one read loop of `/ws` and `/echo`: it answers pings, turns the
//! client's close and its protocol errors into the close to send, and hands on messages.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Poll};
use std::time::Instant;

use futures::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::frame::{Decoder, FrameError, Incoming};
use crate::protocol::codes::close;
use crate::shard::outbox::{Out, Outbox};

/// How long a closing connection may take to finish its close handshake (the reader waiting
/// for the client's close, the writer sending ours).
pub const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A connection's socket and the state of its read side.
pub struct Wire {
    stream: RefCell<TcpStream>,
    decoder: RefCell<Decoder>,
    max_message: usize,
}

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError {
    Frame(FrameError),
    Io(io::Error),
}

impl Wire {
    /// `rest`: bytes read past the upgrade's request head.
    pub fn new(stream: TcpStream, rest: Vec<u8>, max_message: usize) -> Self {
        Wire {
            stream: RefCell::new(stream),
            decoder: RefCell::new(Decoder::with_bytes(rest)),
            max_message,
        }
    }

    /// The next message or control frame, `Ok(None)` once the client closed the TCP
    /// connection. `shared` is the shard's read buffer, borrowed only inside a poll.
    pub async fn next(&self, shared: &RefCell<Box<[u8]>>) -> Result<Option<Incoming>, ReadError> {
        poll_fn(|cx| loop {
            let mut decoder = self.decoder.borrow_mut();
            if let Some(frame) = decoder.next(self.max_message).map_err(ReadError::Frame)? {
                return Poll::Ready(Ok(Some(frame)));
            }
            let mut buf = shared.borrow_mut();
            let mut stream = self.stream.borrow_mut();
            let n =
                ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf)).map_err(ReadError::Io)?;
            if n == 0 {
                return Poll::Ready(Ok(None));
            }
            decoder.feed(&buf[..n]);
        })
        .await
    }

    /// Writes all of `bytes`.
    pub async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut written = 0;
        poll_fn(|cx| {
            while written < bytes.len() {
                let mut stream = self.stream.borrow_mut();
                match ready!(Pin::new(&mut *stream).poll_write(cx, &bytes[written..]))? {
                    0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    n => written += n,
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}

/// What the client sent next, as far as the connection's owner cares.
pub enum Data {
    Text(String),
    Binary(Vec<u8>),
    Ended(Closing),
}

/// How reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The client is gone (end of stream, a broken socket): nothing to answer.
    Gone,
    /// The client closed: reply with this code ([`close::NO_STATUS`]: a close with none).
    Reply(u16),
    /// The client broke the protocol (or its owner's rules): close with this.
    Broke(u16, &'static str),
}

/// The next message, after answering pings on the way. A client's close is answered with
/// its own code (with none when it gave none), as RFC 6455 §5.5.1 asks.
pub async fn next_data(wire: &Wire, shared: &RefCell<Box<[u8]>>, outbox: &RefCell<Outbox>) -> Data {
    loop {
        let frame = match wire.next(shared).await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(ReadError::Io(_)) => return Data::Ended(Closing::Gone),
            Err(ReadError::Frame(e)) => {
                let (code, reason) = e.close();
                return Data::Ended(Closing::Broke(code, reason));
            }
        };
        outbox.borrow_mut().seen(Instant::now());
        match frame {
            Incoming::Text(text) => return Data::Text(text),
            Incoming::Binary(bytes) => return Data::Binary(bytes),
            Incoming::Ping(payload) => {
                outbox.borrow_mut().push(Out::Pong(payload));
            }
            Incoming::Pong => {}
            Incoming::Close(None) => return Data::Ended(Closing::Reply(close::NO_STATUS)),
            Incoming::Close(Some((code, _))) => return Data::Ended(Closing::Reply(code)),
        }
    }
}
