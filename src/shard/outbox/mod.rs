//! A connection's outbound queue: filled by the shard, drained by the connection's writer task.
//!
//! Allocates nothing while idle (the `VecDeque` grows on first use). Overflow policy: a queue
//! that reaches its capacity means the client reads too slowly; the connection is closed with
//! 4008 and its undelivered messages stay stored for replay on reconnect. Nothing is dropped
//! silently.
//!
//! The outbox also bounds the sends a connection has waiting for the store to half its
//! capacity: the reader stops reading that socket until answers come back, so a client that
//! pipelines faster than the store commits is slowed down (TCP back-pressure) rather than
//! disconnected by its own `accepted` frames.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tungstenite::Utf8Bytes;

use crate::backend::bus::Envelope;
use crate::protocol::codes::close;
use crate::protocol::status_of_frame;

mod delivered;
mod recent;
use recent::{Given, Recent};
pub use recent::{MAX_UNACKED, RECENT};

/// Most unacknowledged messages a replay records (see [`recent`]): half the credit, so live
/// messages that arrive before the device's acks of its backlog are read (the reader starts
/// when the replay ends) have the other half. A replay does not wait for acks: it cannot
/// read them.
pub const REPLAY_UNACKED: usize = MAX_UNACKED / 2;

/// One item for the writer.
pub enum Out {
    /// A protocol frame (accepted, status, error).
    Text(Utf8Bytes),
    /// A message for this device; in `write` mode its flush marks it DELIVERED.
    Message(Arc<Envelope>),
    /// A message echoed verbatim (the conformance endpoint only).
    Echo { binary: bool, data: Vec<u8> },
    /// A keepalive ping, queued by the shard's keepalive sweep.
    Ping,
    /// The answer to a client's ping, with its bytes.
    Pong(Vec<u8>),
    /// Send a close frame with this code and reason, then stop.
    Close(u16, &'static str),
}

/// Live messages held back while stored messages are replayed to a new connection.
#[derive(Default)]
pub struct Replay {
    pub held: Vec<Arc<Envelope>>,
    /// Held messages were discarded for space; they are stored, so the replay reads again.
    pub overflowed: bool,
}

/// See the module doc.
pub struct Outbox {
    queue: VecDeque<Out>,
    cap: usize,
    abort: Option<(u16, &'static str)>,
    waker: Option<Waker>,
    /// Boxed: only a connection in its first moments replays, and an idle one should not
    /// carry the room (it decides the outbox's allocation class, perf/RESULTS.md §19).
    replay: Option<Box<Replay>>,
    /// Highest `seq` a replay sent: live copies at or below it are duplicates.
    replayed_through: i64,
    /// Hashes of the last message ids this connection was given (allocated with the first
    /// message, so idle connections pay nothing): a second live copy of one of them (a
    /// redrive of a message the device has not acked yet, a produce that timed out yet
    /// reached the broker) is dropped instead of shown twice. Distributed mode only
    /// ([`remembering_ids`](Self::remembering_ids)): the embedded pod never sends a live copy
    /// twice, so its connections neither hash ids nor hold the ~850 bytes of the box.
    recent: Option<Box<Recent>>,
    remember_ids: bool,
    /// The device confirms messages with acks (`--delivery-confirm ack`): the ids it was
    /// given and has not acked are remembered, within a credit (see [`recent`]).
    await_acks: bool,
    /// A v2 device (`?since=`): takes carbons of what its user sent from elsewhere.
    sync: bool,
    finished: bool,
    /// Sends handed to the store and not answered yet.
    /// A `u32` (at most the send window) so it shares a word with the flags below.
    unanswered: u32,
    /// The reader, parked while `unanswered` is at the window.
    reader: Option<Waker>,
    /// When the peer last sent anything, for the keepalive sweep.
    last_seen: Instant,
    /// When the outstanding keepalive ping was queued, if one is.
    ping_sent: Option<Instant>,
    /// When the connection's token stops being accepted, seconds since the epoch
    /// (`i64::MAX`: never); moved by a token refresh, enforced by the keepalive sweep.
    expires_at: i64,
}

/// What the keepalive sweep does with one connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Keepalive {
    Quiet,
    /// Silent for the ping interval: a ping was queued.
    Pinged,
    /// No frame arrived within the pong timeout after a ping: the connection was aborted.
    Dead,
}

impl Outbox {
    pub fn new(cap: usize) -> Self {
        Outbox {
            queue: VecDeque::new(),
            cap,
            abort: None,
            waker: None,
            replay: None,
            replayed_through: 0,
            recent: None,
            remember_ids: false,
            await_acks: false,
            sync: false,
            finished: false,
            unanswered: 0,
            reader: None,
            last_seen: Instant::now(),
            ping_sent: None,
            expires_at: i64::MAX,
        }
    }

