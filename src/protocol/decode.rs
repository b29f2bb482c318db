//! Client frame decoding and validation (everything that can be checked without the store).

use std::borrow::Cow;

use serde::Deserialize;

use super::{valid_user_id, ErrorCode, MAX_ID_BYTES};

/// Size limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest accepted `payload`, in bytes of its decoded UTF-8.
    pub max_payload_bytes: usize,
}

/// A decoded client frame.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    /// The seed's send frame.
    Send(SendFrame<'a>),
    /// A recipient device confirms a message.
    Ack { id: Cow<'a, str> },
    /// A recipient device confirms several messages at once (1 to [`MAX_ACK_IDS`]), e.g. a
    /// replay burst: one frame instead of one per message.
    AckMany { ids: Vec<Cow<'a, str>> },
    /// v2: the user is typing in a conversation (`active`), or stopped; never stored.
    Typing {
        conversation_id: Cow<'a, str>,
        active: bool,
    },
    /// v2: the user has read a conversation up to `seq` (cumulative).
    Read {
        conversation_id: Cow<'a, str>,
        seq: i64,
    },
    /// A fresh token for this connection, before the current one expires.
    Auth { token: Cow<'a, str> },
    /// v2: a group frame (membership, members, receipts).
    Group(super::group::GroupFrame<'a>),
    /// Who of these users is online (and when the others were last seen).
    Presence { users: Vec<String> },
    /// The current status of messages the user sent (1 to [`MAX_ACK_IDS`]): what a device
    /// that was offline missed.
    Statuses { ids: Vec<String> },
}

/// Most users one presence frame may ask about.
pub const MAX_PRESENCE_USERS: usize = 100;

/// Most ids one ack frame may carry: bounds the store commands one frame can queue.
pub const MAX_ACK_IDS: usize = 256;

/// A validated send frame. `sender_id` is already checked against the authenticated user.
#[derive(Debug, PartialEq, Eq)]
pub struct SendFrame<'a> {
    pub payload: Cow<'a, str>,
    /// The recipient, or the group (`group`) when the frame named a `conversation_id`.
    pub reciever_id: Cow<'a, str>,
    pub client_msg_id: Option<Cow<'a, str>>,
    /// v2: a message to the group `reciever_id` (membership is checked by the store).
    pub group: bool,
}

/// Why a frame was refused; becomes an error frame carrying `client_msg_id` when one was read.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
    pub client_msg_id: Option<String>,
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "receiver_id")]
    reciever_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sender_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    client_msg_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ids: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    conversation_id: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<i64>,
    #[serde(default)]
    active: Option<bool>,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    members: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    user_ids: Option<Vec<Cow<'a, str>>>,
}

/// Decodes one text frame sent by `user`.
pub fn decode_client_frame<'a>(
    text: &'a str,
    user: &str,
    limits: Limits,
) -> Result<ClientFrame<'a>, DecodeError> {
    let raw: RawFrame<'a> = serde_json::from_str(text).map_err(json_error)?;
    match raw.kind.as_deref() {
        None | Some("send") => validate_send(raw, user, limits).map(ClientFrame::Send),
        Some("ack") => validate_ack(raw),
        Some("read") => validate_read(raw, user),
        Some("auth") => match raw.token {
            Some(token) if !token.is_empty() => Ok(ClientFrame::Auth { token }),
            _ => Err(err(
                ErrorCode::InvalidFrame,
                "an auth frame needs \"token\", a JWT",
                None,
            )),
        },
        Some("typing") => {
            let conversation_id = member_conversation(raw.conversation_id, user, "typing")?;
            let active = raw.active.unwrap_or(true);
            Ok(ClientFrame::Typing {
                conversation_id,
                active,
            })
        }
        Some("presence") => validate_presence(raw.user_ids),
        Some("statuses") => validate_statuses(raw.ids),
        Some(other) if super::group::is_group_frame(other) => {
            let group = super::group::RawGroup {
                conversation_id: raw.conversation_id,
                members: raw.members,
                id: raw.id,
            };
            super::group::decode_group(other, group, user)
                .map(ClientFrame::Group)
                .map_err(|(code, msg)| err(code, &msg, None))
        }
        Some(other) => Err(err(
            ErrorCode::UnknownType,
            &format!("unknown frame type {:?}", truncate(other)),
            // Only a well-formed id is echoed: an unvalidated one would put up to a whole
            // frame of the client's bytes into the error (found by the fuzzer).
            raw.client_msg_id
                .as_deref()
                .filter(|c| (1..=MAX_ID_BYTES).contains(&c.len())),
        )),
    }
}

