//! Distributed mode as it works without faults (both routing methods, statuses, topics,
//! configuration errors): 2–3 pod processes on one Kafka-protocol broker, Redis and Postgres.
//! Faults are in `cluster_faults.rs`. `scripts/test.sh` starts those services; run alone,
//! start them with `scripts/services.sh up`.

mod common;

use common::cluster::*;
use common::*;
use std::time::Duration;

/// With the production producer settings (idempotent; the harness turns that off elsewhere).
#[test]
fn cross_pod_delivery_statuses_and_timestamps() {
    let space = Space::new();
    let idempotent = ["--kafka-idempotence", "true"];
    let start = |n| PodProc::start_with(&space, n, &kafka(), &idempotent);
    let (pa, pb) = (start("a"), start("b"));
    let (mut alice, mut bob) = pair(pa.addr, pb.addr);
    let (a, b) = (alice.user.clone(), bob.user.clone());
    let acc = alice.send_msg(&b, "over kafka", Some("c-1"));
    let id = acc["id"].as_str().unwrap().to_owned();
    let m = bob.recv_type("message");
    assert_eq!(
        (m["id"].as_str().unwrap(), m["message"].as_str().unwrap()),
        (id.as_str(), "over kafka")
    );
    alice.recv_status(&id, "SENT");
    bob.ack(&id);
    alice.recv_status(&id, "DELIVERED");
    let row = space.sql(&format!(
        "SELECT status, sent_at IS NOT NULL, delivered_at >= sent_at, sent_at >= created_at \
         FROM messages WHERE id = '{id}'"
    ));
    assert_eq!(row, "DELIVERED|t|t|t");
    // And back.
    let back = bob.send_msg(&a, "and back", None);
    assert_eq!(alice.recv_type("message")["id"], back["id"]);
    pa.stop();
    pb.stop();
}

#[test]
fn a_user_on_two_pods_gets_both_copies_and_routes_follow_connections() {
    let space = Space::new();
    let (pa, pb, pc) = (
        PodProc::start(&space, "a"),
        PodProc::start(&space, "b"),
        PodProc::start(&space, "c"),
    );
    let (a, b) = (user("alice"), user("bob"));
    let mut alice = Client::connect(pc.addr, &a);
    let mut phone = Client::connect(pa.addr, &b);
    let mut laptop = Client::connect(pb.addr, &b);
    let key = format!("{}route:{b}", space.prefix);
    let members = |space: &Space| -> Vec<String> {
        let mut r = space.redis();
        let mut m: Vec<String> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query(&mut r)
            .unwrap();
        m.sort();
        m
    };
    let mut expected = vec![
        format!("{}/{}", pa.id, phone.shard),
        format!("{}/{}", pb.id, laptop.shard),
    ];
    expected.sort();
    // The route is written right after the upgrade, asynchronously to the client.
    assert!(
        eventually(|| members(&space) == expected),
        "{:?}",
        members(&space)
    );
    for device in [&mut phone, &mut laptop] {
        device.ws.get_mut().set_read_timeout(Some(SLOW)).unwrap();
    }
    let id = alice.send_msg(&b, "both", None)["id"].clone();
    assert_eq!(phone.recv_type("message")["id"], id);
    assert_eq!(laptop.recv_type("message")["id"], id);
    drop(laptop);
    assert!(eventually(
        || members(&space) == vec![format!("{}/{}", pa.id, phone.shard)]
    ));
    drop(phone);
    assert!(eventually(|| members(&space).is_empty()));
}

