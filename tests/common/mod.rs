//! Test harness: real pods on port 0, real WebSocket clients (tungstenite) over real sockets.
#![allow(dead_code)]

pub mod api;
pub mod hooks;
pub mod process;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use distrisocks::{Config, Pod};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

pub const WAIT: Duration = Duration::from_secs(10);

/// A pod with 2 shards on 127.0.0.1:0 storing under `dir`.
pub fn start_pod(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Pod {
    let mut c = Config::defaults();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.shards = Some(2);
    c.data_dir = dir.to_path_buf();
    c.tuning.store_full_sync = false;
    tweak(&mut c);
    Pod::start(c).expect("pod starts")
}

/// A unique user id, so that tests sharing nothing never see each other's messages.
pub fn user(name: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A unique user whose home shard among `shards` is `home`: a pod with
/// `--steer-connections` (the default) serves every connection of theirs there.
pub fn user_homed(name: &str, home: usize, shards: usize) -> String {
    loop {
        let u = user(name);
        if distrisocks::backend::routes::home_shard(&u, shards) == home {
            return u;
        }
    }
}

/// A pod with 2 shards that leaves each connection on the shard the kernel gave it
/// (`--steer-connections false`), so a test can place a user's devices on several shards.
pub fn start_unsteered_pod(dir: &Path) -> Pod {
    start_pod(dir, |c| c.tuning.steer_connections = false)
}

pub struct Client {
    pub ws: WebSocket<TcpStream>,
    pub shard: usize,
    pub user: String,
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    Http(u16, String),
    Other(String),
}

pub fn try_connect(
    addr: SocketAddr,
    query: &str,
    bearer: Option<&str>,
) -> Result<Client, ConnectError> {
    let url = format!("ws://{addr}/ws?{query}");
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    let stream = TcpStream::connect(addr).map_err(|e| ConnectError::Other(e.to_string()))?;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    match tungstenite::client::client(req, stream) {
        Ok((ws, resp)) => {
            let shard = resp.headers()["x-distrisocks-shard"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            Ok(Client {
                ws,
                shard,
                user: String::new(),
            })
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            let body = r
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            Err(ConnectError::Http(
                r.status().as_u16(),
                body.unwrap_or_default(),
            ))
        }
        Err(e) => Err(ConnectError::Other(e.to_string())),
    }
}

/// Two fresh users, alice at `a_addr` and bob at `b_addr`.
pub fn pair(a_addr: SocketAddr, b_addr: SocketAddr) -> (Client, Client) {
    (
        Client::connect(a_addr, &user("alice")),
        Client::connect(b_addr, &user("bob")),
    )
}

/// alice sends to bob, bob receives and acks, alice hears SENT then DELIVERED; returns the id.
pub fn send_and_confirm(alice: &mut Client, bob: &mut Client, text: &str) -> String {
    let to = bob.user.clone();
    let id = alice.send_msg(&to, text, None)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = bob.recv_type("message");
    assert_eq!(
        (m["id"].as_str(), m["message"].as_str()),
        (Some(&*id), Some(text))
    );
    // SENT is awaited before the ack: had both reached the store in one batch, only
    // DELIVERED would be written and announced (status folding, docs/PROTOCOL.md).
    alice.recv_status(&id, "SENT");
    bob.ack(&id);
    alice.recv_status(&id, "DELIVERED");
    id
}

impl Client {
    /// Connects as `user` in dev mode, on whatever shard the kernel picks.
    pub fn connect(addr: SocketAddr, user: &str) -> Client {
        let mut c = try_connect(addr, &format!("user_id={user}"), None).expect("connects");
        c.user = user.to_owned();
        c
    }

    /// Connects as a protocol v2 device of `user` that syncs from after position `since`.
    pub fn connect_since(addr: SocketAddr, user: &str, since: i64) -> Client {
        let query = format!("user_id={user}&since={since}");
        let mut c = try_connect(addr, &query, None).expect("connects");
        c.user = user.to_owned();
        c
    }

    /// Frames up to and including the first one for which `last` holds.
    pub fn recv_until(&mut self, mut last: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let v = self.recv();
            let done = last(&v);
            seen.push(v);
            if done {
                return seen;
            }
        }
    }

    /// Connects as `user` until SO_REUSEPORT places the connection on `shard`.
    pub fn connect_on(addr: SocketAddr, user: &str, shard: usize) -> Client {
        for _ in 0..200 {
            let c = Client::connect(addr, user);
            if c.shard == shard {
                return c;
            }
            drop(c);
        }
        panic!("never placed on shard {shard}");
    }

    /// [`connect_since`](Self::connect_since), until the connection lands on `shard`.
    pub fn connect_on_since(addr: SocketAddr, user: &str, shard: usize, since: i64) -> Client {
        for _ in 0..200 {
            let c = Client::connect_since(addr, user, since);
            if c.shard == shard {
                return c;
            }
            drop(c);
        }
        panic!("never placed on shard {shard}");
    }

    pub fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    pub fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s)).unwrap();
    }

    /// Sends the seed's frame to `to` and returns the `accepted` frame.
    pub fn send_msg(&mut self, to: &str, payload: &str, cmid: Option<&str>) -> Value {
        let mut f = json!({"payload": payload, "reciever_id": to, "sender_id": self.user});
        if let Some(c) = cmid {
            f["client_msg_id"] = json!(c);
        }
        self.send(f);
        let a = self.recv_type("accepted");
        if let Some(c) = cmid {
            assert_eq!(a["client_msg_id"], c);
        }
        a
    }

    /// Sends like [`send_msg`](Self::send_msg) but skips status frames of earlier messages.
    pub fn send_msg_any(&mut self, to: &str, payload: &str) -> Value {
        self.send_keyed_any(to, payload, None)
    }

    /// [`send_msg_any`](Self::send_msg_any) with an optional `client_msg_id`.
    pub fn send_keyed_any(&mut self, to: &str, payload: &str, cmid: Option<&str>) -> Value {
        let mut f = json!({"payload": payload, "reciever_id": to});
        if let Some(c) = cmid {
            f["client_msg_id"] = json!(c);
        }
        self.send(f);
        loop {
            let v = self.recv();
            match v["type"].as_str() {
                Some("accepted") => return v,
                Some("status") => continue,
                _ => panic!("unexpected frame {v}"),
            }
        }
    }

    /// The next JSON text frame; panics on timeout or close.
    pub fn recv(&mut self) -> Value {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).unwrap(),
                Ok(Message::Close(f)) => panic!("closed by server: {f:?}"),
                Ok(_) => continue,
                Err(e) => panic!("{} read failed: {e}", self.user),
            }
        }
    }

    /// The next frame of type `t`, skipping frames of the types in `skip` and failing on any
    /// other type in between.
    pub fn next_of(&mut self, t: &str, skip: &[&str]) -> Value {
        loop {
            let v = self.recv();
            if v["type"] == t {
                return v;
            }
            let other = v["type"].as_str().unwrap_or("");
            assert!(
                skip.contains(&other),
                "{} waited for {t}, got {v}",
                self.user
            );
        }
    }

    /// The next frame, which must be of one of the types in `types`.
    pub fn next_of_any(&mut self, types: &[&str]) -> Value {
        let v = self.recv();
        let t = v["type"].as_str().unwrap_or("");
        assert!(types.contains(&t), "{} got {v}", self.user);
        v
    }

    /// The next frame of type `t`, failing on any other type in between.
    pub fn recv_type(&mut self, t: &str) -> Value {
        let v = self.recv();
        assert_eq!(v["type"], t, "unexpected frame {v}");
        v
    }

    /// The next frame whose `type` and `id` match, skipping status frames of other messages.
    pub fn recv_status(&mut self, id: &str, status: &str) {
        let v = self.recv_type("status");
        assert_eq!(
            (v["id"].as_str().unwrap(), v["status"].as_str().unwrap()),
            (id, status),
            "{v}"
        );
    }

    /// Status frames of message `id` until `status`; an earlier status may come first or
    /// not at all (statuses that meet in one store batch are folded into the furthest).
    pub fn recv_status_reaching(&mut self, id: &str, status: &str) {
        loop {
            let v = self.recv_type("status");
            assert_eq!(v["id"].as_str(), Some(id), "{v}");
            if v["status"] == status {
                return;
            }
            assert_eq!(v["status"], "SENT", "only SENT may precede {status}: {v}");
        }
    }

    /// Asserts no data frame arrives for `d` (pings are answered and ignored).
    pub fn expect_silence(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.ws.get_mut().set_read_timeout(Some(left)).unwrap();
            match self.ws.read() {
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                other => panic!("expected silence, got {other:?}"),
            }
        }
        self.ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    }

    /// Reads until the server closes; returns its close code.
    pub fn expect_close(&mut self) -> u16 {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Close(Some(f))) => return u16::from(f.code),
                Ok(Message::Close(None)) => return u16::from(CloseCode::Status),
                Ok(_) => continue,
                Err(e) => panic!("connection ended without a close frame: {e}"),
            }
        }
        panic!("no close within {WAIT:?}");
    }

    /// Returns once the pod reads this connection's frames: it does so only after the
    /// connection's route is registered and its replay sent, so a message stored after this
    /// reaches the connection live, never through its replay (which would mark it SENT).
    pub fn settled(&mut self) {
        self.send(json!({"type": "settle"}));
        let v = self.recv_type("error");
        assert_eq!(v["code"], "unknown_type", "{v}");
    }

    /// Reads until the connection breaks without a close frame (the pod process died);
    /// returns the text frames that came before.
    pub fn expect_gone(&mut self) -> Vec<Value> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Text(t)) => seen.push(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Message::Close(f)) => panic!("a clean close ({f:?}), not a crash"),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    panic!("{} still connected after {WAIT:?}", self.user)
                }
                Err(_) => return seen,
            }
        }
        panic!("{} still connected after {WAIT:?}", self.user);
    }

    pub fn ack(&mut self, id: &str) {
        self.send(json!({"type": "ack", "id": id}));
    }
}

/// Status, sent_at and delivered_at of message `id`, read straight from the SQLite file.
pub fn stored(dir: &Path, id: &str) -> Option<(String, Option<i64>, Option<i64>)> {
    let db = rusqlite::Connection::open(dir.join("distrisocks.db")).unwrap();
    db.query_row(
        "SELECT status, sent_at, delivered_at FROM messages_readable WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ok()
}

/// Rows stored by `sender`.
pub fn count_from(dir: &Path, sender: &str) -> i64 {
    let db = rusqlite::Connection::open(dir.join("distrisocks.db")).unwrap();
    db.query_row(
        "SELECT count(*) FROM messages WHERE sender_id = ?1",
        [sender],
        |r| r.get(0),
    )
    .unwrap()
}

/// Sends `request` as is and returns everything the pod answers before closing.
pub fn raw(addr: SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Polls `f` until it holds or `WAIT` passes.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
pub mod cluster;
pub mod proxy;

/// The sum over shards of one of the pod's counters or gauges.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = raw(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let prefix = format!("distrisocks_{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
