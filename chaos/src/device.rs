//! One user's device: connects (to its home pod, then the next one when that fails),
//! resends everything not yet `accepted` under the same `client_msg_id` after every
//! reconnect, acks every message addressed to it, keeps a v2 cursor ("the highest pos with
//! every one below it"), and records each of these steps. What a careful application client
//! does, so that whatever the checker finds is the gateway's doing.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

mod inbound;

use crate::history::Recorder;
use crate::run::{Phase, Run};

/// Sends waiting for `accepted` at once; beyond it the device skips its schedule's slots,
/// as a client with a full outbox would hold new input back.
const MAX_IN_FLIGHT: usize = 32;
/// A send unanswered for this long means the connection is dead even if the socket is not
/// (a paused pod): the device drops it and reconnects, like a client's ping timeout.
const STALE_AFTER: Duration = Duration::from_secs(8);
/// Codes that mean "not processed, resend later"; any other error for a send is final.
const RETRYABLE: [&str; 3] = ["overloaded", "store_unavailable", "rate_limited"];

/// Ids per `ack` frame (docs/PROTOCOL.md: at most 256).
const ACK_CHUNK: usize = 200;

type Ws = WebSocket<TcpStream>;

struct Pending {
    cmid: String,
    to: String,
    /// When to (re)send it; `None` while sent on the current connection.
    due: Option<Instant>,
    sent_at: Instant,
}

pub struct Device {
    pub index: usize,
    pub user: String,
    pub v2: bool,
    run: Arc<Run>,
    rec: Recorder,
    rng: u64,
    next_msg: u64,
    session: u32,
    outbox: Vec<Pending>,
    /// v2 positions this device has (received frames and its own accepted sends).
    positions: BTreeSet<i64>,
    cursor: i64,
    /// The current connection was opened with a tiny receive buffer (a non-reading client).
    tiny_buffer: bool,
}

enum End {
    Closed,
    Stop,
}

impl Device {
    pub fn new(index: usize, run: Arc<Run>, rec: Recorder) -> Device {
        let v2 = run.opts.v2_every > 0 && index % run.opts.v2_every == 0;
        Device {
            index,
            user: format!("u{index}"),
            v2,
            rng: run.opts.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            run,
            rec,
            next_msg: 0,
            session: 0,
            outbox: Vec::new(),
            positions: BTreeSet::new(),
            cursor: 0,
            tiny_buffer: false,
        }
    }

    pub fn run(mut self) {
        let mut attempt = 0usize;
        while self.run.phase_for(self.index) != Phase::Stop {
            let urls = &self.run.opts.url;
            let url = urls[(self.index + attempt) % urls.len()].clone();
            match self.connect(&url) {
                Ok(ws) => {
                    attempt = 0;
                    if let End::Stop = self.session(ws) {
                        break;
                    }
                }
                Err(e) => {
                    self.rec.record(
                        &self.user,
                        0,
                        "connect_failed",
                        json!({"url": url, "err": e}),
                    );
                    attempt += 1;
                    // A client's reconnect backoff, capped so the drain is not slowed down.
                    std::thread::sleep(Duration::from_millis(50 * attempt.min(10) as u64));
                }
            }
        }
        let left = self.outbox.len();
        self.run.set_outbox(self.index, left);
    }

