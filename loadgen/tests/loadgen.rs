//! The load generator against a real pod (in-process, and the binary with two processes), and
//! against fake servers that drop messages on purpose: the generator must count that as loss.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use distrisocks::{Config, Pod};
use distrisocks_bench::{self as loadgen, Options, Protocol, Report};
use serde_json::{json, Value};
use tungstenite::handshake::server::{Request, Response};
use tungstenite::{Message, WebSocket};

/// A pod with 2 shards on 127.0.0.1:0, storing under `dir` without fsync.
fn start_pod(dir: &std::path::Path) -> Pod {
    let mut c = Config::defaults();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.shards = Some(2);
    c.data_dir = dir.to_path_buf();
    c.tuning.store_full_sync = false;
    Pod::start(c).expect("pod starts")
}

/// A small workload: 50 users, 200 msg/s for 2 s.
fn small(url: &str, protocol: Protocol) -> Options {
    let mut o = Options::for_url(url);
    o.protocol = protocol;
    o.connections = 50;
    o.rate = 200.0;
    o.duration_secs = 2.0;
    o.drain_secs = 5.0;
    o.threads = Some(2);
    o
}

fn assert_latency_present(r: &Report) {
    let l = &r.latency_us;
    assert_eq!(l.count, r.counts.delivered_unique, "{r:?}");
    assert!(l.p50 > 0 && l.p50 <= l.p90 && l.p90 <= l.p99, "{l:?}");
    assert!(l.p99 <= l.p999 && l.p999 <= l.max, "{l:?}");
}

#[test]
fn a_real_pod_delivers_everything_it_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path());
    let r = loadgen::run(&small(
        &format!("ws://{}/ws", pod.local_addr()),
        Protocol::Distrisocks,
    ))
    .unwrap();
    let c = &r.counts;
    assert_eq!((c.connect_ok, c.connect_failed), (50, 0), "{r:?}");
    assert!(c.sent >= 350, "about 400 scheduled: {r:?}");
    assert_eq!(c.accepted, c.sent, "{r:?}");
    assert_eq!(c.delivered, c.accepted, "{r:?}");
    assert_eq!((c.missing, c.duplicates, c.unanswered), (0, 0, 0), "{r:?}");
    assert_eq!(c.acks_sent, c.delivered);
    assert_latency_present(&r);
    assert!(r.accept_latency_us.count == c.accepted);
    pod.shutdown();
}