    /// The peer sent something: it is alive.
    pub fn seen(&mut self, now: Instant) {
        self.last_seen = now;
        self.ping_sent = None;
    }

    /// One keepalive check (the shard sweeps every connection; no timer per connection).
    pub fn keepalive(
        &mut self,
        now: Instant,
        ping_every: Duration,
        pong_within: Duration,
    ) -> Keepalive {
        if let Some(r) = self.recent.as_mut() {
            r.age(now);
        }
        if self.abort.is_some() {
            return Keepalive::Quiet; // Closing already: Dead is reported once.
        }
        match self.ping_sent {
            Some(sent) if now.saturating_duration_since(sent) >= pong_within => {
                self.abort(close::PING_TIMEOUT, "no pong");
                Keepalive::Dead
            }
            Some(_) => Keepalive::Quiet,
            None if now.saturating_duration_since(self.last_seen) >= ping_every => {
                self.ping_sent = Some(now);
                self.push(Out::Ping);
                Keepalive::Pinged
            }
            None => Keepalive::Quiet,
        }
    }

    /// Queues `out`; on overflow aborts the connection with 4008 and returns false.
    pub fn push(&mut self, out: Out) -> bool {
        if self.finished || self.abort.is_some() {
            return false;
        }
        if self.queue.len() >= self.cap {
            self.abort(close::SLOW_CONSUMER, "outbound queue overflow");
            return false;
        }
        self.queue.push_back(out);
        self.wake();
        true
    }

    /// Queues a status read from the store (a sync's carbon), remembered like a live one so
    /// that a live SENT arriving after a stored DELIVERED is dropped; one already behind what
    /// this connection showed is skipped.
    pub fn push_stored_status(&mut self, frame: String) -> bool {
        if self.status_behind(&frame) {
            return !self.finished;
        }
        self.push(Out::Text(frame.into()))
    }

    /// Queues a live message, or holds it while a replay is running. A message the replay
    /// already sent is skipped.
    pub fn push_live(&mut self, env: Arc<Envelope>) -> bool {
        if (env.carbon || env.group) && !self.sync {
            return true; // A v1 device knows nothing of carbons and groups.
        }
        if env.message_id.is_some() && env.seq <= self.replayed_through {
            return true;
        }
        if env.message_id.is_none() && self.status_behind(&env.frame) {
            return true;
        }
        let cap = self.cap;
        match &mut self.replay {
            Some(r) if r.held.len() >= cap => {
                r.held.clear();
                r.overflowed = true;
                true
            }
            // Remembered when released: a held copy may still be dropped for space.
            Some(r) => {
                r.held.push(env);
                true
            }
            None => self.push_given(env),
        }
    }

    /// Queues a live message unless this connection was given it already; a message past
    /// the credit of unacknowledged ones closes the connection with 4008.
    pub fn push_given(&mut self, env: Arc<Envelope>) -> bool {
        let Some(id) = env.message_id.as_deref() else {
            return self.push(Out::Message(env));
        };
        match self.give(id, env.seq, !env.carbon) {
            Given::Repeat => true,
            Given::New => self.push(Out::Message(env)),
            Given::NoCredit => {
                self.abort(close::SLOW_CONSUMER, "too many unacknowledged messages");
                false
            }
        }
    }

    /// Marks a v2 device, which takes carbons (see `sync`).
    pub fn syncing(mut self) -> Self {
        self.sync = true;
        self
    }

    pub fn is_syncing(&self) -> bool {
        self.sync
    }

    /// Sets when the connection's token stops being accepted (on each refresh), seconds
    /// since the epoch.
    pub fn token_expires_at(&mut self, at: i64) {
        self.expires_at = at;
    }

