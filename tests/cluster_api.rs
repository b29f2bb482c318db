//! The server HTTP API in distributed mode: a publish on one pod reaches a user on another
//! once, history reads the shared Postgres store from any pod, presence sees routes of every
//! pod, and a disconnect names the pods it could not reach. Real broker, Redis and Postgres
//! (`scripts/services.sh up`).

mod common;

use common::api::{call, publish, KEY};
use common::cluster::*;
use common::*;
use serde_json::json;

#[test]
fn a_publish_on_one_pod_reaches_another_and_any_pod_reads_the_history() {
    let space = Space::new();
    let start = |n| PodProc::start_with(&space, n, &kafka(), &["--api-keys", KEY]);
    let (pa, pb) = (start("a"), start("b"));
    let mut bob = Client::connect(pb.addr, &user("bob"));
    bob.settled();
    let alice = user("alice");
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = json!({"sender_id": alice, "reciever_id": bob.user, "payload": format!("p{i}")});
        let (code, accepted) = publish(pa.addr, &body, Some(&format!("k{i}")));
        assert_eq!(code, 201, "{accepted}");
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    let (code, again) = publish(
        pa.addr,
        &json!({"sender_id": alice, "reciever_id": bob.user, "payload": "p0"}),
        Some("k0"),
    );
    assert_eq!((code, again["id"].as_str()), (201, Some(ids[0].as_str())));
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = bob.recv_type("message");
        bob.ack(m["id"].as_str().unwrap());
        got.push(m["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, ids, "each once, in order");
    let conv = distrisocks::protocol::direct_conversation_id(&alice, &bob.user);
    let path = format!("/api/v1/conversations/{conv}/messages");
    for pod in [pa.addr, pb.addr] {
        let (code, page) = call(pod, "GET", &path, Some(KEY), None, "");
        assert_eq!(code, 200, "{page}");
        let seen: Vec<&str> = (page["messages"].as_array().unwrap().iter().rev())
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(seen, ids);
    }
    assert!(eventually(|| {
        let (_, page) = call(pa.addr, "GET", &path, Some(KEY), None, "");
        page["messages"][0]["status"] == "DELIVERED"
    }));
    let presence = json!({"users": [bob.user]});
    let (_, p) = call(
        pa.addr,
        "POST",
        "/api/v1/presence",
        Some(KEY),
        Some(&presence),
        "",
    );
    assert_eq!(
        p["users"][0]["online"], true,
        "a route on pod b, seen from pod a"
    );
    let gone = format!("/api/v1/users/{}/disconnect", bob.user);
    let (_, d) = call(pa.addr, "POST", &gone, Some(KEY), None, "");
    assert_eq!(d["closed"], 0, "not on pod a");
    assert_eq!(d["other_pods"], json!([space.pod_id("b")]));
    let (_, d) = call(pb.addr, "POST", &gone, Some(KEY), None, "");
    assert_eq!(d["closed"], 1);
    assert_eq!(bob.expect_close(), 4012);
    // Pod a produced bob's messages to pod b: its produce histogram saw them, and pod b's
    // hand-off histogram saw them arrive.
    assert!(metric(pa.addr, "kafka_produce_seconds_count") >= 3);
    assert!(metric(pb.addr, "handoff_seconds_count") >= 3);
    pa.stop();
    pb.stop();
}
