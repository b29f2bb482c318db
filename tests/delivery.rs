//! Delivery on one pod with 2 shards: same shard, across shards, multi-device, statuses.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// alice on `a_shard` and bob on `b_shard` exchange a message each way. Steered, each is
/// placed by choosing a user whose home shard it is; unsteered, by reconnecting until the
/// kernel's SO_REUSEPORT spread puts the socket there.
fn exchange(steer: bool, a_shard: usize, b_shard: usize) {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.tuning.steer_connections = steer);
    let addr = pod.local_addr();
    let (mut alice, mut bob, a, b);
    if steer {
        (a, b) = (
            user_homed("alice", a_shard, 2),
            user_homed("bob", b_shard, 2),
        );
        (alice, bob) = (Client::connect(addr, &a), Client::connect(addr, &b));
        assert_eq!((alice.shard, bob.shard), (a_shard, b_shard));
    } else {
        (a, b) = (user("alice"), user("bob"));
        alice = Client::connect_on(addr, &a, a_shard);
        bob = Client::connect_on(addr, &b, b_shard);
    }
    let acc = alice.send_msg(&b, "hi", Some("c-1"));
    assert_eq!(acc["status"], "NONE");
    let id = acc["id"].as_str().unwrap().to_owned();
    let m = bob.recv_type("message");
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["sender_id"], a.as_str());
    assert_eq!(m["reciever_id"], b.as_str());
    assert_eq!(m["message"], "hi");
    assert!(m["created_at"].as_str().unwrap().ends_with('Z'));
    alice.recv_status(&id, "SENT");
    pod.store().sync();
    let (status, sent_at, delivered_at) = stored(dir.path(), &id).unwrap();
    assert_eq!(
        (status.as_str(), sent_at.is_some(), delivered_at),
        ("SENT", true, None)
    );
    bob.ack(&id);
    alice.recv_status(&id, "DELIVERED");
    pod.store().sync();
    let (status, _, delivered_at) = stored(dir.path(), &id).unwrap();
    assert_eq!(
        (status.as_str(), delivered_at.is_some()),
        ("DELIVERED", true)
    );
    // And back, bob to alice.
    let back = bob.send_msg(&a, "hello", None);
    let m = alice.recv_type("message");
    assert_eq!((&m["id"], &m["message"]), (&back["id"], &json!("hello")));
    pod.shutdown();
}

#[test]
fn delivery_on_the_same_shard() {
    exchange(true, 0, 0);
    exchange(false, 0, 0);
}

#[test]
fn delivery_across_shards() {
    exchange(true, 0, 1);
    exchange(true, 1, 0);
    exchange(false, 0, 1);
    exchange(false, 1, 0);
}

#[test]
fn every_device_of_the_recipient_and_the_sender_hears() {
    every_device_hears(true);
    every_device_hears(false);
}

/// Steered, a user's devices all live on the user's home shard; unsteered, each user has a
/// device on each shard.
fn every_device_hears(steer: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.tuning.steer_connections = steer);
    let addr = pod.local_addr();
    let (a, b) = (user("alice"), user("bob"));
    let [mut alice1, mut alice2, mut phone, mut laptop] = match steer {
        true => [&a, &a, &b, &b].map(|u| Client::connect(addr, u)),
        false => [(&a, 0), (&a, 1), (&b, 0), (&b, 1)].map(|(u, s)| Client::connect_on(addr, u, s)),
    };
    if steer {
        let home = |u: &str| distrisocks::backend::routes::home_shard(u, 2);
        assert_eq!([alice1.shard, alice2.shard], [home(&a); 2]);
        assert_eq!([phone.shard, laptop.shard], [home(&b); 2]);
    }
    let id = alice1.send_msg(&b, "to both", None)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for device in [&mut phone, &mut laptop] {
        let m = device.recv_type("message");
        assert_eq!(
            (m["id"].as_str().unwrap(), m["message"].as_str().unwrap()),
            (id.as_str(), "to both")
        );
    }
    for sender in [&mut alice1, &mut alice2] {
        sender.recv_status(&id, "SENT");
    }
    laptop.ack(&id);
    for sender in [&mut alice1, &mut alice2] {
        sender.recv_status(&id, "DELIVERED");
    }
    // A second ack (the other device) changes nothing and announces nothing.
    phone.ack(&id);
    alice1.expect_silence(Duration::from_millis(300));
    pod.shutdown();
}

