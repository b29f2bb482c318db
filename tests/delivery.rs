//! Delivery on one pod with 2 shards: same shard, across shards, multi-device, statuses.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

fn exchange(a_shard: usize, b_shard: usize) {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (a, b) = (user("alice"), user("bob"));
    let mut alice = Client::connect_on(addr, &a, a_shard);
    let mut bob = Client::connect_on(addr, &b, b_shard);
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
    exchange(0, 0);
}

#[test]
fn delivery_across_shards() {
    exchange(0, 1);
    exchange(1, 0);
}

#[test]
fn every_device_of_the_recipient_and_the_sender_hears() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (a, b) = (user("alice"), user("bob"));
    let mut alice1 = Client::connect_on(addr, &a, 0);
    let mut alice2 = Client::connect_on(addr, &a, 1);
    let mut phone = Client::connect_on(addr, &b, 0);
    let mut laptop = Client::connect_on(addr, &b, 1);
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
