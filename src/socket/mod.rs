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

#[cfg(test)]
mod sizes {
    fn size<F: std::future::Future, A, B, C, D>(_: impl Fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    fn size2<F: std::future::Future, A, B>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    #[test]
    fn print_sizes() {
        eprintln!("session::run {}", size(super::session::run));
        eprintln!("listener::serve {}", size2(super::listener::serve));
    }
}
