//! Protocol v2 groups: their ids, the frames that manage them and the frames the pod sends
//! about them. Documented in `docs/PROTOCOL.md`, "Groups".
//!
//! A group is a conversation with its own id, `g:<name>`. Group traffic is v2 only: a v1
//! connection (no `?since=`) never sees it, because a v1 client has no conversation field to
//! tell a group message from a direct one.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{valid_user_id, ErrorCode, Status, MAX_ID_BYTES};

/// Prefix of every group conversation id.
pub const GROUP_PREFIX: &str = "g:";

/// Prefix of every group message id (and membership event id): the store tells a group
/// message's ack from a direct one's by its id alone, with no lookup.
pub const GROUP_MESSAGE_PREFIX: &str = "g-";

/// Most user ids one `group_create`, `group_add` or `group_remove` frame may name.
pub const MAX_MEMBERS_PER_FRAME: usize = 1_000;

/// Whether `id` is a group conversation id: `g:` then 1 to 126 bytes without control
/// characters (128 bytes in all, like every id).
pub fn is_group_id(id: &str) -> bool {
    id.strip_prefix(GROUP_PREFIX)
        .is_some_and(|name| !name.is_empty())
        && id.len() <= MAX_ID_BYTES
        && !id.chars().any(char::is_control)
}

/// Whether `id` names a group message or membership event (see [`GROUP_MESSAGE_PREFIX`]).
pub fn is_group_message_id(id: &str) -> bool {
    id.starts_with(GROUP_MESSAGE_PREFIX)
}

/// A fresh group message id: `g-` and a UUIDv7.
pub fn new_group_message_id() -> String {
    format!("{GROUP_MESSAGE_PREFIX}{}", uuid::Uuid::now_v7())
}

/// A fresh group id for a `group_create` that names none.
pub fn new_group_id() -> String {
    format!("{GROUP_PREFIX}{}", uuid::Uuid::now_v7())
}

/// A membership change, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum GroupFrame<'a> {
    /// Create a group (`group`: `None` lets the pod name it) with these other members.
    Create {
        group: Option<Cow<'a, str>>,
        members: Vec<String>,
    },
    Add {
        group: Cow<'a, str>,
        members: Vec<String>,
    },
    /// Remove members (the creator only), or oneself (anyone: leaving).
    Remove {
        group: Cow<'a, str>,
        members: Vec<String>,
    },
    /// The group's current members.
    Members { group: Cow<'a, str> },
    /// Per-member delivery and read state of one group message.
    Receipts { id: Cow<'a, str> },
}

/// The frame types [`decode_group`] takes.
const GROUP_FRAMES: [&str; 6] = [
    "group_create",
    "group_add",
    "group_remove",
    "group_leave",
    "group_members",
    "receipts",
];

/// Whether `kind` is the type of a group frame.
pub(super) fn is_group_frame(kind: &str) -> bool {
    GROUP_FRAMES.contains(&kind)
}

/// The group fields of a client frame (the rest of `RawFrame` is shared with `decode`).
pub(super) struct RawGroup<'a> {
    pub conversation_id: Option<Cow<'a, str>>,
    pub members: Option<Vec<Cow<'a, str>>>,
    pub id: Option<Cow<'a, str>>,
}

