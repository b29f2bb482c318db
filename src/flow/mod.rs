//! The message path, one file per step, in the order a message travels:
//!
//! 1. [`ingest`]: a decoded client frame becomes a store command (socket read → store).
//! 2. [`accept`]: the store committed; the sender gets `accepted` (store → sender).
//! 3. [`route`]: the message becomes an envelope for its recipient (and a carbon for the
//!    sender's other devices); success of the produce moves it to SENT.
//! 4. [`produce`]: an envelope goes to every place its user is connected; statuses, receipts
//!    and typing leave through it too (route → produce).
//! 5. [`consume`]: on the owning core, the envelope reaches the recipient's outboxes
//!    (consume → socket write; the writer lives in `socket::writer`).
//! 6. [`status`]: committed status changes travel back to the sender's devices.
//!
//! `tests/layout.rs` keeps these files free of import cycles.
//!
//! [`read`] stores and announces v2 read receipts, beside the message path; [`typing`] relays
//! ephemeral typing indicators. [`group`] is the same path for v2 groups: a send, a
//! membership change or a receipt is one store operation, then a fan-out to the members.
//! [`presence`] answers who is online, from the route table, to users who share a
//! conversation. [`statuses`] answers a device's question about its user's messages.
//! [`dispatch`] is each shard's inbox loop, which hands what arrives to the step it belongs to.
//! [`replay`] is the offline path: a connecting recipient first receives what is stored for
//! them. [`redrive`] re-routes messages stuck by a broker outage or a dead pod (distributed
//! mode). [`retention`] deletes delivered messages past `--retention-secs`. [`undelivered`] tells the
//! application's backend of messages not delivered in time (a webhook). [`submit`] is the non-blocking hand-off to the store thread that every step uses.

pub mod accept;
pub mod consume;
pub mod dispatch;
pub mod group;
pub mod ingest;
pub mod presence;
pub mod produce;
pub mod read;
pub mod redrive;
pub mod replay;
pub mod retention;
pub mod route;
pub mod status;
pub mod statuses;
pub mod submit;
pub mod typing;
pub mod undelivered;
