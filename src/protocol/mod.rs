//! Wire protocol v1, sans I/O: bytes in, frames out. Documented in `docs/PROTOCOL.md`.
//!
//! Decoding borrows from the input text wherever JSON escapes allow, so a send frame costs no
//! allocation until the store needs owned strings.

pub mod codes;
mod decode;
mod encode;
mod time;

pub use codes::ErrorCode;
pub use decode::{decode_client_frame, ClientFrame, DecodeError, Limits, SendFrame};
pub use encode::{encode_accepted, encode_error, encode_message, encode_status, MessageView};
pub use time::{now_micros, rfc3339_micros};

/// Delivery state of a stored message. Ordered: a status never moves backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Durably stored, not yet handed to the recipient's shard(s) (or the recipient is offline).
    None,
    /// Handed to every shard that held a connection of the recipient.
    Sent,
    /// Confirmed by a recipient device (`ack` mode) or flushed to its socket (`write` mode).
    Delivered,
}

impl Status {
    /// The stored and wire spelling, as the seed writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "NONE",
            Status::Sent => "SENT",
            Status::Delivered => "DELIVERED",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "NONE" => Some(Status::None),
            "SENT" => Some(Status::Sent),
            "DELIVERED" => Some(Status::Delivered),
            _ => None,
        }
    }
}

/// Longest user id, recipient id or `client_msg_id` accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Whether `id` is usable as a user id: non-empty, at most [`MAX_ID_BYTES`], no control
/// characters (they would corrupt logs and route keys).
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && !id.chars().any(char::is_control)
}
