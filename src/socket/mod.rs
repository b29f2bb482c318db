//! Sockets: accept on every shard, the HTTP upgrade, then one task per connection that reads
//! frames and writes its outbox.
//!
//! In message-path order: [`listener`] accepts, [`handshake`] authenticates and upgrades,
//! [`session`] reads frames into the message path, [`writer`] writes what the shard queued in
//! the connection's outbox ([`crate::shard::outbox`], part of the shard's connection map), both
//! over [`wire`] (the socket) and [`frame`] (RFC 6455 framing, sans I/O). [`echo`] is the
//! conformance endpoint on the same code. [`api`] is the other way in: the server HTTP API,
//! through which a backend acts as a user (or as the system sender) on the same message path.

pub mod api;
pub mod echo;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod listener;
pub mod session;
pub mod wire;
pub mod writer;

/// Guards the idle footprint: the connection task's future lives as long as the connection,
/// so state of one-off or per-frame steps (upgrade, replay, a frame being handled, a write
/// batch and its race against an abort) must be boxed, not inlined, and nothing may be kept
/// twice (an async fn's arguments stay in its state). It was 3,336 B (plus a 1,224 B writer
/// task) in session 1 and 968 B inside the handshake's task until session 15; the session is
/// now a task of its own (`listener::serve`), 552 B. The bound is tight on purpose: with
/// glommio's 48 B task header, 560 B keeps the task within mimalloc's 640 B size class (at
/// 992 B the task once moved into a larger class and idle memory rose by ~250 B per
/// connection, perf/RESULTS.md §10e).
#[cfg(test)]
mod sizes {
    use std::future::Future;

    fn size_of_future<F: Future, A, B, C, D, E>(_: impl Fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_connection_task_holds_at_most_560_bytes_of_future_state() {
        let session = size_of_future(super::session::run);
        assert!(
            session <= 560,
            "the per-connection task future grew to {session} B"
        );
    }
}
