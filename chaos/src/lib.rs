//! `distrisocks-chaos`: steady traffic between reconnecting devices while an orchestrator
//! (`perf/chaos/chaos.py`) injects faults into the pods and their engines. Every operation
//! goes into a history file (`history`) that `perf/chaos/check.py` judges afterwards.
//!
//! ```text
//!  device thread per user ── frames ──▶ pod(s)      traffic ─▶ drain (until settled) ─▶ stop
//!        │ record(send, accepted, error, recv, status, ack, connect, close)
//!        ▼
//!  history writer thread ──▶ history.jsonl
//! ```
//! Users are `u0..uN`; device `i` starts on `--url` number `i mod count` and moves to the
//! next one when a connect fails. Every `--v2-every`th device is a v2 device (`?since=`).

mod device;
mod history;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

use run::{Phase, Run};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "distrisocks-chaos",
    about = "Recorded traffic for the chaos suite"
)]
pub struct Options {
    /// Pod WebSocket URL (`ws://127.0.0.1:PORT/ws`); repeat for several pods.
    #[arg(long, required = true)]
    pub url: Vec<String>,
    /// Users, one device each (an even number: devices 2k and 2k+1 are partners).
    #[arg(long, default_value_t = 40)]
    pub users: usize,
    /// Messages per second, over all devices.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Longest wait, after the traffic, for every send to be accepted and every accepted
    /// message to reach its recipient.
    #[arg(long, default_value_t = 60)]
    pub drain_secs: u64,
    /// Every Nth device connects as a v2 device (0: none).
    #[arg(long, default_value_t = 2)]
    pub v2_every: usize,
    /// Seeds the choice of recipients.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub history: PathBuf,
    /// A directory the orchestrator drops commands into: a file `storm` makes every device
    /// drop its connection and reconnect at once; a file `stall` holding a number of
    /// seconds makes every fourth device (1, 5, 9, …) stop reading that long (a slow,
    /// then non-reading client); a file `deaf` holding a device number makes that device
    /// reconnect with a 4 KiB receive buffer, name the pod it reached in a file `deaf_url`
    /// and stop reading until a file `hear` (holding why: `dropped`, `pod_gone` or
    /// `timeout`) arrives. Each file is removed once obeyed.
    #[arg(long)]
    pub control: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let opts = Options::parse();
    if opts.users < 2 || opts.users % 2 == 1 || opts.rate <= 0.0 {
        eprintln!("--users must be even and at least 2, --rate above 0");
        return ExitCode::from(2);
    }
    let (rec, writer) = match history::Recorder::create(&opts.history) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot write {}: {e}", opts.history.display());
            return ExitCode::from(2);
        }
    };
    let run = Arc::new(Run::new(opts));
    let devices: Vec<_> = (0..run.opts.users)
        .map(|i| {
            let d = device::Device::new(i, run.clone(), rec.clone());
            std::thread::spawn(move || d.run())
        })
        .collect();
    let settled = drive(&run, &rec);
    for d in devices {
        let _ = d.join();
    }
    let (outbox, missing) = run.unsettled();
    rec.record(
        "",
        0,
        "end",
        json!({"settled": settled, "outbox": outbox, "missing": missing}),
    );
    drop(rec);
    match writer.join() {
        Ok(Ok(())) => ExitCode::SUCCESS,
        other => {
            eprintln!("history writer failed: {other:?}");
            ExitCode::from(1)
        }
    }
}

/// Carries out the orchestrator's commands dropped into `dir`.
fn obey(run: &Run, rec: &history::Recorder, dir: &std::path::Path) {
    if std::fs::remove_file(dir.join("storm")).is_ok() {
        run.storm();
        rec.record("", 0, "storm", json!({}));
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("stall")) {
        let _ = std::fs::remove_file(dir.join("stall"));
        let secs: f64 = text.trim().parse().unwrap_or(0.0);
        run.stall_readers(Duration::from_secs_f64(secs));
        rec.record("", 0, "stall", json!({"secs": secs}));
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("deaf")) {
        let _ = std::fs::remove_file(dir.join("deaf"));
        if let Ok(i) = text.trim().parse::<usize>() {
            run.set_deaf(Some(i));
            rec.record(&format!("u{i}"), 0, "deaf", json!({}));
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("hear")) {
        let _ = std::fs::remove_file(dir.join("hear"));
        let who = run
            .deaf_device()
            .map(|i| format!("u{i}"))
            .unwrap_or_default();
        run.set_deaf(None);
        rec.record(&who, 0, "hear", json!({"reason": text.trim()}));
    }
}

/// Traffic for the set time (obeying control commands), then the drain until everything
/// settled or its time is up.
fn drive(run: &Run, rec: &history::Recorder) -> bool {
    let end = Instant::now() + Duration::from_secs(run.opts.duration_secs);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(dir) = &run.opts.control {
            obey(run, rec, dir);
        }
    }
    run.set_phase(Phase::Drain);
    rec.record("", 0, "phase", json!({"phase": "drain"}));
    let deadline = Instant::now() + Duration::from_secs(run.opts.drain_secs);
    let settled = loop {
        if run.all_past_traffic() && run.unsettled() == (0, 0) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (outbox, missing) = run.unsettled();
    eprintln!("drain: settled={settled} outbox={outbox} missing={missing}");
    run.set_phase(Phase::Stop);
    settled
}
