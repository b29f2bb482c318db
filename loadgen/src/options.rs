//! The generator's settings: parsed from the command line, and handed to child processes as
//! JSON (so a child runs exactly the parent's workload, narrowed to its own users).

use std::path::PathBuf;

use clap::Parser;
use serde::{Deserialize, Serialize};

/// Which wire protocol the peers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// distriSocks protocol v1 (`/ws`, `accepted` frames, acks).
    Distrisocks,
    /// Socket.IO v4 over a raw WebSocket with Engine.IO v4 framing (for comparison runs).
    Socketio,
}

/// Load generator for distriSocks pods (and Socket.IO v4 peers, for comparison).
///
/// Opens one WebSocket per user, pairs user 2k with 2k+1, optionally holds the connections idle,
/// then sends an open-loop stream of messages between random pairs and measures delivery
/// latency from each message's scheduled send time. Prints a summary on stderr and a JSON
/// report on stdout.
#[derive(Debug, Clone, Parser, Serialize, Deserialize)]
#[command(name = "distrisocks-bench", version, verbatim_doc_comment)]
pub struct Options {
    /// Pod WebSocket URL (ws:// only). Repeat for several pods: users are spread over the URLs
    /// round-robin, so the two users of a pair sit on different pods.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080/ws")]
    pub urls: Vec<String>,
    /// WebSocket connections in total, one user each (rounded down to an even number).
    #[arg(long, default_value_t = 100)]
    pub connections: u64,
    /// New connections per second over all threads and processes (paced, not a burst).
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    /// Limit for one connection attempt: TCP connect plus upgrade (plus Engine.IO open).
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout_secs: f64,
    /// Executors per process, pinned round-robin to CPUs [default: CPUs available].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Processes: re-executes itself this many times with disjoint users and merges their
    /// results (one process can hold only about as many sockets as its open-file limit).
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// User ids are <prefix><index> [default: lg<pid>-].
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// Authenticate with HS256 tokens signed with this secret (`?token=`) instead of dev
    /// `?user_id=`.
    #[arg(long)]
    pub jwt_secret: Option<String>,
    /// Hold all connections open this long before traffic starts (pings are answered).
    #[arg(long, default_value_t = 0.0)]
    pub idle_secs: f64,
    /// Messages per second in total, on a fixed schedule that never waits for replies.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Length of the traffic phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Payload length in bytes (timestamp and key included, padded with `x`).
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Do not ack received messages (for pods run with `--delivery-confirm write`).
    #[arg(long)]
    pub no_ack: bool,
    /// After traffic, the drain ends once this long passes with no outstanding answer or
    /// delivery arriving (or when nothing is outstanding); what is still missing then is loss.
    /// A backlog that keeps arriving is waited for, up to `--drain-max-secs`, so "missing"
    /// means "stopped arriving", never merely "late".
    #[arg(long, default_value_t = 5.0)]
    pub drain_secs: f64,
    /// The longest a drain may last in all, however steadily a backlog arrives.
    #[arg(long, default_value_t = 120.0)]
    pub drain_max_secs: f64,
    /// Wire protocol of the peers.
    #[arg(long, value_enum, default_value_t = Protocol::Distrisocks)]
    pub protocol: Protocol,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Prometheus endpoint of a pod (http://host:port/metrics): the report includes how much
    /// each distrisocks_* sample changed over the run. Repeat for several pods.
    #[arg(long = "metrics-url")]
    pub metrics_urls: Vec<String>,
    /// Sample VmRSS of this process (e.g. the pod) before connecting, once connected and after
    /// the run. Repeatable.
    #[arg(long = "watch-pid")]
    pub watch_pids: Vec<u32>,
    /// Do not bind sockets to 127.0.0.2..=254 (binding lifts the ~28k connections per
    /// destination limit of one source address; only done for loopback targets).
    #[arg(long)]
    pub no_source_bind: bool,
    /// Seed of the pair picker [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Set by a parent process in its children only.
    #[arg(skip)]
    pub child: Option<ChildSlot>,
}

/// A child process's share of the users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSlot {
    /// The process index: part of every message key, so keys are unique across processes.
    pub index: u32,
    /// Global index of the child's first user.
    pub first_user: u64,
}

impl Options {
    /// Options with every default, for `url` (used by tests and library callers).
    pub fn for_url(url: &str) -> Options {
        Options::parse_from(["distrisocks-bench", "--url", url])
    }

    /// Executors per process.
    pub fn thread_count(&self) -> usize {
        self.threads.unwrap_or_else(crate::cpus).max(1)
    }

    /// The user prefix, fixed once so that every child process uses the same one.
    pub fn prefix(&self) -> String {
        self.user_prefix
            .clone()
            .unwrap_or_else(|| format!("lg{}-", std::process::id()))
    }

    /// Rejects settings that cannot run, before any socket is opened.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("--connect-rate", self.connect_rate),
            ("--connect-timeout-secs", self.connect_timeout_secs),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be positive"));
            }
        }
        let non_negative = [
            ("--rate", self.rate),
            ("--duration-secs", self.duration_secs),
            ("--idle-secs", self.idle_secs),
            ("--drain-secs", self.drain_secs),
            ("--drain-max-secs", self.drain_max_secs),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be zero or more"));
            }
        }
        if self.connections < 2 {
            return Err("--connections must be at least 2 (one pair)".into());
        }
        if self.procs == 0 || self.urls.is_empty() {
            return Err("--procs and --url need at least one".into());
        }
        Ok(())
    }
}
