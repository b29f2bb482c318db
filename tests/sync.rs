//! Protocol v2 device sync on the embedded pod: every message has a conversation and a place
//! in each user's stream; a device connecting with `?since=N` receives everything after N
//! (including what another device already acknowledged, and what its user sent from
//! elsewhere), then live messages, each exactly once.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Sends and returns the `accepted`, skipping status frames of earlier messages.
fn send(c: &mut Client, to: &str, payload: &str, cmid: Option<&str>) -> Value {
    c.send_keyed_any(to, payload, cmid)
}

/// Message frames by id, counted: a test that delivers counts copies, not a set.
fn copies(frames: &[Value]) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for f in frames.iter().filter(|f| f["type"] == "message") {
        *n.entry(id_of(f)).or_insert(0) += 1;
    }
    n
}

#[test]
fn a_second_device_catches_up_on_what_the_first_already_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (mut alice, mut laptop) = pair(addr, addr);
    let b = laptop.user.clone();
    let ids: Vec<String> = (0..3)
        .map(|i| send_and_confirm(&mut alice, &mut laptop, &format!("m{i}")))
        .collect();
    // The case: the phone was off while the laptop read everything.
    let mut phone = Client::connect_since(addr, &b, 0);
    let caught_up: Vec<Value> = (0..3).map(|_| phone.recv_type("message")).collect();
    let seen: Vec<(String, i64, i64)> = caught_up
        .iter()
        .map(|m| {
            (
                id_of(m),
                m["pos"].as_i64().unwrap(),
                m["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let expect: Vec<(String, i64, i64)> = (ids.iter().cloned())
        .zip(1..)
        .map(|(id, n)| (id, n, n))
        .collect();
    assert_eq!(
        seen, expect,
        "in stream order, positions from 1 without holes"
    );
    let conversation = protocol_conversation(&alice.user, &b);
    assert!(caught_up
        .iter()
        .all(|m| m["conversation_id"] == conversation));
    // Then live, after the replay and nothing in between.
    let live = alice.send_msg(&b, "live", None);
    assert_eq!(
        live["pos"], 4,
        "alice's stream: the three before, then this"
    );
    let next = phone.recv_type("message");
    assert_eq!(
        (id_of(&next), next["pos"].as_i64()),
        (id_of(&live), Some(4))
    );
    // A v1 device is unchanged: nothing below DELIVERED is left but the live one.
    let mut v1 = Client::connect(addr, &b);
    assert_eq!(id_of(&v1.recv_type("message")), id_of(&live));
    pod.shutdown();
}

/// protocol::direct_conversation_id, restated from docs/PROTOCOL.md.
fn protocol_conversation(a: &str, b: &str) -> String {
    let (lo, hi) = if a.as_bytes() <= b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    };
    format!("dm:{}:{lo}:{hi}", lo.len())
}

#[test]
fn a_cursor_resumes_after_its_position_and_positions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (user("alice"), user("bob"));
    let pod = start_pod(dir.path(), |_| {});
    let mut alice = Client::connect(pod.local_addr(), &a);
    let first: Vec<Value> = (0..3)
        .map(|i| send(&mut alice, &b, &format!("m{i}"), None))
        .collect();
    pod.shutdown();
    assert_eq!(alice.expect_close(), 1001);
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let mut alice = Client::connect(addr, &a);
    let later = send(&mut alice, &b, "after the restart", None);
    assert_eq!(
        (later["pos"].as_i64(), later["seq"].as_i64()),
        (Some(4), Some(4))
    );
    let mut bob = Client::connect_since(addr, &b, 2);
    let got: Vec<String> = (0..2).map(|_| id_of(&bob.recv_type("message"))).collect();
    assert_eq!(got, [id_of(&first[2]), id_of(&later)]);
    // A resend with a known client_msg_id takes no position: the next one is 5.
    let keyed = send(&mut alice, &b, "keyed", Some("k"));
    let again = send(&mut alice, &b, "keyed", Some("k"));
    assert_eq!(id_of(&again), id_of(&keyed));
    // It names the original's place, so a device whose first `accepted` was lost learns it.
    let place = |f: &Value| {
        (
            f["pos"].clone(),
            f["seq"].clone(),
            f["conversation_id"].clone(),
        )
    };
    assert_eq!(place(&again), place(&keyed), "{again}");
    let next = send(&mut alice, &b, "next", None);
    assert_eq!(
        (keyed["pos"].as_i64(), next["pos"].as_i64()),
        (Some(5), Some(6))
    );
    pod.shutdown();
}

#[test]
fn carbons_reach_the_senders_other_v2_devices_and_not_the_sending_one() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (a, b) = (user("alice"), user("bob"));
    let mut desk = Client::connect_since(addr, &a, 0);
    let mut phone = Client::connect_since(addr, &a, 0);
    let mut old = Client::connect(addr, &a); // v1: knows nothing of carbons.
    let mut bob = Client::connect(addr, &b);
    let sent = send(&mut desk, &b, "from the desk", None);
    assert_eq!(
        (sent["pos"].as_i64(), sent["seq"].as_i64()),
        (Some(1), Some(1))
    );
    let carbon = phone.recv_type("message");
    assert_eq!(
        (
            id_of(&carbon),
            carbon["sender_id"].as_str(),
            carbon["pos"].as_i64()
        ),
        (id_of(&sent), Some(a.as_str()), Some(1))
    );
    let to_bob = bob.recv_type("message");
    assert_eq!(
        (id_of(&to_bob), to_bob["pos"].as_i64()),
        (id_of(&sent), Some(1))
    );
    // bob answers; on every alice device that reply comes after anything for the first one.
    let reply = send(&mut bob, &a, "got it", None);
    let is_reply = |v: &Value| v["type"] == "message" && v["id"] == reply["id"];
    for device in [&mut desk, &mut phone, &mut old] {
        let frames = device.recv_until(is_reply);
        let n = copies(&frames);
        assert_eq!(n.get(&id_of(&sent)), None, "{} got {frames:?}", device.user);
        assert_eq!(n[&id_of(&reply)], 1);
        assert_eq!(
            frames.last().unwrap()["pos"],
            2,
            "alice's stream: hers, then bob's"
        );
    }
    // A device that was off syncs both directions: what alice sent and what she received.
    // Its own message comes with the status it reached (SENT: bob holds it, unacked).
    let mut tablet = Client::connect_since(addr, &a, 0);
    let frames = tablet.recv_until(|v| v["type"] == "message" && v["id"] == reply["id"]);
    let seen: Vec<(&str, String)> = frames
        .iter()
        .map(|f| (f["type"].as_str().unwrap(), id_of(f)))
        .collect();
    let expect = [
        ("message", id_of(&sent)),
        ("status", id_of(&sent)),
        ("message", id_of(&reply)),
    ];
    assert_eq!(seen, expect);
    assert_eq!(frames[1]["status"], "SENT");
    let next = send(&mut bob, &a, "live", None);
    assert_eq!(id_of(&tablet.recv_type("message")), id_of(&next));
    pod.shutdown();
}

