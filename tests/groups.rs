//! Protocol v2 groups on the embedded pod (2 shards, real sockets): a group message is stored
//! once and reaches every member's v2 devices exactly once, membership changes are events,
//! the sender sees SENT, DELIVERED (every member confirmed) and READ (every member read), and
//! a v1 connection never sees group traffic. Copies are counted per id and connection.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn group_id() -> String {
    format!("g:{}", user("team"))
}

fn create(c: &mut Client, group: &str, members: &[&str]) -> Value {
    c.send(json!({"type": "group_create", "conversation_id": group, "members": members}));
    let v = c.recv_type("group");
    assert_eq!(
        (v["event"].as_str(), v["conversation_id"].as_str()),
        (Some("created"), Some(group))
    );
    v
}

fn send_to_group(c: &mut Client, group: &str, payload: &str, cmid: &str) -> Value {
    send_frame(
        c,
        json!({"conversation_id": group, "payload": payload, "client_msg_id": cmid}),
    )
}

/// Sends `f` and returns its `accepted`, skipping whatever else the sender's devices get.
fn send_frame(c: &mut Client, f: Value) -> Value {
    c.send(f);
    c.next_of("accepted", &["status", "read", "group", "message"])
}

fn error_code(c: &mut Client, frame: Value) -> String {
    c.send(frame);
    let v = c.next_of("error", &["status", "read", "group", "message"]);
    v["code"].as_str().unwrap().to_owned()
}