/// The frame's `conversation_id`, if it names a conversation `user` is a member of.
fn member_conversation<'a>(
    id: Option<Cow<'a, str>>,
    user: &str,
    frame: &str,
) -> Result<Cow<'a, str>, DecodeError> {
    // A group's membership is the store's to check; a direct one's is in its id.
    let member = id.as_deref().is_some_and(|id| {
        super::group::is_group_id(id)
            || super::direct_conversation_members(id)
                .is_some_and(|(lo, hi)| lo == user || hi == user)
    });
    match (id, member) {
        (Some(id), true) => Ok(id),
        _ => {
            let msg =
                format!("a {frame} frame needs the conversation_id of a conversation of yours");
            Err(err(ErrorCode::InvalidConversation, &msg, None))
        }
    }
}

/// 1 to [`MAX_PRESENCE_USERS`] valid user ids, each once.
fn validate_presence<'a>(ids: Option<Vec<Cow<'a, str>>>) -> Result<ClientFrame<'a>, DecodeError> {
    let ids = ids.unwrap_or_default();
    if ids.is_empty() || ids.len() > MAX_PRESENCE_USERS || !ids.iter().all(|i| valid_user_id(i)) {
        let msg =
            format!("a presence frame needs \"user_ids\": 1 to {MAX_PRESENCE_USERS} user ids");
        return Err(err(ErrorCode::InvalidFrame, &msg, None));
    }
    let mut users: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !users.iter().any(|u| *u == id) {
            users.push(id.into_owned());
        }
    }
    Ok(ClientFrame::Presence { users })
}

/// 1 to [`MAX_ACK_IDS`] message ids, each once, with the ack's rules for an id.
fn validate_statuses(ids: Option<Vec<Cow<'_, str>>>) -> Result<ClientFrame<'_>, DecodeError> {
    let ids = ids.unwrap_or_default();
    if ids.len() > MAX_ACK_IDS {
        let msg = format!("a statuses frame carries at most {MAX_ACK_IDS} ids");
        return Err(err(ErrorCode::TooManyIds, &msg, None));
    }
    if ids.is_empty() || !ids.iter().all(|i| valid_ack_id(i)) {
        let msg = "a statuses frame needs a non-empty \"ids\" list; ids are 1 to 128 bytes";
        return Err(err(ErrorCode::MissingId, msg, None));
    }
    let mut unique: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.iter().any(|u| *u == id) {
            unique.push(id.into_owned());
        }
    }
    Ok(ClientFrame::Statuses { ids: unique })
}

fn validate_read<'a>(raw: RawFrame<'a>, user: &str) -> Result<ClientFrame<'a>, DecodeError> {
    let conversation_id = member_conversation(raw.conversation_id, user, "read")?;
    match raw.seq {
        Some(seq) if seq >= 1 => Ok(ClientFrame::Read {
            conversation_id,
            seq,
        }),
        _ => Err(err(
            ErrorCode::InvalidFrame,
            "a read frame needs \"seq\", an integer from 1",
            None,
        )),
    }
}

/// An ack id is 1 to [`MAX_ID_BYTES`] bytes, as every id the pod issues is: a longer one names
/// no message, and refusing it here keeps the `not_recipient` and `rate_limited` answers, which
/// echo the id, from carrying a whole frame of the client's bytes.
fn valid_ack_id(id: &str) -> bool {
    (1..=MAX_ID_BYTES).contains(&id.len())
}

