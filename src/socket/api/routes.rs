//! The endpoints (`docs/openapi.yaml`): each write becomes the client frame a user's device
//! would send, run as that user ([`super::act`]); each read asks [`super::reads`].

use std::rc::Rc;

use serde::Deserialize;
use serde_json::json;

use super::reply::Reply;
use super::{act, reads};
use crate::shard::Shard;
use crate::socket::http::{path_segment, query_param, Head, Target};

/// Routes one authenticated request.
pub async fn route(shard: &Rc<Shard>, head: &Head, body: &[u8]) -> Reply {
    let Target::Api(path) = &head.target else {
        return not_found();
    };
    let Some(segments) = segments(path) else {
        return Reply::error(400, "invalid_request", "a path segment is badly escaped");
    };
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let q = |key: &str| query_param(&head.query, key);
    match (head.method.as_str(), seg.as_slice()) {
        ("POST", ["messages"]) => publish(shard, head, body).await,
        ("GET", ["conversations", id, "messages"]) => reads::history(shard, id, q).await,
        ("GET", ["users", user, "conversations"]) => reads::conversations(shard, user, q).await,
        ("POST", ["presence"]) => presence(shard, body).await,
        ("POST", ["users", user, "disconnect"]) => reads::disconnect(shard, user).await,
        ("POST", ["groups"]) => create_group(shard, body).await,
        ("GET", ["groups", group, "members"]) => {
            let frame = json!({"type": "group_members", "conversation_id": group});
            as_member(shard, q("as_user"), &frame, 200).await
        }
        ("POST", ["groups", group, "members"]) => add_members(shard, group, body).await,
        ("DELETE", ["groups", group, "members", user]) => {
            let frame =
                json!({"type": "group_remove", "conversation_id": group, "members": [user]});
            as_member(shard, q("as_user"), &frame, 200).await
        }
        (_, ["messages"] | ["conversations", _, "messages"] | ["users", _, "conversations"])
        | (_, ["presence"] | ["users", _, "disconnect"] | ["groups"])
        | (_, ["groups", _, "members"] | ["groups", _, "members", _]) => Reply::error(
            405,
            "method_not_allowed",
            "this path does not take this method",
        ),
        _ => not_found(),
    }
}

fn not_found() -> Reply {
    Reply::error(404, "not_found", "no such endpoint (docs/openapi.yaml)")
}

/// The decoded segments after `/api/v1/`; `None` when one is badly escaped. Another version
/// prefix leaves nothing that routes.
fn segments(path: &str) -> Option<Vec<String>> {
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Some(vec![String::new()]);
    };
    rest.split('/').map(path_segment).collect()
}

/// A JSON body of type `T`, or the 400 to answer.
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| {
        let text = format!("the body is not the JSON this endpoint takes: {e}");
        Reply::error(400, "invalid_request", &text)
    })
}

/// An optional field that, when present, is a string: `null` is refused, as the schema says.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    #[serde(default, deserialize_with = "present")]
    sender_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    reciever_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    conversation_id: Option<String>,
    payload: String,
}

/// `POST /messages`: a send as `sender_id` (or the system sender); `Idempotency-Key` is the
/// send's `client_msg_id`, so a retry answers with the first message.
async fn publish(shard: &Rc<Shard>, head: &Head, body: &[u8]) -> Reply {
    let p: Publish = match parse(body) {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    if p.reciever_id.is_some() == p.conversation_id.is_some() {
        let text = "name exactly one of reciever_id (a user) and conversation_id (a group)";
        return Reply::error(400, "invalid_request", text);
    }
    let (sender, system) = match &p.sender_id {
        Some(user) => match known_user(shard, user) {
            Ok(()) => (user.clone(), false),
            Err(reply) => return reply,
        },
        None => (shard.settings().api_system_sender.clone(), true),
    };
    let mut frame = json!({"type": "send", "payload": p.payload});
    match (p.reciever_id, p.conversation_id) {
        (Some(to), _) => frame["reciever_id"] = json!(to),
        (_, group) => frame["conversation_id"] = json!(group),
    }
    if let Some(key) = &head.idempotency_key {
        frame["client_msg_id"] = json!(key);
    }
    run_as(shard, &sender, system, &frame, 201).await
}

/// A user the API acts as: a valid id, and known to the user directory when there is one.
fn known_user(shard: &Shard, user: &str) -> Result<(), Reply> {
    if !crate::protocol::valid_user_id(user) {
        return Err(Reply::bad_user_id());
    }
    match shard.pod.user_exists(user) {
        true => Ok(()),
        false => Err(Reply::error(
            404,
            "unknown_sender",
            "the user directory does not know this user",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    as_user: String,
    #[serde(default, deserialize_with = "present")]
    group_id: Option<String>,
    #[serde(default)]
    members: Vec<String>,
}

/// `POST /groups`: `group_create` as its creator.
async fn create_group(shard: &Rc<Shard>, body: &[u8]) -> Reply {
    let c: CreateGroup = match parse(body) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    let mut frame = json!({"type": "group_create", "members": c.members});
    if let Some(group) = c.group_id {
        frame["conversation_id"] = json!(group);
    }
    as_member(shard, Some(c.as_user), &frame, 201).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMembers {
    as_user: String,
    members: Vec<String>,
}

/// `POST /groups/{id}/members`: `group_add` as a member.
async fn add_members(shard: &Rc<Shard>, group: &str, body: &[u8]) -> Reply {
    let a: AddMembers = match parse(body) {
        Ok(a) => a,
        Err(reply) => return reply,
    };
    let frame = json!({"type": "group_add", "conversation_id": group, "members": a.members});
    as_member(shard, Some(a.as_user), &frame, 200).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Presence {
    users: Vec<String>,
}

/// `POST /presence`: a body, not a query: 256 ids of up to 128 bytes outgrow a request head.
async fn presence(shard: &Rc<Shard>, body: &[u8]) -> Reply {
    match parse::<Presence>(body) {
        Ok(p) => reads::presence(shard, p.users).await,
        Err(reply) => reply,
    }
}

/// Runs a group frame as `as_user` (required: groups are managed by their members).
async fn as_member(
    shard: &Rc<Shard>,
    as_user: Option<String>,
    frame: &serde_json::Value,
    ok: u16,
) -> Reply {
    let Some(user) = as_user else {
        return Reply::error(
            400,
            "invalid_request",
            "as_user is required: the member acting",
        );
    };
    if let Err(reply) = known_user(shard, &user) {
        return reply;
    }
    run_as(shard, &user, false, frame, ok).await
}

async fn run_as(
    shard: &Rc<Shard>,
    user: &str,
    system: bool,
    frame: &serde_json::Value,
    ok: u16,
) -> Reply {
    match act::as_user(shard, user, system, &frame.to_string()).await {
        Some(answer) => Reply::from_frame(answer, ok),
        None => Reply::error(
            503,
            "unavailable",
            "the pod is shutting down; retry on another",
        ),
    }
}
