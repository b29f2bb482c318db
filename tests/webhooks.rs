//! Webhooks to a real local HTTP receiver: signed, in order, and retried until a receiver
//! that was down for a while (first not listening at all, then answering 503) takes them.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "hook-secret";

/// What the receiver saw: every request's event, and whether it was answered 2xx.
#[derive(Default)]
struct Seen {
    taken: Vec<serde_json::Value>,
    refused: usize,
}

/// Serves `listener`: answers 503 to the first `refuse` requests, then 200; checks each
/// request's signature (a bad one fails the test).
fn receive(listener: TcpListener, refuse: usize, seen: Arc<Mutex<Seen>>) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with("POST "), "{line}");
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let Some((k, v)) = line.trim_end().split_once(": ") else {
                    break;
                };
                headers.insert(k.to_ascii_lowercase(), v.to_owned());
            }
            let len: usize = headers["content-length"].parse().unwrap();
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let ts: i64 = headers["x-distrisocks-timestamp"].parse().unwrap();
            let want = distrisocks::backend::webhook::sign(SECRET.as_bytes(), ts, &body);
            assert_eq!(headers["x-distrisocks-signature"], format!("sha256={want}"));
            let event: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                headers["x-distrisocks-event-id"],
                event["id"].as_str().unwrap()
            );
            let mut s = seen.lock().unwrap();
            let code = if s.refused < refuse {
                s.refused += 1;
                "503 Service Unavailable"
            } else {
                s.taken.push(event);
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
}

#[test]
fn connection_events_reach_a_receiver_that_was_down_signed_once_each_in_order() {
    // A port with nobody listening yet: the first attempts are refused connections.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| {
        c.webhook_url = Some(format!("http://127.0.0.1:{port}/hooks"));
        c.webhook_secret = Some(SECRET.into());
    });
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
