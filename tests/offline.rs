//! Offline delivery, restarts (graceful and kill -9) and idempotent resend.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[test]
fn offline_messages_arrive_in_order_on_connect_then_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (a, c) = (user("alice"), user("carol"));
    let mut alice = Client::connect(addr, &a);
    let ids: Vec<String> = (0..300)
        .map(|i| {
            alice.send_msg(&c, &format!("m{i}"), None)["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // Nobody is connected as carol: the messages stay NONE, no SENT is announced.
    alice.expect_silence(Duration::from_millis(300));
    pod.store().sync();
    assert_eq!(stored(dir.path(), &ids[0]).unwrap().0, "NONE");
    // Carol connects on either shard: all 300 (more than one replay page) in order.
    let mut carol = Client::connect(addr, &c);
    for (i, id) in ids.iter().enumerate() {
        let m = carol.recv_type("message");
        assert_eq!(
            (m["id"].as_str().unwrap(), m["message"].as_str().unwrap()),
            (id.as_str(), &*format!("m{i}"))
        );
    }
    for id in &ids {
        alice.recv_status(id, "SENT");
    }
    let live = alice.send_msg(&c, "live", None);
    assert_eq!(carol.recv_type("message")["id"], live["id"]);
    carol.expect_silence(Duration::from_millis(300));
    pod.shutdown();
}

#[test]
fn unacked_messages_are_replayed_with_the_same_id_on_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (mut alice, mut bob) = pair(addr, addr);
    let b = bob.user.clone();
    let id = alice.send_msg(&b, "once", None)["id"].clone();
    assert_eq!(bob.recv_type("message")["id"], id);
    alice.recv_status(id.as_str().unwrap(), "SENT");
    drop(bob); // Never acked.
    let mut bob = Client::connect(addr, &b);
    assert_eq!(bob.recv_type("message")["id"], id);
    bob.ack(id.as_str().unwrap());
    alice.recv_status(id.as_str().unwrap(), "DELIVERED");
    drop(bob);
    let mut bob = Client::connect(addr, &b);
    bob.expect_silence(Duration::from_millis(300));
    pod.shutdown();
}

#[test]
fn graceful_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, d) = (user("alice"), user("dave"));
    let pod = start_pod(dir.path(), |_| {});
    let mut alice = Client::connect(pod.local_addr(), &a);
    let id = alice.send_msg(&d, "kept", None)["id"].clone();
    pod.shutdown();
    assert_eq!(alice.expect_close(), 1001);
    let pod = start_pod(dir.path(), |_| {});
    let mut dave = Client::connect(pod.local_addr(), &d);
    let m = dave.recv_type("message");
    assert_eq!((&m["id"], &m["message"]), (&id, &json!("kept")));
    pod.shutdown();
}

#[test]
fn idempotent_resend_returns_the_first_id_and_stores_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (mut alice, mut bob) = pair(addr, addr);
    let (a, b) = (alice.user.clone(), bob.user.clone());
    let first = alice.send_msg(&b, "x", Some("c-1"));
    bob.recv_type("message");
    alice.recv_status(first["id"].as_str().unwrap(), "SENT");
    let again = alice.send_msg(&b, "x", Some("c-1"));
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["status"], "SENT");
    bob.expect_silence(Duration::from_millis(300));
    // Another sender may use the same client_msg_id.
    let mut other = Client::connect(addr, &user("eve"));
    assert_ne!(other.send_msg(&b, "y", Some("c-1"))["id"], first["id"]);
    pod.store().sync();
    assert_eq!(count_from(dir.path(), &a), 1);
    pod.shutdown();
}

fn spawn_binary(dir: &std::path::Path) -> (Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_distrisocks"))
        .args(["--listen", "127.0.0.1:0", "--shards", "2", "--data-dir"])
        .arg(dir)
        .env("DISTRISOCKS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if let Some(rest) = line
            .split("addr=")
            .nth(1)
            .filter(|_| line.contains("pod started"))
        {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            // Keep draining the log so the pod never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return (child, addr);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("pod never reported its address");
}

#[test]
fn kill_9_loses_no_accepted_message() {
    let dir = tempfile::tempdir().unwrap();
    let (a, d) = (user("alice"), user("dave"));
    let (mut child, addr) = spawn_binary(dir.path());
    let mut alice = Client::connect(addr, &a);
    let ids: Vec<_> = (0..50)
        .map(|i| alice.send_msg(&d, &format!("k{i}"), None)["id"].clone())
        .collect();
    child.kill().unwrap(); // SIGKILL: no shutdown, no final flush.
    child.wait().unwrap();
    let (mut child, addr) = spawn_binary(dir.path());
    let mut dave = Client::connect(addr, &d);
    for id in &ids {
        assert_eq!(&dave.recv_type("message")["id"], id);
    }
    // SIGTERM: sockets closed with 1001 ("reconnect"), exit status 0.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert_eq!(dave.expect_close(), 1001);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit 0 on SIGTERM, got {status}");
}

/// A reconnecting device confirms a replay burst with one `ack` frame carrying every id; an id
/// not addressed to it is refused on its own, the others become DELIVERED and are not
/// replayed again.
#[test]
fn one_ack_frame_confirms_a_replayed_burst() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (a, b, c) = (user("alice"), user("bob"), user("carol"));
    let mut alice = Client::connect(addr, &a);
    let send = |alice: &mut Client, to: &str, i: usize| -> String {
        let acc = alice.send_msg(to, &format!("m{i}"), None);
        acc["id"].as_str().unwrap().to_owned()
    };
    let ids: Vec<String> = (0..5).map(|i| send(&mut alice, &b, i)).collect();
    let carols = send(&mut alice, &c, 5);
    let mut bob = Client::connect(addr, &b);
    for id in &ids {
        assert_eq!(bob.recv_type("message")["id"], json!(id));
    }
    let mut all = ids.clone();
    all.insert(2, carols.clone());
    bob.send(json!({"type": "ack", "ids": all}));
    let e = bob.recv_type("error");
    assert_eq!(
        (&e["code"], &e["id"]),
        (&json!("not_recipient"), &json!(carols))
    );
    // alice hears each id reach DELIVERED exactly once (SENT frames interleave).
    let mut delivered = std::collections::HashMap::new();
    while delivered.len() < ids.len() {
        let v = alice.recv_type("status");
        if v["status"] == "DELIVERED" {
            *delivered
                .entry(v["id"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    assert!(
        ids.iter().all(|id| delivered.get(id) == Some(&1)),
        "{delivered:?}"
    );
    alice.expect_silence(Duration::from_millis(200));
    drop(bob);
    let mut bob = Client::connect(addr, &b);
    bob.expect_silence(Duration::from_millis(300));
    pod.shutdown();
}
