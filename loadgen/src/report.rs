//! What a run measured: counters summed over executors and processes, latency histograms
//! merged exactly (child processes ship their histograms, not their percentiles, because
//! percentiles cannot be averaged), and the JSON/human renderings.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A failure kind seen `count` times, with the first error text for diagnosis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub count: u64,
    pub first: String,
}

/// Adds one occurrence of `kind` to `map`, keeping the first text.
pub(crate) fn note(map: &mut BTreeMap<String, Refusal>, kind: &str, text: &str) {
    let r = map.entry(kind.to_owned()).or_default();
    if r.count == 0 {
        r.first = text.to_owned();
    }
    r.count += 1;
}

/// Counters that add up across executors and processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub connect_attempted: u64,
    pub connect_ok: u64,
    pub connect_failed: u64,
    /// Refused or failed connection attempts by errno name / HTTP status / `timeout`.
    pub connect_errors: BTreeMap<String, Refusal>,
    pub sent: u64,
    /// `accepted` frames for our messages (distriSocks only).
    pub accepted: u64,
    /// Sends refused with an error frame.
    pub refused: u64,
    /// Sends that got neither `accepted` nor an error frame.
    pub unanswered: u64,
    /// Messages that had to arrive: accepted (distriSocks) or sent (Socket.IO).
    pub expected: u64,
    /// `message` frames received, every copy.
    pub delivered: u64,
    /// Distinct messages received.
    pub delivered_unique: u64,
    /// Distinct messages received before the traffic phase ended.
    pub delivered_in_window: u64,
    /// Expected messages never received after the drain: the loss.
    pub missing: u64,
    /// Messages received more than once (at-least-once delivery), and the extra copies.
    pub duplicates: u64,
    pub duplicate_copies: u64,
    /// Received although no `accepted` frame came for it.
    pub received_unaccepted: u64,
    /// Messages this run did not send (e.g. replays from an earlier run with the same users).
    pub foreign_messages: u64,
    pub acks_sent: u64,
    pub status_frames: u64,
    pub error_frames: BTreeMap<String, u64>,
    /// Scheduled sends skipped because the sender's connection was gone.
    pub skipped_unconnected: u64,
    /// Scheduled sends dropped because the sender's socket had a backlog (peer not reading).
    pub dropped_backlog: u64,
    /// Connections ended by the peer before we closed them, by close code (`none`: no frame).
    pub close_codes: BTreeMap<String, u64>,
    /// Connections that broke without a close frame, by error.
    pub disconnect_errors: BTreeMap<String, Refusal>,
    /// Keys of a few missing messages.
    pub missing_sample: Vec<String>,
}

impl Counts {
    pub fn merge(&mut self, o: &Counts) {
        let sums = [
            (&mut self.connect_attempted, o.connect_attempted),
            (&mut self.connect_ok, o.connect_ok),
            (&mut self.connect_failed, o.connect_failed),
            (&mut self.sent, o.sent),
            (&mut self.accepted, o.accepted),
            (&mut self.refused, o.refused),
            (&mut self.unanswered, o.unanswered),
            (&mut self.expected, o.expected),
            (&mut self.delivered, o.delivered),
            (&mut self.delivered_unique, o.delivered_unique),
            (&mut self.delivered_in_window, o.delivered_in_window),
            (&mut self.missing, o.missing),
            (&mut self.duplicates, o.duplicates),
            (&mut self.duplicate_copies, o.duplicate_copies),
            (&mut self.received_unaccepted, o.received_unaccepted),
            (&mut self.foreign_messages, o.foreign_messages),
            (&mut self.acks_sent, o.acks_sent),
            (&mut self.status_frames, o.status_frames),
            (&mut self.skipped_unconnected, o.skipped_unconnected),
            (&mut self.dropped_backlog, o.dropped_backlog),
        ];
        for (mine, theirs) in sums {
            *mine += theirs;
        }
        merge_refusals(&mut self.connect_errors, &o.connect_errors);
        merge_refusals(&mut self.disconnect_errors, &o.disconnect_errors);
        for (k, v) in &o.error_frames {
            *self.error_frames.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.close_codes {
            *self.close_codes.entry(k.clone()).or_default() += v;
        }
        let room = super::ledger::SAMPLE.saturating_sub(self.missing_sample.len());
        self.missing_sample
            .extend(o.missing_sample.iter().take(room).cloned());
    }
}

fn merge_refusals(mine: &mut BTreeMap<String, Refusal>, theirs: &BTreeMap<String, Refusal>) {
    for (k, r) in theirs {
        let m = mine.entry(k.clone()).or_default();
        if m.count == 0 {
            m.first = r.first.clone();
        }
        m.count += r.count;
    }
}

/// The three histograms of a run, all in microseconds.
#[derive(Debug, Clone)]
pub struct Hists {
    /// Scheduled send to receipt by the recipient.
    pub latency: Histogram<u64>,
    /// Scheduled send to the `accepted` frame (stored durably).
    pub accept: Histogram<u64>,
    /// Connection attempt start to open socket.
    pub connect: Histogram<u64>,
}

impl Default for Hists {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Hists {
            latency: h(),
            accept: h(),
            connect: h(),
        }
    }
}