    /// [`token_expires_at`](Self::token_expires_at) at construction (the upgrade's token).
    pub fn expiring_at(mut self, at: i64) -> Self {
        self.expires_at = at;
        self
    }

    /// Whether the token expired by `now_secs` without a refresh.
    pub fn token_expired(&self, now_secs: i64) -> bool {
        self.expires_at <= now_secs
    }

    /// Turns on the window of recent ids (see `recent`).
    pub fn remembering_ids(mut self) -> Self {
        self.remember_ids = true;
        self
    }

    /// Remembers unacknowledged ids (see `await_acks`); needs
    /// [`remembering_ids`](Self::remembering_ids).
    pub fn awaiting_acks(mut self) -> Self {
        self.await_acks = true;
        self
    }

    /// Records `id` (stream position `pos`, 0 when unknown) as given to this connection;
    /// `addressed` when it is for the device (not a carbon) and below DELIVERED, so it
    /// awaits an ack. Always [`Given::New`] without [`remembering_ids`](Self::remembering_ids).
    fn give(&mut self, id: &str, pos: i64, addressed: bool) -> Given {
        if !self.remember_ids {
            return Given::New;
        }
        let awaits = addressed && self.await_acks;
        (self.recent.get_or_insert_with(Box::default)).give(id, pos, awaits)
    }

    /// A stored message the replay queues whatever was given before (a replay may repeat
    /// an id; a later live copy may not). It joins the unacknowledged ids while fewer than
    /// [`REPLAY_UNACKED`] are; past that (a backlog of more than 512 messages awaiting an
    /// ack) it is remembered by position and id only, as before the credit existed.
    pub fn give_replayed(&mut self, id: &str, pos: i64, awaits_ack: bool) {
        let awaits = awaits_ack && self.replay_credit();
        let _ = self.give(id, pos, awaits);
    }

    /// Queues a live message held during the replay. Like a replayed one it awaits an ack
    /// only while the replay's half of the credit lasts: the device's acks of everything
    /// before it are read only now, so a long replay under live traffic must not spend the
    /// live half and close a device that reads. A repeat is dropped, as for any live copy.
    pub fn push_released(&mut self, env: Arc<Envelope>) -> bool {
        let Some(id) = env.message_id.as_deref() else {
            // A status held while the sync ran may now be behind one the sync read from the
            // store (a SENT held, a DELIVERED stored): found by the chaos suite.
            if self.status_behind(&env.frame) {
                return !self.finished;
            }
            return self.push(Out::Message(env));
        };
        let addressed = !env.carbon && self.replay_credit();
        match self.give(id, env.seq, addressed) {
            Given::Repeat => true,
            // NoCredit cannot come: an ack is awaited only while half the credit is left.
            Given::New | Given::NoCredit => self.push(Out::Message(env)),
        }
    }

    /// Whether the replay may record one more message that awaits an ack.
    fn replay_credit(&self) -> bool {
        self.recent
            .as_ref()
            .map_or(true, |r| !self.await_acks || r.unacked() < REPLAY_UNACKED)
    }

    /// The device acked `id` (see [`recent`]).
    pub fn acked(&mut self, id: &str) {
        if let Some(r) = self.recent.as_mut() {
            r.acked(id);
        }
    }

    /// [`acked`](Self::acked) for each of `ids`.
    pub fn acked_all<S: AsRef<str>>(&mut self, ids: &[S]) {
        if let Some(r) = self.recent.as_mut() {
            ids.iter().for_each(|id| r.acked(id.as_ref()));
        }
    }

    /// A status frame older than one this connection already showed for the same message
    /// (see [`Recent::status_behind`]); always `false` without
    /// [`remembering_ids`](Self::remembering_ids): the embedded pod announces one message's
    /// statuses from one store thread, in commit order, along one path.
    fn status_behind(&mut self, frame: &str) -> bool {
        if !self.remember_ids {
            return false;
        }
        let Some((id, status)) = status_of_frame(frame) else {
            return false;
        };
        (self.recent.get_or_insert_with(Box::default)).status_behind(id, status)
    }

