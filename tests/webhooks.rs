//! Webhooks to a real local HTTP receiver: signed, in order, and retried until a receiver
//! that was down for a while (first not listening at all, then answering 503) takes them.

mod common;

use common::hooks::{receive, Seen, SECRET};
use common::*;
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A pod posting its webhooks to a free port nobody listens on yet (the test binds it when
/// the receiver should come up); `undelivered_after_secs` 0 leaves that sweep off.
fn hooked_pod(dir: &std::path::Path, undelivered_after_secs: u64) -> (distrisocks::Pod, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pod = start_pod(dir, |c| {
        c.webhook_url = Some(format!("http://127.0.0.1:{port}/hooks"));
        c.webhook_secret = Some(SECRET.into());
        c.webhook_undelivered_after_secs = undelivered_after_secs;
    });
    (pod, port)
}

#[test]
fn connection_events_reach_a_receiver_that_was_down_signed_once_each_in_order() {
    // A port with nobody listening yet: the first attempts are refused connections.
    let dir = tempfile::tempdir().unwrap();
    let (pod, port) = hooked_pod(dir.path(), 0);
    let a = user("alice");
    let phone = Client::connect(pod.local_addr(), &a);
    drop(phone);
    let laptop = Client::connect(pod.local_addr(), &a);
    let metrics = || raw(pod.local_addr(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let retries = |m: &str| -> u64 {
        let line = m
            .lines()
            .find(|l| l.starts_with("distrisocks_webhook_retries_total "));
        line.unwrap().split(' ').nth(1).unwrap().parse().unwrap()
    };
    assert!(
        eventually(|| retries(&metrics()) >= 2),
        "no retry while down"
    );

    // Up, but answering 503 twice more; then taking everything.
    let seen = Arc::new(Mutex::new(Seen::default()));
    receive(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        2,
        seen.clone(),
    );
    let deadline = Instant::now() + WAIT * 3; // The backoff may have grown to a few seconds.
    while seen.lock().unwrap().taken.len() < 3 {
        assert!(Instant::now() < deadline, "events never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(laptop);
    while seen.lock().unwrap().taken.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the last disconnect never arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = seen.lock().unwrap();
    assert_eq!(s.refused, 2);
    // Per connection: connected, then disconnected (the phone's end may be seen after the
    // laptop's start: they are different connections, on any shard).
    let mut per_conn: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in &s.taken {
        assert_eq!(e["user_id"], a.as_str());
        let conn = e["connection"].as_str().unwrap();
        per_conn
            .entry(conn)
            .or_default()
            .push(e["type"].as_str().unwrap());
    }
    assert_eq!(per_conn.len(), 2, "{:?}", s.taken);
    for kinds in per_conn.values() {
        assert_eq!(kinds, &["user.connected", "user.disconnected"]);
    }
    let mut ids: Vec<&str> = s.taken.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each event taken once");
    drop(s);
    let m = metrics();
    assert!(m.contains("distrisocks_webhook_delivered_total 4"), "{m}");
    assert!(m.contains("distrisocks_webhook_dropped_total 0"), "{m}");
    pod.shutdown();
}

#[test]
fn undelivered_messages_are_reported_once_each_after_the_delay_even_to_a_late_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let (pod, port) = hooked_pod(dir.path(), 1);
    let addr = pod.local_addr();
    let (mut alice, mut bob) = pair(addr, addr);
    let (carol, dave) = (user("carol"), user("dave"));
    let mut dave_device = Client::connect(addr, &dave); // Receives, never acks.
    let acked = send_and_confirm(&mut alice, &mut bob, "acked");
    let waiting = alice.send_keyed_any(&carol, "carol is offline", None);
    let unacked = alice.send_keyed_any(&dave, "dave never acks", None);
    assert_eq!(dave_device.recv_type("message")["id"], unacked["id"]);
    // The receiver comes up only now: the connection events so far were refused and wait in
    // the pod's queue, in order; the undelivered ones join them once the delay has passed.
    let seen = Arc::new(Mutex::new(Seen::default()));
    receive(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        0,
        seen.clone(),
    );
    let undelivered = |s: &Seen| -> Vec<serde_json::Value> {
        (s.taken.iter())
            .filter(|e| e["type"] == "message.undelivered")
            .cloned()
            .collect()
    };
    // A later message to an offline user marks the end: the sweep goes in insertion order,
    // so an event for anything before it would have come first.
    let marker = alice.send_keyed_any(&carol, "marker", None);
    let deadline = Instant::now() + WAIT * 3;
    while !(undelivered(&seen.lock().unwrap()).iter()).any(|e| e["message_id"] == marker["id"]) {
        assert!(
            Instant::now() < deadline,
            "no undelivered event for the marker"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = undelivered(&seen.lock().unwrap());
    let got: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap();
            (s("message_id"), s("reciever_id"), s("status"))
        })
        .collect();
    let id = |v: &serde_json::Value| v["id"].as_str().unwrap().to_owned();
    let (waiting, unacked, marker) = (id(&waiting), id(&unacked), id(&marker));
    assert_eq!(
        got,
        [
            (waiting.as_str(), carol.as_str(), "NONE"),
            (unacked.as_str(), dave.as_str(), "SENT"),
            (marker.as_str(), carol.as_str(), "NONE"),
        ],
        "once each, in order, nothing for {acked}"
    );
    assert_eq!(events[0]["sender_id"], alice.user.as_str());
    pod.shutdown();
}
