//! The shard's inbox loop: everything that reaches a core from outside arrives here and is
//! dispatched to its step of the message path.
//!
//! The loop never awaits another shard or the store (that could deadlock two shards with full
//! inboxes); work that must wait is spawned as its own task.

use std::rc::Rc;

use futures::channel::oneshot;

use crate::backend::store::StoreEvent;
use crate::flow;
use crate::shard::{keepalive, Shard, ShardMsg};

/// Runs until the inbox is closed. `shutdown` fires on the first [`ShardMsg::Shutdown`].
pub async fn run_inbox(
    shard: Rc<Shard>,
    rx: async_channel::Receiver<ShardMsg>,
    shutdown: oneshot::Sender<()>,
) {
    let mut shutdown = Some(shutdown);
    let mut handled = 0u32;
    while let Ok(msg) = rx.recv().await {
        handled = handled.wrapping_add(1);
        if handled % YIELD_EVERY == 0 {
            // Let connection writers drain what a burst (one store batch) queued for them.
            futures::future::poll_fn(yield_once()).await;
        }
        match msg {
            ShardMsg::Store(events) => {
                for (i, event) in events.into_iter().enumerate() {
                    if i > 0 && i % YIELD_EVERY as usize == 0 {
                        futures::future::poll_fn(yield_once()).await;
                    }
                    on_store_event(&shard, event);
                }
            }
            ShardMsg::Deliver(env) => flow::consume::deliver_local(&shard, env),
            ShardMsg::Route(env) => flow::route::spawn_route_here(&shard, env),
            ShardMsg::Consumed(c) => {
                flow::consume::on_consumed(&shard, c.env);
                crate::failpoints::crash_point("after_consume_before_offset");
                let _ = c.ack.send(c.offset); // The consumer may have stopped; it re-reads then.
            }
            ShardMsg::LeaseLost => keepalive::close_for_lost_lease(&shard),
            ShardMsg::UsersDeleted(users) => keepalive::close_for_deleted_users(&shard, &users),
            ShardMsg::Disconnect { user, done } => {
                // The asking request may have timed out; the connections are closed anyway.
                let _ = done.send(keepalive::disconnect_user(&shard, &user));
            }
            ShardMsg::RouteAdd {
                user,
                shard: at,
                done,
            } => {
                shard.directory.borrow_mut().add(&user, at);
                // The registering connection may have gone meanwhile; its removal follows.
                let _ = done.send(());
            }
            ShardMsg::RouteRemove { user, shard: at } => {
                shard.directory.borrow_mut().remove(&user, at)
            }
            ShardMsg::RouteLookup { user, reply } => {
                // A dropped receiver means the asking task ended; nothing to answer.
                let _ = reply.send(shard.directory.borrow().shards_of(&user));
            }
            ShardMsg::Run(work) => work(&shard),
            ShardMsg::Shutdown => {
                if let Some(tx) = shutdown.take() {
                    let _ = tx.send(()); // The shard's main task is the only listener.
                }
            }
        }
    }
}

/// Inbox messages handled between two yields to the other tasks of the shard.
const YIELD_EVERY: u32 = 8;

/// A future that is pending exactly once, waking itself: the task goes to the back of the
/// executor's run queue.
fn yield_once() -> impl FnMut(&mut std::task::Context<'_>) -> std::task::Poll<()> {
    let mut yielded = false;
    move |cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

fn on_store_event(shard: &Rc<Shard>, event: StoreEvent) {
    match event {
        StoreEvent::Inserted { reply, msg, result } => {
            flow::accept::on_inserted(shard, reply.conn, msg, result)
        }
        StoreEvent::InsertFailed { reply, msg, error } => {
            flow::accept::on_insert_failed(shard, reply.conn, msg, &error)
        }
        StoreEvent::StatusChanged(change) => flow::status::on_status_changed(shard, change),
        StoreEvent::AckRefused { reply, id } => {
            flow::accept::on_ack_refused(shard, reply.conn, &id)
        }
    }
}
