//! Webhooks in distributed mode: 2 pod processes on one Kafka-protocol broker, Redis and
//! Postgres (`scripts/services.sh up` starts them when run alone), both sweeping for
//! undelivered messages: each one is reported once, by one of the pods.

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::cluster::*;
use common::hooks::{receive, Seen, SECRET};
use common::*;

#[test]
fn each_undelivered_message_is_reported_once_whichever_pod_stored_it() {
    let space = Space::new();
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", receiver.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    receive(receiver, 0, seen.clone());
    let flags = [
        "--webhook-url",
        url.as_str(),
        "--webhook-secret",
        SECRET,
        "--webhook-undelivered-after-secs",
        "1",
    ];
    let pa = PodProc::start_with(&space, "a", &kafka(), &flags);
    let pb = PodProc::start_with(&space, "b", &kafka(), &flags);
    let (a, b, carol) = (user("alice"), user("bob"), user("carol"));
    let mut on_a = Client::connect(pa.addr, &a);
    let mut on_b = Client::connect(pb.addr, &a);
    let mut bob = Client::connect(pb.addr, &b);
    bob.ws.get_mut().set_read_timeout(Some(SLOW)).unwrap();
    let mut offline = Vec::new();
    for i in 0..10 {
        for c in [&mut on_a, &mut on_b] {
            let sent = c.send_keyed_any(&carol, &format!("to carol {i}"), None);
            offline.push(sent["id"].as_str().unwrap().to_owned());
        }
    }
    // Delivered ones are not reported: bob acks what alice sends him from pod a.
    let acked = send_and_confirm(&mut on_a, &mut bob, "for bob");
    let undelivered = |s: &Seen| -> Vec<(String, String)> {
        (s.taken.iter())
            .filter(|e| e["type"] == "message.undelivered")
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap().to_owned();
                (s("message_id"), s("pod"))
            })
            .collect()
    };
    // Each pod posts what its own rounds found, so events of the two pods interleave in any
    // order: wait for every one.
    let deadline = Instant::now() + SLOW;
    loop {
        let got = undelivered(&seen.lock().unwrap());
        if offline.iter().all(|id| got.iter().any(|(g, _)| g == id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "undelivered events missing: {got:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let events = undelivered(&seen.lock().unwrap());
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for (id, _) in &events {
        *copies.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(copies.get(acked.as_str()), None, "{acked} was delivered");
    assert_once_each(
        &copies.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        &offline,
    );
    let pods: std::collections::HashSet<&str> = events.iter().map(|(_, p)| p.as_str()).collect();
    assert!(!pods.is_empty() && pods.len() <= 2, "{pods:?}");
    drop((pa, pb));
}