#[test]
fn write_mode_marks_delivered_on_flush() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| {
        c.delivery_confirm = distrisocks::config::DeliveryConfirm::Write
    });
    let addr = pod.local_addr();
    let (mut alice, mut bob) = pair(addr, addr);
    let b = bob.user.clone();
    let id = alice.send_msg(&b, "seed mode", None)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.recv_type("message");
    // SENT and DELIVERED come within microseconds of each other here: often one batch.
    alice.recv_status_reaching(&id, "DELIVERED");
    pod.shutdown();
}

/// `--steer-connections` (the default): whichever shard the kernel gives a socket, the
/// connection is served on its user's home shard (the socket really moves: each shard's
/// connection gauge counts its users), and messages between users of both shards arrive
/// once each, with their statuses.
#[test]
fn connections_are_served_on_their_users_home_shard() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let users: Vec<String> = (0..8).map(|i| user_homed("u", i % 2, 2)).collect();
    let mut clients: Vec<Client> = users.iter().map(|u| Client::connect(addr, u)).collect();
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.shard, i % 2, "{} served on the wrong shard", users[i]);
    }
    let gauge = |shard: usize| {
        let text = raw(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let line = format!("distrisocks_connections{{shard=\"{shard}\"}} ");
        let value = text.lines().find_map(|l| l.strip_prefix(line.as_str()));
        value.and_then(|v| v.trim().parse::<u64>().ok())
    };
    assert!(eventually(|| gauge(0) == Some(4) && gauge(1) == Some(4)));
    // Each user sends to the next one (shard 0 to 1 and 1 to 0); frames are counted per id.
    for i in 0..users.len() {
        let to = &users[(i + 1) % users.len()];
        clients[i].send(json!({"payload": format!("m{i}"), "reciever_id": to}));
    }
    let mut copies = std::collections::HashMap::<String, usize>::new();
    let mut own = Vec::new();
    // Statuses read while waiting for the other frames are kept: the last user's message is
    // acked by user 0 in the first round, so its DELIVERED can come before its own inbound.
    let mut statuses: Vec<Vec<(String, String)>> = vec![Vec::new(); clients.len()];
    for (c, seen) in clients.iter_mut().zip(statuses.iter_mut()) {
        let (mut accepted, mut got) = (None, None);
        while accepted.is_none() || got.is_none() {
            let v = c.next_of_any(&["accepted", "message", "status"]);
            let id = v["id"].as_str().map(str::to_owned);
            match v["type"].as_str() {
                Some("accepted") => accepted = id,
                Some("message") => got = id,
                _ => seen.push((id.unwrap(), v["status"].as_str().unwrap().to_owned())),
            }
        }
        let got = got.unwrap();
        *copies.entry(got.clone()).or_default() += 1;
        c.ack(&got);
        own.push(accepted.unwrap());
    }
    for ((c, id), seen) in clients.iter_mut().zip(&own).zip(statuses.iter_mut()) {
        // Any SENT not read above comes next; DELIVERED ends it.
        while !seen.iter().any(|(_, s)| s == "DELIVERED") {
            let v = c.next_of_any(&["status"]);
            seen.push((
                v["id"].as_str().unwrap().to_owned(),
                v["status"].as_str().unwrap().to_owned(),
            ));
        }
        assert!(
            seen.iter().all(|(s_id, _)| s_id == id),
            "{seen:?} not all for {id}"
        );
        let delivered = seen.iter().filter(|(_, s)| s == "DELIVERED").count();
        assert_eq!(delivered, 1, "{seen:?}");
    }
    assert_eq!(copies.len(), users.len());
    assert!(copies.values().all(|n| *n == 1), "{copies:?}");
    // Nothing arrives twice.
    for c in clients.iter_mut() {
        c.expect_silence(Duration::from_millis(200));
    }
    pod.shutdown();
}
