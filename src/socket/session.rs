//! A messaging connection from upgrade to teardown: register, replay, then read frames into
//! the message path while the writer, in the same task, drains the outbox.

use std::cell::RefCell;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use futures::future::{select, Either, FutureExt};
use glommio::net::TcpStream;

use crate::config::DeliveryConfirm;
use crate::flow::ingest::Origin;
use crate::protocol::codes::close;
use crate::shard::limit::{FrameLimit, Take};
use crate::shard::outbox::Outbox;
use crate::shard::Shard;

use super::wire::{next_data, Closing, Data, Wire, CLOSE_GRACE};

/// Serves one authenticated WebSocket of `user`. Reader and writer are two futures of this
/// one task (a second task per connection cost ~600 B while idle: its header, the join
/// handle, a shared future to await it).
///
/// Not an `async fn`: an async fn keeps every argument in its state for the connection's
/// whole life, so the per-address slot (`ip`) is parked in the shard's map here, before the
/// connection's future exists, and given back when that future ends; a v2 device's sync
/// cursor (`since`) waits in the shard's map until the replay takes it.
pub fn run(
    shard: Rc<Shard>,
    stream: TcpStream,
    user: String,
    rest: Vec<u8>,
    setup: Setup,
) -> impl std::future::Future<Output = ()> {
    let conn = shard.next_conn_id();
    if let Some(ip) = setup.ip {
        shard.ip_slots.borrow_mut().insert(conn, ip);
    }
    if let Some(since) = setup.since {
        shard.sync_cursors.borrow_mut().insert(conn, since);
    }
    if shard.pod.sockets.user_frame_rate() > 0 {
        let now = crate::protocol::now_micros();
        let caps = &shard.pod.sockets;
        let make = || caps.hold_user_bucket(&user, now); // The shard's first connection of it.
        shard.user_buckets.borrow_mut().hold(&user, make);
    }
    if setup.expires_at != i64::MAX {
        shard
            .token_expiries
            .borrow_mut()
            .insert(conn, setup.expires_at);
    }
    let wire = Wire::new(stream, rest, shard.settings().tuning.max_message_bytes);
    serve(shard, wire, user.into(), conn)
}

/// Tells the application's backend (`--webhook-url`) that a connection of `user` opened (its
/// route registered, its replay sent) or ended, and records the user's last-seen time.
fn announce(shard: &Shard, kind: &'static str, user: &str, conn: u64) {
    crate::flow::presence::seen(shard, user);
    let Some(hooks) = &shard.pod.webhooks else {
        return;
    };
    let pod = &shard.settings().pod_id;
    let fields = serde_json::json!({
        "user_id": user,
        "connection": format!("{pod}/{}/{conn}", shard.id),
        "pod": pod.as_ref(),
        "at": crate::protocol::rfc3339_micros(crate::protocol::now_micros()),
    });
    hooks.emit(crate::backend::webhook::WebhookEvent { kind, fields });
}

/// The token expiry `run` parked for `conn` (`i64::MAX`: none).
fn parked_expiry(shard: &Shard, conn: u64) -> i64 {
    let parked = shard.token_expiries.borrow_mut().remove(&conn);
    parked.unwrap_or(i64::MAX)
}

/// What the handshake decided for a connection besides its user.
pub struct Setup {
    /// The per-address slot it holds (`--max-connections-per-ip`).
    pub ip: Option<std::net::IpAddr>,
    /// A v2 device's sync cursor.
    pub since: Option<i64>,
    /// When its token stops being accepted, seconds since the epoch (`i64::MAX`: never).
    pub expires_at: i64,
}