#[test]
fn pod_topic_has_one_partition_per_shard_and_status_events_flow() {
    use rdkafka::consumer::Consumer;
    let space = Space::new();
    let pa = PodProc::start(&space, "a");
    let (mut alice, mut bob) = pair(pa.addr, pa.addr);
    let (a, b) = (alice.user.clone(), bob.user.clone());
    let id = send_and_confirm(&mut alice, &mut bob, "evented");
    let consumer = probe_consumer(&space);
    let topic = format!("{}{}", space.prefix, pa.id);
    let meta = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        meta.topics()[0].partitions().len(),
        2,
        "partitions = shards"
    );
    let events = status_events(&space, &id, 2);
    for v in &events {
        assert_eq!(
            (v["sender_id"].as_str(), v["reciever_id"].as_str()),
            (Some(&*a), Some(&*b))
        );
        assert!(v["at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(statuses(&events), ["SENT", "DELIVERED"]);
}

#[test]
fn misconfiguration_and_unreachable_backends_fail_with_one_line() {
    let space = Space::new();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_distrisocks"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "1",
                "--pod-id",
                &space.pod_id("x"),
            ])
            .args([
                "--prefix",
                &space.prefix,
                "--postgres-schema",
                &space.schema,
            ])
            .args(args)
            .env("DISTRISOCKS_LOG", "off")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one line for {args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let (k, r, p) = (kafka(), redis_url(), postgres_url());
    let partial = run(&["--kafka-brokers", &k]);
    assert!(partial.contains("needs all of"), "{partial}");
    let pg = run(&[
        "--kafka-brokers",
        &k,
        "--redis-url",
        &r,
        "--postgres-url",
        "postgres://postgres@127.0.0.1:1/test",
    ]);
    assert!(pg.contains("127.0.0.1:1"), "{pg}");
    let rd = run(&[
        "--kafka-brokers",
        &k,
        "--redis-url",
        "redis://127.0.0.1:1/",
        "--postgres-url",
        &p,
    ]);
    assert!(rd.contains("redis"), "{rd}");
    let kf = run(&[
        "--kafka-brokers",
        "127.0.0.1:1",
        "--redis-url",
        &r,
        "--postgres-url",
        &p,
    ]);
    assert!(kf.contains("kafka"), "{kf}");
    // The auth service owns the users topic: a pod never creates it, and refuses to serve
    // without the directory it was told to follow.
    let missing = format!("{}no-such-users", space.prefix);
    let users = run(&[
        "--kafka-brokers",
        &k,
        "--redis-url",
        &r,
        "--postgres-url",
        &p,
        "--users-topic",
        &missing,
    ]);
    assert!(users.contains("does not exist"), "{users}");
}

/// The seed's other scaling method: `--routing broadcast`. Every pod consumes one topic and
/// keeps what its own connections need; no Redis routes. A user with a device on each of two
/// pods gets one copy on each, a message to a user on the sender's own pod arrives too, and
/// each connection shows each id once.
#[test]
fn broadcast_routing_delivers_to_every_device_once_without_routes() {
    let space = Space::new();
    let flags = ["--routing", "broadcast"];
    let pa = PodProc::start_with(&space, "a", &kafka(), &flags);
    let pb = PodProc::start_with(&space, "b", &kafka(), &flags);
    let (a, b) = (user("alice"), user("bob"));
    let mut alice = Client::connect(pa.addr, &a);
    let mut phone = Client::connect(pa.addr, &b);
    let mut laptop = Client::connect(pb.addr, &b);
    let ids: Vec<String> = (0..10)
        .map(|i| {
            alice.send_msg_any(&b, &format!("m{i}"))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut r = space.redis();
    let routes: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}route:*", space.prefix))
        .query(&mut r)
        .unwrap();
    assert!(routes.is_empty(), "no route table: {routes:?}");
    // The phone reads and acks everything first; the laptop still gets its own copy of each.
    let copies = copies_per_id(&space, &mut alice, &mut phone, &ids);
    assert_once_each(&copies, &ids);
    laptop.ws.get_mut().set_read_timeout(Some(SLOW)).unwrap();
    let mut seen = std::collections::HashMap::new();
    while seen.len() < ids.len() + 1 {
        let m = laptop.recv_type("message");
        *seen
            .entry(m["id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert!(ids.iter().all(|id| seen.contains_key(id)));
    // Carbons too come back through the topic to the sending pod: the sending connection
    // must still not get its own message, the user's other v2 device must.
    // Both sync from after alice's sends above: ten, and copies_per_id's sentinel.
    let mut desk = Client::connect_since(pa.addr, &a, 11);
    let mut tablet = Client::connect_since(pb.addr, &a, 11);
    let sent = desk.send_msg_any(&b, "carbon");
    let is_sent = |v: &serde_json::Value| v["type"] == "message" && v["id"] == sent["id"];
    tablet.ws.get_mut().set_read_timeout(Some(SLOW)).unwrap();
    let got = tablet.recv_until(is_sent);
    assert_eq!(got.last().unwrap()["pos"], sent["pos"], "{got:?}");
    laptop.recv_until(is_sent); // bob's own copy, first.
    let reply = laptop.send_msg_any(&a, "marker");
    let is_reply = |v: &serde_json::Value| v["type"] == "message" && v["id"] == reply["id"];
    desk.ws.get_mut().set_read_timeout(Some(SLOW)).unwrap();
    let frames = desk.recv_until(is_reply);
    assert!(
        !frames.iter().any(is_sent),
        "the sender saw its own carbon: {frames:?}"
    );
    drop((pa, pb));
}

/// Protocol v2 across pods: positions are gapless per stream with two pods writing, a device
/// syncing on one pod catches up on what a device on the other acknowledged, and a carbon
/// crosses the broker to the sender's device on the other pod.
#[test]
fn devices_sync_across_pods_and_carbons_cross_the_broker() {
    let space = Space::new();
    let (pa, pb) = (PodProc::start(&space, "a"), PodProc::start(&space, "b"));
    let (a, b) = (user("alice"), user("bob"));
    let mut desk = Client::connect_since(pa.addr, &a, 0);
    let mut phone = Client::connect_since(pb.addr, &a, 0);
    let mut laptop = Client::connect(pb.addr, &b);
    let mut sent = Vec::new();
    for i in 0..5 {
        let id = send_and_confirm(&mut desk, &mut laptop, &format!("m{i}"));
        // Statuses of alice's messages reach the phone too, before or after the carbon.
        let frames = phone.recv_until(|v| v["type"] == "message");
        assert!(frames[..frames.len() - 1]
            .iter()
            .all(|v| v["type"] == "status"));
        let carbon = frames.last().unwrap();
        assert_eq!(carbon["id"], id.as_str(), "{carbon}");
        assert_eq!(carbon["pos"], i + 1);
        sent.push(id);
    }
    // Two pods write bob's stream: laptop (pod b) answers, alice's desk (pod a) sends more.
    let reply = laptop.send_msg_any(&a, "reply");
    let more = desk.send_msg_any(&b, "more");
    let mut tablet = Client::connect_since(pa.addr, &b, 0);
    tablet.ws.get_mut().set_read_timeout(Some(SLOW)).unwrap();
    let mut stream = Vec::new();
    while stream.len() < 7 {
        // The carbon of bob's own reply is followed by its status once that is past NONE.
        let m = tablet.next_of("message", &["status"]);
        stream.push((
            m["id"].as_str().unwrap().to_owned(),
            m["pos"].as_i64().unwrap(),
        ));
    }
    let positions: Vec<i64> = stream.iter().map(|(_, p)| *p).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5, 6, 7], "{stream:?}");
    let mut ids: Vec<String> = stream.into_iter().map(|(id, _)| id).collect();
    let mut expected = sent.clone();
    expected.extend([&reply, &more].map(|v| v["id"].as_str().unwrap().to_owned()));
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected, "each once, both directions");
    drop((pa, pb));
}

/// Status frames and carbons find their routes in each shard's cache, which Redis
/// invalidates whenever a route is written (RESP3 client tracking). A device that connects
/// after both pods cached its user's one place still gets the carbon and the statuses of what
/// the user's other device sends next, however fresh the pods' caches are.
#[test]
fn a_device_that_connects_after_its_routes_were_cached_gets_carbons_and_statuses() {
    let space = Space::new();
    // Long enough that a lookup within the test is always vouched for by the last round trip
    // (each connection's replay waits it, too).
    let cache = ["--route-cache-max-age-ms", "1000"];
    let start = |n| PodProc::start_with(&space, n, &kafka(), &cache);
    let (pa, pb) = (start("a"), start("b"));
    let a = user("alice");
    let mut desk = Client::connect_since(pa.addr, &a, 0);
    let mut bob = Client::connect(pb.addr, &user("bob"));
    let mut carol = Client::connect(pa.addr, &user("carol"));
    // Pod a looks alice up for m1's carbon and SENT, pod b for its DELIVERED: both cache
    // her one place.
    send_and_confirm(&mut desk, &mut bob, "m1");
    let mut phone = Client::connect_since(pb.addr, &a, 1);
    phone.settled(); // Her new place is in Redis, and her replay is done.
                     // Pod a makes a round trip (carol's DELIVERED looks bob up): its cache would now answer
                     // for alice at once, had the invalidation of her key not reached it.
    send_and_confirm(&mut bob, &mut carol, "to carol");
    let hits =
        || metric(pa.addr, "route_cache_hits_total") + metric(pb.addr, "route_cache_hits_total");
    let before = hits();
    // The carbon (from pod a) and the statuses (SENT from a, DELIVERED from b) come by
    // different paths, in any order.
    let mut carbon_and_delivered = |id: &str| {
        let (mut carbon, mut delivered) = (false, false);
        let frames = phone.recv_until(|v| {
            carbon |= v["type"] == "message";
            delivered |= v["status"] == "DELIVERED";
            carbon && delivered
        });
        assert!(frames.iter().all(|v| v["id"] == id), "{frames:?}");
    };
    let id = send_and_confirm(&mut desk, &mut bob, "m2");
    carbon_and_delivered(&id);
    let id = send_and_confirm(&mut desk, &mut bob, "m3");
    carbon_and_delivered(&id);
    phone.settled(); // Nothing else came: one carbon each.
    assert!(
        hits() > before,
        "the caches answered: {before} -> {}",
        hits()
    );
    drop((pa, pb));
}

/// Produces user-directory records (`None`: a tombstone) to `topic`, key = user id, and waits
/// for the broker's acknowledgement.
fn produce_users(topic: &str, records: &[(&str, Option<String>)]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .unwrap();
    for (key, value) in records {
        let mut r = BaseRecord::<str, str>::to(topic).key(*key);
        if let Some(v) = value {
            r = r.payload(v.as_str());
        }
        producer.send(r).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

fn create_topic(topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .unwrap();
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let done = futures::executor::block_on(admin.create_topics([&t], &AdminOptions::new()));
    assert!(
        done.unwrap().iter().all(|r| r.is_ok()),
        "topic {topic} created"
    );
}

fn user_record(kind: &str, id: &str) -> Option<String> {
    Some(serde_json::json!({"type": kind, "user_id": id}).to_string())
}

/// The seed's "user-table from auth svc": every pod follows the auth service's topic. Unknown
/// users are refused at the upgrade and as recipients on both pods, a tombstone closes the
/// deleted user's socket on the pod that holds it, and a user created later can connect.
#[test]
fn pods_follow_the_auth_services_user_topic() {
    let space = Space::new();
    let topic = format!("{}users", space.prefix);
    create_topic(&topic, 2);
    let (a, b, c) = (user("alice"), user("bob"), user("carol"));
    let kinds = [
        ("user.created", &a),
        ("user.created", &b),
        ("user.renamed", &a),
    ];
    let records: Vec<_> = kinds
        .iter()
        .map(|(k, id)| (id.as_str(), user_record(k, id)))
        .collect();
    let mut records = records;
    records.push(("junk", Some("not a user record".into()))); // Skipped, logged.
    produce_users(&topic, &records);
    let flags = ["--users-topic", topic.as_str()];
    let pa = PodProc::start_with(&space, "a", &kafka(), &flags);
    let pb = PodProc::start_with(&space, "b", &kafka(), &flags);
    let status = |addr, u: &str| match try_connect(addr, &format!("user_id={u}"), None) {
        Ok(_) => 101,
        Err(ConnectError::Http(code, _)) => code,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!((status(pa.addr, &c), status(pb.addr, &c)), (403, 403));
    let mut alice = Client::connect(pa.addr, &a);
    let mut bob = Client::connect(pb.addr, &b);
    let acc = alice.send_msg(&b, "known", None);
    assert_eq!(bob.recv_type("message")["id"], acc["id"]);
    alice.send(serde_json::json!({"payload":"x","reciever_id":c,"client_msg_id":"u"}));
    let not_status = |v: &serde_json::Value| v["type"] != "status";
    assert_eq!(
        alice.recv_until(not_status).pop().unwrap()["code"],
        "unknown_recipient"
    );

    produce_users(
        &topic,
        &[
            (b.as_str(), None),
            (c.as_str(), user_record("user.created", &c)),
        ],
    );
    assert_eq!(bob.expect_close(), 4010);
    let until = |addr, u: &str, want| {
        let deadline = std::time::Instant::now() + WAIT;
        while status(addr, u) != want {
            assert!(std::time::Instant::now() < deadline, "{u} never {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    until(pa.addr, &b, 403);
    until(pa.addr, &c, 101);
    alice.send(serde_json::json!({"payload":"x","reciever_id":b,"client_msg_id":"v"}));
    let e = alice.recv_until(not_status).pop().unwrap();
    let want = serde_json::json!({"code": "unknown_recipient", "client_msg_id": "v"});
    assert_eq!(
        (&e["code"], &e["client_msg_id"]),
        (&want["code"], &want["client_msg_id"])
    );
    let stored = space.sql("SELECT count(*) FROM messages");
    assert_eq!(stored, "1", "refused sends store nothing");
    drop((pa, pb));
}

/// A device that has not acked a message is never shown it again by the redrive, however
/// many newer ones it was given meanwhile (the chaos soak's deaf device, issue 11): here 600
/// newer ones, past the 512 positions and 64 ids a connection otherwise remembers. The
/// message is claimed by a redrive twice before the sentinel, so at least one redriven copy
/// was produced to bob's partition ahead of it.
#[test]
fn a_redrive_never_shows_an_unacked_message_twice_however_far_back() {
    let space = Space::new();
    // bob does not read while the test waits for the redrive: no keepalive closes.
    let quiet = ["--ping-interval-ms", "600000"];
    let pa = PodProc::start_with(&space, "a", &kafka(), &quiet);
    let pb = PodProc::start_with(&space, "b", &kafka(), &quiet);
    let (mut alice, mut bob) = pair(pa.addr, pb.addr);
    let b = bob.user.clone();
    bob.ws.get_mut().set_read_timeout(Some(SLOW)).unwrap();
    let first = alice.send_msg_any(&b, "never acked")["id"].clone();
    let first = first.as_str().unwrap().to_owned();
    let mut copies = std::collections::HashMap::<String, usize>::new();
    let m = bob.recv_type("message");
    assert_eq!(m["id"].as_str(), Some(first.as_str()));
    *copies.entry(first.clone()).or_default() += 1;
    let newer: Vec<_> = (0..600)
        .map(|i| alice.send_msg_any(&b, &format!("n{i}"))["id"].clone())
        .collect();
    let mut ids = as_strings(&newer);
    for _ in 0..ids.len() {
        let id = bob.recv_type("message")["id"].as_str().unwrap().to_owned();
        bob.ack(&id);
        *copies.entry(id).or_default() += 1;
    }
    let claim =
        format!("SELECT coalesce(stuck_since::text, '') FROM messages WHERE id = '{first}'");
    let mut claims = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + SLOW * 2;
    while claims.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "not redriven twice");
        let at = space.sql(&claim);
        if !at.is_empty() {
            claims.insert(at);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sentinel = alice.send_msg_any(&b, "sentinel")["id"].clone();
    let sentinel = sentinel.as_str().unwrap().to_owned();
    loop {
        let id = bob.recv_type("message")["id"].as_str().unwrap().to_owned();
        *copies.entry(id.clone()).or_default() += 1;
        if id == sentinel {
            break;
        }
    }
    ids.push(first);
    ids.push(sentinel);
    assert_once_each(&copies, &ids);
}
