//! # distriSocks
//!
//! A thread-per-core WebSocket messaging gateway. Every message is stored durably before the
//! sender hears `accepted`, then routed to the cores holding the recipient's connections, and
//! its status moves NONE → SENT → DELIVERED, never backwards.
//!
//! ```text
//!  client ──frame──▶ socket::session ──▶ flow::ingest ──try_send──▶ store thread (group commit)
//!                     (shard k)                                         │
//!        ◀─accepted── flow::accept ◀──────── shard k inbox ◀────────────┘
//!                          │
//!                          ▼
//!                     flow::route: routes.lookup(recipient) ─▶ bus.publish(shard j)
//!                                                                   │ (SENT)
//!                     shard j inbox ─▶ flow::consume ─▶ outbox ─▶ socket::writer ─▶ recipient
//!                                                                   │ (ack or flush: DELIVERED)
//!        ◀─status──── flow::status ◀── sender's home shard inbox ◀── store thread
//! ```
//!
//! # Layout
//! Dependencies point one way, top to bottom: no module imports one that imports it back.
//! - [`pod`]: startup, the distributed mode's clients and the two-phase graceful shutdown.
//! - [`socket`]: accept on every shard (SO_REUSEPORT), HTTP upgrade and auth, reader, writer.
//! - [`flow`]: the message path, one file per step in travel order, and each shard's inbox
//!   dispatch.
//! - [`shard`]: per-core state: the connection map with each connection's outbox, the embedded
//!   route table's slice, the inbox mesh between cores.
//! - [`backend`]: the store, route table and bus traits and their implementations, and the
//!   optional user directory fed by the auth service.
//! - [`protocol`]: the wire protocol (v1, and v2's positions and device sync), sans I/O; every
//!   client-visible code in `protocol::codes`.
//! - [`auth`]: JWT (HS256, RS256, ES256) and the dev mode. [`config`]: flags. [`metrics`]: per-shard counters
//!   behind `GET /metrics`. [`demo`]: the demo page's files (`--demo-dir`).
//!
//! - [`failpoints`]: crash points for the crash-window tests (`--features failpoints`).
//!
//! The load generator is a crate of its own (`loadgen/`, binary `distrisocks-bench`).

pub mod auth;
pub mod backend;
pub mod config;
pub mod demo;
pub mod failpoints;
pub mod flow;
pub mod metrics;
pub mod pod;
pub mod protocol;
pub mod shard;
pub mod socket;

pub use config::Config;
pub use pod::{Pod, StartError};

use crossbeam_channel::{Receiver, Sender};

#[cfg(all(feature = "failpoints", not(debug_assertions)))]
compile_error!("failpoints abort the process on demand: build them into test (debug) builds only");

/// Tells [`run`] to stop. Cloneable; trigger from any thread, or from SIGINT/SIGTERM.
#[derive(Clone)]
pub struct Shutdown {
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(1);
        Shutdown { tx, rx }
    }
}

impl Shutdown {
    /// Requests the stop; idempotent.
    pub fn trigger(&self) {
        let _ = self.tx.try_send(()); // Full: a stop is already requested.
    }

    /// A shutdown triggered by SIGINT or SIGTERM.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let shutdown = Shutdown::default();
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let trigger = shutdown.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!(signal = sig, "stopping");
                    trigger.trigger();
                }
            })?;
        Ok(shutdown)
    }

    fn wait(&self) {
        let _ = self.rx.recv(); // Err cannot happen: we hold a sender ourselves.
    }
}

/// Runs a pod until `shutdown` fires, then stops it gracefully.
pub fn run(config: Config, shutdown: Shutdown) -> Result<(), StartError> {
    let pod = Pod::start(config)?;
    shutdown.wait();
    pod.shutdown();
    Ok(())
}
