//! Presence on the embedded pod: who is online, and when the others were last seen, answered
//! only about users who share a conversation with the asker.

mod common;

use common::*;
use serde_json::{json, Value};

fn ask(c: &mut Client, users: &[&str]) -> Vec<Value> {
    c.send(json!({"type": "presence", "user_ids": users}));
    loop {
        let v = c.recv();
        if v["type"] == "presence" {
            return v["users"].as_array().unwrap().clone();
        }
        assert!(v["type"] == "status" || v["type"] == "message", "{v}");
    }
}

#[test]
fn presence_shows_peers_online_then_last_seen_and_strangers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (mut alice, mut bob) = pair(addr, addr);
    let (a, b) = (alice.user.clone(), bob.user.clone());
    let mut mallory = Client::connect(addr, &user("mallory"));
    let never = user("never");
    send_and_confirm(&mut alice, &mut bob, "hi"); // Now alice and bob share a conversation.
    let seen = ask(&mut alice, &[&b, mallory.user.as_str(), &never]);
    assert_eq!(
        seen.len(),
        1,
        "only bob shares a conversation with alice: {seen:?}"
    );
    assert_eq!(
        (seen[0]["user_id"].as_str(), seen[0]["online"].as_bool()),
        (Some(b.as_str()), Some(true))
    );
    assert!(
        seen[0]["last_seen"].is_string(),
        "seen when his connection opened"
    );
    assert!(
        ask(&mut mallory, &[&a, &b]).is_empty(),
        "mallory shares nothing with them"
    );
    drop(bob);
    assert!(eventually(|| ask(&mut alice, &[&b])[0]["online"] == false));
    let after = ask(&mut alice, &[&b]);
    assert!(after[0]["last_seen"].as_str().unwrap() >= seen[0]["last_seen"].as_str().unwrap());
    mallory.send(json!({"type": "presence", "user_ids": []}));
    assert_eq!(mallory.recv_type("error")["code"], "invalid_frame");
}