impl Hists {
    pub fn merge(&mut self, o: &Hists) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.accept.add(&o.accept);
        let _ = self.connect.add(&o.connect);
    }

    fn to_raw(&self) -> RawHists {
        RawHists {
            latency: raw(&self.latency),
            accept: raw(&self.accept),
            connect: raw(&self.connect),
        }
    }

    fn from_raw(r: &RawHists) -> Hists {
        let mut h = Hists::default();
        fill(&mut h.latency, &r.latency);
        fill(&mut h.accept, &r.accept);
        fill(&mut h.connect, &r.connect);
        h
    }
}

/// Histograms as `[value, count]` pairs, for shipping from a child process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RawHists {
    pub latency: Vec<[u64; 2]>,
    pub accept: Vec<[u64; 2]>,
    pub connect: Vec<[u64; 2]>,
}

fn raw(h: &Histogram<u64>) -> Vec<[u64; 2]> {
    let it = h.iter_recorded();
    it.map(|v| [v.value_iterated_to(), v.count_at_value()])
        .collect()
}

fn fill(h: &mut Histogram<u64>, pairs: &[[u64; 2]]) {
    for [v, n] in pairs {
        let _ = h.record_n(*v, *n); // In bounds: it came from the same bounds.
    }
}

/// Percentiles of one histogram.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let q = |x| h.value_at_quantile(x);
        Percentiles {
            count: h.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// The JSON report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    pub protocol: String,
    pub urls: Vec<String>,
    pub processes: usize,
    pub threads_per_process: usize,
    pub connections_requested: u64,
    pub rate_target: f64,
    pub duration_secs: f64,
    pub payload_bytes: usize,
    /// Wall time of the connect phase (slowest process).
    pub connect_secs: f64,
    /// Messages sent per second over the traffic window.
    pub offered_per_sec: f64,
    /// Distinct messages received within the traffic window, per second.
    pub delivered_per_sec: f64,
    pub counts: Counts,
    pub latency_us: Percentiles,
    pub accept_latency_us: Percentiles,
    pub connect_latency_us: Percentiles,
    /// After minus before, per distrisocks_* sample, per metrics URL.
    pub metrics_delta: BTreeMap<String, BTreeMap<String, f64>>,
    /// VmRSS in KiB per watched pid: `start`, `connected`, `end`.
    pub rss_kib: BTreeMap<String, BTreeMap<String, u64>>,
    /// VmRSS of the generator's own processes once connected, summed.
    pub generator_rss_kib: u64,
    /// Problems of the run itself (a child that died, a metrics URL that failed).
    pub problems: Vec<String>,
    /// Histograms, only in a child's report to its parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawHists>,
}

impl Report {
    /// Fills the derived fields from merged counts and histograms.
    pub(crate) fn finish(&mut self, counts: Counts, hists: &Hists, with_raw: bool) {
        let secs = self.duration_secs.max(1e-9);
        self.offered_per_sec = round1(counts.sent as f64 / secs);
        self.delivered_per_sec = round1(counts.delivered_in_window as f64 / secs);
        self.counts = counts;
        self.latency_us = Percentiles::of(&hists.latency);
        self.accept_latency_us = Percentiles::of(&hists.accept);
        self.connect_latency_us = Percentiles::of(&hists.connect);
        self.raw = with_raw.then(|| hists.to_raw());
    }

    /// The histograms a child shipped (empty ones if it shipped none).
    pub(crate) fn hists(&self) -> Hists {
        self.raw.as_ref().map(Hists::from_raw).unwrap_or_default()
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_the_trip_through_json() {
        let mut h = Hists::default();
        for v in 1..=1000u64 {
            h.latency.record(v * 10).unwrap();
        }
        let mut r = Report::default();
        r.finish(Counts::default(), &h, true);
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        let mut merged = back.hists();
        merged.merge(&h);
        assert_eq!(merged.latency.len(), 2000);
        assert_eq!(Percentiles::of(&merged.latency).p50, r.latency_us.p50);
    }

    #[test]
    fn counts_add_up_and_keep_first_errors() {
        let mut a = Counts::default();
        note(&mut a.connect_errors, "EMFILE", "Too many open files");
        a.sent = 3;
        let mut b = a.clone();
        b.connect_errors.get_mut("EMFILE").unwrap().first = "later".into();
        a.merge(&b);
        assert_eq!(a.sent, 6);
        assert_eq!(a.connect_errors["EMFILE"].count, 2);
        assert_eq!(a.connect_errors["EMFILE"].first, "Too many open files");
    }
}
