//! The conformance echo socket (`/echo`, only with `--echo`): every text or binary message
//! is sent back. It runs on the very accept, handshake, framing and writer code of `/ws`;
//! only its size limits differ (`--echo-max-message-bytes`), so Autobahn results speak for
//! the messaging socket too.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use futures::{FutureExt, StreamExt};
use glommio::net::TcpStream;
use tungstenite::protocol::Role;
use tungstenite::Message;

use super::session::{close_for, CLOSE_GRACE};
use crate::shard::outbox::{Out, Outbox};
use crate::shard::Shard;

/// Frames queued for echo before the reader waits for the writer.
const ECHO_QUEUE: usize = 64;

/// Serves one echo connection.
pub async fn run(shard: Rc<Shard>, stream: TcpStream, rest: Vec<u8>, ip: Option<IpAddr>) {
    serve_echo(&shard, stream, rest).await;
    if let Some(ip) = ip {
        shard.pod.sockets.release_ip(ip);
    }
    shard.pod.sockets.closed();
}

async fn serve_echo(shard: &Rc<Shard>, stream: TcpStream, rest: Vec<u8>) {
    let Some(config) = shard.settings().echo_ws else {
        return;
    };
    let ws = WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config)).await;
    let (sink, mut source) = ws.split();
    let outbox = Rc::new(RefCell::new(Outbox::new(ECHO_QUEUE)));
    let writer = super::writer::spawn(shard, sink, &outbox);
    while let Some(item) = source.next().await {
        match item {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                while outbox.borrow().len() + 1 >= ECHO_QUEUE && !outbox.borrow().is_finished() {
                    glommio::timer::sleep(Duration::from_micros(200)).await;
                }
                if !outbox.borrow_mut().push(Out::Echo(m)) {
                    break;
                }
            }
            // Keep reading: tungstenite queued its close reply when it read the close, and
            // the next read flushes it and ends the stream. Breaking here left the reply
            // to the writer, which drops it if it was mid-batch (its next write fails with
            // SendAfterClosing before any flush), so the handshake never completed.
            Ok(Message::Close(_)) => continue,
            Ok(_) => {}
            Err(e) => {
                if let Some((code, reason)) = close_for(&e) {
                    outbox.borrow_mut().close(code, reason);
                }
                break;
            }
        }
    }
    outbox.borrow_mut().close(1000, "");
    let _ = glommio::timer::timeout(CLOSE_GRACE, writer.map(Ok)).await; // Timed out: drop it.
}