    fn connect(&mut self, base: &str) -> Result<Ws, String> {
        let mut url = format!("{base}?user_id={}", self.user);
        if self.v2 {
            url.push_str(&format!("&since={}", self.cursor));
        }
        let host = base
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default();
        self.tiny_buffer = self.run.is_deaf(self.index);
        let tcp = open_tcp(host, self.tiny_buffer).map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let (ws, _) = tungstenite::client(url.as_str(), tcp).map_err(|e| e.to_string())?;
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(2)))
            .map_err(|e| e.to_string())?;
        self.session += 1;
        let since = self.v2.then_some(self.cursor);
        self.rec.record(
            &self.user,
            self.session,
            "connect",
            json!({"url": base, "since": since}),
        );
        if self.tiny_buffer {
            // The orchestrator's watcher judges the pod that holds the deaf connection.
            if let Some(dir) = &self.run.opts.control {
                let _ = std::fs::write(dir.join("deaf_url"), base);
            }
        }
        Ok(ws)
    }

    /// One connection's life: resend, send on schedule, read, ack, until it ends.
    fn session(&mut self, mut ws: Ws) -> End {
        let now = Instant::now();
        for p in &mut self.outbox {
            p.due = Some(now);
        }
        let mut next_send = now;
        let storms = self.run.storms();
        let slow = self.index % 4 == 1;
        loop {
            let phase = self.run.phase_for(self.index);
            if self.run.storms() != storms {
                let _ = ws.close(None);
                let _ = ws.flush();
                self.rec
                    .record(&self.user, self.session, "close", json!({"by": "storm"}));
                return End::Closed;
            }
            if self.run.is_deaf(self.index) {
                if !self.tiny_buffer {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                    self.rec
                        .record(&self.user, self.session, "close", json!({"by": "deaf"}));
                    return End::Closed;
                }
                // Neither reads nor sends until the pod gives up on it (4008).
                std::thread::sleep(Duration::from_millis(10));
                next_send = Instant::now();
                continue;
            }
            if slow && self.run.readers_stalled() {
                // A client that stops reading (and sending): the pod's queue for it fills.
                std::thread::sleep(Duration::from_millis(10));
                next_send = Instant::now();
                continue;
            }
            if phase == Phase::Stop {
                let _ = ws.close(None);
                let _ = ws.flush();
                self.rec
                    .record(&self.user, self.session, "close", json!({"by": "client"}));
                return End::Stop;
            }
            let now = Instant::now();
            if phase == Phase::Traffic && now >= next_send {
                next_send += self.run.interval;
                if self.outbox.len() < MAX_IN_FLIGHT {
                    self.new_message(now);
                }
            }
            // Reads first: a client waking from a stall sees the pod's close frame before
            // its own stale-send timeout would drop the connection.
            let step = self
                .read(&mut ws)
                .and_then(|()| self.send_due(&mut ws, now));
            if let Err(why) = step {
                self.rec.record(&self.user, self.session, "close", why);
                return End::Closed;
            }
            self.run.set_outbox(self.index, self.outbox.len());
        }
    }

    fn new_message(&mut self, now: Instant) {
        let users = self.run.opts.users;
        // Half to the pair partner (a busy conversation), half to anyone (many conversations);
        // while a device does not read, half of the latter go to it (a popular user who
        // stopped reading), so that its queue at the pod overflows in seconds.
        let r = self.next_rand();
        let deaf = self.run.deaf_device().filter(|d| *d != self.index);
        let to = match (r % 4, deaf) {
            (0 | 1, _) => self.index ^ 1,
            (2, Some(d)) => d,
            _ => (r >> 2) as usize % users,
        };
        self.next_msg += 1;
        let cmid = format!("{}-{}", self.user, self.next_msg);
        let to = format!("u{to}");
        self.outbox.push(Pending {
            cmid,
            to,
            due: Some(now),
            sent_at: now,
        });
        // Published at once: the drain must see it even if this session ends before the
        // loop's own update.
        self.run.set_outbox(self.index, self.outbox.len());
    }

    fn send_due(&mut self, ws: &mut Ws, now: Instant) -> Result<(), Value> {
        for p in &mut self.outbox {
            if let Some(due) = p.due.filter(|d| *d <= now) {
                let resend = due != p.sent_at;
                let frame = json!({"type": "send", "sender_id": self.user, "reciever_id": p.to,
                                   "client_msg_id": p.cmid, "payload": p.cmid});
                ws.send(Message::text(frame.to_string()))
                    .map_err(|e| json!({"err": e.to_string()}))?;
                self.rec.record(
                    &self.user,
                    self.session,
                    "send",
                    json!({"cmid": p.cmid, "to": p.to, "resend": resend}),
                );
                p.due = None;
                p.sent_at = now;
            }
        }
        match self
            .outbox
            .iter()
            .find(|p| p.due.is_none() && now - p.sent_at > STALE_AFTER)
        {
            Some(p) => Err(json!({"by": "client", "stale_cmid": p.cmid})),
            None => Ok(()),
        }
    }

    /// Reads every frame already there (at least one wait of the socket's short timeout),
    /// then acks what arrived in one frame.
    fn read(&mut self, ws: &mut Ws) -> Result<(), Value> {
        let mut acks = Vec::new();
        loop {
            match ws.read() {
                Ok(Message::Text(t)) => self.frame(t.as_str(), &mut acks),
                Ok(Message::Close(c)) => {
                    let code = c.as_ref().map(|c| u16::from(c.code));
                    let reason = c.map(|c| c.reason.to_string());
                    return Err(json!({"by": "server", "code": code, "reason": reason}));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(json!({"err": e.to_string()})),
            }
        }
        // The protocol takes at most 256 ids per ack; a replay after a long stall brings more.
        for ids in acks.chunks(ACK_CHUNK) {
            let frame = json!({"type": "ack", "ids": ids});
            ws.send(Message::text(frame.to_string()))
                .map_err(|e| json!({"err": e.to_string()}))?;
            self.rec
                .record(&self.user, self.session, "ack", json!({"ids": ids}));
        }
        Ok(())
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: a seeded, reproducible choice of recipients; no crate needed for it.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A client socket; `tiny` sets a 4 KiB receive buffer before connecting (so the window
/// is small from the handshake on), which makes a non-reading client fill the pod's
/// queue in seconds rather than minutes.
fn open_tcp(host: &str, tiny: bool) -> std::io::Result<TcpStream> {
    if !tiny {
        return TcpStream::connect(host);
    }
    let addr: std::net::SocketAddr = host
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_recv_buffer_size(4096)?;
    s.connect(&addr.into())?;
    Ok(s.into())
}