/// Takes what it keeps for the connection's life, and no more. An async block, not an
/// async fn: an async fn moves its arguments into locals and keeps both copies in its state
/// (the `Wire` twice: +184 B per idle connection).
#[allow(clippy::manual_async_fn)]
fn serve(
    shard: Rc<Shard>,
    wire: Wire,
    user: Rc<str>,
    conn: u64,
) -> impl std::future::Future<Output = ()> {
    async move {
        let outbox = open_outbox(&shard, &user, conn);
        tracing::debug!(shard = shard.id, conn, "connection open");
        let mut writing = pin!(super::writer::writer(&shard, &wire, &outbox).run());
        // Each phase in a step or block of its own, so that what only it needs (the sync
        // cursor, the boxed replay, the selects' leftovers) shares room with the next phase
        // instead of staying in the task while the connection is idle.
        let set_up = Box::pin(set_up(&shard, &user, &outbox, conn, writing.as_mut())).await;
        let mut writer_done = set_up.is_none();
        let mut close_queued = false;
        let set_up = set_up == Some(true);
        if set_up {
            announce(&shard, "user.connected", &user, conn);
            let closing = {
                let reading = pin!(read_loop(&shard, conn, &user, &outbox, &wire));
                match select(reading, writing.as_mut()).await {
                    Either::Left((closing, _)) => Some(closing),
                    Either::Right(((), reading)) => {
                        // Our close went out: read on briefly for the peer's close reply, so
                        // the close handshake completes instead of ending in a reset. Boxed,
                        // like every step that only closing takes.
                        writer_done = true;
                        let _ =
                            Box::pin(glommio::timer::timeout(CLOSE_GRACE, reading.map(Ok))).await;
                        None
                    }
                }
            };
            close_queued = queue_close(&outbox, closing);
            announce(&shard, "user.disconnected", &user, conn);
        }
        if !writer_done {
            if !close_queued {
                outbox.borrow_mut().abort(1000, "");
            }
            // Lets the writer send the close. Timed out: drop it.
            let _ = Box::pin(glommio::timer::timeout(CLOSE_GRACE, writing.map(Ok))).await;
        }
        if outbox.borrow().is_syncing() {
            shard.pod.syncing.fetch_sub(1, Relaxed);
        }
        shard.conns.borrow_mut().remove(conn);
        shard.typing.borrow_mut().remove(&conn);
        if let Some(ip) = shard.ip_slots.borrow_mut().remove(&conn) {
            shard.pod.sockets.release_ip(ip);
        }
        if shard.pod.sockets.limits_users() {
            shard.pod.sockets.release_user(&user); // Every upgraded socket took one.
        }
        if shard.pod.sockets.user_frame_rate() > 0 && shard.user_buckets.borrow_mut().let_go(&user)
        {
            shard.pod.sockets.release_user_bucket(&user);
        }
        shard.pod.sockets.closed();
        shard.metrics().connections.fetch_sub(1, Relaxed);
        if let Err(e) = shard.routes.unregister(&user, shard.location()).await {
            tracing::warn!(shard = shard.id, conn, error = %e, "route removal failed");
        }
        tracing::debug!(shard = shard.id, conn, "connection closed");
    }
}

