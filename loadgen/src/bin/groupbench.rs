//! Group fan-out scenario (issue 10 item 3, `perf/groups.sh`): one sender, a group of
//! `--members` users of whom `--online` are connected as v2 devices, `--messages` group
//! messages at `--rate` per second. Every online device acks what it gets and counts copies
//! per id. `--mode direct` sends the same copies as one direct message per online member
//! instead: the same-run baseline a group message is measured against.
//!
//! Prints one JSON line: copies expected, received, missing, duplicated, and the latency from
//! the send to each copy's arrival (p50, p99, max, ms). Blocking clients, one thread each:
//! this is a functional scenario at group-chat rates, not the throughput generator.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

#[derive(Parser, Debug, Clone)]
#[command(about = "Group fan-out scenario against a distriSocks pod (perf/groups.sh)")]
struct Args {
    /// The pod's WebSocket URL (dev auth).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    #[arg(long, default_value_t = 1000)]
    members: usize,
    #[arg(long, default_value_t = 100)]
    online: usize,
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Group messages (or rounds of direct messages) per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// `group` or `direct`.
    #[arg(long, default_value = "group")]
    mode: String,
    /// Prefix of the user ids (a fresh one per run keeps runs apart).
    #[arg(long, default_value = "gb")]
    prefix: String,
    /// The pod's process id: its CPU ticks (utime + stime, /proc) over the sending phase
    /// (from the first send until every copy arrived) are reported as `pod_cpu_ticks`.
    #[arg(long)]
    pod_pid: Option<u32>,
}

/// utime + stime of `pid`, in clock ticks; 0 without a pid.
fn cpu_ticks(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

type Ws = WebSocket<TcpStream>;

fn connect(url: &str, user: &str) -> Ws {
    let url = format!("{url}?user_id={user}&since=0");
    let (ws, _) = tungstenite::connect(url).expect("connects");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    // tungstenite::connect gives a MaybeTlsStream; rebuild over the plain stream.
    let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.into_inner() else {
        panic!("plain ws only")
    };
    WebSocket::from_raw_socket(s, tungstenite::protocol::Role::Client, None)
}

fn recv(ws: &mut Ws) -> Value {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).unwrap(),
            Ok(_) => continue,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

/// Copies received per (device, id), and the latency of each (from the shared send clock).
#[derive(Default)]
struct Seen {
    copies: HashMap<(String, String), usize>,
    latency_ms: Vec<f64>,
}

fn main() {
    let args = Args::parse();
    let users: Vec<String> = (0..args.members)
        .map(|i| format!("{}-m{i}", args.prefix))
        .collect();
    let sender = format!("{}-sender", args.prefix);
    let group = format!("g:{}", args.prefix);
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let seen: Arc<Mutex<Seen>> = Default::default();
    let ready = Arc::new(Barrier::new(args.online + 1));
    let mut alice = connect(&args.url, &sender);
    let readers: Vec<_> = (users.iter().take(args.online).cloned())
        .map(|u| {
            let (url, ready, seen, sent_at) = (
                args.url.clone(),
                ready.clone(),
                seen.clone(),
                sent_at.clone(),
            );
            let want = args.messages;
            let group_mode = args.mode == "group";
            std::thread::spawn(move || {
                read_member(&url, &u, want, group_mode, &ready, &seen, &sent_at)
            })
        })
        .collect();
    if args.mode == "group" {
        let members: Vec<&String> = users.iter().collect();
        send(
            &mut alice,
            json!({"type": "group_create", "conversation_id": group, "members": members}),
        );
        let v = recv(&mut alice);
        assert_eq!(v["type"], "group", "{v}");
    }
    ready.wait();
    let ticks = cpu_ticks(args.pod_pid);
    let started = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.rate);
    let mut pending = Pending::default();
    for i in 0..args.messages {
        let due = started + gap * i as u32;
        while Instant::now() < due {
            pending.drain(&mut alice, due, &sent_at);
        }
        send_round(&mut alice, &args, &group, &users, i, &mut pending);
    }
    let send_secs = started.elapsed().as_secs_f64();
    pending.drain(
        &mut alice,
        Instant::now() + Duration::from_secs(60),
        &sent_at,
    );
    for r in readers {
        r.join().unwrap();
    }
    let ticks = cpu_ticks(args.pod_pid) - ticks;
    report(&args, &seen.lock().unwrap(), send_secs, ticks);
}

