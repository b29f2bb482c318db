//! Distributed mode: 2–3 pod processes on one Kafka-protocol broker, Redis and Postgres.
//! `scripts/test.sh` starts those services; run alone, start them with `scripts/services.sh up`.

mod common;

use common::cluster::*;
use common::*;
use std::time::Duration;

#[test]
fn cross_pod_delivery_statuses_and_timestamps() {
    let space = Space::new();
    let (pa, pb) = (PodProc::start(&space, "a"), PodProc::start(&space, "b"));
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
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let space = Space::new();
    let pa = PodProc::start(&space, "a");
    let (mut alice, mut bob) = pair(pa.addr, pa.addr);
    let (a, b) = (alice.user.clone(), bob.user.clone());
    let id = send_and_confirm(&mut alice, &mut bob, "evented");
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", format!("{}probe", space.prefix))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let topic = format!("{}{}", space.prefix, pa.id);
    let meta = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        meta.topics()[0].partitions().len(),
        2,
        "partitions = shards"
    );
    let status_topic = format!("{}message-status", space.prefix);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&status_topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + SLOW;
    while seen.len() < 2 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            if v["id"] == id.as_str() {
                assert_eq!(
                    (v["sender_id"].as_str(), v["reciever_id"].as_str()),
                    (Some(&*a), Some(&*b))
                );
                assert!(v["at"].as_str().unwrap().ends_with('Z'));
                seen.push(v["status"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(seen, ["SENT", "DELIVERED"]);
}

#[test]
fn kill_9_of_the_recipients_pod_loses_nothing() {
    let space = Space::new();
    let (pa, pb) = (PodProc::start(&space, "a"), PodProc::start(&space, "b"));
    let (a, b) = (user("alice"), user("bob"));
    let mut alice = Client::connect(pa.addr, &a);
    let bob = Client::connect(pb.addr, &b);
    pb.kill9();
    drop(bob);
    // bob's routes still point at the dead pod until their lease expires.
    let ids: Vec<_> = (0..20)
        .map(|i| alice.send_msg_any(&b, &format!("p{i}"))["id"].clone())
        .collect();
    let mut bob = Client::connect(pa.addr, &b);
    let mut got = std::collections::HashSet::new();
    while got.len() < ids.len() {
        let m = bob.recv_type("message");
        got.insert(m["id"].clone());
    }
    assert!(ids.iter().all(|id| got.contains(id)));
}

#[test]
fn redis_flushed_under_traffic_routes_return_and_nothing_is_lost() {
    let space = Space::new();
    let (pa, pb) = (PodProc::start(&space, "a"), PodProc::start(&space, "b"));
    let (mut alice, mut bob) = pair(pa.addr, pb.addr);
    let b = bob.user.clone();
    let key = format!("{}route:{b}", space.prefix);
    let mut ids = Vec::new();
    for i in 0..30 {
        if i == 10 {
            let mut r = space.redis();
            let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap(); // Our keys only.
        }
        ids.push(alice.send_msg_any(&b, &format!("f{i}"))["id"].clone());
    }
    let mut got = std::collections::HashSet::new();
    bob.ws.get_mut().set_read_timeout(Some(SLOW)).unwrap();
    while got.len() < ids.len() {
        let m = bob.recv_type("message");
        got.insert(m["id"].clone());
    }
    let mut r = space.redis();
    let n: i64 = redis::cmd("ZCARD").arg(&key).query(&mut r).unwrap();
    assert_eq!(n, 1, "the heartbeat restored bob's route");
}

/// A private broker (tansu, on a free port, persisting to a temp dir) that this test may
/// kill and restart without disturbing the shared one.
struct Broker {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Broker {
    fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut b = Broker {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            port,
        };
        b.restart();
        b
    }

    fn restart(&mut self) {
        self.kill();
        let bin = std::env::var("DISTRISOCKS_TANSU_BIN").unwrap_or_else(|_| {
            format!(
                "{}/.cache/distrisocks/tansu/bin/tansu",
                std::env::var("HOME").unwrap()
            )
        });
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = std::process::Command::new(bin)
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu starts (scripts/services.sh installs it)");
        self.child = Some(child);
        let up = eventually(|| std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok());
        assert!(up, "private broker listens");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn broker_restarted_under_traffic_loses_nothing() {
    let mut broker = Broker::start();
    let brokers = format!("127.0.0.1:{}", broker.port);
    let space = Space::new();
    let pa = PodProc::start_on(&space, "a", &brokers);
    let pb = PodProc::start_on(&space, "b", &brokers);
    let (mut alice, mut bob) = pair(pa.addr, pb.addr);
    let b = bob.user.clone();
    bob.ws.get_mut().set_read_timeout(Some(SLOW * 2)).unwrap();
    let mut ids = Vec::new();
    for i in 0..40 {
        if i == 15 {
            broker.kill(); // Mid-traffic: records in flight, consumers mid-poll.
        }
        if i == 25 {
            broker.restart();
        }
        // Sends keep being accepted while the broker is down: the store does not need it.
        ids.push(alice.send_msg_any(&b, &format!("b{i}"))["id"].clone());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut got = std::collections::HashSet::new();
    while got.len() < ids.len() {
        let m = bob.recv_type("message");
        got.insert(m["id"].clone());
    }
    assert!(ids.iter().all(|id| got.contains(id)));
    drop((pa, pb));
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
}