/// Registers the connection's route and replays what is stored for it, while the writer
/// runs. Boxed by its caller, as the handshake is: needed once, not for the connection's life. `Some(true)`: ready to read; `Some(false)`: set-up failed and the connection is
/// being closed; `None`: the socket broke.
async fn set_up(
    shard: &Rc<Shard>,
    user: &str,
    outbox: &Rc<RefCell<Outbox>>,
    conn: u64,
    writing: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<bool> {
    let since = shard.sync_cursors.borrow_mut().remove(&conn);
    let setup = std::pin::pin!(crate::flow::replay::register_and_replay(
        shard, user, outbox, since,
    ));
    match select(setup, writing).await {
        Either::Left((Ok(()), _)) => Some(true),
        Either::Left((Err(e), _)) => {
            tracing::warn!(shard = shard.id, conn, error = %e, "connection setup failed");
            let reason = "setup failed; reconnect";
            outbox.borrow_mut().abort(close::INTERNAL_ERROR, reason);
            Some(false)
        }
        Either::Right(((), _)) => None, // The socket broke during setup.
    }
}

/// Queues the close that how reading ended calls for; true when it waits behind the queue.
fn queue_close(outbox: &RefCell<Outbox>, closing: Option<Closing>) -> bool {
    match closing {
        Some(Closing::Broke(code, reason)) if code == close::RATE_LIMITED => {
            // Queued, not abort: the answers to the sends the store took go first.
            outbox.borrow_mut().close(code, reason);
            return true;
        }
        Some(Closing::Broke(code, reason)) => outbox.borrow_mut().abort(code, reason),
        Some(Closing::Reply(code)) => outbox.borrow_mut().abort(code, ""),
        Some(Closing::Gone) | None => {}
    }
    false
}

/// The connection's outbox, configured for the pod's mode and the device, and entered in the
/// shard's connection map. A plain function: nothing of it stays in the connection's task.
fn open_outbox(shard: &Shard, user: &Rc<str>, conn: u64) -> Rc<RefCell<Outbox>> {
    let mut outbox = Outbox::new(shard.settings().tuning.outbound_queue);
    outbox = outbox.expiring_at(parked_expiry(shard, conn));
    if shard.pod.cluster.is_some() {
        outbox = outbox.remembering_ids(); // Redrives may repeat an id (see Outbox::recent).
        if shard.settings().delivery == DeliveryConfirm::Ack {
            outbox = outbox.awaiting_acks();
        }
    }
    if shard.sync_cursors.borrow().contains_key(&conn) {
        outbox = outbox.syncing();
        shard.pod.syncing.fetch_add(1, Relaxed);
    }
    let outbox = Rc::new(RefCell::new(outbox));
    let entry = outbox.clone();
    shard.conns.borrow_mut().insert(conn, user.clone(), entry);
    shard.metrics().connections.fetch_add(1, Relaxed);
    if !shard.pod.user_exists(user) {
        // Deleted since the handshake checked: the deletion's close may have missed this
        // connection, which was not in the map yet. The directory is updated before the
        // shards are told, so one of the two checks sees it.
        let mut o = outbox.borrow_mut();
        o.abort(close::USER_DELETED, "user deleted");
    }
    outbox
}

/// Reads until the peer closes or breaks the protocol; returns how reading ended. An async
/// block for the reason `serve` is one.
#[allow(clippy::manual_async_fn)]
fn read_loop<'a>(
    shard: &'a Rc<Shard>,
    conn: u64,
    user: &'a str,
    outbox: &'a Rc<RefCell<Outbox>>,
    wire: &'a Wire,
) -> impl std::future::Future<Output = Closing> + 'a {
    async move {
        let from = &Origin {
            conn,
            user,
            outbox,
            system: false,
        };
        let rate = shard.settings().tuning.max_frames_per_sec;
        let mut limit = FrameLimit::new(rate, crate::protocol::now_micros());
        loop {
            let text = match next_data(wire, &shard.read_buf, from.outbox).await {
                Data::Text(text) => text,
                Data::Binary(_) => {
                    let reason = "protocol v1 uses text frames only";
                    return Closing::Broke(close::UNSUPPORTED_DATA, reason);
                }
                Data::Ended(closing) => return closing,
            };
            if shard.draining.get() {
                // Shutdown: take no new work; the frame stays unanswered (the client resends it
                // after reconnecting, with the same client_msg_id).
                return Closing::Broke(close::GOING_AWAY, "pod shutting down; reconnect");
            }
            match frame_verdict(shard, from, &mut limit, rate) {
                Take::Process => {}
                Take::Refuse => {
                    crate::flow::ingest::refuse_rate_limited(shard, from, &text);
                    continue;
                }
                Take::Close => {
                    // Read no more; the sends already in the store are answered first.
                    let answered = |cx: &mut std::task::Context<'_>| {
                        from.outbox.borrow_mut().poll_all_answered(cx)
                    };
                    futures::future::poll_fn(answered).await;
                    return Closing::Broke(close::RATE_LIMITED, "frame rate limit exceeded");
                }
            }
            // Boxed: its state (a store command in flight, a retry timer) lives only while a
            // frame is handled, not in every idle connection's task.
            Box::pin(crate::flow::ingest::on_text(shard, from, &text)).await;
        }
    }
}

/// The rate limits' verdict on one more text frame: the connection's bucket (`rate`), then the
/// user's, shared with their other connections on the pod. A frame the connection's bucket
/// refuses costs the user's nothing. With no limit (the default) the clock is not read.
fn frame_verdict(shard: &Shard, from: &Origin<'_>, limit: &mut FrameLimit, rate: u32) -> Take {
    let user_rate = shard.pod.sockets.user_frame_rate();
    if rate == 0 && user_rate == 0 {
        return Take::Process;
    }
    let now = crate::protocol::now_micros();
    let verdict = limit.take(rate, now);
    if verdict != Take::Process || user_rate == 0 {
        return verdict;
    }
    match shard.user_buckets.borrow().get(from.user) {
        Some(bucket) => bucket.take(user_rate, now),
        None => Take::Process, // Held from connect to close; absent only if it was off then.
    }
}