    /// Queues a close after what is already queued (graceful).
    pub fn close(&mut self, code: u16, reason: &'static str) {
        if !self.finished {
            self.queue.push_back(Out::Close(code, reason));
            self.wake();
        }
    }

    /// Whether the connection was aborted (closing ahead of its queue).
    pub fn is_aborted(&self) -> bool {
        self.abort.is_some()
    }

    /// Closes ahead of anything queued (the queue is abandoned; its messages stay stored).
    pub fn abort(&mut self, code: u16, reason: &'static str) {
        if self.abort.is_none() {
            self.abort = Some((code, reason));
            self.wake();
        }
    }

    pub fn start_replay(&mut self) {
        self.replay = Some(Box::default());
    }

    /// Records that the replay sent every stored message up to `seq`.
    pub fn replayed_through(&mut self, seq: i64) {
        self.replayed_through = self.replayed_through.max(seq);
    }

    /// Ends the replay and returns what was held meanwhile, less what the replay sent.
    pub fn end_replay(&mut self) -> Replay {
        let mut r = self.replay.take().map(|r| *r).unwrap_or_default();
        let through = self.replayed_through;
        r.held.retain(|e| e.message_id.is_none() || e.seq > through);
        r
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Most sends waiting for the store before the reader pauses; never more than a `u32`
    /// counts (`unanswered`), whatever `--outbound-queue` says.
    pub fn send_window(&self) -> usize {
        (self.cap / 2).clamp(1, u32::MAX as usize)
    }

    /// Ready once another send may be handed to the store.
    pub fn poll_send_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if (self.unanswered as usize) < self.send_window() || self.finished {
            return Poll::Ready(());
        }
        self.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready once every send of this connection handed to the store has been answered (the
    /// `accepted` or error frames are queued by then).
    pub fn poll_all_answered(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.unanswered == 0 || self.finished {
            return Poll::Ready(());
        }
        self.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    pub fn send_started(&mut self) {
        self.unanswered += 1;
    }

    pub fn send_answered(&mut self) {
        self.unanswered = self.unanswered.saturating_sub(1);
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Whether the writer has stopped: nothing pushed now will be written.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Called by the writer when it stops.
    pub fn finish(&mut self) {
        self.finished = true;
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        self.queue.clear();
        self.replay = None;
    }

    /// The writer's next item: an abort first, then the queue in order.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Out> {
        if let Some((code, reason)) = self.abort {
            return Poll::Ready(Out::Close(code, reason));
        }
        if let Some(out) = self.queue.pop_front() {
            return Poll::Ready(out);
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready with the abort's code once the connection was aborted. The writer polls it
    /// while a write is pending, so an abort reaches a writer stuck on a peer that stopped
    /// reading (the slot is `poll_next`'s: both run in the connection's one task, and only
    /// one of them waits at a time).
    pub fn poll_aborted(&mut self, cx: &mut Context<'_>) -> Poll<u16> {
        if let Some((code, _)) = self.abort {
            return Poll::Ready(code);
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Pops without waiting, for batching several frames into one flush.
    pub fn try_next(&mut self) -> Option<Out> {
        if self.abort.is_some() {
            return None;
        }
        self.queue.pop_front()
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;

    /// Every connection holds one `Rc<RefCell<Outbox>>`: with its two counts it must stay
    /// within mimalloc's 192-byte class (224 before `replay` was boxed, perf/RESULTS.md §19).
    #[test]
    fn an_outbox_cell_fits_the_192_byte_allocation_class() {
        let cell = std::mem::size_of::<std::cell::RefCell<Outbox>>() + 2 * 8;
        assert!(cell <= 192, "Rc<RefCell<Outbox>> grew to {cell} B");
    }

    /// The count of unanswered sends is a `u32`: a queue size past it cannot overflow it.
    #[test]
    fn the_send_window_fits_the_unanswered_count() {
        assert_eq!(Outbox::new(usize::MAX).send_window(), u32::MAX as usize);
        assert_eq!(Outbox::new(1024).send_window(), 512);
        assert_eq!(Outbox::new(1).send_window(), 1);
    }

    fn env() -> Arc<Envelope> {
        Arc::new(Envelope {
            user: "bob".into(),
            frame: Utf8Bytes::from_static("{}"),
            message_id: Some("m".into()),
            seq: 1,
            carbon: false,
            group: false,
            born: 0,
            except: None,
        })
    }

    impl Envelope {
        fn clone_frame(&self) -> Envelope {
            Envelope {
                user: self.user.clone(),
                frame: self.frame.clone(),
                message_id: self.message_id.clone(),
                seq: self.seq,
                carbon: self.carbon,
                group: self.group,
                born: self.born,
                except: self.except.clone(),
            }
        }
    }

    fn message(id: &str, seq: i64) -> Arc<Envelope> {
        Arc::new(Envelope {
            message_id: Some(id.into()),
            seq,
            ..(*env()).clone_frame()
        })
    }

    /// A second live copy of a recent id (a redrive, a doubled record) is not shown again;
    /// ids pushed out of the window are forgotten.
    #[test]
    fn a_live_copy_of_a_recent_id_is_dropped() {
        let mut o = Outbox::new(RECENT * 4).remembering_ids();
        assert!(o.push_live(message("m1", 5)));
        assert!(o.push_live(message("m1", 5)));
        assert_eq!(o.len(), 1);
        for i in 0..RECENT {
            o.push_live(message(&format!("x{i}"), 6 + i as i64));
        }
        assert!(o.push_live(message("m1", 5)));
        assert_eq!(
            o.len(),
            1 + RECENT,
            "past the hashes, caught by its position"
        );
        // Without the window (embedded mode) nothing is hashed or held.
        let mut plain = Outbox::new(4);
        assert!(plain.push_live(message("m1", 5)) && plain.push_live(message("m1", 5)));
        assert_eq!(plain.len(), 2);
        assert!(plain.recent.is_none());
    }

    fn status(id: &str, status: Status) -> Arc<Envelope> {
        let frame = crate::protocol::encode_status(id, status);
        Arc::new(Envelope {
            user: "alice".into(),
            frame: frame.into(),
            message_id: None,
            seq: 0,
            carbon: false,
            group: false,
            born: 0,
            except: None,
        })
    }

    /// Found by the chaos suite: SENT committed by one pod reached the sender after
    /// DELIVERED committed by another. A connection never shows a status going backwards.
    #[test]
    fn a_status_behind_one_already_shown_is_dropped() {
        let mut o = Outbox::new(2048).remembering_ids();
        o.push_live(status("m1", Status::Delivered));
        o.push_live(status("m1", Status::Sent));
        o.push_live(status("m2", Status::Sent));
        o.push_live(status("m2", Status::Delivered));
        assert_eq!(o.len(), 3, "m1's late SENT is dropped, m2 goes forward");
        // 1,301 DELIVERED came between a DELIVERED and its late SENT in the chaos soak.
        for i in 0..1301 {
            o.push_live(status(&format!("x{i}"), Status::Delivered));
        }
        o.push_live(status("m1", Status::Sent));
        assert_eq!(o.len(), 3 + 1301, "still dropped");
        let mut plain = Outbox::new(8);
        plain.push_live(status("m1", Status::Delivered));
        plain.push_live(status("m1", Status::Sent));
        assert_eq!(plain.len(), 2, "embedded: one path, nothing checked");
        assert!(plain.recent.is_none());
    }

    /// Found by the chaos suite (seed 901, distributed): a live SENT held while a sync ran,
    /// released after the sync had shown the DELIVERED it read from the store.
    #[test]
    fn a_held_status_behind_a_stored_one_is_dropped_when_released() {
        let mut o = Outbox::new(64).remembering_ids();
        o.start_replay();
        o.push_live(status("m1", Status::Sent));
        o.push_live(status("m2", Status::Sent));
        let stored = crate::protocol::encode_status("m1", Status::Delivered);
        assert!(o.push_stored_status(stored));
        let replay = o.end_replay();
        for env in replay.held {
            assert!(o.push_released(env));
        }
        let shown: Vec<String> = std::iter::from_fn(|| o.try_next())
            .map(|out| match out {
                Out::Text(t) => t.to_string(),
                Out::Message(env) => env.frame.to_string(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(
            shown,
            [
                crate::protocol::encode_status("m1", Status::Delivered),
                crate::protocol::encode_status("m2", Status::Sent),
            ],
            "m1's SENT dropped, m2's kept"
        );
    }

    /// A redrive seconds later (hundreds of messages on) is still caught, by position; a
    /// position far below the window falls back to the id hashes.
    #[test]
    fn a_copy_far_back_is_dropped_by_its_position() {
        let mut o = Outbox::new(4096).remembering_ids();
        for pos in 1..=400 {
            assert!(o.push_live(message(&format!("m{pos}"), pos)));
        }
        assert_eq!(o.len(), 400);
        o.push_live(message("m10", 10));
        assert_eq!(o.len(), 400, "a copy 390 messages back");
        o.push_live(message("m2000", 2000));
        o.push_live(message("m300", 300));
        assert_eq!(
            o.len(),
            402,
            "below the slid window and out of the hashes: shown"
        );
        o.push_live(message("m2000", 2000));
        assert_eq!(o.len(), 402);
    }

    /// The chaos soak's deaf device: a message it never acked comes back by redrive after
    /// far more newer ones than the positions remember; it is still dropped.
    #[test]
    fn a_redrive_of_an_unacked_message_is_dropped_however_far_back() {
        let mut o = Outbox::new(4096).remembering_ids().awaiting_acks();
        for pos in 1..=900 {
            assert!(o.push_live(message(&format!("m{pos}"), pos)));
        }
        for pos in 2..=900 {
            o.acked(&format!("m{pos}"));
        }
        o.push_live(message("m1", 1));
        assert_eq!(o.len(), 900, "m1 is unacked: a redrive of it is a repeat");
        o.push_live(message("m5", 5));
        assert_eq!(
            o.len(),
            901,
            "acked long ago and redriven: shown, as before"
        );
        let mut write_mode = Outbox::new(4096).remembering_ids();
        for pos in 1..=900 {
            write_mode.push_live(message(&format!("m{pos}"), pos));
        }
        write_mode.push_live(message("m1", 1));
        assert_eq!(
            write_mode.len(),
            901,
            "without acks there is no credit to keep"
        );
    }

    #[test]
    fn a_device_past_its_credit_is_closed_with_slow_consumer() {
        let mut o = Outbox::new(4 * MAX_UNACKED)
            .remembering_ids()
            .awaiting_acks();
        for pos in 1..=MAX_UNACKED as i64 {
            assert!(o.push_live(message(&format!("m{pos}"), pos)));
            assert_eq!(o.replay_credit(), pos < REPLAY_UNACKED as i64);
        }
        let next = MAX_UNACKED as i64 + 1;
        let mut carbon = message("c", next);
        Arc::get_mut(&mut carbon).unwrap().carbon = true;
        o.sync = true;
        assert!(o.push_live(carbon), "a carbon takes no credit");
        assert!(!o.push_live(message("late", next + 1)));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            o.poll_next(&mut cx),
            Poll::Ready(Out::Close(
                close::SLOW_CONSUMER,
                "too many unacknowledged messages"
            ))
        ));
    }

    #[test]
    fn a_replay_records_half_the_credit_and_never_waits() {
        let mut o = Outbox::new(4 * MAX_UNACKED)
            .remembering_ids()
            .awaiting_acks();
        let ids: Vec<String> = (1..=600).map(|i| format!("m{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            o.give_replayed(id, i as i64 + 1, true);
        }
        let unacked = |o: &Outbox| o.recent.as_ref().map_or(0, |r| r.unacked());
        assert_eq!(
            unacked(&o),
            REPLAY_UNACKED,
            "the rest by position and id only"
        );
        o.give_replayed("delivered", 601, false);
        assert_eq!(
            unacked(&o),
            REPLAY_UNACKED,
            "DELIVERED history takes no credit"
        );
        o.acked_all(&ids[..1]);
        assert!(o.replay_credit());
        for pos in 602..602 + (MAX_UNACKED - REPLAY_UNACKED) as i64 {
            assert!(
                o.push_live(message(&format!("l{pos}"), pos)),
                "live has its half"
            );
        }
    }

    #[test]
    fn overflow_aborts_with_slow_consumer() {
        let mut o = Outbox::new(2);
        assert!(o.push(Out::Text(Utf8Bytes::from_static("a"))));
        assert!(o.push(Out::Text(Utf8Bytes::from_static("b"))));
        assert!(!o.push(Out::Text(Utf8Bytes::from_static("c"))));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            o.poll_next(&mut cx),
            Poll::Ready(Out::Close(close::SLOW_CONSUMER, _))
        ));
    }

    #[test]
    fn keepalive_pings_a_silent_connection_then_aborts_it_without_a_pong() {
        let (ping, pong) = (Duration::from_secs(25), Duration::from_secs(10));
        let t0 = Instant::now();
        let mut o = Outbox::new(4);
        o.seen(t0);
        assert_eq!(o.keepalive(t0 + ping / 2, ping, pong), Keepalive::Quiet);
        assert_eq!(o.keepalive(t0 + ping, ping, pong), Keepalive::Pinged);
        assert!(matches!(o.try_next(), Some(Out::Ping)));
        assert_eq!(
            o.keepalive(t0 + ping + pong / 2, ping, pong),
            Keepalive::Quiet
        );
        // An answer (any frame) clears the ping.
        o.seen(t0 + ping + pong / 2);
        assert_eq!(o.keepalive(t0 + ping + pong, ping, pong), Keepalive::Quiet);
        let pinged = t0 + ping + pong / 2 + ping;
        assert_eq!(o.keepalive(pinged, ping, pong), Keepalive::Pinged);
        assert_eq!(o.keepalive(pinged + pong, ping, pong), Keepalive::Dead);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            o.poll_next(&mut cx),
            Poll::Ready(Out::Close(close::PING_TIMEOUT, _))
        ));
    }

    #[test]
    fn all_answered_waits_for_every_send_in_the_store_and_wakes_the_reader() {
        let mut o = Outbox::new(4);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(o.poll_all_answered(&mut cx).is_ready(), "nothing in flight");
        o.send_started();
        o.send_started();
        assert!(o.poll_all_answered(&mut cx).is_pending());
        assert!(o.reader.is_some(), "the reader's waker is kept");
        o.send_answered();
        assert!(o.reader.is_none(), "an answer wakes the reader");
        assert!(
            o.poll_all_answered(&mut cx).is_pending(),
            "one still in flight"
        );
        o.send_answered();
        assert!(o.poll_all_answered(&mut cx).is_ready());
        o.send_started();
        o.finish();
        assert!(
            o.poll_all_answered(&mut cx).is_ready(),
            "a finished writer waits for nothing"
        );
    }

    #[test]
    fn replay_holds_live_messages_and_flags_overflow() {
        let mut o = Outbox::new(1);
        o.start_replay();
        assert!(o.push_live(message("m1", 1)));
        assert!(o.is_empty());
        assert!(o.push_live(message("m2", 2)));
        let r = o.end_replay();
        assert!(r.overflowed && r.held.is_empty());
        assert!(o.push_live(message("m3", 3)));
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn messages_held_by_a_long_replay_leave_live_traffic_its_half_of_the_credit() {
        let mut o = Outbox::new(4 * MAX_UNACKED)
            .remembering_ids()
            .awaiting_acks();
        o.start_replay();
        for pos in 1..=REPLAY_UNACKED as i64 {
            o.give_replayed(&format!("r{pos}"), pos, true);
        }
        let live = REPLAY_UNACKED as i64 + 1..=MAX_UNACKED as i64 + 100;
        for pos in live.clone() {
            assert!(o.push_live(message(&format!("h{pos}"), pos)));
        }
        o.replayed_through(REPLAY_UNACKED as i64);
        for env in o.end_replay().held {
            assert!(o.push_released(env));
        }
        assert_eq!(o.len(), live.clone().count());
        assert!(
            o.push_released(message("h1100", 1100)),
            "a recent repeat is dropped"
        );
        assert_eq!(o.len(), live.count());
        let next = MAX_UNACKED as i64 + 101;
        for pos in next..next + (MAX_UNACKED - REPLAY_UNACKED) as i64 {
            assert!(
                o.push_live(message(&format!("l{pos}"), pos)),
                "live has its half"
            );
        }
        assert!(!o.push_live(message("over", 5000)), "and no more");
    }
}