fn validate_ack(raw: RawFrame<'_>) -> Result<ClientFrame<'_>, DecodeError> {
    match (raw.id, raw.ids) {
        (Some(_), Some(_)) => Err(err(
            ErrorCode::InvalidFrame,
            "an ack frame takes \"id\" or \"ids\", not both",
            None,
        )),
        (Some(id), None) if valid_ack_id(&id) => Ok(ClientFrame::Ack { id }),
        (None, Some(ids)) if ids.len() > MAX_ACK_IDS => Err(err(
            ErrorCode::TooManyIds,
            &format!("an ack frame carries at most {MAX_ACK_IDS} ids"),
            None,
        )),
        (None, Some(ids)) if !ids.is_empty() && ids.iter().all(|i| valid_ack_id(i)) => {
            Ok(ClientFrame::AckMany { ids })
        }
        _ => Err(err(
            ErrorCode::MissingId,
            "an ack frame needs an \"id\" or a non-empty \"ids\" list; ids are 1 to 128 bytes",
            None,
        )),
    }
}

fn validate_send<'a>(
    raw: RawFrame<'a>,
    user: &str,
    limits: Limits,
) -> Result<SendFrame<'a>, DecodeError> {
    let cmid = raw.client_msg_id.as_deref();
    if let Some(c) = cmid {
        if c.is_empty() || c.len() > MAX_ID_BYTES {
            let msg = "client_msg_id must be 1 to 128 bytes";
            return Err(err(ErrorCode::InvalidClientMsgId, msg, None));
        }
    }
    if let Some(group) = raw.conversation_id.as_deref() {
        if raw.reciever_id.is_some() || !super::group::is_group_id(group) {
            let msg = "a send names a \"reciever_id\" or a group's \"conversation_id\" (g:...)";
            return Err(err(ErrorCode::InvalidConversation, msg, cmid));
        }
    }
    let group = raw.conversation_id.is_some();
    let to = match raw
        .reciever_id
        .as_deref()
        .or(raw.conversation_id.as_deref())
    {
        None | Some("") => {
            let msg = "send frame needs a non-empty \"reciever_id\"";
            return Err(err(ErrorCode::MissingRecipient, msg, cmid));
        }
        Some(to) => to,
    };
    if !valid_user_id(to) {
        let msg = "reciever_id must be at most 128 bytes without control characters";
        return Err(err(ErrorCode::InvalidRecipient, msg, cmid));
    }
    if raw.sender_id.as_deref().is_some_and(|s| s != user) {
        let msg = "sender_id differs from the authenticated user; nothing was stored";
        return Err(err(ErrorCode::SenderMismatch, msg, cmid));
    }
    let Some(payload) = raw.payload else {
        return Err(err(
            ErrorCode::MissingPayload,
            "send frame needs a \"payload\" string",
            cmid,
        ));
    };
    if payload.len() > limits.max_payload_bytes {
        let msg = format!("payload exceeds {} bytes", limits.max_payload_bytes);
        return Err(err(ErrorCode::PayloadTooLarge, &msg, cmid));
    }
    Ok(SendFrame {
        payload,
        reciever_id: (raw.reciever_id.or(raw.conversation_id)).unwrap_or_default(),
        client_msg_id: raw.client_msg_id,
        group,
    })
}

fn json_error(e: serde_json::Error) -> DecodeError {
    use serde_json::error::Category;
    let code = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ErrorCode::MalformedJson,
        Category::Data => ErrorCode::InvalidFrame,
    };
    // serde_json quotes the offending value ("invalid type: string \"…\""): cut it, so an
    // error frame never echoes an attacker's input at length.
    let text = e.to_string();
    let mut end = text.len().min(MAX_JSON_ERROR_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    err(code, &text[..end], None)
}

/// Longest JSON error text an error frame carries.
const MAX_JSON_ERROR_BYTES: usize = 160;