#[test]
fn a_syncing_device_learns_the_status_of_what_its_user_sent_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (a, b) = (user("alice"), user("bob"));
    let mut desk = Client::connect_since(addr, &a, 0);
    let mut bob = Client::connect(addr, &b);
    // Its DELIVERED went to the desk only: a device that was off never saw it live.
    let delivered = send_and_confirm(&mut desk, &mut bob, "seen by bob");
    let waiting = send(&mut desk, &user("carol"), "carol is offline", None);
    let mut phone = Client::connect_since(addr, &a, 0);
    let frames = phone.recv_until(|v| v["type"] == "message" && v["id"] == waiting["id"]);
    let shape: Vec<(String, String, String)> = frames
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("type"), s("id"), s("status"))
        })
        .collect();
    let waiting = id_of(&waiting);
    assert_eq!(
        shape,
        [
            ("message".into(), delivered.clone(), String::new()),
            ("status".into(), delivered, "DELIVERED".into()),
            ("message".into(), waiting, String::new()),
        ],
        "a carbon past NONE is followed by its status; one still NONE by nothing"
    );
    pod.shutdown();
}

#[test]
fn a_device_back_from_offline_asks_the_statuses_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (a, b) = (user("alice"), user("bob"));
    let mut phone = Client::connect_since(addr, &a, 0);
    let mut bob = Client::connect_since(addr, &b, 0);
    let g = format!("g:{}", user("pair"));
    phone.send(serde_json::json!({"type": "group_create", "conversation_id": g, "members": [b]}));
    assert_eq!(phone.recv_type("group")["event"], "created");
    let direct = send(&mut phone, &b, "direct", None);
    phone.send(serde_json::json!({"type": "send", "conversation_id": g, "payload": "group"}));
    let grouped = phone.recv_until(|v| v["type"] == "accepted").pop().unwrap();
    let pos = grouped["pos"].as_i64().unwrap();
    drop(phone);
    // bob confirms both while alice has no device online: nobody hears DELIVERED.
    let got = bob.recv_until(|v| v["type"] == "message" && v["id"] == grouped["id"]);
    let ids: Vec<String> = got
        .iter()
        .filter(|v| v["type"] == "message")
        .map(id_of)
        .collect();
    bob.send(serde_json::json!({"type": "ack", "ids": ids}));
    let bobs = send(&mut bob, &a, "from bob", None);
    let mut back = Client::connect_since(addr, &a, pos);
    assert_eq!(back.recv_type("message")["id"], bobs["id"]);
    let ask = [id_of(&direct), id_of(&grouped), id_of(&bobs), "nope".into()];
    let answer = eventually(|| {
        back.send(serde_json::json!({"type": "statuses", "ids": ask}));
        let a = back.next_of("statuses", &["read", "status"]);
        a["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "DELIVERED")
    });
    assert!(answer, "both reached DELIVERED");
    back.send(serde_json::json!({"type": "statuses", "ids": ask}));
    let a = back.next_of("statuses", &["read", "status"]);
    let want = serde_json::json!([
        {"id": id_of(&direct), "status": "DELIVERED"},
        {"id": id_of(&grouped), "status": "DELIVERED"},
    ]);
    assert_eq!(a["statuses"], want, "only alice's own, in the order asked");
    back.send(serde_json::json!({"type": "statuses", "ids": []}));
    assert_eq!(
        back.next_of("error", &["read", "status"])["code"],
        "missing_id"
    );
    pod.shutdown();
}