/// Decodes a group frame of type `kind` ([`is_group_frame`]) sent by `user`.
pub(super) fn decode_group<'a>(
    kind: &str,
    raw: RawGroup<'a>,
    user: &str,
) -> Result<GroupFrame<'a>, (ErrorCode, String)> {
    let group = || group_field(raw.conversation_id.clone());
    let members = |required| member_list(raw.members.clone(), required);
    match kind {
        "group_create" => (|| {
            let group = match raw.conversation_id.clone() {
                None => None,
                Some(_) => Some(group()?),
            };
            Ok(GroupFrame::Create {
                group,
                members: members(false)?,
            })
        })(),
        "group_add" => (|| {
            let (group, members) = (group()?, members(true)?);
            Ok(GroupFrame::Add { group, members })
        })(),
        "group_remove" => (|| {
            let (group, members) = (group()?, members(true)?);
            Ok(GroupFrame::Remove { group, members })
        })(),
        "group_leave" => group().map(|group| GroupFrame::Remove {
            group,
            members: vec![user.to_owned()],
        }),
        "group_members" => group().map(|group| GroupFrame::Members { group }),
        "receipts" => match raw.id {
            Some(id) if is_group_message_id(&id) && id.len() <= MAX_ID_BYTES => {
                Ok(GroupFrame::Receipts { id })
            }
            _ => Err((
                ErrorCode::MissingId,
                "a receipts frame needs the \"id\" of a group message".into(),
            )),
        },
        other => Err((
            ErrorCode::UnknownType,
            format!("{other:?} is no group frame"),
        )),
    }
}

fn group_field(id: Option<Cow<'_, str>>) -> Result<Cow<'_, str>, (ErrorCode, String)> {
    match id {
        Some(id) if is_group_id(&id) => Ok(id),
        _ => Err((
            ErrorCode::InvalidConversation,
            "a group frame needs \"conversation_id\", a group id (g:<name>, at most 128 bytes)"
                .into(),
        )),
    }
}

/// The `members` list: valid user ids, each once, in the order given; at least one when
/// `required`. `group_create` adds its sender itself, so naming oneself there is harmless.
fn member_list(
    list: Option<Vec<Cow<'_, str>>>,
    required: bool,
) -> Result<Vec<String>, (ErrorCode, String)> {
    let list = list.unwrap_or_default();
    if list.len() > MAX_MEMBERS_PER_FRAME {
        let msg = format!("a group frame names at most {MAX_MEMBERS_PER_FRAME} members");
        return Err((ErrorCode::InvalidFrame, msg));
    }
    if required && list.is_empty() {
        return Err((ErrorCode::InvalidFrame, "\"members\" names nobody".into()));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for m in list {
        if !valid_user_id(&m) {
            let msg = "a member id is 1 to 128 bytes without control characters";
            return Err((ErrorCode::InvalidRecipient, msg.into()));
        }
        if !out.iter().any(|o| *o == m) {
            out.push(m.into_owned());
        }
    }
    Ok(out)
}

/// What a membership event did; stored as the event's payload (JSON) and spelt out in its
/// `group` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEvent {
    /// `created`, `added`, `removed` or `left`.
    pub event: String,
    /// Who was created with, added or removed (for `left`: the one who left).
    pub members: Vec<String>,
}

impl GroupEvent {
    pub fn to_payload(&self) -> String {
        serde_json::to_string(self).expect("strings serialise")
    }

    /// The stored payload read back; a corrupt one reads as an empty `unknown` event.
    pub fn from_payload(payload: &str) -> GroupEvent {
        serde_json::from_str(payload).unwrap_or_else(|_| GroupEvent {
            event: "unknown".into(),
            members: Vec::new(),
        })
    }
}

/// A membership event as the `group` frame shows it.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub id: &'a str,
    pub group: &'a str,
    pub by: &'a str,
    pub event: &'a GroupEvent,
    pub created_at_micros: i64,
    pub seq: i64,
    pub pos: i64,
}

/// One member's state of a group message, in the `receipts` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberReceipt {
    pub user_id: String,
    #[serde(serialize_with = "status_str")]
    pub status: Status,
    pub read: bool,
}

fn status_str<S: serde::Serializer>(s: &Status, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame<'a> {
    Group {
        id: &'a str,
        conversation_id: &'a str,
        event: &'a str,
        by: &'a str,
        members: &'a [String],
        created_at: &'a str,
        seq: i64,
        pos: i64,
    },
    GroupMembers {
        conversation_id: &'a str,
        members: &'a [String],
    },
    Receipts {
        id: &'a str,
        conversation_id: &'a str,
        seq: i64,
        status: &'static str,
        members: &'a [MemberReceipt],
    },
    Status {
        id: &'a str,
        status: &'static str,
    },
}

