//! The state one executor owns: its connections, its ledger and counters, its histograms. Both
//! users of every pair belong to the same executor, so sending, receiving and the loss count
//! all touch only this `Rc<RefCell<Worker>>`: nothing is shared between cores while traffic
//! runs.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::Task;

use super::conn::{End, Out};
use super::connect::{query_escape, source_ip, Target};
use super::frames::{self, Incoming};
use super::ledger::{self, Ledger, Receipt, Rng};
use super::report::{note, Counts, Hists};
use super::{now_us, Options, Protocol};

/// Frames one connection may have queued before further sends from it are dropped (its peer
/// stopped reading; queueing more would only grow the generator's memory).
const MAX_BACKLOG: usize = 1024;

/// One executor's share of the work.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub proc_idx: u32,
    pub thread_idx: u32,
    /// Global index of the first user; the executor holds `users` consecutive users (an even
    /// number: whole pairs).
    pub first_user: u64,
    pub users: usize,
    /// Messages per second this executor sends.
    pub rate: f64,
    /// Connections per second this executor opens.
    pub connect_rate: f64,
    pub seed: u64,
}

/// What does not change during a run.
pub(crate) struct Ctx {
    pub plan: Plan,
    pub opts: Arc<Options>,
    pub targets: Arc<Vec<Target>>,
    /// Each user id as a JSON string literal, ready to paste into a frame.
    users_json: Vec<String>,
}

impl Ctx {
    pub fn new(plan: Plan, opts: Arc<Options>, targets: Arc<Vec<Target>>) -> Ctx {
        let prefix = opts.prefix();
        let users_json = (0..plan.users as u64)
            .map(|i| {
                serde_json::Value::from(format!("{prefix}{}", plan.first_user + i)).to_string()
            })
            .collect();
        Ctx {
            plan,
            opts,
            targets,
            users_json,
        }
    }

    /// Where local user `i` connects: the target (round-robin by global index), the source
    /// address, and the request path with its credentials.
    pub fn request(&self, i: usize) -> (Target, Option<Ipv4Addr>, String) {
        let global = self.plan.first_user + i as u64;
        let target = self.targets[(global % self.targets.len() as u64) as usize].clone();
        let src = source_ip(&target.addr, global, !self.opts.no_source_bind);
        let user = format!("{}{global}", self.opts.prefix());
        let cred = match &self.opts.jwt_secret {
            Some(secret) => {
                let exp = now_us() / 1_000_000 + 24 * 3600;
                let claims = serde_json::json!({"sub": user, "exp": exp}).to_string();
                format!(
                    "token={}",
                    crate::token::sign_hs256(&claims, secret.as_bytes())
                )
            }
            None => format!("user_id={}", query_escape(&user)),
        };
        let path = format!("{}{cred}", target.path_prefix);
        (target, src, path)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.opts.connect_timeout_secs)
    }
}

pub(crate) type St = Rc<RefCell<Worker>>;

/// The executor's mutable state.
pub(crate) struct Worker {
    pub ctx: Rc<Ctx>,
    /// By local user index; `None` until (or unless) connected.
    pub conns: Vec<Option<Out>>,
    /// Reader and writer tasks; dropping them cancels them.
    pub tasks: Vec<Task<()>>,
    pub open_writers: usize,
    pub ledger: Ledger,
    pub counts: Counts,
    pub hists: Hists,
    rng: Rng,
    /// Set once we start closing: ends after this are ours, not the peer's.
    pub closing: bool,
    /// End of the traffic window (Unix µs); deliveries up to here count towards the rate.
    pub window_end_us: u64,
}

impl Worker {
    pub fn new(ctx: Rc<Ctx>) -> Worker {
        let n = ctx.plan.users;
        Worker {
            rng: Rng::new(ctx.plan.seed),
            ledger: Ledger::new(ctx.opts.protocol == Protocol::Socketio),
            conns: vec![None; n],
            tasks: Vec::with_capacity(2 * n),
            open_writers: 0,
            counts: Counts::default(),
            hists: Hists::default(),
            closing: false,
            window_end_us: u64::MAX,
            ctx,
        }
    }

    fn alive(&self, i: usize) -> bool {
        self.conns[i].as_ref().is_some_and(|o| o.borrow().alive())
    }

    /// Pairs whose both users are connected now.
    pub fn live_pairs(&self) -> Vec<usize> {
        (0..self.conns.len() / 2)
            .filter(|p| self.alive(2 * p) && self.alive(2 * p + 1))
            .collect()
    }

