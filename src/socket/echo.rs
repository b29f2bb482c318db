//! The conformance echo socket (`/echo`, only with `--echo`): every text or binary message
//! is sent back. It runs on the very accept, handshake, framing and writer code of `/ws`;
//! only its size limits differ (`--echo-max-message-bytes`), so Autobahn results speak for
//! the messaging socket too.

use std::cell::RefCell;
use std::net::IpAddr;
use std::pin::pin;
use std::rc::Rc;

use futures::future::{select, Either, FutureExt};
use glommio::net::TcpStream;

use super::wire::CLOSE_GRACE;
use super::wire::{next_data, Closing, Data, Wire};
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
    let Some(max_message) = shard.settings().echo_max_message_bytes else {
        return;
    };
    let wire = Wire::new(stream, rest, max_message);
    let outbox = Rc::new(RefCell::new(Outbox::new(ECHO_QUEUE)));
    let mut writing = pin!(super::writer::writer(shard, &wire, &outbox).run());
    let reading = pin!(echo_loop(shard, &wire, &outbox));
    let closing = match select(reading, writing.as_mut()).await {
        Either::Left((closing, _)) => closing,
        Either::Right(((), _)) => return, // The socket broke.
    };
    match closing {
        Closing::Gone => outbox.borrow_mut().close(1000, ""),
        Closing::Reply(code) => outbox.borrow_mut().close(code, ""),
        Closing::Broke(code, reason) => outbox.borrow_mut().close(code, reason),
    }
    let _ = glommio::timer::timeout(CLOSE_GRACE, writing.map(Ok)).await; // Timed out: drop it.
}

/// Echoes every message, in order, until the client closes or breaks the protocol.
async fn echo_loop(shard: &Shard, wire: &Wire, outbox: &RefCell<Outbox>) -> Closing {
    loop {
        let out = match next_data(wire, &shard.read_buf, outbox).await {
            Data::Text(text) => Out::Echo {
                binary: false,
                data: text.into_bytes(),
            },
            Data::Binary(data) => Out::Echo { binary: true, data },
            Data::Ended(closing) => return closing,
        };
        while outbox.borrow().len() + 1 >= ECHO_QUEUE && !outbox.borrow().is_finished() {
            glommio::timer::sleep(std::time::Duration::from_micros(200)).await;
        }
        if !outbox.borrow_mut().push(out) {
            return Closing::Gone;
        }
    }
}
