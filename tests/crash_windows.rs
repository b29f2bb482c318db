//! A pod killed at each precise window of the message path (issue 11): the failpoints of
//! `src/failpoints.rs` abort the process right there, as a `kill -9` at that instant would,
//! and the test checks what the delivery contract promises afterwards: the message stored
//! once, its id stable across the sender's resend, one copy per recipient connection,
//! statuses forward only, every status event published.
//!
//! Needs `--features failpoints` (the pod binary aborts only then):
//! `cargo test --features failpoints --test crash_windows`; the distributed cases need
//! `scripts/services.sh up`. `scripts/test.sh` runs them.
#![cfg(feature = "failpoints")]

mod common;

use std::os::unix::process::ExitStatusExt;

use common::cluster::*;
use common::process::ProcPod;
use common::*;
use serde_json::json;

const SIGABRT: i32 = 6;

fn arm(point: &str) -> String {
    format!("{point}=return")
}

fn assert_aborted(status: std::process::ExitStatus) {
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "the failpoint fired: {status}"
    );
}

/// The batch committed, then the pod died before any `accepted`: the sender resends under
/// the same `client_msg_id` and hears the stored id; the recipient gets it once.
#[test]
fn after_commit_before_accepted_the_resend_finds_the_stored_message() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (user("alice"), user("bob"));
    let env = [("FAILPOINTS", &*arm("after_commit_before_accepted"))];
    let mut pod = ProcPod::start_env(dir.path(), None, &env, &[]);
    let mut a = Client::connect(pod.addr, &alice);
    a.send(json!({"payload": "p", "reciever_id": bob, "client_msg_id": "c-1"}));
    let before = a.expect_gone();
    assert!(
        before.is_empty(),
        "nothing answered before the crash: {before:?}"
    );
    assert_aborted(pod.wait());
    assert_eq!(count_from(dir.path(), &alice), 1, "the batch was committed");

    let pod = ProcPod::start(dir.path(), None, &[]);
    let mut a = Client::connect(pod.addr, &alice);
    let id = a.send_msg(&bob, "p", Some("c-1"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        count_from(dir.path(), &alice),
        1,
        "the resend stored nothing"
    );
    let mut b = Client::connect(pod.addr, &bob);
    let m = b.recv_type("message");
    assert_eq!(
        (m["id"].as_str(), m["message"].as_str()),
        (Some(&*id), Some("p"))
    );
    b.ack(&id);
    a.recv_status_reaching(&id, "DELIVERED");
    b.expect_silence(std::time::Duration::from_millis(500));
}

/// The broker acknowledged the record, then the sending pod died before recording SENT:
/// the recipient's pod delivers it, the ack moves it straight to DELIVERED, the restarted
/// pod redrives nothing, and the resend hears the same id.
#[test]
fn after_produce_before_sent_the_record_is_delivered_once() {
    let space = Space::new();
    let env = [("FAILPOINTS", &*arm("after_produce_before_sent"))];
    let mut pa = PodProc::start_env(&space, "a", &env);
    let pb = PodProc::start(&space, "b");
    let (mut alice, mut bob) = pair(pa.addr, pb.addr);
    bob.settled(); // Else bob's replay may race the send and record SENT itself.
    let to = bob.user.clone();
    alice.send(json!({"payload": "p", "reciever_id": to, "client_msg_id": "c-1"}));
    alice.expect_gone();
    assert_aborted(pa.wait());
    let m = bob.recv_type("message");
    let id = m["id"].as_str().unwrap().to_owned();
    bob.ack(&id);

    let pa = PodProc::start(&space, "a");
    let mut alice = Client::connect(pa.addr, &alice.user);
    // The DELIVERED status may reach alice's new connection first: pod b announced it to
    // her old place on pod a, whose restarted consumer reads that record again.
    let again = alice.send_keyed_any(&to, "p", Some("c-1"));
    assert_eq!(
        again["id"].as_str(),
        Some(&*id),
        "the resend names the stored id"
    );
    let copies = copies_per_id(&space, &mut alice, &mut bob, &[]);
    assert!(
        copies.is_empty(),
        "delivered again after the ack: {copies:?}"
    );
    let events = status_events(&space, &id, 1);
    assert_eq!(statuses(&events), ["DELIVERED"]);
}

/// The recipient's pod handed a consumed record to the socket writer and died before its
/// offset was stored: after the restart the record is consumed again and the message is
/// pending for replay; the reconnected device shows it exactly once.
#[test]
fn after_consume_before_offset_the_reconnected_device_shows_it_once() {
    let space = Space::new();
    let env = [("FAILPOINTS", &*arm("after_consume_before_offset"))];
    let pa = PodProc::start(&space, "a");
    let mut pb = PodProc::start_env(&space, "b", &env);
    let (mut alice, mut bob) = pair(pa.addr, pb.addr);
    let to = bob.user.clone();
    let id = alice.send_msg(&to, "p", Some("c-1"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.expect_gone();
    assert_aborted(pb.wait());

    let pb = PodProc::start(&space, "b");
    let mut bob = Client::connect(pb.addr, &to);
    let copies = copies_per_id(&space, &mut alice, &mut bob, std::slice::from_ref(&id));
    assert_once_each(&copies, &[id]);
}

/// The status change committed with its outbox row, then the pod died before the relay
/// produced the event: the restarted pod's relay publishes it, in order with the next one.
#[test]
fn after_status_commit_before_event_the_event_is_still_published() {
    let space = Space::new();
    let env = [("FAILPOINTS", &*arm("after_status_commit_before_event"))];
    let mut pa = PodProc::start_env(&space, "a", &env);
    let (mut alice, bob) = pair(pa.addr, pa.addr);
    let to = bob.user.clone();
    alice.send(json!({"payload": "p", "reciever_id": to, "client_msg_id": "c-1"}));
    alice.expect_gone();
    assert_aborted(pa.wait());
    let row = format!(
        "SELECT id, status FROM messages WHERE sender_id = '{}'",
        alice.user
    );
    let (id, status) = space
        .sql(&row)
        .split_once('|')
        .map(|(i, s)| (i.to_owned(), s.to_owned()))
        .unwrap();
    assert_eq!(status, "SENT", "SENT was committed before the crash");
    assert!(
        status_events_once(&space, &id).is_empty(),
        "nothing was relayed"
    );

    let pa = PodProc::start(&space, "a");
    let mut bob = Client::connect(pa.addr, &to);
    let m = bob.recv_type("message");
    assert_eq!(m["id"].as_str(), Some(&*id));
    bob.ack(&id);
    let events = status_events(&space, &id, 2);
    assert_eq!(statuses(&events), ["SENT", "DELIVERED"]);
}