fn to_text(f: &Frame<'_>) -> String {
    serde_json::to_string(f).expect("frame serialises")
}

/// `{"type":"group",...}`: a membership event of a group, at its place in the conversation
/// (`seq`) and in the stream of the user whose devices get it (`pos`).
pub fn encode_group_event(v: EventView<'_>) -> String {
    let created_at = super::rfc3339_micros(v.created_at_micros);
    to_text(&Frame::Group {
        id: v.id,
        conversation_id: v.group,
        event: &v.event.event,
        by: v.by,
        members: &v.event.members,
        created_at: &created_at,
        seq: v.seq,
        pos: v.pos,
    })
}

/// `{"type":"group_members",...}`: the answer to `group_members`.
pub fn encode_group_members(group: &str, members: &[String]) -> String {
    to_text(&Frame::GroupMembers {
        conversation_id: group,
        members,
    })
}

/// `{"type":"receipts",...}`: the answer to `receipts`. `status` is the aggregate.
pub fn encode_receipts(
    id: &str,
    group: &str,
    seq: i64,
    status: Status,
    members: &[MemberReceipt],
) -> String {
    to_text(&Frame::Receipts {
        id,
        conversation_id: group,
        seq,
        status: status.as_str(),
        members,
    })
}

/// `{"type":"status","id":…,"status":"READ"}`: every member but the sender has read the
/// group message (their read receipts reached its `seq`).
pub fn encode_read_by_all(id: &str) -> String {
    to_text(&Frame::Status { id, status: "READ" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_have_their_own_prefix_and_the_common_limits() {
        assert!(is_group_id("g:team"));
        assert!(is_group_id(&format!("g:{}", "x".repeat(126))));
        for bad in ["g:", "team", "dm:5:alice:bob", "g:a\u{1}"] {
            assert!(!is_group_id(bad), "{bad}");
        }
        assert!(!is_group_id(&format!("g:{}", "x".repeat(127))));
        assert!(is_group_id(&new_group_id()));
        assert!(is_group_message_id(&new_group_message_id()));
        assert!(!is_group_message_id(&uuid::Uuid::now_v7().to_string()));
    }

    #[test]
    fn an_event_payload_reads_back_and_a_corrupt_one_is_unknown() {
        let e = GroupEvent {
            event: "added".into(),
            members: vec!["carol".into()],
        };
        assert_eq!(GroupEvent::from_payload(&e.to_payload()), e);
        assert_eq!(GroupEvent::from_payload("{").event, "unknown");
    }

    #[test]
    fn group_frames_match_the_protocol_document() {
        let e = GroupEvent {
            event: "added".into(),
            members: vec!["carol".into()],
        };
        let v = EventView {
            id: "g-1",
            group: "g:team",
            by: "alice",
            event: &e,
            created_at_micros: 0,
            seq: 2,
            pos: 5,
        };
        assert_eq!(
            encode_group_event(v),
            r#"{"type":"group","id":"g-1","conversation_id":"g:team","event":"added","by":"alice","members":["carol"],"created_at":"1970-01-01T00:00:00.000000Z","seq":2,"pos":5}"#
        );
        let r = MemberReceipt {
            user_id: "bob".into(),
            status: Status::Delivered,
            read: true,
        };
        assert_eq!(
            encode_receipts("g-1", "g:team", 3, Status::Sent, &[r]),
            r#"{"type":"receipts","id":"g-1","conversation_id":"g:team","seq":3,"status":"SENT","members":[{"user_id":"bob","status":"DELIVERED","read":true}]}"#
        );
        assert_eq!(
            encode_read_by_all("g-1"),
            r#"{"type":"status","id":"g-1","status":"READ"}"#
        );
    }
}
