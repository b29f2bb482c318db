//! The generator's side of both wire protocols, sans I/O: the frames it sends and what it makes
//! of the frames it receives.

use std::borrow::Cow;

use serde::Deserialize;

use super::Protocol;

/// A received frame, as far as the generator cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// The gateway stored one of our sends.
    Accepted { client_msg_id: Cow<'a, str> },
    /// A status change of one of our messages.
    Status,
    /// A message for this connection's user; `id` is what an ack names.
    Message {
        id: Option<Cow<'a, str>>,
        payload: Cow<'a, str>,
    },
    /// An error frame.
    Error {
        code: Cow<'a, str>,
        client_msg_id: Option<Cow<'a, str>>,
    },
    /// Engine.IO ping: must be answered with `3`.
    Ping,
    /// Socket.IO disconnect packet.
    Disconnect,
    /// Anything else (counted nowhere; the gateway may add frame types).
    Other,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    client_msg_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    /// distriSocks names the payload `message` on the way out.
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    /// Socket.IO peers echo the sent object, payload included.
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
}

/// Classifies a text frame of `protocol`.
pub(crate) fn parse(protocol: Protocol, text: &str) -> Incoming<'_> {
    match protocol {
        Protocol::Distrisocks => parse_distrisocks(text),
        Protocol::Socketio => parse_socketio(text),
    }
}

fn parse_distrisocks(text: &str) -> Incoming<'_> {
    let Ok(f) = serde_json::from_str::<Frame<'_>>(text) else {
        return Incoming::Other;
    };
    match f.kind.as_deref() {
        Some("accepted") => match f.client_msg_id {
            Some(client_msg_id) => Incoming::Accepted { client_msg_id },
            None => Incoming::Other,
        },
        Some("status") => Incoming::Status,
        Some("message") => match f.message {
            Some(payload) => Incoming::Message { id: f.id, payload },
            None => Incoming::Other,
        },
        Some("error") => Incoming::Error {
            code: f.code.unwrap_or(Cow::Borrowed("")),
            client_msg_id: f.client_msg_id,
        },
        _ => Incoming::Other,
    }
}

/// Engine.IO packet type first (`2` ping, `4` message), then the Socket.IO packet type (`2`
/// event, `1` disconnect) and for events a JSON array `[name, data]`.
fn parse_socketio(text: &str) -> Incoming<'_> {
    if text == "2" {
        return Incoming::Ping;
    }
    if text.starts_with("41") {
        return Incoming::Disconnect;
    }
    let Some(body) = text.strip_prefix("42") else {
        return Incoming::Other;
    };
    let Ok((name, data)) = serde_json::from_str::<(Cow<'_, str>, Frame<'_>)>(body) else {
        return Incoming::Other;
    };
    match (name.as_ref(), data.payload) {
        ("message", Some(payload)) => Incoming::Message { id: None, payload },
        _ => Incoming::Other,
    }
}

/// The frame that sends `payload` to `to_json` (a JSON string literal, quotes included).
/// `payload` and `key` consist of digits, `.`, `|` and `x`, so they need no escaping.
pub(crate) fn send_frame(protocol: Protocol, to_json: &str, payload: &str, key: &str) -> String {
    match protocol {
        Protocol::Distrisocks => {
            format!(r#"{{"payload":"{payload}","reciever_id":{to_json},"client_msg_id":"{key}"}}"#)
        }
        Protocol::Socketio => {
            format!(r#"42["send",{{"reciever_id":{to_json},"payload":"{payload}"}}]"#)
        }
    }
}

/// The ack of message `id`.
pub(crate) fn ack_frame(id: &str) -> String {
    let id = serde_json::Value::from(id);
    format!(r#"{{"type":"ack","id":{id}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_distrisocks_frames() {
        let p = Protocol::Distrisocks;
        assert_eq!(
            parse(
                p,
                r#"{"type":"accepted","id":"m1","client_msg_id":"0.0.7","status":"NONE"}"#
            ),
            Incoming::Accepted {
                client_msg_id: "0.0.7".into()
            }
        );
        let m = r#"{"type":"message","id":"m1","sender_id":"a","reciever_id":"b","message":"1|0.0.7|x","created_at":"t"}"#;
        assert_eq!(
            parse(p, m),
            Incoming::Message {
                id: Some("m1".into()),
                payload: "1|0.0.7|x".into()
            }
        );
        assert_eq!(
            parse(
                p,
                r#"{"type":"error","code":"overloaded","message":"m","client_msg_id":"c"}"#
            ),
            Incoming::Error {
                code: "overloaded".into(),
                client_msg_id: Some("c".into())
            }
        );
        assert_eq!(
            parse(p, r#"{"type":"status","id":"m1","status":"SENT"}"#),
            Incoming::Status
        );
        assert_eq!(parse(p, "nonsense"), Incoming::Other);
    }

    #[test]
    fn reads_socketio_packets() {
        let p = Protocol::Socketio;
        assert_eq!(parse(p, "2"), Incoming::Ping);
        assert_eq!(parse(p, "41"), Incoming::Disconnect);
        let ev = r#"42["message",{"sender_id":"a","reciever_id":"b","payload":"1|0.0.1|"}]"#;
        assert_eq!(
            parse(p, ev),
            Incoming::Message {
                id: None,
                payload: "1|0.0.1|".into()
            }
        );
        assert_eq!(parse(p, r#"42["other",{}]"#), Incoming::Other);
    }

    #[test]
    fn builds_frames_that_parse() {
        let f = send_frame(Protocol::Distrisocks, r#""u1""#, "1|k|", "k");
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(
            (v["reciever_id"].as_str(), v["client_msg_id"].as_str()),
            (Some("u1"), Some("k"))
        );
        let f = send_frame(Protocol::Socketio, r#""u1""#, "1|k|", "k");
        let v: serde_json::Value = serde_json::from_str(f.strip_prefix("42").unwrap()).unwrap();
        assert_eq!(v[1]["payload"], "1|k|");
        assert_eq!(ack_frame("m\"1"), r#"{"type":"ack","id":"m\"1"}"#);
    }
}
