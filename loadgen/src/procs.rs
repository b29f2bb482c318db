//! `--procs P`: the open-file limit caps one process at about 20k sockets, so the binary runs
//! itself P times with disjoint user ranges. Children get their options as JSON in an
//! environment variable, say `READY` on stdout when connected, start traffic on `GO <µs>` from
//! stdin (one common start for all), and print their report as their last stdout line. The
//! parent merges counts and histograms exactly.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::local::{base_report, Gate};
use super::options::ChildSlot;
use super::report::{Counts, Hists, Report};
use super::{now_us, Options, CHILD_ENV};

/// What a child's stdout said.
enum Line {
    Ready,
    Done(Box<Report>),
    /// Its stdout closed.
    Gone,
}

/// Slack on top of the expected durations before a child is given up on and killed.
const SLACK: Duration = Duration::from_secs(30);

/// Runs `opts.procs` children and merges their reports; `on_connected` runs once all children
/// are connected (or gone).
pub(crate) fn run_parent(opts: &Options, on_connected: &mut dyn FnMut()) -> Result<Report, String> {
    let (tx, rx) = channel();
    let mut children = spawn_children(opts, &tx)?;
    drop(tx);
    let started = Instant::now();
    let mut reports: Vec<Option<Report>> = vec![None; children.len()];
    let mut problems = Vec::new();
    let connect_limit = opts.connections as f64 / opts.connect_rate + opts.connect_timeout_secs;
    let (n, limit) = (children.len(), secs(connect_limit));
    let ready = collect(&rx, n, limit, true, &mut reports, &mut problems);
    let connect_secs = started.elapsed().as_secs_f64();
    on_connected();
    std::thread::sleep(secs(opts.idle_secs));
    let go = now_us() + 100_000;
    for child in children.iter_mut() {
        let stdin: Option<&mut ChildStdin> = child.stdin.as_mut();
        let _ = stdin.map(|s| writeln!(s, "GO {go}").and_then(|_| s.flush()));
    }
    let limit = secs(opts.duration_secs + opts.drain_secs.max(opts.drain_max_secs) + 0.1);
    collect(&rx, ready.len(), limit, false, &mut reports, &mut problems);
    finish_children(&mut children, &mut problems);
    Ok(merge(opts, reports, connect_secs, problems))
}

/// Starts the children, each with a thread forwarding its stdout lines to `tx`.
fn spawn_children(opts: &Options, tx: &Sender<(usize, Line)>) -> Result<Vec<Child>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let mut children = Vec::new();
    for child_opts in child_options(opts) {
        let index = child_opts.child.map_or(0, |c| c.index) as usize;
        let json = serde_json::to_string(&child_opts).map_err(|e| e.to_string())?;
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start child process: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send((index, classify(&line)));
            }
            let _ = tx.send((index, Line::Gone));
        });
        children.push(child);
    }
    Ok(children)
}

/// Each child's options: its slice of the pairs and its share of the rates.
fn child_options(opts: &Options) -> Vec<Options> {
    let (procs, pairs) = (opts.procs as u64, opts.connections / 2);
    (0..procs)
        .map(|i| {
            let (lo, hi) = (pairs * i / procs, pairs * (i + 1) / procs);
            let share = (hi - lo) as f64 / pairs.max(1) as f64;
            let mut o = opts.clone();
            o.procs = 1;
            o.connections = 2 * (hi - lo);
            o.rate = opts.rate * share;
            o.connect_rate = (opts.connect_rate * share).max(1e-3);
            o.json = None;
            o.metrics_urls.clear();
            o.watch_pids.clear();
            o.seed = opts.seed.map(|s| s.wrapping_add(i << 20));
            o.child = Some(ChildSlot {
                index: i as u32,
                first_user: 2 * lo,
            });
            o
        })
        .collect()
}

fn classify(line: &str) -> Line {
    if line.trim() == "READY" {
        return Line::Ready;
    }
    match serde_json::from_str::<Report>(line) {
        Ok(r) => Line::Done(Box::new(r)),
        Err(_) => Line::Ready, // Not expected; treated as a sign of life.
    }
}

/// Waits until `want` children said READY (`ready_phase`) or reported, or `limit` (plus
/// slack) passed. Returns the indices that did; children that vanished are noted as problems.
fn collect(
    rx: &Receiver<(usize, Line)>,
    want: usize,
    limit: Duration,
    ready_phase: bool,
    reports: &mut [Option<Report>],
    problems: &mut Vec<String>,
) -> Vec<usize> {
    let deadline = Instant::now() + limit + SLACK;
    let (mut done, mut gone) = (Vec::new(), 0);
    while done.len() + gone < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, Line::Ready)) if ready_phase => done.push(i),
            Ok((i, Line::Done(r))) if !ready_phase => {
                reports[i] = Some(*r);
                done.push(i);
            }
            Ok((i, Line::Gone)) if reports[i].is_none() => {
                problems.push(format!("process {i} ended without a report"));
                gone += 1;
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                let n = want - done.len() - gone;
                problems.push(format!("gave up waiting for {n} process(es)"));
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    done
}

/// Reaps the children, killing any that still run (only our own children, by handle).
fn finish_children(children: &mut [Child], problems: &mut Vec<String>) {
    for (i, c) in children.iter_mut().enumerate() {
        drop(c.stdin.take());
        if let Ok(None) = c.try_wait() {
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Ok(None) = c.try_wait() {
            let _ = c.kill();
            problems.push(format!("process {i} was killed: it did not exit"));
        }
        match c.wait() {
            Ok(s) if !s.success() => problems.push(format!("process {i} exited with {s}")),
            Err(e) => problems.push(format!("process {i}: {e}")),
            _ => {}
        }
    }
}

fn merge(
    opts: &Options,
    reports: Vec<Option<Report>>,
    connect_secs: f64,
    mut problems: Vec<String>,
) -> Report {
    let (mut counts, mut hists) = (Counts::default(), Hists::default());
    let (mut threads, mut rss) = (0, 0);
    for r in reports.iter().flatten() {
        rss += r.generator_rss_kib;
        counts.merge(&r.counts);
        hists.merge(&r.hists());
        threads = threads.max(r.threads_per_process);
        problems.extend(r.problems.iter().cloned());
    }
    let mut report = base_report(opts, threads, connect_secs, problems);
    report.processes = opts.procs;
    report.generator_rss_kib = rss;
    report.finish(counts, &hists, false);
    report
}

/// Runs as a child: this process's share, gated by the parent; the report keeps histograms.
pub(crate) fn run_child(opts: &Options) -> Result<Report, String> {
    super::local::run(opts, Gate::Parent, &mut || {})
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}