#[test]
fn a_since_that_is_not_a_position_is_refused_before_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    for bad in ["-1", "x", "1.5", ""] {
        let query = format!("user_id={}&since={bad}", user("bob"));
        match try_connect(pod.local_addr(), &query, None) {
            Err(ConnectError::Http(400, body)) => assert!(body.contains("since"), "{body}"),
            Err(e) => panic!("since={bad}: {e:?}"),
            Ok(_) => panic!("since={bad} was accepted"),
        }
    }
    pod.shutdown();
}

#[test]
fn a_sync_below_what_retention_kept_is_told_so_before_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.retention_secs = 1);
    let addr = pod.local_addr();
    let (mut alice, mut bob) = pair(addr, addr);
    let b = bob.user.clone();
    let ids: Vec<String> = (0..3)
        .map(|i| send_and_confirm(&mut alice, &mut bob, &format!("m{i}")))
        .collect();
    let unread = send(&mut alice, &b, "never acked", None);
    // The delivered ones age out; the undelivered one stays (and so, here, would the newest
    // row of the table, which SQLite never deletes).
    assert!(
        eventually(|| stored(dir.path(), &ids[1]).is_none()),
        "retention did not delete {}",
        ids[1]
    );
    assert!(stored(dir.path(), &id_of(&unread)).is_some());
    let mut tablet = Client::connect_since(addr, &b, 0);
    let first = tablet.recv_type("history_truncated");
    assert!(first["through_pos"].as_i64().unwrap() >= 2, "{first}");
    let rest = tablet.recv_until(|v| v["type"] == "message" && v["id"] == unread["id"]);
    let n = copies(&rest);
    assert!(
        !n.contains_key(&ids[0]) && !n.contains_key(&ids[1]),
        "{rest:?}"
    );
    assert_eq!(n[&id_of(&unread)], 1);
    // A cursor at or above the pruned range is not told anything.
    let mut phone = Client::connect_since(addr, &b, 3);
    let m = phone.recv_type("message");
    assert_eq!(id_of(&m), id_of(&unread));
    pod.shutdown();
}