#[test]
fn the_binary_merges_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_distrisocks-bench"))
        .args(["--url", &format!("ws://{}/ws", pod.local_addr())])
        .args(["--procs", "2", "--threads", "1", "--connections", "40"])
        .args(["--rate", "200", "--duration-secs", "1", "--drain-secs", "5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Report = serde_json::from_slice(&out.stdout).unwrap();
    let c = &r.counts;
    assert_eq!((r.processes, c.connect_ok), (2, 40), "{r:?}");
    assert!(c.sent >= 150, "{r:?}");
    assert_eq!(
        (c.accepted, c.delivered, c.missing),
        (c.sent, c.sent, 0),
        "{r:?}"
    );
    assert_latency_present(&r);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    pod.shutdown();
}

#[test]
fn dropped_messages_are_reported_missing() {
    let fake = FakeServer::start(Protocol::Distrisocks, 10);
    let mut opts = small(&format!("ws://{}/ws", fake.addr), Protocol::Distrisocks);
    opts.drain_secs = 1.0; // Dropped messages never come: the drain always runs out.
    let r = loadgen::run(&opts).unwrap();
    let c = &r.counts;
    let dropped = fake.dropped.load(SeqCst);
    assert!(dropped > 0);
    assert_eq!(c.accepted, c.sent, "{r:?}");
    assert_eq!(c.missing, dropped, "{r:?}");
    assert_eq!(c.delivered, c.sent - dropped, "{r:?}");
    assert_eq!(c.missing_sample.len(), 10);
    assert_latency_present(&r);
}

/// A server 2 s behind when traffic ends, with a copy arriving every 10 ms: a drain that
/// waits for quiet (1 s) rather than for a fixed time counts every message delivered.
#[test]
fn a_backlog_that_keeps_arriving_is_waited_for() {
    let fake = FakeServer::lagging(Protocol::Distrisocks, 0, Duration::from_millis(5));
    let mut opts = small(&format!("ws://{}/ws", fake.addr), Protocol::Distrisocks);
    opts.drain_secs = 1.0;
    let r = loadgen::run(&opts).unwrap();
    let c = &r.counts;
    assert!(c.sent >= 350, "about 400 scheduled: {r:?}");
    assert_eq!((c.accepted, c.delivered), (c.sent, c.sent), "{r:?}");
    assert_eq!((c.missing, c.duplicates), (0, 0), "{r:?}");
    assert!(r.latency_us.max >= 1_500_000, "the last came late: {r:?}");
}

#[test]
fn socketio_peers_are_measured_and_pinged() {
    let fake = FakeServer::start(Protocol::Socketio, 0);
    let r = loadgen::run(&small(&format!("ws://{}", fake.addr), Protocol::Socketio)).unwrap();
    let c = &r.counts;
    assert_eq!(c.connect_ok, 50, "{r:?}");
    assert_eq!(
        (c.expected, c.delivered, c.missing),
        (c.sent, c.sent, 0),
        "{r:?}"
    );
    // The fake server's threads may still be reading the last pongs when the run returns
    // (seen under load: 47 of 50); wait for them, with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.pongs.load(SeqCst) < 50 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        fake.pongs.load(SeqCst),
        50,
        "every connection answered the ping"
    );
    assert_latency_present(&r);

    let lossy = FakeServer::start(Protocol::Socketio, 10);
    let mut opts = small(&format!("ws://{}", lossy.addr), Protocol::Socketio);
    opts.drain_secs = 1.0;
    let r = loadgen::run(&opts).unwrap();
    assert!(r.counts.missing > 0);
    assert_eq!(r.counts.missing, lossy.dropped.load(SeqCst), "{r:?}");
}

/// A WebSocket server on std threads that relays sends between users like a pod (or a
/// Socket.IO peer) but silently drops every `drop_every`-th message after accepting it.
struct FakeServer {
    addr: SocketAddr,
    dropped: Arc<AtomicU64>,
    pongs: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Shared {
    protocol: Protocol,
    drop_every: u64,
    /// Message n is delivered n × `lag` after it arrives (zero: at once), through `late`.
    lag: Duration,
    late: Sender<(Instant, Sender<String>, String)>,
    seen: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    pongs: Arc<AtomicU64>,
    users: Arc<Mutex<HashMap<String, Sender<String>>>>,
}

impl FakeServer {
    fn start(protocol: Protocol, drop_every: u64) -> FakeServer {
        FakeServer::lagging(protocol, drop_every, Duration::ZERO)
    }

    /// A server that falls behind more with every message, as a pod working off a backlog.
    fn lagging(protocol: Protocol, drop_every: u64, lag: Duration) -> FakeServer {
        let (late, due) = unbounded::<(Instant, Sender<String>, String)>();
        std::thread::spawn(move || {
            for (at, tx, frame) in due {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let _ = tx.send(frame);
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            protocol,
            drop_every,
            lag,
            late,
            seen: Arc::default(),
            dropped: Arc::default(),
            pongs: Arc::default(),
            users: Arc::default(),
        };
        let (dropped, pongs) = (shared.dropped.clone(), shared.pongs.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, shared));
            }
        });
        FakeServer {
            addr,
            dropped,
            pongs,
        }
    }
}

#[allow(clippy::result_large_err)] // tungstenite's callback type, not ours.
fn serve(stream: TcpStream, s: Shared) {
    let mut user = String::new();
    let callback = |req: &Request, resp: Response| {
        let query = req.uri().query().unwrap_or("");
        let found = query.split('&').find_map(|kv| kv.strip_prefix("user_id="));
        user = found.unwrap_or("").to_owned();
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else {
        return;
    };
    let (tx, rx) = unbounded();
    s.users.lock().unwrap().insert(user.clone(), tx);
    if s.protocol == Protocol::Socketio {
        ws.send(Message::text(
            r#"0{"sid":"e","pingInterval":25000,"pingTimeout":20000}"#,
        ))
        .unwrap();
    }
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    relay(&mut ws, &user, &rx, &s);
}

/// Reads frames (with a short timeout) and writes whatever other users routed to us.
fn relay(ws: &mut WebSocket<TcpStream>, user: &str, rx: &Receiver<String>, s: &Shared) {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                for reply in handle(t.as_str(), user, s) {
                    if ws.send(Message::text(reply)).is_err() {
                        return;
                    }
                }
            }
            Ok(Message::Close(_)) => return,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
        while let Ok(frame) = rx.try_recv() {
            if ws.send(Message::text(frame)).is_err() {
                return;
            }
        }
    }
}

