//! Sockets: accept on every shard, the HTTP upgrade, then a reader and a writer per connection.
//!
//! In message-path order: [`listener`] accepts, [`handshake`] authenticates and upgrades,
//! [`session`] reads frames into the message path, [`writer`] writes what the shard queued in
//! the connection's [`outbox`]. [`echo`] is the conformance endpoint on the same code.

pub mod echo;
pub mod handshake;
pub mod http;
pub mod listener;
pub mod outbox;
pub mod session;
pub mod writer;
