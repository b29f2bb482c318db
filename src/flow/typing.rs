//! v2 typing indicators: ephemeral, never stored, sent to the other member's v2 devices.
//! Rate-limited per connection: a repeat of the same state within [`TYPING_EVERY`] is dropped
//! without an answer (a client sends "typing" on every key press; one frame a second is all
//! the other side needs), a change of state (start → stop) always goes through.

use std::time::{Duration, Instant};

use crate::protocol::{direct_conversation_members, encode_typing};
use crate::shard::Shard;

/// At most one typing frame of the same state per connection in this window.
pub const TYPING_EVERY: Duration = Duration::from_secs(1);

/// Handles a decoded typing frame of connection `conn` (membership was checked).
pub async fn on_typing(shard: &Shard, conn: u64, user: &str, conversation: &str, active: bool) {
    if !admit(shard, conn, active, Instant::now()) {
        return;
    }
    let Some((lo, hi)) = direct_conversation_members(conversation) else {
        return;
    };
    let peer = if lo == user { hi } else { lo };
    let frame = encode_typing(conversation, user, active).into();
    let env = super::route::v2_envelope(shard, peer, frame, conn);
    super::produce::produce_best_effort(shard, peer, env).await;
}

/// Whether this typing frame goes out, recording it if so. Entries leave the map when the
/// connection ends (`socket::session`), so idle connections hold nothing here.
pub fn admit(shard: &Shard, conn: u64, active: bool, now: Instant) -> bool {
    let mut last = shard.typing.borrow_mut();
    match last.get(&conn) {
        Some(&(at, state)) if state == active && now.duration_since(at) < TYPING_EVERY => false,
        _ => {
            last.insert(conn, (now, active));
            true
        }
    }
}