    /// Sends one message scheduled at `sched_us` between a random live pair, random direction.
    pub fn send_one(&mut self, pairs: &[usize], sched_us: u64) {
        let pair = pairs[self.rng.below(pairs.len() as u64) as usize];
        let dir = (self.rng.next_u64() & 1) as usize;
        let (from, to) = (2 * pair + dir, 2 * pair + 1 - dir);
        let Some(out) = self.conns[from].clone().filter(|o| o.borrow().alive()) else {
            self.counts.skipped_unconnected += 1;
            return;
        };
        if out.borrow().backlog() >= MAX_BACKLOG {
            self.counts.dropped_backlog += 1;
            return;
        }
        let seq = self.ledger.record_send(sched_us);
        let plan = &self.ctx.plan;
        let key = ledger::make_key(plan.proc_idx, plan.thread_idx, seq);
        let payload = ledger::encode_payload(sched_us, &key, self.ctx.opts.payload_bytes);
        let to_json = &self.ctx.users_json[to];
        let frame = frames::send_frame(self.ctx.opts.protocol, to_json, &payload, &key);
        out.borrow_mut().push(&frame);
    }

    /// Our sequence number in `key`, if the key is one of this executor's.
    fn own_seq(&self, key: &str) -> Option<u64> {
        let (p, t, seq) = ledger::parse_key(key)?;
        (p == self.ctx.plan.proc_idx && t == self.ctx.plan.thread_idx).then_some(seq)
    }

    /// Applies one received text frame of connection `idx`.
    pub fn on_text(&mut self, idx: usize, text: &str) {
        match frames::parse(self.ctx.opts.protocol, text) {
            Incoming::Accepted { client_msg_id } => {
                let sched = self
                    .own_seq(&client_msg_id)
                    .and_then(|s| self.ledger.accepted(s));
                if let Some(sched) = sched {
                    record(&mut self.hists.accept, sched);
                }
            }
            Incoming::Status => self.counts.status_frames += 1,
            Incoming::Message { id, payload } => self.on_message(idx, id.as_deref(), &payload),
            Incoming::Error {
                code,
                client_msg_id,
            } => {
                *self
                    .counts
                    .error_frames
                    .entry(code.into_owned())
                    .or_default() += 1;
                if let Some(seq) = client_msg_id.and_then(|k| self.own_seq(&k)) {
                    self.ledger.errored(seq);
                }
            }
            Incoming::Ping => self.push(idx, "3".to_owned()),
            Incoming::Disconnect => {
                *self
                    .counts
                    .close_codes
                    .entry("socketio_disconnect".into())
                    .or_default() += 1
            }
            Incoming::Other => {}
        }
    }

    fn on_message(&mut self, idx: usize, id: Option<&str>, payload: &str) {
        self.counts.delivered += 1;
        if let (Some(id), false) = (id, self.ctx.opts.no_ack) {
            self.push(idx, frames::ack_frame(id));
            self.counts.acks_sent += 1;
        }
        let seq = ledger::parse_payload(payload).and_then(|(_, key)| self.own_seq(key));
        match seq.map(|s| self.ledger.received(s)) {
            Some(Receipt::First(sched)) => {
                let now = record(&mut self.hists.latency, sched);
                self.counts.delivered_unique += 1;
                self.counts.delivered_in_window += u64::from(now <= self.window_end_us);
            }
            Some(Receipt::Duplicate) => {}
            Some(Receipt::Unknown) | None => self.counts.foreign_messages += 1,
        }
    }

    fn push(&mut self, idx: usize, text: String) {
        if let Some(out) = &self.conns[idx] {
            out.borrow_mut().push(&text);
        }
    }

    /// Counts how a connection ended, unless we were closing it ourselves.
    pub fn on_end(&mut self, end: End) {
        if self.closing {
            return;
        }
        let c = &mut self.counts;
        match end {
            End::Close(code) => {
                let key = code.map_or("none".to_owned(), |c| c.to_string());
                *c.close_codes.entry(key).or_default() += 1;
            }
            End::Broken(kind, text) => note(&mut c.disconnect_errors, &kind, &text),
            End::Eof => *c.close_codes.entry("eof_without_close".into()).or_default() += 1,
        }
    }

    /// Final counts: the ledger's verdict folded into the live counters.
    pub fn outcome(&mut self) -> (Counts, Hists) {
        let t = self.ledger.tally();
        let plan = &self.ctx.plan;
        let mut c = std::mem::take(&mut self.counts);
        c.sent = t.sent;
        c.accepted = t.accepted;
        c.refused = t.errored;
        c.unanswered = t.unanswered;
        c.expected = t.expected;
        c.missing = t.missing;
        c.duplicates = t.duplicates;
        c.duplicate_copies = t.duplicate_copies;
        c.received_unaccepted = t.received_unaccepted;
        c.missing_sample = t
            .missing_sample
            .iter()
            .map(|s| ledger::make_key(plan.proc_idx, plan.thread_idx, *s))
            .collect();
        (c, std::mem::take(&mut self.hists))
    }
}

/// Records now minus `sched_us` (µs) and returns now.
fn record(h: &mut hdrhistogram::Histogram<u64>, sched_us: u64) -> u64 {
    let now = now_us();
    h.saturating_record(now.saturating_sub(sched_us).max(1));
    now
}