#[test]
fn read_receipts_reach_both_members_v2_devices_and_never_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (a, b) = (user("alice"), user("bob"));
    let mut alice = Client::connect_since(addr, &a, 0);
    let mut laptop = Client::connect_since(addr, &b, 0);
    let mut phone = Client::connect_since(addr, &b, 0);
    let sent: Vec<Value> = (0..3)
        .map(|i| send(&mut alice, &b, &format!("m{i}"), None))
        .collect();
    for device in [&mut laptop, &mut phone] {
        let last = sent[2]["id"].clone();
        device.recv_until(|v| v["type"] == "message" && v["id"] == last);
    }
    let conversation = sent[0]["conversation_id"].as_str().unwrap().to_owned();
    let read = |c: &mut Client, seq: i64| {
        c.send(serde_json::json!({"type": "read", "conversation_id": conversation, "seq": seq}));
    };
    read(&mut laptop, 2);
    let is_read = |v: &Value| v["type"] == "read";
    for device in [&mut alice, &mut phone] {
        let r = device.recv_until(is_read).pop().unwrap();
        assert_eq!(
            (r["user_id"].as_str(), r["seq"].as_i64()),
            (Some(b.as_str()), Some(2))
        );
        assert_eq!(r["conversation_id"], conversation.as_str());
    }
    // Backwards is ignored; past the last message is clamped to it.
    read(&mut laptop, 1);
    read(&mut laptop, 9);
    let r = alice.recv_until(is_read).pop().unwrap();
    assert_eq!(
        r["seq"], 3,
        "the next receipt alice hears is the clamped one: {r}"
    );
    // The sending device hears nothing of its own receipts: its next frame is a message.
    let marker = send(&mut alice, &b, "marker", None);
    let frames = laptop.recv_until(|v| v["type"] == "message" && v["id"] == marker["id"]);
    assert!(!frames.iter().any(is_read), "{frames:?}");
    // A device that connects later gets the stored receipts after its sync (here: nothing
    // after position 99, then bob's receipt), on either member's side.
    for u in [&a, &b] {
        let mut later = Client::connect_since(addr, u, 99);
        let r = later.recv_type("read");
        assert_eq!(
            (r["user_id"].as_str(), r["seq"].as_i64()),
            (Some(b.as_str()), Some(3))
        );
    }
    // Not a member, or not a conversation at all: refused with a code.
    for bad in [protocol_conversation(&a, "carol"), "dm:3:abc".to_owned()] {
        laptop.send(serde_json::json!({"type": "read", "conversation_id": bad, "seq": 1}));
        let e = laptop.recv_type("error");
        assert_eq!(e["code"], "invalid_conversation", "{bad}: {e}");
    }
    laptop.send(serde_json::json!({"type": "read", "conversation_id": conversation, "seq": 0}));
    assert_eq!(laptop.recv_type("error")["code"], "invalid_frame");
    pod.shutdown();
}

#[test]
fn typing_reaches_the_peers_v2_devices_once_per_state_and_is_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (a, b) = (user("alice"), user("bob"));
    let mut alice = Client::connect_since(addr, &a, 0);
    let mut phone = Client::connect_since(addr, &b, 0);
    let mut old = Client::connect(addr, &b);
    let conversation = protocol_conversation(&a, &b);
    let typing = |c: &mut Client, active: bool| {
        let f = serde_json::json!({"type": "typing", "conversation_id": conversation, "active": active});
        c.send(f);
    };
    typing(&mut alice, true);
    typing(&mut alice, true); // Within the second: dropped.
    typing(&mut alice, false); // A change of state goes through.
    let m = send(&mut alice, &b, "done typing", None);
    let frames = phone.recv_until(|v| v["type"] == "message" && v["id"] == m["id"]);
    let kinds: Vec<(String, Option<bool>)> = frames
        .iter()
        .map(|v| {
            (
                v["type"].as_str().unwrap().to_owned(),
                v["active"].as_bool(),
            )
        })
        .collect();
    let expect = [
        ("typing", Some(true)),
        ("typing", Some(false)),
        ("message", None),
    ];
    assert_eq!(kinds, expect.map(|(t, a)| (t.to_owned(), a)), "{frames:?}");
    assert_eq!(frames[0]["user_id"], a.as_str());
    assert_eq!(frames[0]["conversation_id"], conversation.as_str());
    // A v1 device knows nothing of typing; nothing of it was stored.
    assert_eq!(old.recv_type("message")["id"], m["id"]);
    pod.store().sync();
    assert_eq!(count_from(dir.path(), &a), 1);
    alice.send(serde_json::json!({"type": "typing", "conversation_id": protocol_conversation(&b, "carol")}));
    let e = alice.recv_until(|v| v["type"] == "error").pop().unwrap();
    assert_eq!(e["code"], "invalid_conversation");
    pod.shutdown();
}
