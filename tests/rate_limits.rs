//! The frame rate limits (`--max-frames-per-sec`, `--max-frames-per-user-per-sec`): refused
//! frames are answered `rate_limited` and not stored, a client that keeps going is closed with
//! 4029, and a user's devices share one bucket while other users keep theirs.

mod common;

use common::*;
use serde_json::json;

/// Over `--max-frames-per-sec`, frames are answered `rate_limited` (carrying the send's
/// `client_msg_id`) and not processed: nothing of them is stored, the connection stays open,
/// and the same send goes through once the bucket refilled (each refused frame costs a token,
/// so the client paces its retries).
#[test]
fn frames_over_the_rate_limit_are_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.tuning.max_frames_per_sec = 5);
    let addr = pod.local_addr();
    let (mut alice, b) = (Client::connect(addr, &user("alice")), user("bob"));
    // 5 fit the bucket; the next 3 take it to a debt of 3, short of the 5 that close.
    for i in 0..8 {
        alice.send(json!({"payload": "x", "reciever_id": b, "client_msg_id": format!("c{i}")}));
    }
    let (accepted, limited) = verdicts(std::slice::from_mut(&mut alice), 8);
    // The bucket holds 5 and refills one per 200 ms (a stalled test machine may read the
    // burst over a few hundred ms).
    assert!((5..=7).contains(&accepted.len()), "{accepted:?}");
    assert!(accepted.contains(&"c0".to_owned()), "{accepted:?}");
    pod.store().sync();
    let stored = accepted
        .iter()
        .filter(|c| stored_by_cmid(dir.path(), c))
        .count();
    assert_eq!(stored, accepted.len());
    assert!(limited.iter().all(|c| !stored_by_cmid(dir.path(), c)));
    // Resent until the bucket lets it through: 0.2 s per token at 5/s, and a refused retry
    // costs one, so the client waits 0.3 s between tries.
    let retry = limited[0].clone();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        alice.send(json!({"payload": "x", "reciever_id": b, "client_msg_id": retry}));
        let f = alice.recv();
        if f["type"] == "accepted" {
            assert_eq!(f["client_msg_id"], json!(retry));
            break;
        }
        assert_eq!(f["code"], "rate_limited", "{f}");
        assert!(std::time::Instant::now() < deadline, "never let through");
        std::thread::sleep(std::time::Duration::from_millis(300)); // Pacing the client.
    }
    pod.shutdown();
}

/// A client that ignores `rate_limited` and keeps sending is closed with 4029 once a second's
/// worth of frames was refused; what was refused is not stored, what was accepted is.
#[test]
fn a_client_that_ignores_rate_limited_is_closed_with_4029() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.tuning.max_frames_per_sec = 5);
    let addr = pod.local_addr();
    let (mut alice, b) = (Client::connect(addr, &user("alice")), user("bob"));
    for i in 0..40 {
        alice.send(json!({"payload": "x", "reciever_id": b, "client_msg_id": format!("k{i}")}));
    }
    let mut accepted = Vec::new();
    let code = loop {
        match alice.ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let f: serde_json::Value = serde_json::from_str(&t).unwrap();
                if f["type"] == "accepted" {
                    accepted.push(f["client_msg_id"].as_str().unwrap().to_owned());
                } else {
                    assert_eq!(f["code"], "rate_limited", "{f}");
                }
            }
            Ok(tungstenite::Message::Close(Some(c))) => break u16::from(c.code),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(code, 4029);
    assert!(accepted.len() >= 5, "{accepted:?}");
    pod.store().sync();
    for i in 0..40 {
        let cmid = format!("k{i}");
        assert_eq!(
            stored_by_cmid(dir.path(), &cmid),
            accepted.contains(&cmid),
            "{cmid}"
        );
    }
    pod.shutdown();
}

/// Whether a message with this `client_msg_id` is in the embedded store.
fn stored_by_cmid(dir: &std::path::Path, cmid: &str) -> bool {
    let db = rusqlite::Connection::open(dir.join("distrisocks.db")).unwrap();
    db.query_row(
        "SELECT count(*) FROM messages WHERE client_msg_id = ?1",
        [cmid],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        == 1
}

/// Over `--max-frames-per-user-per-sec`, every connection of a user on the pod spends from one
/// bucket, whatever shard it landed on: four devices sending 3 frames each against a bucket
/// of 6 get 6 through (up to 8 on a stalled machine, which refills it meanwhile), the rest
/// are `rate_limited` and not stored. Another user's bucket is untouched.
#[test]
fn a_user_s_devices_share_one_frame_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.tuning.max_frames_per_user_per_sec = 6);
    let addr = pod.local_addr();
    let (a, b, c) = (user("alice"), user("bob"), user("carol"));
    let mut devices: Vec<Client> = (0..4).map(|_| Client::connect(addr, &a)).collect();
    for (d, device) in devices.iter_mut().enumerate() {
        for i in 0..3 {
            let cmid = format!("d{d}-{i}");
            device.send(json!({"payload": "x", "reciever_id": b, "client_msg_id": cmid}));
        }
    }
    let (accepted, limited) = verdicts(&mut devices, 3);
    assert!((6..=8).contains(&accepted.len()), "{accepted:?}");
    assert_eq!(accepted.len() + limited.len(), 12);
    let mut carol = Client::connect(addr, &c);
    for i in 0..6 {
        carol.send(json!({"payload": "x", "reciever_id": b, "client_msg_id": format!("c{i}")}));
    }
    let (carols, refused) = verdicts(std::slice::from_mut(&mut carol), 6);
    assert_eq!((carols.len(), refused.len()), (6, 0), "{refused:?}");
    pod.store().sync();
    assert!(accepted.iter().all(|c| stored_by_cmid(dir.path(), c)));
    assert!(limited.iter().all(|c| !stored_by_cmid(dir.path(), c)));
    pod.shutdown();
}

/// The `client_msg_id`s each client's next `n` answers accepted and refused as rate limited.
fn verdicts(clients: &mut [Client], n: usize) -> (Vec<String>, Vec<String>) {
    let (mut accepted, mut limited) = (Vec::new(), Vec::new());
    for client in clients {
        for _ in 0..n {
            let f = client.recv();
            let cmid = f["client_msg_id"].as_str().unwrap().to_owned();
            match f["type"].as_str() {
                Some("accepted") => accepted.push(cmid),
                Some("error") if f["code"] == "rate_limited" => limited.push(cmid),
                _ => panic!("unexpected {f}"),
            }
        }
    }
    (accepted, limited)
}
