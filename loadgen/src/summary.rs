//! The human summary printed on stderr: the few numbers a person reads first, with loss,
//! duplicates and refusals spelled out rather than buried in the JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::report::{Percentiles, Refusal, Report};

/// Renders `r` as a few lines of text.
pub fn render(r: &Report) -> String {
    let c = &r.counts;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "distrisocks-bench: {} | {} process(es) x {} thread(s) | {} connection(s) over {} URL(s)",
        r.protocol,
        r.processes,
        r.threads_per_process,
        r.connections_requested,
        r.urls.len()
    );
    let _ = writeln!(
        s,
        "connect:  {} ok, {} failed of {} attempted in {:.2} s (p50 {}, p99 {}, max {})",
        c.connect_ok,
        c.connect_failed,
        c.connect_attempted,
        r.connect_secs,
        ms(r.connect_latency_us.p50),
        ms(r.connect_latency_us.p99),
        ms(r.connect_latency_us.max)
    );
    refusals(&mut s, "  refused", &c.connect_errors);
    traffic(&mut s, r);
    others(&mut s, r);
    s
}

fn traffic(s: &mut String, r: &Report) {
    let c = &r.counts;
    let _ = writeln!(
        s,
        "traffic:  {} sent in {} s ({:.1}/s offered, target {}/s); accepted {}, refused {}, UNANSWERED {}",
        c.sent, r.duration_secs, r.offered_per_sec, r.rate_target, c.accepted, c.refused, c.unanswered
    );
    let _ = writeln!(
        s,
        "delivery: {} delivered ({} unique, {:.1}/s in window); MISSING {} of {} expected; duplicates {} (+{} copies)",
        c.delivered, c.delivered_unique, r.delivered_per_sec, c.missing, c.expected, c.duplicates, c.duplicate_copies
    );
    if !c.missing_sample.is_empty() {
        let _ = writeln!(s, "  missing keys, e.g.: {}", c.missing_sample.join(" "));
    }
    let _ = writeln!(
        s,
        "latency:  {}  (scheduled send -> receipt)",
        pct(&r.latency_us)
    );
    if r.accept_latency_us.count > 0 {
        let _ = writeln!(
            s,
            "accepted: {}  (scheduled send -> accepted)",
            pct(&r.accept_latency_us)
        );
    }
}

fn others(s: &mut String, r: &Report) {
    let c = &r.counts;
    let skipped = c.skipped_unconnected + c.dropped_backlog;
    if skipped > 0 {
        let _ = writeln!(
            s,
            "skipped:  {} sends from closed connections, {} for socket backlog",
            c.skipped_unconnected, c.dropped_backlog
        );
    }
    if !c.error_frames.is_empty() {
        let _ = writeln!(s, "error frames: {}", counts(&c.error_frames));
    }
    if !c.close_codes.is_empty() {
        let _ = writeln!(s, "closed by peer: {}", counts(&c.close_codes));
    }
    refusals(s, "broken", &c.disconnect_errors);
    if c.foreign_messages + c.received_unaccepted > 0 {
        let _ = writeln!(
            s,
            "other:    {} messages not sent by this run, {} received without accepted",
            c.foreign_messages, c.received_unaccepted
        );
    }
    for (pid, m) in &r.rss_kib {
        let at = |k: &str| m.get(k).map_or("-".to_owned(), |v| format!("{v} KiB"));
        let (a, b, c) = (at("start"), at("connected"), at("end"));
        let _ = writeln!(s, "rss pid {pid}: start {a}, connected {b}, end {c}");
    }
    if r.generator_rss_kib > 0 {
        let n = r.generator_rss_kib;
        let _ = writeln!(s, "generator rss once connected (all processes): {n} KiB");
    }
    for p in &r.problems {
        let _ = writeln!(s, "PROBLEM: {p}");
    }
}

fn refusals(s: &mut String, label: &str, m: &BTreeMap<String, Refusal>) {
    for (kind, r) in m {
        let _ = writeln!(s, "{label}: {kind} x{} (first: {})", r.count, r.first);
    }
}

fn counts<V: std::fmt::Display>(m: &BTreeMap<String, V>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(", ")
}

fn pct(p: &Percentiles) -> String {
    format!(
        "n={} p50 {} p90 {} p99 {} p99.9 {} max {}",
        p.count,
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.p999),
        ms(p.max)
    )
}

/// Microseconds as milliseconds with three decimals.
fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}
