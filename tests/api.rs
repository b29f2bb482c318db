//! The server HTTP API on the embedded pod (docs/openapi.yaml): a backend publishes, reads
//! history and conversation lists, asks presence, disconnects users and manages groups, over
//! real sockets, with real WebSocket clients on the receiving end.

mod common;

use common::api::{call, get, publish, KEY};
use common::*;
use serde_json::{json, Value};

fn api_pod(dir: &std::path::Path) -> distrisocks::Pod {
    start_pod(dir, |c| c.api_keys = vec![KEY.to_owned()])
}

/// The frames a client received until the pod answered a probe: everything the pod had
/// queued for it before.
fn drain(c: &mut Client) -> Vec<Value> {
    c.send(json!({"type": "settle"}));
    let mut seen = c.recv_until(|v| v["type"] == "error" && v["code"] == "unknown_type");
    seen.pop();
    seen
}

fn copies_of(frames: &[Value], id: &str) -> usize {
    let is_copy = |v: &&Value| v["type"] == "message" && v["id"] == id;
    frames.iter().filter(is_copy).count()
}

#[test]
fn a_publish_as_a_user_or_the_system_reaches_the_recipient_once() {
    let dir = tempfile::tempdir().unwrap();
    let pod = api_pod(dir.path());
    let addr = pod.local_addr();
    let (alice, mut bob) = (user("alice"), Client::connect(addr, &user("bob")));
    bob.settled();
    let (code, accepted) = publish(
        addr,
        &json!({"sender_id": alice, "reciever_id": bob.user, "payload": "from the backend"}),
        None,
    );
    assert_eq!(code, 201, "{accepted}");
    assert_eq!(accepted["type"], "accepted");
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["conversation_id"], json!(dm(&alice, &bob.user)));
    let m = bob.recv_type("message");
    assert_eq!((&m["id"], &m["sender_id"]), (&json!(id), &json!(alice)));
    assert_eq!(m["message"], "from the backend");
    let (code, sys) = publish(
        addr,
        &json!({"reciever_id": bob.user, "payload": "notice"}),
        None,
    );
    assert_eq!(code, 201, "{sys}");
    let m = bob.recv_type("message");
    assert_eq!((&m["id"], &m["sender_id"]), (&sys["id"], &json!("system")));
    assert_eq!(copies_of(&drain(&mut bob), &id), 0, "one copy only");
}

#[test]
fn an_idempotency_key_answers_with_the_first_message_and_stores_one() {
    let dir = tempfile::tempdir().unwrap();
    let pod = api_pod(dir.path());
    let addr = pod.local_addr();
    let mut bob = Client::connect(addr, &user("bob"));
    bob.settled();
    let body = json!({"sender_id": "shop", "reciever_id": bob.user, "payload": "order 7 shipped"});
    let (code, first) = publish(addr, &body, Some("order-7-shipped"));
    assert_eq!(code, 201, "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["client_msg_id"], "order-7-shipped");
    let mut frames = vec![bob.recv_type("message")];
    let (code, again) = publish(addr, &body, Some("order-7-shipped"));
    assert_eq!(code, 201, "{again}");
    assert_eq!((&again["id"], &again["seq"]), (&first["id"], &first["seq"]));
    frames.extend(drain(&mut bob));
    assert_eq!(copies_of(&frames, &id), 1, "{frames:?}");
    assert_eq!(count_from(dir.path(), "shop"), 1, "stored once");
}

#[test]
fn requests_without_a_valid_key_are_refused_and_the_api_is_off_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pod = api_pod(dir.path());
    let addr = pod.local_addr();
    let body = json!({"reciever_id": "bob", "payload": "x"});
    for key in [None, Some("wrong-key-0123456789"), Some("")] {
        let (code, v) = call(addr, "POST", "/api/v1/messages", key, Some(&body), "");
        assert_eq!(
            (code, v["code"].as_str()),
            (401, Some("unauthorized")),
            "{key:?}"
        );
    }
    assert_eq!(count_from(dir.path(), "system"), 0, "nothing stored");
    let off_dir = tempfile::tempdir().unwrap();
    let off = start_pod(off_dir.path(), |_| {});
    let (code, _) = call(
        off.local_addr(),
        "GET",
        "/api/v1/presence?users=a",
        Some(KEY),
        None,
        "",
    );
    assert_eq!(code, 404);
}

