//! Server frame encoding. Each function returns the complete JSON text of one frame.

use serde::Serialize;

use super::{ErrorCode, Status};

/// The fields of a `message` frame, borrowed from wherever the message lives.
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    pub id: &'a str,
    pub sender_id: &'a str,
    pub reciever_id: &'a str,
    pub message: &'a str,
    pub created_at_micros: i64,
    /// Position in the conversation (`seq` on the wire).
    pub cseq: i64,
    /// Position in the stream of the user whose devices get this frame (`pos`).
    pub pos: i64,
    /// The group a group message went to (its `conversation_id`); `None`: a direct message,
    /// whose conversation follows from its two users.
    pub group: Option<&'a str>,
}

/// The fields of an `accepted` frame. `at` is `(conversation seq, sender's position)` of a
/// message stored now; an idempotent repeat has none (the original's were sent before).
#[derive(Debug, Clone, Copy)]
pub struct Accepted<'a> {
    pub id: &'a str,
    pub client_msg_id: Option<&'a str>,
    pub status: Status,
    pub conversation_id: Option<&'a str>,
    pub at: Option<(i64, i64)>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame<'a> {
    Accepted {
        id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<&'a str>,
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pos: Option<i64>,
    },
    Status {
        id: &'a str,
        status: &'static str,
    },
    Message {
        id: &'a str,
        sender_id: &'a str,
        reciever_id: &'a str,
        message: &'a str,
        created_at: &'a str,
        conversation_id: &'a str,
        seq: i64,
        pos: i64,
    },
    HistoryTruncated {
        through_pos: i64,
    },
    TokenAccepted {
        expires_at: i64,
    },
    Read {
        conversation_id: &'a str,
        user_id: &'a str,
        seq: i64,
    },
    Typing {
        conversation_id: &'a str,
        user_id: &'a str,
        active: bool,
    },
    Presence {
        users: &'a [PresenceView],
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
    },
}

fn to_text(frame: &Frame<'_>) -> String {
    // Serialising these borrowed, string-only structs cannot fail.
    serde_json::to_string(frame).expect("frame serialises")
}

/// `{"type":"accepted",...}`: the message is durably stored.
pub fn encode_accepted(a: Accepted<'_>) -> String {
    to_text(&Frame::Accepted {
        id: a.id,
        client_msg_id: a.client_msg_id,
        status: a.status.as_str(),
        conversation_id: a.conversation_id,
        seq: a.at.map(|(seq, _)| seq),
        pos: a.at.map(|(_, pos)| pos),
    })
}

/// `{"type":"history_truncated",...}`: retention deleted part of the stream a device asked
/// for; positions up to `through_pos` may be missing.
pub fn encode_truncated(through_pos: i64) -> String {
    to_text(&Frame::HistoryTruncated { through_pos })
}

/// `{"type":"token_accepted","expires_at":N}`: an `auth` frame's token now holds the
/// connection open until `expires_at` (seconds since the epoch).
pub fn encode_token_accepted(expires_at: i64) -> String {
    to_text(&Frame::TokenAccepted { expires_at })
}

/// `{"type":"status",...}`: a stored status change, sent to the sender's devices.
pub fn encode_status(id: &str, status: Status) -> String {
    to_text(&Frame::Status {
        id,
        status: status.as_str(),
    })
}

/// The id and status of a frame [`encode_status`] made, read back without a JSON parser (a
/// connection checks every status frame it is given); `None` for any other frame.
pub fn status_of_frame(frame: &str) -> Option<(&str, Status)> {
    let rest = frame.strip_prefix(r#"{"type":"status","id":""#)?;
    let (id, rest) = rest.split_once('"')?;
    let status = match rest {
        r#","status":"SENT"}"# => Status::Sent,
        r#","status":"DELIVERED"}"# => Status::Delivered,
        r#","status":"NONE"}"# => Status::None,
        _ => return None,
    };
    // An id with an escaped quote would have been cut short; such ids never reach here
    // (pods make UUIDs), and then the frame just passes unchecked.
    (!id.contains('\\')).then_some((id, status))
}

/// `{"type":"message",...}`: a message for the recipient's devices.
pub fn encode_message(m: MessageView<'_>) -> String {
    let created_at = super::rfc3339_micros(m.created_at_micros);
    let conversation_id = match m.group {
        Some(g) => g.to_owned(),
        None => super::direct_conversation_id(m.sender_id, m.reciever_id),
    };
    to_text(&Frame::Message {
        id: m.id,
        sender_id: m.sender_id,
        reciever_id: m.reciever_id,
        message: m.message,
        created_at: &created_at,
        conversation_id: &conversation_id,
        seq: m.cseq,
        pos: m.pos,
    })
}

/// `{"type":"read",...}`: `user_id` has read `conversation_id` up to `seq`.
pub fn encode_read(conversation_id: &str, user_id: &str, seq: i64) -> String {
    to_text(&Frame::Read {
        conversation_id,
        user_id,
        seq,
    })
}

/// One user's presence in a `presence` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceView {
    pub user_id: String,
    pub online: bool,
    /// RFC 3339: when a connection of the user last opened or closed (absent: never seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// `{"type":"presence","users":[...]}`: the answer to a presence frame.
pub fn encode_presence(users: &[PresenceView]) -> String {
    to_text(&Frame::Presence { users })
}

/// `{"type":"statuses","statuses":[{"id":…,"status":…},…]}`: the answer to a statuses frame.
pub fn encode_statuses(statuses: &[(String, Status)]) -> String {
    #[derive(Serialize)]
    struct One<'a> {
        id: &'a str,
        status: &'static str,
    }
    #[derive(Serialize)]
    struct Answer<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        statuses: Vec<One<'a>>,
    }
    let statuses = (statuses.iter())
        .map(|(id, s)| One {
            id,
            status: s.as_str(),
        })
        .collect();
    let answer = Answer {
        kind: "statuses",
        statuses,
    };
    serde_json::to_string(&answer).expect("plain strings always serialize")
}

