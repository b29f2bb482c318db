//! Every client-visible error code and close code, in one place.
//!
//! These strings and numbers are the contract with clients (see `docs/PROTOCOL.md`): they never
//! change meaning. Internal errors are mapped onto them at the edge, never shown raw.

use serde::Serialize;

/// Stable code carried in `{"type":"error","code":...}` frames. Every one of them leaves the
/// connection open: the client may correct itself and go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The text frame is not valid JSON.
    MalformedJson,
    /// Valid JSON, but not an object of the expected shape (wrong field types, not an object).
    InvalidFrame,
    /// `type` names no frame of protocol v1.
    UnknownType,
    /// A send frame without `reciever_id` (or `receiver_id`), or with an empty one.
    MissingRecipient,
    /// The recipient id is longer than 128 bytes or contains control characters.
    InvalidRecipient,
    /// A send frame without a `payload` string.
    MissingPayload,
    /// The payload is longer than the configured `--max-payload-bytes`.
    PayloadTooLarge,
    /// `sender_id` is present and differs from the authenticated user: nothing was stored.
    SenderMismatch,
    /// `client_msg_id` is empty or longer than 128 bytes.
    InvalidClientMsgId,
    /// An ack frame without an `id` (or with an empty `ids` list, or an empty id in it).
    MissingId,
    /// An ack frame whose `ids` list is longer than 256.
    TooManyIds,
    /// An ack for a message that does not exist or is not addressed to this user.
    NotRecipient,
    /// A read frame whose `conversation_id` is missing, malformed, or a conversation this
    /// user is not a member of.
    InvalidConversation,
    /// A user directory is configured (`--users-file`, `--users-topic`) and it does not know
    /// the recipient: nothing was stored.
    UnknownRecipient,
    /// A group frame, or a send, read or typing frame naming a group, of a group that does
    /// not exist or of which this user is not a member (the same answer for both: a stranger
    /// does not learn which groups exist).
    UnknownConversation,
    /// `group_create` of a group id that is taken.
    GroupExists,
    /// The group would have more than `--max-group-members` members.
    GroupFull,
    /// `group_remove` of someone else by a member who is not the group's creator.
    NotAllowed,
    /// A membership change that changes nothing: everyone named is in already (`group_add`)
    /// or not in (`group_remove`).
    NoChange,
    /// An `auth` frame's token was refused (malformed, forged, expired, another user's, or
    /// the pod does not use tokens): the connection keeps its current token and expiry.
    InvalidToken,
    /// The pod's store queue is full: the message was not stored; resend it (same
    /// `client_msg_id`) after a short pause.
    Overloaded,
    /// The store failed to commit the batch: the message was not stored; resend it.
    StoreUnavailable,
    /// The connection sent more frames than `--max-frames-per-sec` allows, or the user more
    /// than `--max-frames-per-user-per-sec` over all of their connections: this one was not
    /// processed (a send was not stored); resend it after a pause.
    RateLimited,
}

impl ErrorCode {
    /// Whether a client may resend the very same frame later and expect success.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Overloaded | ErrorCode::StoreUnavailable | ErrorCode::RateLimited
        )
    }
}

/// WebSocket close codes the pod sends. 1xxx are RFC 6455 codes; 4xxx are ours.
pub mod close {
    /// The pod is shutting down (or restarting): reconnect, to this or another pod.
    pub const GOING_AWAY: u16 = 1001;
    /// Never on the wire: queued as a close, it sends one with no code (the reply to a
    /// client's close that had none).
    pub const NO_STATUS: u16 = 1005;
    /// Framing error detected by the WebSocket layer.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary frame: protocol v1 is JSON text frames only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A frame or message above `--max-message-bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// An unexpected server-side failure on this connection.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// No pong (or any other frame) within `--pong-timeout-ms` after a ping.
    pub const PING_TIMEOUT: u16 = 4001;
    /// The pod lost its route leases (it was paused or cut off from Redis for a whole lease):
    /// other pods may no longer reach this connection. Reconnect.
    pub const ROUTE_LOST: u16 = 4009;
    /// The connection's token expired (`exp` plus `--jwt-leeway-secs`) and no fresh one came
    /// on the socket (an `auth` frame). Reconnect with a fresh token.
    pub const TOKEN_EXPIRED: u16 = 4011;
    /// The application's backend closed the user's connections through the server API
    /// (`POST /api/v1/users/{id}/disconnect`): a sign-out everywhere, a ban. Do not reconnect
    /// on your own; the application decides when the user may come back.
    pub const DISCONNECTED: u16 = 4012;
    /// The user directory says this connection's user was deleted. Do not reconnect: the
    /// upgrade is refused (403) for as long as the user does not exist.
    pub const USER_DELETED: u16 = 4010;
    /// The connection's outbound queue overflowed (the client reads too slowly), or its
    /// device left too many messages unacknowledged (distributed mode). Undelivered
    /// messages stay stored and are replayed on reconnect.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The connection kept sending while its frames were refused with `rate_limited`, until a
    /// second's worth of `--max-frames-per-sec` (or of the user's shared bucket) was refused.
    pub const RATE_LIMITED: u16 = 4029;
}
