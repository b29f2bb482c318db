//! An executor's run, phase by phase: paced connects, wait for the common start, open-loop
//! traffic, drain, close. Every wait is bounded, so a dead or stalled pod ends the run with
//! counts instead of a hang.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn;
use super::connect;
use super::report::{note, Counts, Hists};
use super::worker::{Ctx, St, Worker};
use super::{now_us, Control};

/// How often waits look at shared state (phase changes only, never per message).
const TICK: Duration = Duration::from_millis(10);
/// How long closing connections may take to flush their close frames.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The whole life of one executor; returns its counts and histograms.
pub(crate) async fn run(ctx: Ctx, control: Arc<Control>) -> (Counts, Hists) {
    let st: St = Rc::new(RefCell::new(Worker::new(Rc::new(ctx))));
    connect_all(&st, &control).await;
    control.ready.fetch_add(1, SeqCst);
    if let Some(go) = wait_go(&control).await {
        traffic(&st, go).await;
        drain(&st).await;
    }
    close_all(&st).await;
    let tasks = std::mem::take(&mut st.borrow_mut().tasks);
    drop(tasks); // Cancels readers and writers still waiting on a silent peer.
    let out = st.borrow_mut().outcome();
    out
}

/// Opens this executor's connections at its share of `--connect-rate`, each attempt in its own
/// task so that a slow one does not hold back the schedule.
async fn connect_all(st: &St, control: &Arc<Control>) {
    let (n, rate) = {
        let w = st.borrow();
        (w.ctx.plan.users, w.ctx.plan.connect_rate)
    };
    let start = Instant::now();
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        if control.abort.load(SeqCst) {
            break;
        }
        pending.push(glommio::spawn_local(connect_one(
            st.clone(),
            i,
            control.clone(),
        )));
    }
    for t in pending {
        t.await;
    }
}

async fn connect_one(st: St, i: usize, control: Arc<Control>) {
    let (target, src, path, protocol, limit) = {
        let w = st.borrow();
        let (t, s, p) = w.ctx.request(i);
        (t, s, p, w.ctx.opts.protocol, w.ctx.connect_timeout())
    };
    let t0 = Instant::now();
    let result = connect::open(&target, src, &path, protocol, limit).await;
    let mut w = st.borrow_mut();
    w.counts.connect_attempted += 1;
    match result {
        Ok(link) => {
            let us = t0.elapsed().as_micros() as u64;
            w.hists.connect.saturating_record(us.max(1));
            w.counts.connect_ok += 1;
            control.connected.fetch_add(1, SeqCst);
            drop(w);
            conn::start(&st, i, link);
        }
        Err(e) => {
            w.counts.connect_failed += 1;
            note(&mut w.counts.connect_errors, &e.kind, &e.text);
            control.failed.fetch_add(1, SeqCst);
        }
    }
}

/// The common traffic start (Unix µs) chosen by the controller; `None` if the run was aborted.
async fn wait_go(control: &Control) -> Option<u64> {
    loop {
        if control.abort.load(SeqCst) {
            return None;
        }
        match control.go_at_us.load(SeqCst) {
            0 => glommio::timer::sleep(TICK).await,
            go => return Some(go),
        }
    }
}

/// Sends on a fixed schedule from `go_us`: message k is due at go + k/rate whatever happened
/// to earlier ones, and its latency is measured from that due time (no coordinated omission).
async fn traffic(st: &St, go_us: u64) {
    let (rate, end_us, pairs) = {
        let mut w = st.borrow_mut();
        let end = go_us + (w.ctx.opts.duration_secs * 1e6) as u64;
        w.window_end_us = end;
        (w.ctx.plan.rate, end, w.live_pairs())
    };
    if pairs.is_empty() || rate <= 0.0 {
        sleep_until_us(end_us).await;
        return;
    }
    let interval_us = 1e6 / rate;
    for k in 0u64.. {
        let sched = go_us + (k as f64 * interval_us) as u64;
        if sched >= end_us {
            break;
        }
        sleep_until_us(sched).await;
        st.borrow_mut().send_one(&pairs, sched);
        if k % 32 == 31 {
            glommio::yield_if_needed().await; // Let readers run during a catch-up burst.
        }
    }
}

/// Waits for outstanding answers and deliveries while they keep arriving: ends when nothing is
/// outstanding, after `--drain-secs` in which nothing settled, or after `--drain-max-secs`.
async fn drain(st: &St) {
    let (quiet, most) = {
        let o = &st.borrow().ctx.opts;
        let quiet = Duration::from_secs_f64(o.drain_secs);
        (quiet, quiet.max(Duration::from_secs_f64(o.drain_max_secs)))
    };
    let start = Instant::now();
    let (mut open, mut moved) = (st.borrow().ledger.open(), start);
    while open > 0 {
        let now = Instant::now();
        if now - moved >= quiet || now - start >= most {
            break;
        }
        glommio::timer::sleep(TICK).await;
        let left = st.borrow().ledger.open();
        if left < open {
            (open, moved) = (left, Instant::now());
        }
    }
}

/// Closes every connection (close frame), waiting briefly for the writers to flush.
async fn close_all(st: &St) {
    {
        let mut w = st.borrow_mut();
        w.closing = true;
        for out in w.conns.iter().flatten() {
            out.borrow_mut().close();
        }
    }
    let deadline = Instant::now() + CLOSE_GRACE;
    while st.borrow().open_writers > 0 && Instant::now() < deadline {
        glommio::timer::sleep(TICK).await;
    }
}

async fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        glommio::timer::sleep(at - now).await;
    }
}

async fn sleep_until_us(at_us: u64) {
    let now = now_us();
    if at_us > now {
        glommio::timer::sleep(Duration::from_micros(at_us - now)).await;
    }
}