/// Answers one client frame; relays (or drops) sends to their recipient.
fn handle(text: &str, user: &str, s: &Shared) -> Vec<String> {
    let (to, payload, cmid) = match s.protocol {
        Protocol::Distrisocks => {
            let v: Value = serde_json::from_str(text).unwrap();
            if v["type"] == "ack" {
                return vec![];
            }
            (
                v["reciever_id"].clone(),
                v["payload"].clone(),
                v["client_msg_id"].clone(),
            )
        }
        Protocol::Socketio => match text {
            "40" => return vec![r#"40{"sid":"s"}"#.to_owned(), "2".to_owned()],
            "3" => {
                s.pongs.fetch_add(1, SeqCst);
                return vec![];
            }
            _ => {
                let v: Value = serde_json::from_str(text.strip_prefix("42").unwrap()).unwrap();
                (
                    v[1]["reciever_id"].clone(),
                    v[1]["payload"].clone(),
                    Value::Null,
                )
            }
        },
    };
    let n = s.seen.fetch_add(1, SeqCst) + 1;
    if s.drop_every > 0 && n % s.drop_every == 0 {
        s.dropped.fetch_add(1, SeqCst);
    } else if let Some(tx) = s.users.lock().unwrap().get(to.as_str().unwrap()) {
        let frame = message_frame(s.protocol, n, user, &to, &payload);
        let due = Instant::now() + s.lag * n as u32;
        let _ = s.late.send((due, tx.clone(), frame));
    }
    match s.protocol {
        Protocol::Distrisocks => vec![json!({"type": "accepted", "id": format!("m{n}"),
            "client_msg_id": cmid, "status": "NONE"})
        .to_string()],
        Protocol::Socketio => vec![],
    }
}

/// The frame the recipient gets for message number `n`.
fn message_frame(protocol: Protocol, n: u64, from: &str, to: &Value, payload: &Value) -> String {
    match protocol {
        Protocol::Distrisocks => {
            json!({"type": "message", "id": format!("m{n}"), "sender_id": from,
            "reciever_id": to, "message": payload, "created_at": "now"})
            .to_string()
        }
        Protocol::Socketio => {
            let data = json!({"sender_id": from, "reciever_id": to, "payload": payload});
            format!("42{}", json!(["message", data]))
        }
    }
}

/// A server whose first frame arrives in the same write as its `101` answer, then stays
/// silent: the generator must hand that frame on from the bytes its upgrade read past the
/// response head, without waiting for more bytes that never come.
#[test]
fn a_frame_sent_with_the_upgrade_answer_is_read() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let head = read_head(&mut s);
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .trim()
                .to_owned();
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let text = r#"{"type":"message","id":"m1","message":"not one of ours"}"#;
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            out.extend([0x81, text.len() as u8]); // Unmasked, one frame, under 126 bytes.
            out.extend(text.as_bytes());
            std::io::Write::write_all(&mut s, &out).unwrap();
            held.push(s); // Open and silent until the run ends.
        }
        held
    });
    let mut o = small(&format!("ws://{addr}/ws"), Protocol::Distrisocks);
    (o.connections, o.rate, o.duration_secs, o.drain_secs) = (2, 1.0, 1.0, 0.5);
    o.threads = Some(1);
    o.no_source_bind = true;
    let r = loadgen::run(&o).unwrap();
    drop(server.join().unwrap());
    let c = &r.counts;
    assert_eq!(c.connect_ok, 2, "{r:?}");
    assert_eq!((c.delivered, c.foreign_messages), (2, 2), "{r:?}");
}

/// The request head of one upgrade, read byte by byte up to its blank line.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(s, &mut b).unwrap();
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}
