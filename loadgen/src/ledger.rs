//! Pure bookkeeping of one executor's messages: what was sent when, what the gateway accepted,
//! what arrived and how often. Kept free of I/O so that loss and duplicate detection can be
//! unit-tested without a server.
//!
//! Both users of a pair live on the same executor, so every message is sent and received by
//! the same ledger: the sequence number in the message key indexes a plain `Vec`, no map and
//! no cross-thread state.

/// One message's fate.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// When the open-loop schedule said it should be sent (Unix µs); latency is measured from
    /// here, not from the actual send, so a stalled generator cannot hide queueing delay.
    sched_us: u64,
    accepted: bool,
    errored: bool,
    received: u32,
}

impl Entry {
    /// Nothing more to wait for: answered, and received if it had to arrive.
    fn settled(&self) -> bool {
        (self.accepted || self.errored) && !(self.accepted && self.received == 0)
    }
}

/// How a received message relates to what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// First copy of a known message; carries its scheduled send time.
    First(u64),
    /// A known message seen again (at-least-once delivery).
    Duplicate,
    /// A sequence number this ledger never sent.
    Unknown,
}

/// Counts derived from a ledger at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    pub accepted: u64,
    pub errored: u64,
    /// Sent, but neither `accepted` nor an error frame came back.
    pub unanswered: u64,
    /// Messages that had to arrive: accepted ones (distriSocks) or all sent (Socket.IO).
    pub expected: u64,
    /// Expected messages never received: the loss.
    pub missing: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Copies beyond the first, summed.
    pub duplicate_copies: u64,
    /// Received although never accepted (the `accepted` frame was lost or came late).
    pub received_unaccepted: u64,
    /// Up to [`SAMPLE`] sequence numbers of missing messages, to look them up in the store.
    pub missing_sample: Vec<u64>,
}

/// How many missing sequence numbers a tally keeps as examples.
pub const SAMPLE: usize = 10;

/// The ledger of one executor.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: Vec<Entry>,
    /// Socket.IO has no `accepted` frame: every sent message is expected to arrive.
    expect_on_send: bool,
    /// Entries not settled yet, kept current so the drain can poll it cheaply.
    open: usize,
}

impl Ledger {
    pub fn new(expect_on_send: bool) -> Ledger {
        Ledger {
            entries: Vec::new(),
            expect_on_send,
            open: 0,
        }
    }

    /// Applies `f` to entry `seq` and keeps `open` current; `None` if there is no such entry.
    fn update<T>(&mut self, seq: u64, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let e = self.entries.get_mut(seq as usize)?;
        let was = e.settled();
        let out = f(e);
        match (was, e.settled()) {
            (true, false) => self.open += 1,
            (false, true) => self.open -= 1,
            _ => {}
        }
        Some(out)
    }

    /// Records a message scheduled at `sched_us`; returns its sequence number.
    pub fn record_send(&mut self, sched_us: u64) -> u64 {
        self.entries.push(Entry {
            sched_us,
            accepted: self.expect_on_send,
            ..Entry::default()
        });
        self.open += 1; // A new entry is never settled.
        self.entries.len() as u64 - 1
    }

    /// Marks `seq` accepted; returns its scheduled time the first time only.
    pub fn accepted(&mut self, seq: u64) -> Option<u64> {
        self.update(seq, |e| {
            let first = !e.accepted;
            e.accepted = true;
            first.then_some(e.sched_us)
        })
        .flatten()
    }

    /// Marks `seq` refused with an error frame.
    pub fn errored(&mut self, seq: u64) {
        self.update(seq, |e| e.errored = true);
    }

    /// Records one received copy of `seq`.
    pub fn received(&mut self, seq: u64) -> Receipt {
        let r = self.update(seq, |e| {
            e.received += 1;
            if e.received == 1 {
                Receipt::First(e.sched_us)
            } else {
                Receipt::Duplicate
            }
        });
        r.unwrap_or(Receipt::Unknown)
    }

    /// Entries still awaited (a send unanswered, or an expected message not seen). Only falls
    /// once traffic ends; the drain ends when it reaches zero or stops falling.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Sums up the run.
    pub fn tally(&self) -> Tally {
        let mut t = Tally {
            sent: self.entries.len() as u64,
            ..Tally::default()
        };
        for (seq, e) in self.entries.iter().enumerate() {
            t.add(seq as u64, e, self.expect_on_send);
        }
        t
    }
}

