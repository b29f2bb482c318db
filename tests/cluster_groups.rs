//! Groups in distributed mode: 2 pod processes on one Kafka-protocol broker, Redis and
//! Postgres (`scripts/services.sh up` starts them when run alone). A group message is stored
//! once, fans out to member devices on both pods, each device gets each message once, and the
//! sender's aggregate statuses come from members confirming on the other pod.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::cluster::*;
use common::*;
use serde_json::json;

const SLOW: Duration = Duration::from_secs(20);

/// `n` message frames, counted per id (reads and statuses in between are skipped).
fn messages(c: &mut Client, n: usize) -> HashMap<String, usize> {
    let mut copies = HashMap::new();
    for _ in 0..n {
        let m = c.next_of("message", &["status", "read", "group"]);
        *copies
            .entry(m["id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    copies
}

#[test]
fn a_group_fans_out_across_pods_and_the_aggregate_statuses_follow_the_members() {
    let space = Space::new();
    let (pa, pb) = (PodProc::start(&space, "a"), PodProc::start(&space, "b"));
    let (a, b, c, d) = (user("alice"), user("bob"), user("carol"), user("dave"));
    let mut alice = Client::connect_since(pa.addr, &a, 0);
    let mut bob = Client::connect_since(pb.addr, &b, 0);
    let mut carol_a = Client::connect_since(pa.addr, &c, 0);
    let mut carol_b = Client::connect_since(pb.addr, &c, 0);
    for x in [&mut alice, &mut bob, &mut carol_a, &mut carol_b] {
        x.ws.get_mut().set_read_timeout(Some(SLOW)).unwrap();
        x.settled();
    }
    let g = format!("g:{}", user("team"));
    alice.send(json!({"type": "group_create", "conversation_id": g, "members": [b, c, d]}));
    assert_eq!(alice.recv_type("group")["event"], "created");
    for x in [&mut bob, &mut carol_a, &mut carol_b] {
        assert_eq!(x.recv_type("group")["event"], "created", "{}", x.user);
    }
    let ids: Vec<String> = (0..5)
        .map(|i| {
            let f = json!({"conversation_id": g, "payload": format!("m{i}"), "client_msg_id": format!("k{i}")});
            alice.send(f);
            alice.next_of("accepted", &["status"])["id"].as_str().unwrap().to_owned()
        })
        .collect();
    for x in [&mut bob, &mut carol_a, &mut carol_b] {
        let copies = messages(x, 5);
        for id in &ids {
            assert_eq!(copies.get(id), Some(&1), "{} got {id} {copies:?}", x.user);
        }
    }
    bob.send(json!({"type": "ack", "ids": ids}));
    carol_b.send(json!({"type": "ack", "ids": ids}));
    // dave is offline: nothing is DELIVERED yet, and receipts say who holds it back.
    let aggregate = |alice: &mut Client| {
        alice.send(json!({"type": "receipts", "id": ids[4]}));
        alice.next_of("receipts", &["status"])
    };
    let waiting = eventually(|| {
        let r = aggregate(&mut alice);
        let by: HashMap<String, String> = (r["members"].as_array().unwrap().iter())
            .map(|m| {
                (
                    m["user_id"].as_str().unwrap().into(),
                    m["status"].as_str().unwrap().into(),
                )
            })
            .collect();
        by[&b] == "DELIVERED" && by[&c] == "DELIVERED" && by[&d] == "NONE"
    });
    assert!(waiting, "bob and carol confirmed on pod b, dave has not");
    assert_ne!(aggregate(&mut alice)["status"], "DELIVERED");
    // dave's device connects on pod b, syncs the event and the messages, and confirms them.
    let mut dave = Client::connect_since(pb.addr, &d, 0);
    dave.ws.get_mut().set_read_timeout(Some(SLOW)).unwrap();
    assert_eq!(dave.recv_type("group")["event"], "created");
    let copies = messages(&mut dave, 5);
    assert!(
        ids.iter().all(|id| copies.get(id) == Some(&1)),
        "{copies:?}"
    );
    dave.send(json!({"type": "ack", "ids": ids}));
    let mut delivered: Vec<String> = Vec::new();
    while delivered.len() < ids.len() {
        let s = alice.next_of("status", &["read"]);
        if s["status"] == "DELIVERED" {
            delivered.push(s["id"].as_str().unwrap().to_owned());
        }
    }
    delivered.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(delivered, want, "each DELIVERED once, from pod b's members");
    for x in [&mut bob, &mut carol_a, &mut dave] {
        x.send(json!({"type": "read", "conversation_id": g, "seq": 6}));
    }
    let mut read = Vec::new();
    while read.len() < ids.len() {
        let s = alice.next_of("status", &["read"]);
        assert_eq!(s["status"], "READ", "{s}");
        read.push(s["id"].as_str().unwrap().to_owned());
    }
    read.sort();
    assert_eq!(read, want, "READ once each, when the last member read");
    drop((pa, pb));
}

/// Presence across pods: a member on another pod is online while its pod lives, and offline
/// within the route lease once that pod is killed, with the last time it was seen.
#[test]
fn presence_follows_a_killed_pod_within_the_route_lease() {
    let space = Space::new();
    let (pa, pb) = (PodProc::start(&space, "a"), PodProc::start(&space, "b"));
    let (a, b) = (user("alice"), user("bob"));
    let mut alice = Client::connect_since(pa.addr, &a, 0);
    let mut bob = Client::connect_since(pb.addr, &b, 0);
    for x in [&mut alice, &mut bob] {
        x.ws.get_mut().set_read_timeout(Some(SLOW)).unwrap();
        x.settled();
    }
    let g = format!("g:{}", user("team"));
    alice.send(json!({"type": "group_create", "conversation_id": g, "members": [b]}));
    assert_eq!(alice.recv_type("group")["event"], "created");
    let ask = |alice: &mut Client| {
        alice.send(json!({"type": "presence", "user_ids": [b]}));
        alice.next_of("presence", &["group", "status", "read"])["users"][0].clone()
    };
    let online = ask(&mut alice);
    assert_eq!(online["online"], true, "{online}");
    pb.kill9();
    let gone = eventually_for(SLOW, || ask(&mut alice)["online"] == false);
    assert!(gone, "bob's pod died: offline once its lease ran out");
    assert!(ask(&mut alice)["last_seen"].is_string());
    drop(pa);
}

fn eventually_for(d: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + d;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}
