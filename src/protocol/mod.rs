//! The wire protocol (v1, and v2's conversations, positions and device sync), sans I/O: bytes
//! in, frames out. Documented in `docs/PROTOCOL.md`.
//!
//! Decoding borrows from the input text wherever JSON escapes allow, so a send frame costs no
//! allocation until the store needs owned strings.

pub mod codes;
mod decode;
mod encode;
pub mod group;
mod time;

pub use codes::ErrorCode;
pub use decode::{
    decode_client_frame, ClientFrame, DecodeError, Limits, SendFrame, MAX_ACK_IDS,
    MAX_PRESENCE_USERS,
};
pub use encode::{
    encode_accepted, encode_error, encode_message, encode_status, encode_truncated, Accepted,
    MessageView,
};
pub use encode::{encode_presence, encode_statuses, PresenceView};
pub use encode::{encode_read, encode_token_accepted, encode_typing, status_of_frame};
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

/// The id of the one-to-one conversation between `a` and `b`, the same from either side:
/// `dm:<bytes of the smaller id>:<smaller>:<larger>`, ids compared bytewise. The length makes
/// it unambiguous whatever the ids contain (they may contain `:`); clients treat it as opaque.
/// The stores compute the same key in SQL for migrations (`migrations/*/0004_*.sql`).
pub fn direct_conversation_id(a: &str, b: &str) -> String {
    let (lo, hi) = if a.as_bytes() <= b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    };
    format!("dm:{}:{lo}:{hi}", lo.len())
}

/// The two users of a one-to-one conversation id, if `id` is one (the inverse of
/// [`direct_conversation_id`]).
pub fn direct_conversation_members(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("dm:")?;
    let (len, rest) = rest.split_once(':')?;
    // Only the form `direct_conversation_id` writes: "05" or "+5" would name the same pair
    // under a second id (found by the client_frame fuzz target).
    if !len.starts_with(|c: char| matches!(c, '1'..='9'))
        || !len.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let len: usize = len.parse().ok()?;
    let (lo, hi) = (rest.get(..len)?, rest.get(len..)?.strip_prefix(':')?);
    let canonical = valid_user_id(lo) && valid_user_id(hi) && lo.as_bytes() <= hi.as_bytes();
    canonical.then_some((lo, hi))
}

/// Longest user id, recipient id or `client_msg_id` accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Whether `id` is usable as a user id: non-empty, at most [`MAX_ID_BYTES`], no control
/// characters (they would corrupt logs and route keys).
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && !id.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::direct_conversation_id as dm;

    #[test]
    fn a_direct_conversation_has_one_id_from_both_sides_and_ids_cannot_collide() {
        assert_eq!(dm("alice", "bob"), "dm:5:alice:bob");
        assert_eq!(dm("bob", "alice"), "dm:5:alice:bob");
        assert_eq!(dm("al", "al"), "dm:2:al:al");
        // Without the length these two pairs would both read "dm:a:b:c".
        assert_ne!(dm("a", "b:c"), dm("a:b", "c"));
        // Bytewise order, not a locale's: "Z" (0x5a) sorts before "a" (0x61).
        assert_eq!(dm("a", "Z"), "dm:1:Z:a");
    }

    #[test]
    fn a_direct_conversation_id_gives_back_its_members_and_nothing_else_does() {
        use super::direct_conversation_members as members;
        for (a, b) in [("alice", "bob"), ("a:b", "c"), ("a", "b:c"), ("x", "x")] {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            assert_eq!(members(&dm(a, b)), Some((lo, hi)));
        }
        let bad = [
            "",
            "dm:",
            "dm:5:alice",
            "dm:5:alicebob",
            "dm:9:alice:bob",
            "dm:3:bob:alice",
            "g:1",
            "dm:x:a:b",
            "dm:0::b",
            "dm:05:alice:bob",
            "dm:+5:alice:bob",
        ];
        for id in bad {
            assert_eq!(members(id), None, "{id}");
        }
    }
}
