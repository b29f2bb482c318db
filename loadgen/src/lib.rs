//! `distrisocks-bench`: the load generator, built thread-per-core like the gateway so that
//! the generator is not the bottleneck it measures.
//!
//! ```text
//!  parent (--procs P) ──env JSON──▶ child process 0..P   (disjoint users, rates split)
//!                      ◀─READY / ──GO <µs>──▶            (one common traffic start)
//!  process ──▶ executor 0..N (pinned)   each owns whole pairs: user 2k <-> 2k+1
//!               connect (paced, bound to 127.0.0.x) ─▶ idle ─▶ open-loop traffic ─▶ drain
//!               per connection: one task writes its queue and reads frames (→ ledger, acks)
//! ```
//!
//! Latency is measured from each message's *scheduled* send time, so a generator or socket
//! stall shows up as latency instead of silently lowering the offered load. Loss is counted
//! against what the gateway `accepted` (or, for Socket.IO, what was sent), after a drain.
//!
//! Files: [`options`] (CLI), `phases` (one executor's run), `worker` (its state), `conn`
//! (the connection's one task), `wire` (WebSocket framing), `received` (frames out of a
//! read buffer), `connect` (bound socket, errno names), `handshake` (upgrade, Engine.IO
//! open), `frames` (message formats), [`ledger`] (bookkeeping), [`report`] (merging, JSON),
//! `local` (one process), `procs` (several), `observe` (pod metrics, RSS), [`summary`]
//! (text).

mod conn;
mod connect;
mod frames;
mod handshake;
pub mod ledger;
mod local;
mod observe;
pub mod options;
mod phases;
mod procs;
mod received;
pub mod report;
pub mod summary;
mod token;
mod wire;
mod worker;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

pub use options::{Options, Protocol};
pub use report::Report;

/// Environment variable that makes the binary a child process: its value is the child's
/// options as JSON.
pub const CHILD_ENV: &str = "DISTRISOCKS_BENCH_CHILD";

/// Phase changes between a process's controller and its executors. Touched a few times per
/// run, never per message.
#[derive(Default)]
pub(crate) struct Control {
    /// Executors that finished their connect phase.
    pub ready: AtomicUsize,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    /// Traffic start, Unix µs; 0 until decided.
    pub go_at_us: AtomicU64,
    /// Skip traffic and close (the parent process went away).
    pub abort: AtomicBool,
}

/// Wall-clock Unix time in µs: comparable across the processes of one machine, which is what
/// a latency measured between two processes needs.
pub(crate) fn now_us() -> u64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    d.map_or(0, |d| d.as_micros() as u64)
}

/// CPUs this process may run on.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs the load described by `opts` in this process (or its children with `--procs`) and
/// returns the merged report. Prints progress, not the summary, on stderr.
pub fn run(opts: &Options) -> Result<Report, String> {
    opts.validate()?;
    let mut opts = opts.clone();
    opts.user_prefix = Some(opts.prefix()); // Fixed once: children must share it.
    let before: Vec<_> = opts
        .metrics_urls
        .iter()
        .map(|u| observe::scrape(u))
        .collect();
    let mut rss = observe::Rss::new(&opts.watch_pids);
    rss.sample("start");
    let mut on_connected = || rss.sample("connected");
    let mut report = if opts.procs > 1 {
        procs::run_parent(&opts, &mut on_connected)?
    } else {
        local::run(&opts, local::Gate::Idle, &mut on_connected)?
    };
    rss.sample("end");
    report.rss_kib = rss.samples;
    for (url, before) in opts.metrics_urls.iter().zip(before) {
        match (before, observe::scrape(url)) {
            (Ok(b), Ok(a)) => {
                report
                    .metrics_delta
                    .insert(url.clone(), observe::delta(&b, &a));
            }
            (Err(e), _) | (_, Err(e)) => report.problems.push(format!("metrics: {e}")),
        }
    }
    Ok(report)
}

/// The binary's main: a child process if [`CHILD_ENV`] is set, otherwise parse the command
/// line, run, print the summary (stderr) and the JSON (stdout, and `--json`).
pub fn main() -> ExitCode {
    if let Ok(json) = std::env::var(CHILD_ENV) {
        return child_main(&json);
    }
    let opts = <Options as clap::Parser>::parse();
    let report = match run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("distrisocks-bench: {e}");
            return ExitCode::from(2);
        }
    };
    eprint!("{}", summary::render(&report));
    let json = serde_json::to_string_pretty(&report).expect("a report serializes");
    println!("{json}");
    if let Some(path) = &opts.json {
        if let Err(e) = std::fs::write(path, format!("{json}\n")) {
            eprintln!("distrisocks-bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// A child: run the share, print the report (with histograms) as the last stdout line.
fn child_main(json: &str) -> ExitCode {
    let opts: Options = match serde_json::from_str(json) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("distrisocks-bench child: bad {CHILD_ENV}: {e}");
            return ExitCode::from(2);
        }
    };
    match procs::run_child(&opts) {
        Ok(report) => {
            let line = serde_json::to_string(&report).expect("a report serializes");
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("distrisocks-bench child: {e}");
            ExitCode::FAILURE
        }
    }
}
