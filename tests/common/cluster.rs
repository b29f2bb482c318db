//! Multi-pod harness: pod processes with their own ids on one broker, Redis and Postgres.
//! Every test run uses its own topic prefix, Redis key prefix and Postgres schema.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn kafka() -> String {
    std::env::var("DISTRISOCKS_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}
pub fn redis_url() -> String {
    std::env::var("DISTRISOCKS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}
pub fn postgres_url() -> String {
    std::env::var("DISTRISOCKS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// One test's isolated namespace.
pub struct Space {
    pub prefix: String,
    pub schema: String,
}

impl Space {
    pub fn new() -> Space {
        let tag = super::user("t").replace('-', "_");
        Space {
            prefix: format!("{tag}."),
            schema: tag,
        }
    }

    pub fn pod_id(&self, name: &str) -> String {
        format!("{}{name}", self.schema).replace('_', "-")
    }

    /// Runs SQL in this space's schema through psql; returns the unaligned output.
    pub fn sql(&self, query: &str) -> String {
        let out = Command::new("psql")
            .arg(postgres_url())
            .env("PGOPTIONS", format!("-c search_path={}", self.schema))
            .args(["-v", "ON_ERROR_STOP=1", "-tAc", query])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(redis_url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(postgres_url())
            .arg("-qc")
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .output();
    }
}

/// A pod process; killed when dropped.
pub struct PodProc {
    pub child: Child,
    pub addr: SocketAddr,
    pub id: String,
}

impl PodProc {
    pub fn start(space: &Space, name: &str) -> PodProc {
        PodProc::start_on(space, name, &kafka())
    }

    /// Starts a pod on a given broker (tests must not change the environment: tests run in
    /// parallel threads of one process).
    pub fn start_on(space: &Space, name: &str, brokers: &str) -> PodProc {
        PodProc::start_with(space, name, brokers, &[])
    }

    /// Starts a pod whose Redis is at `redis` (a proxy the test controls).
    pub fn start_with_redis(space: &Space, name: &str, redis: &str) -> PodProc {
        PodProc::spawn(
            PodProc::command_on(space, name, &kafka(), redis, &[]),
            space,
            name,
        )
    }

    /// Starts a pod with `extra` flags besides the harness' own (none of the same name).
    pub fn start_with(space: &Space, name: &str, brokers: &str, extra: &[&str]) -> PodProc {
        let cmd = PodProc::command_on(space, name, brokers, &redis_url(), extra);
        PodProc::spawn(cmd, space, name)
    }

    /// Starts pod `name` with `env` added to its environment (failpoints).
    pub fn start_env(space: &Space, name: &str, env: &[(&str, &str)]) -> PodProc {
        let mut cmd = PodProc::command(space, name, &kafka());
        cmd.envs(env.iter().copied());
        PodProc::spawn(cmd, space, name)
    }

    /// Runs `cmd` (pod `name` of `space`) and waits until it serves.
    fn spawn(mut cmd: Command, space: &Space, name: &str) -> PodProc {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pod binary starts");
        PodProc::wait_started(child.stderr.take().unwrap(), child, space.pod_id(name))
    }

    /// Waits for the process to end (a failpoint's abort) and returns how it ended.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// The command line of pod `name` of `space`, on `brokers`.
    pub fn command(space: &Space, name: &str, brokers: &str) -> Command {
        PodProc::command_on(space, name, brokers, &redis_url(), &[])
    }

    /// The harness' flags, then `extra` (which may replace the harness' timings). Producers are not idempotent unless `extra` says so:
    /// tansu 0.6 panics on the first produce after the epoch bump that librdkafka performs
    /// after any delivery timeout, and its storage stays dead for every later test (see
    /// `--kafka-idempotence`). `cross_pod_delivery_statuses_and_timestamps` runs idempotent.
    fn command_on(
        space: &Space,
        name: &str,
        brokers: &str,
        redis: &str,
        extra: &[&str],
    ) -> Command {
        let id = space.pod_id(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_distrisocks"));
        cmd.args(["--listen", "127.0.0.1:0", "--shards", "2", "--pod-id", &id])
            .args(["--kafka-brokers", brokers, "--redis-url", redis])
            .args([
                "--postgres-url",
                &postgres_url(),
                "--postgres-schema",
                &space.schema,
            ])
            .args(["--prefix", &space.prefix])
            .env("DISTRISOCKS_LOG", "info");
        // A produce may take seconds on a loaded test machine; the redrive waits longer.
        let tunable = [
            ("--route-lease-ms", "3000"),
            ("--redrive-interval-ms", "300"),
            ("--redrive-none-after-ms", "3000"),
            ("--redrive-sent-after-ms", "5000"),
            ("--kafka-produce-timeout-ms", "2500"),
            ("--kafka-replication-factor", "1"),
            ("--shutdown-patience-ms", "1000"),
        ];
        for (flag, value) in tunable {
            if !extra.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        if !extra.contains(&"--kafka-idempotence") {
            cmd.args(["--kafka-idempotence", "false"]);
        }
        cmd.args(extra);
        cmd
    }

    fn wait_started(stderr: std::process::ChildStderr, mut child: Child, id: String) -> PodProc {
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        while let Some(Ok(line)) = lines.next() {
            if let Some(rest) = line
                .split("addr=")
                .nth(1)
                .filter(|_| line.contains("pod started"))
            {
                let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                let tag = id.clone();
                std::thread::spawn(move || {
                    for l in lines.map_while(Result::ok) {
                        if l.contains("WARN") || l.contains("ERROR") {
                            eprintln!("[{tag}] {l}");
                        }
                    }
                });
                return PodProc { child, addr, id };
            }
            seen.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "pod {id} did not start (is scripts/services.sh up?):\n{}",
            seen.join("\n")
        );
    }

    /// SIGKILL: no shutdown, no flush, routes left to expire.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = std::time::Instant::now() + SLOW;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "pod exits 0 on SIGTERM, got {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pod {} did not exit within {SLOW:?} of SIGTERM", self.id);
    }
}

impl Drop for PodProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long distributed tests wait for things that involve leases and the redrive.
pub const SLOW: Duration = Duration::from_secs(20);

/// Copies of each message one connection showed. Reads `bob` (acking every message) until
/// every id in `ids` arrived, then until the store holds nothing below DELIVERED for bob (so
/// nothing can be redriven to him any more), then until a sentinel from `alice` arrives:
/// anything still on its way to this connection was produced before the sentinel, and each
/// path to it (a pod topic's partition, a shard inbox) is first in, first out.
pub fn copies_per_id(
    space: &Space,
    alice: &mut super::Client,
    bob: &mut super::Client,
    ids: &[String],
) -> std::collections::HashMap<String, usize> {
    let mut copies = std::collections::HashMap::new();
    bob.ws.get_mut().set_read_timeout(Some(SLOW * 2)).unwrap();
    while !ids.iter().all(|id| copies.contains_key(id)) {
        read_counted(bob, &mut copies);
    }
    let left = format!(
        "SELECT count(*) FROM messages WHERE reciever_id = '{}' AND status <> 'DELIVERED'",
        bob.user
    );
    let deadline = std::time::Instant::now() + SLOW;
    while space.sql(&left) != "0" {
        assert!(std::time::Instant::now() < deadline, "acks not all stored");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sentinel = alice.send_msg_any(&bob.user, "sentinel")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    while read_counted(bob, &mut copies) != sentinel {}
    copies.remove(&sentinel);
    copies
}

/// The next message on `bob`, acked and counted; status frames are skipped.
fn read_counted(
    bob: &mut super::Client,
    copies: &mut std::collections::HashMap<String, usize>,
) -> String {
    let m = bob.recv_type("message");
    let id = m["id"].as_str().unwrap().to_owned();
    bob.ack(&id);
    *copies.entry(id.clone()).or_insert(0) += 1;
    id
}

/// Asserts that `copies` holds exactly `ids`, each once.
pub fn assert_once_each(copies: &std::collections::HashMap<String, usize>, ids: &[String]) {
    let twice: Vec<_> = copies.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "shown more than once: {twice:?}");
    let stray: Vec<_> = copies.keys().filter(|id| !ids.contains(id)).collect();
    assert!(stray.is_empty(), "not sent in this test: {stray:?}");
    assert_eq!(copies.len(), ids.len());
}

/// A consumer of this test's topics, in a group of its own.
pub fn probe_consumer(space: &Space) -> rdkafka::consumer::BaseConsumer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", format!("{}probe", space.prefix))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap()
}

/// The first `want` events of message `id` on `<prefix>message-status`, read from the start.
pub fn status_events(space: &Space, id: &str, want: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + SLOW * 2;
    loop {
        let mut seen = status_events_once(space, id);
        if seen.len() >= want || std::time::Instant::now() >= deadline {
            seen.truncate(want); // At least once: a repeated relay round may follow.
            return seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One read of the status topic from its start until it has been quiet for a second, with a
/// fresh consumer: the relay may not have produced yet, and on tansu a fetch can skip records
/// (perf/RESULTS.md §9e), so the caller reads again until it has what it waits for.
pub fn status_events_once(space: &Space, id: &str) -> Vec<serde_json::Value> {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Message;
    let consumer = probe_consumer(space);
    let topic = format!("{}message-status", space.prefix);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = Vec::new();
    let mut quiet_since = std::time::Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(1) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        quiet_since = std::time::Instant::now();
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if v["id"] == id {
            seen.push(v);
        }
    }
    seen
}

/// Message ids of `accepted` frames, as strings.
pub fn as_strings(ids: &[serde_json::Value]) -> Vec<String> {
    ids.iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

/// The `status` field of each event, in order.
pub fn statuses(events: &[serde_json::Value]) -> Vec<&str> {
    events
        .iter()
        .map(|v| v["status"].as_str().unwrap())
        .collect()
}
