//! The user directory (`--users-file`; the Kafka topic feed is in `cluster.rs`): unknown
//! users cannot connect or be sent messages, a deleted user's sockets close with 4010, and
//! what was pending for them stays stored and reaches them if they come back.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

fn created(id: &str) -> String {
    format!("{{\"type\":\"user.created\",\"user_id\":\"{id}\"}}\n")
}

/// Replaces the file the way an atomic writer (or a config map) does: write, then rename.
fn write_users(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The HTTP status of an upgrade attempt by `user` (101 when it connects).
fn upgrade_status(addr: std::net::SocketAddr, user: &str) -> u16 {
    match try_connect(addr, &format!("user_id={user}"), None) {
        Ok(_) => 101,
        Err(ConnectError::Http(code, _)) => code,
        Err(e) => panic!("upgrade failed: {e:?}"),
    }
}

/// Polls until `user`'s upgrade answers `want`: the pod has read the file.
fn wait_upgrade(addr: std::net::SocketAddr, user: &str, want: u16) {
    let deadline = Instant::now() + WAIT;
    while upgrade_status(addr, user) != want {
        assert!(Instant::now() < deadline, "{user} never got {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn only_directory_users_connect_and_receive_and_deletion_closes_their_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (user("alice"), user("bob"), user("carol"));
    let file = dir.path().join("users.jsonl");
    write_users(
        &file,
        &format!("# the auth service's users\n{}{}", created(&a), created(&b)),
    );
    let data = dir.path().join("data");
    let pod = start_pod(&data, |cfg| cfg.users_file = Some(file.clone()));
    let addr = pod.local_addr();
    match try_connect(addr, &format!("user_id={c}"), None) {
        Err(ConnectError::Http(403, body)) => assert!(body.contains("user not in the directory")),
        other => panic!("carol was not refused: {:?}", other.map(|_| ())),
    }
    let mut alice = Client::connect(addr, &a);
    let mut bob = Client::connect(addr, &b);
    alice.send(json!({"payload":"to nobody","reciever_id":c,"client_msg_id":"k1"}));
    let e = alice.recv_type("error");
    assert_eq!(
        (&e["code"], &e["client_msg_id"]),
        (&json!("unknown_recipient"), &json!("k1"))
    );
    let pending = alice.send_msg(&b, "read me later", Some("k2"));
    let id = pending["id"].as_str().unwrap().to_owned();
    assert_eq!(bob.recv_type("message")["id"], id.as_str()); // Not acked: stays pending.

    // bob is deleted, carol created.
    write_users(&file, &(created(&a) + &created(&c)));
    assert_eq!(bob.expect_close(), 4010);
    wait_upgrade(addr, &c, 101);
    assert_eq!(upgrade_status(addr, &b), 403);
    alice.send(json!({"payload":"too late","reciever_id":b,"client_msg_id":"k3"}));
    let e = alice.recv_until(|v| v["type"] != "status").pop().unwrap(); // SENT of k2 first.
    assert_eq!(
        (&e["code"], &e["client_msg_id"]),
        (&json!("unknown_recipient"), &json!("k3"))
    );
    pod.store().sync();
    assert_eq!(
        count_from(&data, &a),
        1,
        "only the message to bob was stored"
    );
    assert_eq!(
        stored(&data, &id).unwrap().0,
        "SENT",
        "kept for bob, not delivered"
    );

    // bob comes back: the pending message is replayed, once.
    write_users(&file, &(created(&a) + &created(&b) + &created(&c)));
    wait_upgrade(addr, &b, 101);
    let mut bob = Client::connect(addr, &b);
    let m = bob.recv_type("message");
    assert_eq!(m["id"], id.as_str());
    bob.expect_silence(Duration::from_millis(300));
    pod.shutdown();
}

#[test]
fn a_malformed_users_file_stops_the_start_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.jsonl");
    std::fs::write(
        &file,
        created("a") + "{\"type\":\"user.created\",\"user_id\":\"\"}\n",
    )
    .unwrap();
    let mut cfg = distrisocks::Config::defaults();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.shards = Some(1);
    cfg.data_dir = dir.path().join("data");
    cfg.users_file = Some(file);
    let e = distrisocks::Pod::start(cfg)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("users.jsonl:2: user_id"), "{e}");
}