fn err(code: ErrorCode, message: &str, client_msg_id: Option<&str>) -> DecodeError {
    DecodeError {
        code,
        message: message.to_owned(),
        client_msg_id: client_msg_id.map(str::to_owned),
    }
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_payload_bytes: 8,
    };

    fn code(text: &str) -> ErrorCode {
        decode_client_frame(text, "alice", L).unwrap_err().code
    }

    #[test]
    fn decodes_the_seed_send_frame_and_its_alias() {
        let f = r#"{"payload":"hi","reciever_id":"bob","sender_id":"alice","client_msg_id":"c-1"}"#;
        let ClientFrame::Send(s) = decode_client_frame(f, "alice", L).unwrap() else {
            panic!("not a send")
        };
        assert_eq!((&*s.payload, &*s.reciever_id), ("hi", "bob"));
        assert_eq!(s.client_msg_id.as_deref(), Some("c-1"));
        let f = r#"{"type":"send","payload":"hi","receiver_id":"bob"}"#;
        assert!(matches!(
            decode_client_frame(f, "alice", L),
            Ok(ClientFrame::Send(_))
        ));
    }

    #[test]
    fn a_statuses_frame_takes_1_to_256_ids_each_once() {
        let f = r#"{"type":"statuses","ids":["m1","m2","m1"]}"#;
        let ids = vec!["m1".to_string(), "m2".to_string()];
        assert_eq!(
            decode_client_frame(f, "alice", L),
            Ok(ClientFrame::Statuses { ids })
        );
        assert_eq!(code(r#"{"type":"statuses"}"#), ErrorCode::MissingId);
        assert_eq!(
            code(r#"{"type":"statuses","ids":[]}"#),
            ErrorCode::MissingId
        );
        assert_eq!(
            code(r#"{"type":"statuses","ids":[""]}"#),
            ErrorCode::MissingId
        );
        let many: Vec<String> = (0..=MAX_ACK_IDS).map(|i| format!("m{i}")).collect();
        let many = serde_json::json!({"type": "statuses", "ids": many}).to_string();
        assert_eq!(code(&many), ErrorCode::TooManyIds);
    }

    #[test]
    fn refuses_bad_send_frames_with_stable_codes() {
        assert_eq!(code("{nope"), ErrorCode::MalformedJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidFrame);
        assert_eq!(
            code(r#"{"payload":5,"reciever_id":"b"}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(code(r#"{"type":"shout"}"#), ErrorCode::UnknownType);
        let long = format!(
            r#"{{"type":"shout","client_msg_id":"{}"}}"#,
            "k".repeat(129)
        );
        let e = decode_client_frame(&long, "alice", L).unwrap_err();
        assert_eq!((e.code, e.client_msg_id), (ErrorCode::UnknownType, None));
        let short = r#"{"type":"shout","client_msg_id":"k"}"#;
        let e = decode_client_frame(short, "alice", L).unwrap_err();
        assert_eq!(e.client_msg_id.as_deref(), Some("k"));
        assert_eq!(code(r#"{"payload":"x"}"#), ErrorCode::MissingRecipient);
        assert_eq!(
            code(r#"{"payload":"x","reciever_id":""}"#),
            ErrorCode::MissingRecipient
        );
        assert_eq!(
            code(r#"{"payload":"x","reciever_id":"a\u0001"}"#),
            ErrorCode::InvalidRecipient
        );
        assert_eq!(code(r#"{"reciever_id":"bob"}"#), ErrorCode::MissingPayload);
        assert_eq!(
            code(r#"{"payload":"123456789","reciever_id":"b"}"#),
            ErrorCode::PayloadTooLarge
        );
        let spoof =
            r#"{"payload":"x","reciever_id":"b","sender_id":"mallory","client_msg_id":"k"}"#;
        let e = decode_client_frame(spoof, "alice", L).unwrap_err();
        assert_eq!(
            (e.code, e.client_msg_id.as_deref()),
            (ErrorCode::SenderMismatch, Some("k"))
        );
        assert_eq!(code(r#"{"type":"ack"}"#), ErrorCode::MissingId);
        assert_eq!(code(r#"{"type":"ack","ids":[]}"#), ErrorCode::MissingId);
        assert_eq!(
            code(r#"{"type":"ack","ids":["a",""]}"#),
            ErrorCode::MissingId
        );
        assert_eq!(code(r#"{"type":"ack","ids":"a"}"#), ErrorCode::InvalidFrame);
        assert_eq!(
            code(r#"{"type":"ack","id":"a","ids":["b"]}"#),
            ErrorCode::InvalidFrame
        );
        let many: Vec<String> = (0..=MAX_ACK_IDS).map(|i| format!("\"m{i}\"")).collect();
        let many = format!(r#"{{"type":"ack","ids":[{}]}}"#, many.join(","));
        assert_eq!(code(&many), ErrorCode::TooManyIds);
        assert_eq!(
            code(r#"{"payload":"x","reciever_id":"b","client_msg_id":""}"#),
            ErrorCode::InvalidClientMsgId
        );
    }

    #[test]
    fn an_ack_carries_one_id_or_a_list() {
        let one = decode_client_frame(r#"{"type":"ack","id":"m1"}"#, "bob", L).unwrap();
        assert_eq!(one, ClientFrame::Ack { id: "m1".into() });
        let two = decode_client_frame(r#"{"type":"ack","ids":["m1","m2"]}"#, "bob", L).unwrap();
        let ids = vec![Cow::from("m1"), Cow::from("m2")];
        assert_eq!(two, ClientFrame::AckMany { ids });
    }

    #[test]
    fn an_ack_id_longer_than_any_issued_id_is_refused_without_echo() {
        let long = "m".repeat(MAX_ID_BYTES + 1);
        for f in [
            format!(r#"{{"type":"ack","id":"{long}"}}"#),
            format!(r#"{{"type":"ack","ids":["m1","{long}"]}}"#),
        ] {
            let e = decode_client_frame(&f, "bob", L).unwrap_err();
            assert_eq!(e.code, ErrorCode::MissingId);
            assert!(e.message.len() < 100 && e.client_msg_id.is_none());
        }
        let max = format!(r#"{{"type":"ack","id":"{}"}}"#, "m".repeat(MAX_ID_BYTES));
        assert!(decode_client_frame(&max, "bob", L).is_ok());
    }

    #[test]
    fn payload_limit_counts_decoded_bytes() {
        // Six escaped characters decode to one two-byte character.
        let f = r#"{"payload":"\u00e9\u00e9\u00e9\u00e9","reciever_id":"b"}"#;
        assert!(decode_client_frame(f, "alice", L).is_ok());
    }
}
