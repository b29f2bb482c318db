//! The pod's own WebSocket framing (`socket::frame`, `socket::wire`) on `/ws`, with a real
//! client: fragments, pings and closes as RFC 6455 has them, between messages of the
//! protocol. (`scripts/conformance.sh` runs Autobahn against `/echo`, on the same read loop.)

mod common;

use common::*;
use serde_json::json;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::Message;

/// Sends `text` as fragments of `piece` bytes, each flushed on its own (its own TCP write).
fn send_fragmented(c: &mut Client, text: &str, piece: usize) {
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(piece).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let op = if i == 0 { Data::Text } else { Data::Continue };
        let last = i + 1 == chunks.len();
        let frame = Frame::message(chunk.to_vec(), OpCode::Data(op), last);
        c.ws.send(Message::Frame(frame)).unwrap();
        c.ws.flush().unwrap();
    }
}

#[test]
fn a_send_in_fragments_over_several_writes_is_stored_and_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let (mut alice, mut bob) = pair(pod.local_addr(), pod.local_addr());
    let frame = json!({"payload": "in pieces ✓", "reciever_id": bob.user, "client_msg_id": "f1"});
    send_fragmented(&mut alice, &frame.to_string(), 7);
    let accepted = alice.recv_type("accepted");
    assert_eq!(accepted["client_msg_id"], "f1");
    let m = bob.recv_type("message");
    assert_eq!(
        (&m["id"], m["message"].as_str()),
        (&accepted["id"], Some("in pieces ✓"))
    );
    bob.ack(m["id"].as_str().unwrap());
    alice.recv_status_reaching(accepted["id"].as_str().unwrap(), "DELIVERED");
    bob.expect_silence(std::time::Duration::from_millis(300)); // No second copy.
    pod.shutdown();
}

#[test]
fn a_ping_is_answered_with_its_own_bytes_between_messages() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let (mut alice, mut bob) = pair(pod.local_addr(), pod.local_addr());
    let to = bob.user.clone();
    alice.send_msg(&to, "before the ping", Some("p0"));
    let ping = Message::Ping(b"are you there".to_vec().into());
    alice.ws.send(ping).unwrap();
    let pong = loop {
        match alice.ws.read().unwrap() {
            Message::Pong(p) => break p,
            Message::Text(_) => continue, // SENT of the first message may come first.
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are you there");
    // The first message's SENT may still be on its way: skip status frames.
    alice.send_keyed_any(&to, "after the ping", Some("p1"));
    assert_eq!(bob.recv_type("message")["message"], "before the ping");
    assert_eq!(bob.recv_type("message")["message"], "after the ping");
    pod.shutdown();
}

#[test]
fn a_client_close_is_answered_with_its_code_and_the_socket_ends() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let mut alice = Client::connect(pod.local_addr(), &user("alice"));
    let close = CloseFrame {
        code: CloseCode::from(4321),
        reason: "done".into(),
    };
    alice.ws.close(Some(close)).unwrap();
    let code = alice.expect_close();
    assert_eq!(code, 4321);
    // The close handshake is complete and the pod ends the TCP connection.
    assert!(matches!(
        alice.ws.read(),
        Err(tungstenite::Error::ConnectionClosed)
    ));
    pod.shutdown();
}

#[test]
fn fragments_adding_up_past_the_message_limit_close_with_1009() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| {
        c.tuning.max_message_bytes = 4096;
        c.tuning.max_payload_bytes = 2048;
    });
    let mut alice = Client::connect(pod.local_addr(), &user("alice"));
    send_fragmented(&mut alice, &"x".repeat(5000), 1000);
    assert_eq!(alice.expect_close(), 1009);
    pod.shutdown();
}
