//! One process's run: spawns the executors, waits for their connect phases, opens the traffic
//! gate (after the idle phase, or when the parent process says so), and merges their results.

use std::io::{BufRead, Write};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use super::connect::{self, Target};
use super::phases;
use super::report::{Counts, Hists, Report};
use super::worker::{Ctx, Plan};
use super::{cpus, now_us, Control, Options};

/// Who decides when traffic starts.
pub(crate) enum Gate {
    /// This process: after `--idle-secs`.
    Idle,
    /// The parent process: `READY` goes to stdout, `GO <unix µs>` comes on stdin.
    Parent,
}

/// Slack added to the expected connect time before the controller stops waiting for it.
const CONNECT_SLACK: Duration = Duration::from_secs(15);

/// Runs this process's share; `on_connected` runs once every executor finished connecting.
pub(crate) fn run(
    opts: &Options,
    gate: Gate,
    on_connected: &mut dyn FnMut(),
) -> Result<Report, String> {
    let control = Arc::new(Control::default());
    let plans = plans(opts);
    let handles = spawn_executors(opts, &plans, &control)?;
    let started = Instant::now();
    let mut problems = wait_ready(opts, &control, plans.len());
    let connect_secs = started.elapsed().as_secs_f64();
    let own_rss = super::observe::vm_rss_kib(std::process::id()).unwrap_or(0);
    on_connected();
    match open_gate(opts, &gate) {
        Some(go) => control.go_at_us.store(go, SeqCst),
        None => control.abort.store(true, SeqCst),
    }
    let (mut counts, mut hists) = (Counts::default(), Hists::default());
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok((c, hs)) => {
                counts.merge(&c);
                hists.merge(&hs);
            }
            Err(e) => problems.push(format!("executor {i} failed: {e}")),
        }
    }
    let mut report = base_report(opts, plans.len(), connect_secs, problems);
    report.generator_rss_kib = own_rss;
    report.finish(counts, &hists, matches!(gate, Gate::Parent));
    Ok(report)
}

/// One pinned executor per plan, each running [`phases::run`].
fn spawn_executors(
    opts: &Options,
    plans: &[Plan],
    control: &Arc<Control>,
) -> Result<Vec<ExecutorJoinHandle<(Counts, Hists)>>, String> {
    let targets: Vec<Target> = opts
        .urls
        .iter()
        .map(|u| connect::parse_url(u, opts.protocol))
        .collect::<Result<_, _>>()?;
    let (targets, shared) = (Arc::new(targets), Arc::new(opts.clone()));
    let mut handles = Vec::new();
    for plan in plans.iter().cloned() {
        let (o, t, c) = (shared.clone(), targets.clone(), control.clone());
        let name = format!("bench-{}", plan.thread_idx);
        let cpu = plan.thread_idx as usize % cpus();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&name)
            .spawn(move || phases::run(Ctx::new(plan, o, t), c))
            .map_err(|e| format!("executor {name}: {e}"))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Splits the process's pairs over its executors as evenly as possible.
pub(crate) fn plans(opts: &Options) -> Vec<Plan> {
    let threads = opts.thread_count();
    let slot = opts.child.unwrap_or_default();
    let pairs = (opts.connections / 2) as usize;
    let seed = opts.seed.unwrap_or_else(now_us) ^ (u64::from(slot.index) << 40);
    (0..threads)
        .map(|t| {
            let (lo, hi) = (pairs * t / threads, pairs * (t + 1) / threads);
            let share = (hi - lo) as f64 / pairs.max(1) as f64;
            Plan {
                proc_idx: slot.index,
                thread_idx: t as u32,
                first_user: slot.first_user + 2 * lo as u64,
                users: 2 * (hi - lo),
                rate: opts.rate * share,
                connect_rate: (opts.connect_rate * share).max(1e-3),
                seed: seed.wrapping_add(t as u64),
            }
        })
        .collect()
}

/// Waits until every executor has finished connecting, printing progress to stderr; gives up
/// (and says so) after the time the connect rate implies plus slack.
fn wait_ready(opts: &Options, control: &Control, threads: usize) -> Vec<String> {
    let expected = opts.connections as f64 / opts.connect_rate + opts.connect_timeout_secs;
    let deadline = Instant::now() + Duration::from_secs_f64(expected) + CONNECT_SLACK;
    let mut last_print = Instant::now();
    while control.ready.load(SeqCst) < threads {
        if Instant::now() > deadline {
            return vec!["connect phase did not finish in time; traffic started anyway".into()];
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            eprintln!(
                "{}connecting: {} open, {} failed of {}",
                tag(opts),
                control.connected.load(SeqCst),
                control.failed.load(SeqCst),
                opts.connections / 2 * 2
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Vec::new()
}

/// The traffic start (Unix µs), or `None` when the parent vanished before saying go.
fn open_gate(opts: &Options, gate: &Gate) -> Option<u64> {
    match gate {
        Gate::Idle => {
            std::thread::sleep(Duration::from_secs_f64(opts.idle_secs));
            Some(now_us() + 50_000) // Every executor sees the flag well before this.
        }
        Gate::Parent => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "READY");
            let _ = out.flush();
            drop(out);
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).ok()?;
            line.trim().strip_prefix("GO ")?.parse().ok()
        }
    }
}

/// The report's settings part.
pub(crate) fn base_report(
    opts: &Options,
    threads: usize,
    connect_secs: f64,
    problems: Vec<String>,
) -> Report {
    Report {
        protocol: format!("{:?}", opts.protocol).to_lowercase(),
        urls: opts.urls.clone(),
        processes: 1,
        threads_per_process: threads,
        connections_requested: opts.connections / 2 * 2,
        rate_target: opts.rate,
        duration_secs: opts.duration_secs,
        payload_bytes: opts.payload_bytes,
        connect_secs: (connect_secs * 1000.0).round() / 1000.0,
        problems,
        ..Report::default()
    }
}

/// Prefix of a child's stderr lines.
pub(crate) fn tag(opts: &Options) -> String {
    opts.child
        .map(|c| format!("[proc {}] ", c.index))
        .unwrap_or_default()
}