#[test]
fn malformed_requests_get_a_clear_error_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pod = api_pod(dir.path());
    let addr = pod.local_addr();
    let post = |body: &str| {
        let req = format!(
            "POST /api/v1/messages HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        api::parse(&raw(addr, &req))
    };
    let cases: [(&str, u16, &str); 7] = [
        ("{not json", 400, "invalid_request"),
        (r#"{"payload":"x"}"#, 400, "invalid_request"),
        (
            r#"{"reciever_id":"b","conversation_id":"g:x","payload":"x"}"#,
            400,
            "invalid_request",
        ),
        (
            r#"{"reciever_id":"b","payload":"x","extra":1}"#,
            400,
            "invalid_request",
        ),
        (
            r#"{"reciever_id":"","payload":"x"}"#,
            400,
            "missing_recipient",
        ),
        (
            r#"{"sender_id":"","reciever_id":"b","payload":"x"}"#,
            400,
            "invalid_request",
        ),
        (
            r#"{"conversation_id":"g:nope","payload":"x"}"#,
            404,
            "unknown_conversation",
        ),
    ];
    for (body, status, code) in cases {
        let (got, v) = post(body);
        assert_eq!(
            (got, v["code"].as_str()),
            (status, Some(code)),
            "{body}: {v}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let big = "x".repeat(distrisocks::Config::defaults().tuning.max_payload_bytes + 1);
    let (got, v) = post(&json!({"reciever_id": "b", "payload": big}).to_string());
    assert_eq!((got, v["code"].as_str()), (413, Some("payload_too_large")));
    let head = format!("POST /api/v1/messages HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n");
    let chunked = raw(
        addr,
        &format!("{head}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    );
    assert_eq!(api::parse(&chunked).0, 411);
    let huge = raw(addr, &format!("{head}Content-Length: 99999999\r\n\r\n"));
    assert_eq!(api::parse(&huge).0, 413);
    assert_eq!(
        call(addr, "GET", "/api/v1/nothing", Some(KEY), None, "").0,
        404
    );
    assert_eq!(
        call(addr, "GET", "/api/v2/messages", Some(KEY), None, "").0,
        404
    );
    assert_eq!(
        call(addr, "PUT", "/api/v1/messages", Some(KEY), None, "").0,
        405
    );
    assert_eq!(get(addr, "/api/v1/conversations/nope/messages").0, 400);
    for users in [json!([]), json!([""]), json!("alice")] {
        let body = json!({ "users": users });
        let (code, _) = call(addr, "POST", "/api/v1/presence", Some(KEY), Some(&body), "");
        assert_eq!(code, 400, "{body}");
    }
    let long = format!(
        "GET /api/v1/presence?x={} HTTP/1.1\r\n\r\n",
        "y".repeat(9000)
    );
    let (code, v) = api::parse(&raw(addr, &long));
    assert_eq!(
        (code, v["code"].as_str()),
        (431, Some("invalid_request")),
        "JSON, too"
    );
    let bad_limit = format!("/api/v1/conversations/{}/messages?limit=0", dm("a", "b"));
    assert_eq!(get(addr, &bad_limit).0, 400);
    for path in [
        "/api/v1/users/bob/conversations?limit=0",
        "/api/v1/users/bob/conversations?limit=x",
        "/api/v1/users/b%01b/conversations",
        "/api/v1/users/b%zzb/conversations",
    ] {
        assert_eq!(get(addr, path).0, 400, "{path}");
    }
    let bad_id = call(
        addr,
        "POST",
        "/api/v1/users/b%01b/disconnect",
        Some(KEY),
        None,
        "",
    );
    assert_eq!(
        (bad_id.0, bad_id.1["code"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_eq!(count_from(dir.path(), "system"), 0, "nothing stored");
}

fn dm(a: &str, b: &str) -> String {
    distrisocks::protocol::direct_conversation_id(a, b)
}

#[test]
fn history_pages_back_through_a_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let pod = api_pod(dir.path());
    let addr = pod.local_addr();
    let (alice, bob) = (user("alice"), user("bob"));
    let mut sent = Vec::new();
    for i in 0..5 {
        let (from, to) = if i % 2 == 0 {
            (&alice, &bob)
        } else {
            (&bob, &alice)
        };
        let body = json!({"sender_id": from, "reciever_id": to, "payload": format!("m{i}")});
        sent.push(
            publish(addr, &body, None).1["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    publish(
        addr,
        &json!({"sender_id": alice, "reciever_id": "carol", "payload": "x"}),
        None,
    );
    let conv = dm(&alice, &bob);
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/conversations/{conv}/messages?limit=2");
    loop {
        let (code, page) = get(addr, &path);
        assert_eq!(code, 200, "{page}");
        seen.extend(page["messages"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_i64() {
            Some(before) => {
                path = format!("/api/v1/conversations/{conv}/messages?limit=2&before={before}")
            }
            None => break,
        }
    }
    let seqs: Vec<i64> = seen.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [5, 4, 3, 2, 1], "newest first, each once");
    let ids: Vec<&str> = seen
        .iter()
        .rev()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, sent);
    assert_eq!(
        (&seen[4]["payload"], &seen[4]["sender_id"]),
        (&json!("m0"), &json!(alice))
    );
    assert_eq!(seen[4]["status"], "NONE", "nobody was connected");
}

#[test]
fn conversation_lists_count_unread_messages_that_a_read_receipt_lowers() {
    let dir = tempfile::tempdir().unwrap();
    let pod = api_pod(dir.path());
    let addr = pod.local_addr();
    let (alice, bob) = (user("alice"), user("bob"));
    for text in ["one", "two", "three"] {
        let body = json!({"sender_id": alice, "reciever_id": bob, "payload": text});
        assert_eq!(publish(addr, &body, None).0, 201);
    }
    let list = |who: &str| get(addr, &format!("/api/v1/users/{who}/conversations")).1;
    let conv = &list(&bob)["conversations"][0];
    assert_eq!(conv["conversation_id"], json!(dm(&alice, &bob)));
    assert_eq!((&conv["unread"], &conv["last_seq"]), (&json!(3), &json!(3)));
    let mut device = Client::connect_since(addr, &bob, 0);
    device.send(json!({"type": "read", "conversation_id": dm(&alice, &bob), "seq": 2}));
    assert!(eventually(|| list(&bob)["conversations"][0]["unread"] == 1));
    assert_eq!(list(&bob)["conversations"][0]["read_seq"], 2);
    assert_eq!(
        list(&alice)["conversations"][0]["unread"],
        0,
        "her own messages"
    );
    assert_eq!(list("nobody-here")["conversations"], json!([]));
}

#[test]
fn presence_and_disconnect_see_and_close_every_connection_of_a_user() {
    let dir = tempfile::tempdir().unwrap();
    let pod = api_pod(dir.path());
    let addr = pod.local_addr();
    let bob = user("bob");
    let mut phone = Client::connect(addr, &bob);
    let mut laptop = Client::connect(addr, &bob);
    phone.settled();
    laptop.settled();
    let ask = |users: Value| {
        let body = json!({ "users": users });
        call(addr, "POST", "/api/v1/presence", Some(KEY), Some(&body), "")
    };
    let (code, p) = ask(json!([bob, "never-seen"]));
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["users"][0]["online"], true);
    assert_eq!(
        p["users"][1],
        json!({"user_id": "never-seen", "online": false})
    );
    let path = format!("/api/v1/users/{bob}/disconnect");
    let (code, d) = call(addr, "POST", &path, Some(KEY), None, "");
    assert_eq!((code, &d["closed"]), (200, &json!(2)), "{d}");
    assert_eq!((phone.expect_close(), laptop.expect_close()), (4012, 4012));
    assert!(eventually(|| {
        let p = ask(json!([bob])).1;
        p["users"][0]["online"] == false && p["users"][0]["last_seen"].is_string()
    }));
    let (_, again) = call(addr, "POST", &path, Some(KEY), None, "");
    assert_eq!(again["closed"], 0);
}

#[test]
fn groups_are_managed_and_published_to_as_a_member() {
    let dir = tempfile::tempdir().unwrap();
    let pod = api_pod(dir.path());
    let addr = pod.local_addr();
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let mut carol_device = Client::connect_since(addr, &carol, 0);
    carol_device.settled();
    let create = json!({"as_user": alice, "group_id": format!("g:{alice}"), "members": [bob]});
    let (code, made) = call(addr, "POST", "/api/v1/groups", Some(KEY), Some(&create), "");
    assert_eq!(code, 201, "{made}");
    let group = made["conversation_id"].as_str().unwrap().to_owned();
    let (code, again) = call(addr, "POST", "/api/v1/groups", Some(KEY), Some(&create), "");
    assert_eq!((code, again["code"].as_str()), (409, Some("group_exists")));
    let add = json!({"as_user": bob, "members": [carol]});
    let members = format!("/api/v1/groups/{group}/members");
    assert_eq!(
        call(addr, "POST", &members, Some(KEY), Some(&add), "").0,
        200
    );
    let (code, list) = get(addr, &format!("{members}?as_user={carol}"));
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["members"].as_array().unwrap().len(), 3);
    let body = json!({"sender_id": alice, "conversation_id": group, "payload": "hello all"});
    let (code, sent) = publish(addr, &body, None);
    assert_eq!(code, 201, "{sent}");
    let m = carol_device.next_of("message", &["group"]);
    assert_eq!(
        (&m["id"], &m["message"]),
        (&sent["id"], &json!("hello all"))
    );
    let outsider = json!({"sender_id": "mallory", "conversation_id": group, "payload": "x"});
    assert_eq!(publish(addr, &outsider, None).0, 404, "not a member");
    let system = json!({"conversation_id": group, "payload": "x"});
    let (code, notice) = publish(addr, &system, Some("notice-1"));
    assert_eq!(code, 201, "the system sender needs no membership: {notice}");
    let m = carol_device.next_of("message", &["status"]);
    assert_eq!(
        (&m["id"], &m["sender_id"]),
        (&notice["id"], &json!("system"))
    );
    let (_, again) = publish(addr, &system, Some("notice-1"));
    assert_eq!(again["id"], notice["id"], "idempotent as a member's send");
    let (_, list) = get(addr, &format!("{members}?as_user={alice}"));
    assert_eq!(
        list["members"].as_array().unwrap().len(),
        3,
        "and made no member"
    );
    let frames = {
        carol_device.send(json!({"type": "settle"}));
        carol_device.recv_until(|v| v["type"] == "error")
    };
    let copies = frames.iter().filter(|v| v["id"] == notice["id"]).count();
    assert_eq!(copies, 0, "one copy only: {frames:?}");
    let kick = format!("{members}/{carol}?as_user={bob}");
    let (code, refused) = call(addr, "DELETE", &kick, Some(KEY), None, "");
    assert_eq!((code, refused["code"].as_str()), (403, Some("not_allowed")));
    let kick = format!("{members}/{carol}?as_user={alice}");
    assert_eq!(call(addr, "DELETE", &kick, Some(KEY), None, "").0, 200);
    let (_, list) = get(addr, &format!("{members}?as_user={alice}"));
    assert_eq!(list["members"].as_array().unwrap().len(), 2);
}

/// A body announced longer than what arrives is cut off at the handshake timeout with 408,
/// and nothing is stored.
#[test]
fn a_body_that_never_completes_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| {
        c.api_keys = vec![KEY.to_owned()];
        c.tuning.handshake_timeout_ms = 300;
    });
    let partial = format!(
        "POST /api/v1/messages HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Length: 100\r\n\r\n{{\"reciever_id\":"
    );
    let (code, v) = api::parse(&raw(pod.local_addr(), &partial));
    assert_eq!((code, v["code"].as_str()), (408, Some("request_timeout")));
    assert_eq!(count_from(dir.path(), "system"), 0);
}