impl Tally {
    fn add(&mut self, seq: u64, e: &Entry, expect_on_send: bool) {
        let accepted = e.accepted && !expect_on_send;
        self.accepted += u64::from(accepted);
        self.errored += u64::from(e.errored);
        self.unanswered += u64::from(!e.accepted && !e.errored);
        if e.received > 1 {
            self.duplicates += 1;
            self.duplicate_copies += u64::from(e.received - 1);
        }
        if !e.accepted {
            self.received_unaccepted += u64::from(e.received > 0);
            return;
        }
        self.expected += 1;
        if e.received == 0 {
            self.missing += 1;
            if self.missing_sample.len() < SAMPLE {
                self.missing_sample.push(seq);
            }
        }
    }
}

/// The message key: unique per run, so that a key names one message across every process and
/// executor (it doubles as the `client_msg_id`, the gateway's idempotency key).
pub fn make_key(proc_idx: u32, thread_idx: u32, seq: u64) -> String {
    format!("{proc_idx}.{thread_idx}.{seq}")
}

/// Splits a key made by [`make_key`].
pub fn parse_key(key: &str) -> Option<(u32, u32, u64)> {
    let mut it = key.split('.');
    let p = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    let s = it.next()?.parse().ok()?;
    it.next().is_none().then_some((p, t, s))
}

/// `<sched_us>|<key>|<padding>`, padded with `x` to `bytes` (never cut below the header).
pub fn encode_payload(sched_us: u64, key: &str, bytes: usize) -> String {
    let mut s = format!("{sched_us}|{key}|");
    let pad = bytes.saturating_sub(s.len());
    s.push_str(&"x".repeat(pad));
    s
}

/// The scheduled time and key of a payload made by [`encode_payload`].
pub fn parse_payload(payload: &str) -> Option<(u64, &str)> {
    let mut it = payload.splitn(3, '|');
    let sched = it.next()?.parse().ok()?;
    let key = it.next()?;
    it.next()?;
    Some((sched, key))
}

/// xorshift64*: the pair picker needs speed and independence per executor, not crypto.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from any seed (zero is mapped away: xorshift would stay at zero).
    pub fn new(seed: u64) -> Rng {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` for n far below 2^32 (multiply-shift, no modulo bias worth
    /// measuring at these sizes).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_accepted_but_never_received() {
        let mut l = Ledger::new(false);
        for i in 0..10 {
            let seq = l.record_send(1000 + i);
            assert_eq!(l.accepted(seq), Some(1000 + i));
            if seq % 10 != 3 {
                assert_eq!(l.received(seq), Receipt::First(1000 + i));
            }
        }
        assert_eq!(l.open(), 1, "message 3 never came");
        let t = l.tally();
        assert_eq!((t.sent, t.accepted, t.expected, t.missing), (10, 10, 10, 1));
        assert_eq!(t.missing_sample, vec![3]);
        assert_eq!(t.duplicates, 0);
    }

    #[test]
    fn duplicates_are_not_loss_and_errors_are_not_expected() {
        let mut l = Ledger::new(false);
        let a = l.record_send(1);
        let b = l.record_send(2);
        let c = l.record_send(3);
        l.accepted(a);
        assert_eq!(
            l.accepted(a),
            None,
            "a repeated accepted frame is not counted twice"
        );
        l.received(a);
        assert_eq!(l.received(a), Receipt::Duplicate);
        l.errored(b);
        assert_eq!(l.received(99), Receipt::Unknown);
        assert_eq!(l.open(), 1, "c is unanswered");
        l.accepted(c);
        l.received(c);
        assert_eq!(l.open(), 0);
        let t = l.tally();
        assert_eq!((t.accepted, t.errored, t.missing), (2, 1, 0));
        assert_eq!((t.duplicates, t.duplicate_copies, t.unanswered), (1, 1, 0));
    }

    #[test]
    fn socketio_expects_every_sent_message() {
        let mut l = Ledger::new(true);
        let a = l.record_send(1);
        l.record_send(2);
        l.received(a);
        let t = l.tally();
        assert_eq!((t.sent, t.accepted, t.expected, t.missing), (2, 0, 2, 1));
        assert_eq!(t.unanswered, 0);
    }

    #[test]
    fn keys_and_payloads_round_trip() {
        let k = make_key(3, 1, 42);
        assert_eq!(parse_key(&k), Some((3, 1, 42)));
        assert_eq!(parse_key("1.2"), None);
        let p = encode_payload(1_700_000_000_000_000, &k, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(parse_payload(&p), Some((1_700_000_000_000_000, k.as_str())));
        assert!(encode_payload(5, "k", 1).starts_with("5|k|"));
        assert_eq!(parse_payload("hello"), None);
    }

    #[test]
    fn rng_stays_in_range_and_spreads() {
        let mut r = Rng::new(0);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[r.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