#[test]
fn a_group_message_reaches_every_member_device_once_and_the_sender_sees_the_aggregate() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_unsteered_pod(dir.path()); // bob's devices on both shards.
    let addr = pod.local_addr();
    let (a, b, c, e) = (user("alice"), user("bob"), user("carol"), user("erin"));
    let mut alice = Client::connect_since(addr, &a, 0);
    let mut phone = Client::connect_on_since(addr, &b, 0, 0);
    let mut laptop = Client::connect_on_since(addr, &b, 1, 0);
    let mut carol = Client::connect_since(addr, &c, 0);
    let mut erin_v1 = Client::connect(addr, &e); // A member whose only device speaks v1.
    for x in [
        &mut alice,
        &mut phone,
        &mut laptop,
        &mut carol,
        &mut erin_v1,
    ] {
        x.settled();
    }
    let g = group_id();
    let made = create(&mut alice, &g, &[&b, &c, &e]);
    assert_eq!(
        (made["seq"].as_i64(), made["pos"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(made["members"], json!([a, b, c, e]));
    for x in [&mut phone, &mut laptop, &mut carol] {
        let ev = x.recv_type("group");
        assert_eq!(
            (ev["event"].as_str(), ev["by"].as_str()),
            (Some("created"), Some(a.as_str()))
        );
    }
    let accepted = send_to_group(&mut alice, &g, "hello team", "k1");
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (
            accepted["conversation_id"].as_str(),
            accepted["seq"].as_i64()
        ),
        (Some(g.as_str()), Some(2))
    );
    assert_eq!(accepted["pos"].as_i64(), Some(2));
    for x in [&mut phone, &mut laptop, &mut carol] {
        let m = x.recv_type("message");
        assert_eq!(
            (m["id"].as_str(), m["conversation_id"].as_str()),
            (Some(id.as_str()), Some(g.as_str()))
        );
        assert_eq!(
            (m["seq"].as_i64(), m["sender_id"].as_str()),
            (Some(2), Some(a.as_str()))
        );
        assert_eq!(m["message"], "hello team");
    }
    alice.recv_status(&id, "SENT");
    phone.ack(&id);
    alice.expect_silence(Duration::from_millis(300)); // carol and erin have not confirmed.
    carol.ack(&id);
    // erin's v1 device never got it: DELIVERED waits for her.
    alice.expect_silence(Duration::from_millis(300));
    alice.send(json!({"type": "receipts", "id": id}));
    let r = alice.recv_type("receipts");
    assert_eq!(
        (r["status"].as_str(), r["seq"].as_i64()),
        (Some("SENT"), Some(2))
    );
    let states: Vec<(String, String)> = (r["members"].as_array().unwrap().iter())
        .map(|m| {
            (
                m["user_id"].as_str().unwrap().into(),
                m["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut want = vec![
        (b.clone(), "DELIVERED".into()),
        (c.clone(), "DELIVERED".into()),
        (e.clone(), "NONE".into()),
    ];
    want.sort();
    assert_eq!(states, want);
    erin_v1.expect_silence(Duration::from_millis(200));
    // erin's v2 device syncs, gets the event and the message, and confirms.
    let mut erin = Client::connect_since(addr, &e, 0);
    assert_eq!(erin.recv_type("group")["pos"].as_i64(), Some(1));
    assert_eq!(erin.recv_type("message")["id"].as_str(), Some(id.as_str()));
    erin.ack(&id);
    alice.recv_status(&id, "DELIVERED");
    // Read receipts: announced to the members' v2 devices; READ once all but alice read.
    phone.send(json!({"type": "read", "conversation_id": g, "seq": 2}));
    for x in [&mut alice, &mut laptop, &mut carol] {
        let rd = x.next_of("read", &["status"]);
        assert_eq!(
            (rd["user_id"].as_str(), rd["seq"].as_i64()),
            (Some(b.as_str()), Some(2))
        );
    }
    carol.send(json!({"type": "read", "conversation_id": g, "seq": 2}));
    erin.send(json!({"type": "read", "conversation_id": g, "seq": 2}));
    let read = alice.recv_until(|v| v["type"] == "status");
    assert_eq!(
        read.last().unwrap(),
        &json!({"type": "status", "id": id, "status": "READ"})
    );
    assert!(read
        .iter()
        .all(|v| v["type"] == "read" || v["type"] == "status"));
    erin_v1.expect_silence(Duration::from_millis(200));
}

/// Membership changes are events in the conversation; each refusal has its code.
#[test]
fn membership_changes_reach_the_members_and_every_refusal_has_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.tuning.max_group_members = 3);
    let addr = pod.local_addr();
    let (a, b, c, d) = (user("alice"), user("bob"), user("carol"), user("dave"));
    let mut alice = Client::connect_since(addr, &a, 0);
    let mut bob = Client::connect_since(addr, &b, 0);
    let mut carol = Client::connect_since(addr, &c, 0);
    let mut mallory = Client::connect_since(addr, &user("mallory"), 0);
    for x in [&mut alice, &mut bob, &mut carol, &mut mallory] {
        x.settled();
    }
    let g = group_id();
    create(&mut alice, &g, &[&b]);
    bob.recv_type("group");
    let code = |x: &mut Client, f: Value| error_code(x, f);
    assert_eq!(
        code(
            &mut alice,
            json!({"type": "group_create", "conversation_id": g})
        ),
        "group_exists"
    );
    assert_eq!(
        code(&mut mallory, json!({"conversation_id": g, "payload": "x"})),
        "unknown_conversation"
    );
    assert_eq!(
        code(
            &mut mallory,
            json!({"type": "group_members", "conversation_id": g})
        ),
        "unknown_conversation"
    );
    assert_eq!(
        code(
            &mut alice,
            json!({"type": "group_add", "conversation_id": "team", "members": [c]})
        ),
        "invalid_conversation"
    );
    let both = json!({"conversation_id": g, "reciever_id": b, "payload": "x"});
    assert_eq!(code(&mut alice, both), "invalid_conversation");
    bob.send(json!({"type": "group_add", "conversation_id": g, "members": [c]}));
    let added = bob.recv_type("group");
    assert_eq!(
        (added["event"].as_str(), added["members"].clone()),
        (Some("added"), json!([c]))
    );
    assert_eq!(added["seq"].as_i64(), Some(2));
    for x in [&mut alice, &mut carol] {
        assert_eq!(x.recv_type("group")["event"], "added");
    }
    assert_eq!(
        code(
            &mut bob,
            json!({"type": "group_add", "conversation_id": g, "members": [d]})
        ),
        "group_full"
    );
    assert_eq!(
        code(
            &mut bob,
            json!({"type": "group_add", "conversation_id": g, "members": [c]})
        ),
        "no_change"
    );
    assert_eq!(
        code(
            &mut bob,
            json!({"type": "group_remove", "conversation_id": g, "members": [a]})
        ),
        "not_allowed"
    );
    carol.send(json!({"type": "group_leave", "conversation_id": g}));
    assert_eq!(carol.recv_type("group")["event"], "left");
    for x in [&mut alice, &mut bob] {
        let left = x.recv_type("group");
        assert_eq!(
            (left["event"].as_str(), left["members"].clone()),
            (Some("left"), json!([c]))
        );
    }
    assert_eq!(
        code(&mut carol, json!({"conversation_id": g, "payload": "x"})),
        "unknown_conversation"
    );
    assert_eq!(
        code(&mut carol, json!({"type": "typing", "conversation_id": g})),
        "unknown_conversation"
    );
    alice.send(json!({"type": "group_members", "conversation_id": g}));
    let m = alice.recv_type("group_members");
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(m["members"], json!(want));
    // Typing reaches the other members, never the typist, and is not stored.
    bob.send(json!({"type": "typing", "conversation_id": g, "active": true}));
    let t = alice.recv_type("typing");
    assert_eq!(
        (t["user_id"].as_str(), t["conversation_id"].as_str()),
        (Some(b.as_str()), Some(g.as_str()))
    );
    bob.expect_silence(Duration::from_millis(200));
    carol.expect_silence(Duration::from_millis(200));
}

/// A device offline across a group's whole history catches up in order, with no gap and
/// no duplicate, then takes live messages.
#[test]
fn a_device_syncs_a_groups_history_in_order_then_takes_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (a, b) = (user("alice"), user("bob"));
    let mut alice = Client::connect_since(addr, &a, 0);
    alice.settled();
    let g = group_id();
    create(&mut alice, &g, &[&b]);
    let sent: Vec<String> = (0..20)
        .map(|i| {
            send_to_group(&mut alice, &g, &format!("m{i}"), &format!("k{i}"))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut bob = Client::connect_since(addr, &b, 0);
    assert_eq!(bob.recv_type("group")["pos"].as_i64(), Some(1));
    let mut seen = Vec::new();
    for i in 0..20 {
        let m = bob.recv_type("message");
        assert_eq!(
            (m["pos"].as_i64(), m["seq"].as_i64()),
            (Some(i + 2), Some(i + 2)),
            "{m}"
        );
        seen.push(m["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, sent);
    // Then the stored receipts: a member has read what came before it joined.
    let reads: Vec<(String, i64)> = (0..2)
        .map(|_| bob.recv_type("read"))
        .map(|r| {
            (
                r["user_id"].as_str().unwrap().into(),
                r["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(reads, [(a.clone(), 1), (b.clone(), 1)]);
    // A resend of a stored client_msg_id takes no place and reaches nobody again.
    let again = send_to_group(&mut alice, &g, "m0", "k0");
    assert_eq!(
        (again["id"].as_str(), again["seq"].as_i64()),
        (Some(sent[0].as_str()), Some(2))
    );
    let live = send_to_group(&mut alice, &g, "live", "k-live");
    let m = bob.recv_type("message");
    assert_eq!(
        (m["id"].clone(), m["pos"].as_i64()),
        (live["id"].clone(), Some(22))
    );
    bob.expect_silence(Duration::from_millis(300));
}

/// The size case: 1,000 members, 100 of them online on two shards. Each online
/// device gets each message exactly once; the offline members' copies wait for them.
#[test]
fn a_group_of_a_thousand_members_with_a_hundred_online_gets_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let a = user("alice");
    let members: Vec<String> = (0..999).map(|i| user(&format!("m{i}"))).collect();
    let mut alice = Client::connect_since(addr, &a, 0);
    let mut online: Vec<Client> = (members.iter().take(100))
        .map(|m| Client::connect_since(addr, m, 0))
        .collect();
    alice.settled();
    for x in online.iter_mut() {
        x.settled();
    }
    let g = group_id();
    let names: Vec<&str> = members.iter().map(String::as_str).collect();
    let made = create(&mut alice, &g, &names);
    assert_eq!(made["members"].as_array().unwrap().len(), 1000);
    let ids: Vec<String> = (0..5)
        .map(|i| {
            send_to_group(&mut alice, &g, &format!("m{i}"), &format!("k{i}"))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for x in online.iter_mut() {
        // Live frames may come out of `pos` order (docs/PROTOCOL.md): the created event's
        // fan-out to 1,000 members can still run when the first message's starts.
        let mut copies: HashMap<String, usize> = HashMap::new();
        for _ in 0..6 {
            let m = x.recv();
            assert!(m["type"] == "message" || m["event"] == "created", "{m}");
            *copies
                .entry(m["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert_eq!(copies.values().sum::<usize>(), 6);
        for id in &ids {
            assert_eq!(
                copies.get(id),
                Some(&1),
                "{} got {id} {:?} times",
                x.user,
                copies.get(id)
            );
        }
        x.ack(&ids[0]);
    }
    for x in online.iter_mut().take(10) {
        x.expect_silence(Duration::from_millis(100));
    }
    let r = eventually(|| {
        alice.send(json!({"type": "receipts", "id": ids[0]}));
        let r = alice.next_of("receipts", &["status"]);
        let delivered = (r["members"].as_array().unwrap().iter())
            .filter(|m| m["status"] == "DELIVERED")
            .count();
        r["members"].as_array().unwrap().len() == 999 && delivered == 100
    });
    assert!(r, "100 of 999 members confirmed, the rest wait");
}

/// The catch-up case: a device offline across 500 messages in 3 conversations (two
/// direct, one group) gets all of them in its stream's order, each once, with no hole in its
/// positions nor in any conversation's seq, across replay pages.
#[test]
fn a_device_offline_across_500_messages_in_3_conversations_catches_up_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (a, b, c) = (user("alice"), user("bob"), user("carol"));
    let mut alice = Client::connect_since(addr, &a, 0);
    let mut carol = Client::connect_since(addr, &c, 0);
    alice.settled();
    carol.settled();
    let g = group_id();
    create(&mut alice, &g, &[&b, &c]);
    let mut sent = Vec::new();
    for i in 0..500 {
        let accepted = match i % 3 {
            0 => send_frame(
                &mut alice,
                json!({"reciever_id": b, "payload": "a", "client_msg_id": format!("a{i}")}),
            ),
            1 => send_frame(
                &mut carol,
                json!({"reciever_id": b, "payload": "c", "client_msg_id": format!("c{i}")}),
            ),
            _ => send_to_group(
                if i % 2 == 0 { &mut alice } else { &mut carol },
                &g,
                "g",
                &format!("g{i}"),
            ),
        };
        sent.push(accepted["id"].as_str().unwrap().to_owned());
    }
    let mut bob = Client::connect_since(addr, &b, 0);
    let mut copies: HashMap<String, usize> = HashMap::new();
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for pos in 1..=501 {
        let v = bob.recv();
        assert!(v["type"] == "message" || v["type"] == "group", "{v}");
        assert_eq!(v["pos"].as_i64(), Some(pos), "no hole, in order: {v}");
        let conversation = v["conversation_id"].as_str().unwrap().to_owned();
        let seq = v["seq"].as_i64().unwrap();
        let before = last_seq.insert(conversation, seq).unwrap_or(0);
        assert_eq!(
            seq,
            before + 1,
            "each conversation's seq without a hole: {v}"
        );
        *copies
            .entry(v["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(last_seq.len(), 3);
    assert!(
        sent.iter().all(|id| copies.get(id) == Some(&1)),
        "each of the 500 once"
    );
    assert_eq!(
        copies.values().sum::<usize>(),
        501,
        "and the group's created event"
    );
}

/// Sends to a group count against the connection's flow control like direct ones, and each
/// answer gives its room back: 200 sends written without reading, with room for 8 at a time,
/// are all answered (a send whose room never came back would stall the connection).
#[test]
fn pipelined_group_sends_are_paced_and_each_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.tuning.outbound_queue = 16);
    let addr = pod.local_addr();
    let (a, b) = (user("alice"), user("bob"));
    let mut alice = Client::connect_since(addr, &a, 0);
    alice.settled();
    let g = group_id();
    create(&mut alice, &g, &[&b]);
    for i in 0..200 {
        let f = json!({"conversation_id": g, "payload": "p", "client_msg_id": format!("k{i}")});
        alice
            .ws
            .write(tungstenite::Message::text(f.to_string()))
            .unwrap();
    }
    alice.ws.flush().unwrap();
    let mut answered: HashMap<String, usize> = HashMap::new();
    while answered.len() < 200 {
        let v = alice.next_of("accepted", &["status"]);
        *answered
            .entry(v["client_msg_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(answered.values().all(|n| *n == 1));
    alice.expect_silence(Duration::from_millis(300));
}

/// In a group over `--group-read-fanout-max` members a receipt reaches only the reader's own
/// devices; the sender still hears READ once everyone read.
#[test]
fn a_large_groups_receipts_stay_with_the_reader_and_read_still_reaches_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.tuning.group_read_fanout_max = 2);
    let addr = pod.local_addr();
    let (a, b, c) = (user("alice"), user("bob"), user("carol"));
    let mut alice = Client::connect_since(addr, &a, 0);
    let mut bob = Client::connect_since(addr, &b, 0);
    let mut bob_laptop = Client::connect_since(addr, &b, 0);
    let mut carol = Client::connect_since(addr, &c, 0);
    for x in [&mut alice, &mut bob, &mut bob_laptop, &mut carol] {
        x.settled();
    }
    let g = group_id();
    create(&mut alice, &g, &[&b, &c]);
    for x in [&mut bob, &mut bob_laptop, &mut carol] {
        x.recv_type("group"); // Before the message: live frames may overtake each other.
    }
    let id = send_to_group(&mut alice, &g, "hi", "k")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for x in [&mut bob, &mut bob_laptop, &mut carol] {
        x.recv_type("message");
    }
    bob.send(json!({"type": "read", "conversation_id": g, "seq": 2}));
    let own = bob_laptop.recv_type("read");
    assert_eq!(own["user_id"].as_str(), Some(b.as_str()));
    carol.expect_silence(Duration::from_millis(300));
    carol.send(json!({"type": "read", "conversation_id": g, "seq": 2}));
    // No member's `read` reaches alice (a frame of another type fails next_of): SENT, READ.
    let read = loop {
        let s = alice.next_of("status", &[]);
        if s["status"] == "READ" {
            break s;
        }
        assert_eq!(s["status"], "SENT", "{s}");
    };
    assert_eq!(read, json!({"type": "status", "id": id, "status": "READ"}));
    alice.expect_silence(Duration::from_millis(300));
}
