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
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame<'a> {
    Accepted {
        id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<&'a str>,
        status: &'static str,
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
pub fn encode_accepted(id: &str, client_msg_id: Option<&str>, status: Status) -> String {
    to_text(&Frame::Accepted {
        id,
        client_msg_id,
        status: status.as_str(),
    })
}

/// `{"type":"status",...}`: a stored status change, sent to the sender's devices.
pub fn encode_status(id: &str, status: Status) -> String {
    to_text(&Frame::Status {
        id,
        status: status.as_str(),
    })
}

/// `{"type":"message",...}`: a message for the recipient's devices.
pub fn encode_message(m: MessageView<'_>) -> String {
    let created_at = super::rfc3339_micros(m.created_at_micros);
    to_text(&Frame::Message {
        id: m.id,
        sender_id: m.sender_id,
        reciever_id: m.reciever_id,
        message: m.message,
        created_at: &created_at,
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
    fn frames_match_the_protocol_document() {
        assert_eq!(
            encode_accepted("m1", Some("c-1"), Status::None),
            r#"{"type":"accepted","id":"m1","client_msg_id":"c-1","status":"NONE"}"#
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
        };
        assert_eq!(
            encode_message(m),
            r#"{"type":"message","id":"m1","sender_id":"alice","reciever_id":"bob","message":"hi \"there\"","created_at":"1970-01-01T00:00:00.000000Z"}"#
        );
        assert_eq!(
            encode_error(ErrorCode::PayloadTooLarge, "too big", Some("c"), None),
            r#"{"type":"error","code":"payload_too_large","message":"too big","client_msg_id":"c"}"#
        );
    }
}