/// `{"type":"typing",...}`: `user_id` is typing in `conversation_id` (or stopped).
pub fn encode_typing(conversation_id: &str, user_id: &str, active: bool) -> String {
    to_text(&Frame::Typing {
        conversation_id,
        user_id,
        active,
    })
}

/// `{"type":"error",...}`. `id` names the message an ack referred to.
pub fn encode_error(
    code: ErrorCode,
    message: &str,
    client_msg_id: Option<&str>,
    id: Option<&str>,
) -> String {
    to_text(&Frame::Error {
        code,
        message,
        client_msg_id,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_frame_reads_back_and_nothing_else_does() {
        for st in [Status::None, Status::Sent, Status::Delivered] {
            let id = "01a2355a-a26d-7353-9314-7ad44aac3d7f";
            assert_eq!(status_of_frame(&encode_status(id, st)), Some((id, st)));
        }
        let odd = encode_status("a\"b", Status::Sent);
        assert_eq!(status_of_frame(&odd), None, "an escaped id is not misread");
        assert_eq!(status_of_frame(r#"{"type":"statuses","id":"x"}"#), None);
        assert_eq!(
            status_of_frame(r#"{"type":"status","id":"x","status":"LOST"}"#),
            None
        );
    }

    #[test]
    fn the_statuses_answer_matches_the_protocol_document() {
        let found = [("m1".to_string(), Status::Delivered)];
        assert_eq!(
            encode_statuses(&found),
            r#"{"type":"statuses","statuses":[{"id":"m1","status":"DELIVERED"}]}"#
        );
        assert_eq!(encode_statuses(&[]), r#"{"type":"statuses","statuses":[]}"#);
    }

    #[test]
    fn frames_match_the_protocol_document() {
        let repeat = Accepted {
            id: "m1",
            client_msg_id: Some("c-1"),
            status: Status::Sent,
            conversation_id: None,
            at: None,
        };
        assert_eq!(
            encode_accepted(repeat),
            r#"{"type":"accepted","id":"m1","client_msg_id":"c-1","status":"SENT"}"#
        );
        let fresh = Accepted {
            status: Status::None,
            conversation_id: Some("dm:5:alice:bob"),
            at: Some((4, 9)),
            ..repeat
        };
        assert_eq!(
            encode_accepted(fresh),
            r#"{"type":"accepted","id":"m1","client_msg_id":"c-1","status":"NONE","conversation_id":"dm:5:alice:bob","seq":4,"pos":9}"#
        );
        assert_eq!(
            encode_truncated(12),
            r#"{"type":"history_truncated","through_pos":12}"#
        );
        assert_eq!(
            encode_status("m1", Status::Delivered),
            r#"{"type":"status","id":"m1","status":"DELIVERED"}"#
        );
        let m = MessageView {
            id: "m1",
            sender_id: "alice",
            reciever_id: "bob",
            message: "hi \"there\"",
            created_at_micros: 0,
            cseq: 3,
            pos: 7,
            group: None,
        };
        assert_eq!(
            encode_message(m),
            r#"{"type":"message","id":"m1","sender_id":"alice","reciever_id":"bob","message":"hi \"there\"","created_at":"1970-01-01T00:00:00.000000Z","conversation_id":"dm:5:alice:bob","seq":3,"pos":7}"#
        );
        assert_eq!(
            encode_error(ErrorCode::PayloadTooLarge, "too big", Some("c"), None),
            r#"{"type":"error","code":"payload_too_large","message":"too big","client_msg_id":"c"}"#
        );
    }
}
