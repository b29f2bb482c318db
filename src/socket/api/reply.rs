//! Server API answers: JSON bodies, and the HTTP status of every error code (the table in
//! `docs/PROTOCOL.md`, "Server API").

use serde_json::{json, Value};

use crate::socket::http::json as http_json;

/// One answer: a status and a JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn ok(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            body: body.to_string(),
        }
    }

    /// An error in the shape of the socket's error frame, so one parser reads both.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        let body = json!({"type": "error", "code": code, "message": message});
        Reply::ok(status, &body)
    }

    /// A path or body named a user id that cannot be one.
    pub fn bad_user_id() -> Reply {
        let text = "a user id is 1 to 128 bytes without control characters";
        Reply::error(400, "invalid_request", text)
    }

    /// The answer a frame run as a user got (`act`): an error frame takes its code's status,
    /// any other frame `ok_status`, and the frame is the body as the socket would carry it.
    pub fn from_frame(frame: String, ok_status: u16) -> Reply {
        let parsed: Value = serde_json::from_str(&frame).unwrap_or(Value::Null);
        let status = match parsed["type"].as_str() {
            Some("error") => status_of(parsed["code"].as_str().unwrap_or_default()),
            _ => ok_status,
        };
        Reply {
            status,
            body: frame,
        }
    }

    /// The complete HTTP response. 429 and 503 carry `Retry-After`.
    pub fn to_http(&self) -> String {
        let extra = match self.status {
            429 | 503 => "Retry-After: 1\r\n",
            405 => "Allow: GET, POST, DELETE\r\n",
            _ => "",
        };
        http_json(self.status, extra, &self.body)
    }
}

/// The HTTP status of an error code.
pub fn status_of(code: &str) -> u16 {
    match code {
        "payload_too_large" | "body_too_large" => 413,
        "unknown_recipient"
        | "unknown_conversation"
        | "unknown_sender"
        | "not_recipient"
        | "not_found" => 404,
        "group_exists" | "group_full" | "no_change" => 409,
        "not_allowed" => 403,
        "rate_limited" => 429,
        "overloaded" | "store_unavailable" | "unavailable" => 503,
        "unauthorized" => 401,
        _ => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frames_take_their_codes_status_and_others_the_ok_status() {
        let refused = r#"{"type":"error","code":"unknown_recipient","message":"m"}"#;
        assert_eq!(Reply::from_frame(refused.into(), 200).status, 404);
        let busy = r#"{"type":"error","code":"overloaded","message":"m"}"#;
        let busy = Reply::from_frame(busy.into(), 200);
        assert_eq!(busy.status, 503);
        assert!(busy.to_http().contains("Retry-After: 1\r\n"));
        let ok = r#"{"type":"accepted","id":"x","status":"NONE"}"#;
        let ok = Reply::from_frame(ok.into(), 201);
        assert_eq!(ok.status, 201);
        assert!(ok.body.contains(r#""type":"accepted""#));
        assert!(ok.to_http().starts_with("HTTP/1.1 201 Created\r\n"));
        assert_eq!(status_of("malformed_json"), 400);
    }
}