/// Sends written and not yet `accepted`, by `client_msg_id`: sends are pipelined at the
/// rate (several may wait for the store at once, as from many clients), not one at a time.
#[derive(Default)]
struct Pending {
    by_cmid: HashMap<String, Instant>,
}

impl Pending {
    /// Reads `accepted` frames until `until` or until none is pending, recording each id's
    /// send instant for the readers (who wait for it).
    fn drain(&mut self, alice: &mut Ws, until: Instant, sent_at: &Mutex<HashMap<String, Instant>>) {
        while !self.by_cmid.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            set_timeout(alice, left);
            let v = match alice.read() {
                Ok(Message::Text(t)) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return
                }
                Err(e) => panic!("read failed: {e}"),
            };
            if v["type"] != "accepted" {
                continue;
            }
            let at = self
                .by_cmid
                .remove(v["client_msg_id"].as_str().unwrap())
                .unwrap();
            sent_at
                .lock()
                .unwrap()
                .insert(v["id"].as_str().unwrap().to_owned(), at);
        }
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }
}

fn set_timeout(ws: &mut Ws, d: Duration) {
    ws.get_mut()
        .set_read_timeout(Some(d.max(Duration::from_millis(1))))
        .unwrap();
}

/// One group message, or one direct message per online member, written without waiting for
/// their `accepted` (see [`Pending`]).
fn send_round(
    alice: &mut Ws,
    args: &Args,
    group: &str,
    users: &[String],
    i: usize,
    pending: &mut Pending,
) {
    let targets: Vec<Value> = match args.mode.as_str() {
        "group" => vec![json!({"conversation_id": group, "payload": format!("m{i}"), "client_msg_id": format!("c{i}")})],
        _ => (users.iter().take(args.online).enumerate())
            .map(|(j, u)| json!({"reciever_id": u, "payload": format!("m{i}"), "client_msg_id": format!("c{i}-{j}")}))
            .collect(),
    };
    let at = Instant::now();
    for t in &targets {
        send(alice, t.clone());
        pending
            .by_cmid
            .insert(t["client_msg_id"].as_str().unwrap().to_owned(), at);
    }
}

fn read_member(
    url: &str,
    user: &str,
    want: usize,
    group: bool,
    ready: &Barrier,
    seen: &Mutex<Seen>,
    sent_at: &Mutex<HashMap<String, Instant>>,
) {
    let mut ws = connect(url, user);
    if group {
        loop {
            if recv(&mut ws)["type"] == "group" {
                break;
            }
        }
    }
    ready.wait();
    let mut got = 0;
    while got < want {
        let v = recv(&mut ws);
        if v["type"] != "message" {
            continue;
        }
        let now = Instant::now();
        let id = v["id"].as_str().unwrap().to_owned();
        send(&mut ws, json!({"type": "ack", "id": id}));
        got += 1;
        let sent = loop {
            if let Some(t) = sent_at.lock().unwrap().get(&id).copied() {
                break t;
            }
            std::thread::sleep(Duration::from_micros(200)); // Its `accepted` is on its way.
        };
        let mut s = seen.lock().unwrap();
        *s.copies.entry((user.to_owned(), id)).or_default() += 1;
        s.latency_ms
            .push(now.saturating_duration_since(sent).as_secs_f64() * 1e3);
    }
}

fn report(args: &Args, seen: &Seen, send_secs: f64, pod_cpu_ticks: u64) {
    let expected = args.messages * args.online;
    let received: usize = seen.copies.values().sum();
    let duplicated: usize = seen.copies.values().map(|n| n.saturating_sub(1)).sum();
    let mut l = seen.latency_ms.clone();
    l.sort_by(f64::total_cmp);
    let q = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let line = json!({
        "mode": args.mode, "members": args.members, "online": args.online,
        "messages": args.messages, "rate": args.rate, "send_secs": send_secs,
        "copies_expected": expected, "copies_received": received,
        "missing": expected.saturating_sub(received - duplicated), "duplicated": duplicated,
        "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": l.last().copied().unwrap_or(0.0),
        "pod_cpu_ticks": pod_cpu_ticks,
    });
    println!("{line}");
}
