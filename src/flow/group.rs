//! v2 groups on the message path (`docs/PROTOCOL.md`, "Groups"). A send to a group, a
//! membership change, a group's read receipt: each is one store operation
//! ([`GroupOp`]), answered to a task so the connection's reader never waits for it. What was
//! stored then fans out to every member's places, each copy carrying that member's `pos`:
//! the same produce step as a direct message, so it reaches every pod in distributed mode.
//! A member's device that misses a live copy sees a hole in its `pos` and gets the row from
//! its next sync, as for carbons; the row is stored before anyone hears of it.

use std::rc::Rc;
use std::sync::Arc;

use futures::channel::oneshot;
use futures::StreamExt;

use crate::backend::bus::Envelope;
use crate::backend::store::group::{Change, Fanout, GroupOp, GroupOutcome, GroupRefusal};
use crate::backend::store::{GroupAnswer, NewMessage, PendingMessage, RowKind, StoreCmd};
use crate::protocol::group::{self as wire, EventView, GroupEvent, GroupFrame};
use crate::protocol::{
    encode_accepted, encode_error, encode_message, encode_read, encode_typing, now_micros,
    Accepted, ErrorCode, MessageView, SendFrame, Status,
};
use crate::shard::outbox::Out;
use crate::shard::Shard;

use super::produce::{produce, produce_best_effort, Produced};
use super::submit::{submit, INSERT_PATIENCE};

/// Members a fan-out produces to at once: bounds the tasks one group message starts.
const FAN_OUT_CONCURRENCY: usize = 64;

/// The connection a group frame came from (owned: the work runs in its own task).
#[derive(Clone)]
pub struct From {
    pub conn: u64,
    pub user: String,
    /// The application's system sender (a server API publish without `sender_id`): it may
    /// send to a group without being a member.
    pub system: bool,
}

/// Runs `step` as a task counted as in-flight work for the shutdown drain.
fn spawn<F: std::future::Future<Output = ()> + 'static>(shard: &Rc<Shard>, step: F) {
    shard.begin_work();
    let shard = shard.clone();
    glommio::spawn_local(async move {
        step.await;
        shard.end_work();
    })
    .detach();
}

/// Asks the store; an error is the code the client hears.
async fn ask(shard: &Shard, op: GroupOp) -> Result<GroupAnswer, ErrorCode> {
    let (reply, wait) = oneshot::channel();
    let cmd = StoreCmd::Group { op, reply };
    if let Err(e) = submit(&shard.pod.store, cmd, INSERT_PATIENCE).await {
        return Err(match e {
            crate::backend::store::SubmitError::Full(_) => ErrorCode::Overloaded,
            crate::backend::store::SubmitError::Stopped(_) => ErrorCode::StoreUnavailable,
        });
    }
    match wait.await {
        Ok(Ok(answer)) => Ok(answer),
        _ => Err(ErrorCode::StoreUnavailable),
    }
}

/// Sends an error frame to the asking connection.
fn refuse(shard: &Shard, from: &From, code: ErrorCode, cmid: Option<&str>) {
    shard.metrics().error(code);
    let text = match code {
        ErrorCode::UnknownConversation => "no such group, or you are not a member",
        ErrorCode::GroupExists => "a group with this id exists",
        ErrorCode::GroupFull => "the group would exceed --max-group-members",
        ErrorCode::NotAllowed => "only the group's creator removes other members",
        ErrorCode::NoChange => "the change changes nothing",
        ErrorCode::Overloaded | ErrorCode::StoreUnavailable => {
            "not stored; resend it later (with the same client_msg_id)"
        }
        _ => "refused",
    };
    let frame = encode_error(code, text, cmid, None);
    shard
        .conns
        .borrow()
        .push_to(from.conn, Out::Text(frame.into()));
}

fn refusal_code(r: GroupRefusal) -> ErrorCode {
    match r {
        GroupRefusal::Exists => ErrorCode::GroupExists,
        GroupRefusal::Unknown => ErrorCode::UnknownConversation,
        GroupRefusal::Full => ErrorCode::GroupFull,
        GroupRefusal::NotAllowed => ErrorCode::NotAllowed,
        GroupRefusal::NoChange => ErrorCode::NoChange,
    }
}

/// A send whose `conversation_id` named a group; the connection counted it as a send awaiting
/// its answer (flow control), and this gives that room back once it is answered.
pub fn on_send(shard: &Rc<Shard>, from: From, send: SendFrame<'_>) {
    let msg = NewMessage {
        id: wire::new_group_message_id(),
        sender_id: from.user.clone(),
        reciever_id: send.reciever_id.into_owned(),
        client_msg_id: send.client_msg_id.map(|c| c.into_owned()),
        payload: send.payload.into_owned(),
        created_at: now_micros(),
    };
    let s = shard.clone();
    spawn(shard, async move {
        let cmid = msg.client_msg_id.clone();
        let op = GroupOp::Send {
            msg: msg.clone(),
            system: from.system,
        };
        let answer = ask(&s, op).await;
        s.conns.borrow().send_answered(from.conn);
        match answer {
            Ok(Ok(GroupOutcome::Fanned(fan))) => sent(&s, &from, &msg, fan).await,
            Ok(Err(r)) => refuse(&s, &from, refusal_code(r), cmid.as_deref()),
            Ok(Ok(_)) => {}
            Err(code) => refuse(&s, &from, code, cmid.as_deref()),
        }
    });
}

/// A stored group message: `accepted` to the sending connection, then the fan-out, then
/// SENT once some member's place took it.
async fn sent(shard: &Rc<Shard>, from: &From, msg: &NewMessage, fan: Fanout) {
    let frame = encode_accepted(Accepted {
        id: &fan.id,
        client_msg_id: msg.client_msg_id.as_deref(),
        status: fan.duplicate.unwrap_or(Status::None),
        conversation_id: Some(&fan.group),
        at: Some((fan.cseq, fan.pos_of(&from.user))),
    });
    shard
        .conns
        .borrow()
        .push_to(from.conn, Out::Text(frame.into()));
    if fan.duplicate.is_some() {
        return;
    }
    let view = |pos| MessageView {
        id: &fan.id,
        sender_id: &msg.sender_id,
        reciever_id: &fan.group,
        message: &msg.payload,
        created_at_micros: fan.created_at,
        cseq: fan.cseq,
        pos,
        group: Some(&fan.group),
    };
    let reached = fan_out(shard, &fan, from, |pos| encode_message(view(pos)), false).await;
    if reached > 0 {
        crate::failpoints::crash_point("after_produce_before_sent");
        super::status::advance(shard, &fan.id, Status::Sent).await;
    }
}

/// Produces one frame per place of `fan` (`frame(pos)`): to every member but `from`, and as
/// a carbon to `from`'s other devices. `events` frames need no ack. Returns how many members
/// (`from` aside) had a place that took it.
async fn fan_out(
    shard: &Rc<Shard>,
    fan: &Fanout,
    from: &From,
    frame: impl Fn(i64) -> String,
    events: bool,
) -> usize {
    let envs: Vec<Arc<Envelope>> = (fan.to.iter())
        .map(|(user, pos)| {
            let own = *user == from.user;
            let except = own.then(|| super::route::except(shard, from.conn));
            Arc::new(Envelope {
                user: user.clone(),
                frame: frame(*pos).into(),
                message_id: Some(fan.id.clone()),
                seq: *pos,
                carbon: own || events,
                group: true,
                born: if own || events { 0 } else { fan.created_at },
                except,
            })
        })
        .collect();
    let reached = std::cell::Cell::new(0usize);
    futures::stream::iter(envs)
        .for_each_concurrent(FAN_OUT_CONCURRENCY, |env| {
            let reached = &reached;
            async move {
                let member = env.user != from.user;
                let user = env.user.clone();
                if let Produced::Reached(_) = produce(shard, &user, env).await {
                    reached.set(reached.get() + usize::from(member));
                }
            }
        })
        .await;
    reached.get()
}

/// A membership change, or a question about a group.
pub fn on_frame(shard: &Rc<Shard>, from: From, frame: GroupFrame<'_>) {
    let change = |group: String, members: Vec<String>| Change {
        group,
        by: from.user.clone(),
        members,
        event_id: wire::new_group_message_id(),
        at: now_micros(),
        max_members: shard.settings().tuning.max_group_members,
    };
    let op = match frame {
        GroupFrame::Create { group, members } => {
            let group = group.map_or_else(wire::new_group_id, |g| g.into_owned());
            GroupOp::Create {
                change: change(group, members),
            }
        }
        GroupFrame::Add { group, members } => GroupOp::Add {
            change: change(group.into_owned(), members),
        },
        GroupFrame::Remove { group, members } => GroupOp::Remove {
            change: change(group.into_owned(), members),
        },
        GroupFrame::Members { group } => GroupOp::Members {
            group: group.into_owned(),
            user: from.user.clone(),
        },
        GroupFrame::Receipts { id } => GroupOp::Receipts {
            id: id.into_owned(),
            user: from.user.clone(),
        },
    };
    let s = shard.clone();
    spawn(shard, async move {
        match ask(&s, op).await {
            Ok(Ok(outcome)) => answered(&s, &from, outcome).await,
            Ok(Err(r)) => refuse(&s, &from, refusal_code(r), None),
            Err(code) => refuse(&s, &from, code, None),
        }
    });
}

async fn answered(shard: &Rc<Shard>, from: &From, outcome: GroupOutcome) {
    let reply = |frame: String| {
        // The connection may have closed meanwhile: the change is stored all the same.
        shard
            .conns
            .borrow()
            .push_to(from.conn, Out::Text(frame.into()));
    };
    match outcome {
        GroupOutcome::Fanned(fan) => {
            let Some(event) = &fan.event else { return };
            let frame = |pos| {
                wire::encode_group_event(EventView {
                    id: &fan.id,
                    group: &fan.group,
                    by: &from.user,
                    event,
                    created_at_micros: fan.created_at,
                    seq: fan.cseq,
                    pos,
                })
            };
            reply(frame(fan.pos_of(&from.user)));
            fan_out(shard, &fan, from, frame, true).await;
        }
        GroupOutcome::Members { group, members } => {
            reply(wire::encode_group_members(&group, &members))
        }
        GroupOutcome::Receipts(r) => reply(wire::encode_receipts(
            &r.id, &r.group, r.cseq, r.status, &r.members,
        )),
        GroupOutcome::Read(_) => {}
    }
}

/// A v2 read receipt in a group: stored, announced to every member's v2 devices but the
/// sending connection (in groups over `--group-read-fanout-max` members, to the reader's own
/// devices only), and READ announced to the senders of messages every member has now read.
pub fn on_read(shard: &Rc<Shard>, from: From, group: &str, seq: i64) {
    let op = GroupOp::Read {
        group: group.to_owned(),
        user: from.user.clone(),
        seq,
    };
    let (s, group) = (shard.clone(), group.to_owned());
    spawn(shard, async move {
        let read = match ask(&s, op).await {
            Ok(Ok(GroupOutcome::Read(Some(read)))) => read,
            Ok(Err(r)) => return refuse(&s, &from, refusal_code(r), None),
            _ => return, // Not moved; or the store failed: a later receipt carries this one.
        };
        let frame: tungstenite::Utf8Bytes = encode_read(&group, &from.user, read.seq).into();
        let own = [from.user.clone()];
        let told = match read.members.len() <= s.settings().tuning.group_read_fanout_max {
            true => &read.members[..],
            false => &own[..], // A large group: the reader's other devices only.
        };
        to_members(&s, &from, told, frame).await;
        for (id, sender) in read.read_by_all {
            let env = Arc::new(Envelope {
                user: sender.clone(),
                frame: wire::encode_read_by_all(&id).into(),
                message_id: None,
                seq: 0,
                carbon: false,
                group: true,
                born: 0,
                except: None,
            });
            produce_best_effort(&s, &sender, env).await;
        }
    });
}

/// A typing indicator in a group: to every other member's v2 devices (the members come from
/// the store, which also checks that `from` is one).
pub fn on_typing(shard: &Rc<Shard>, from: From, group: &str, active: bool) {
    let op = GroupOp::Members {
        group: group.to_owned(),
        user: from.user.clone(),
    };
    let (s, group) = (shard.clone(), group.to_owned());
    spawn(shard, async move {
        let members = match ask(&s, op).await {
            Ok(Ok(GroupOutcome::Members { members, .. })) => members,
            Ok(Err(r)) => return refuse(&s, &from, refusal_code(r), None),
            _ => return, // Typing is best effort.
        };
        let others: Vec<String> = members.into_iter().filter(|m| *m != from.user).collect();
        let frame: tungstenite::Utf8Bytes = encode_typing(&group, &from.user, active).into();
        to_members(&s, &from, &others, frame).await;
    });
}

/// A frame for the v2 devices of `members` (but `from`'s connection), no status attached.
async fn to_members(
    shard: &Rc<Shard>,
    from: &From,
    members: &[String],
    frame: tungstenite::Utf8Bytes,
) {
    futures::stream::iter(members)
        .for_each_concurrent(FAN_OUT_CONCURRENCY, |member| {
            let env = super::route::v2_envelope(shard, member, frame.clone(), from.conn);
            async move {
                produce_best_effort(shard, member, env).await;
            }
        })
        .await;
}

/// A group row of `user`'s stream read back for a sync, as the envelope its device gets:
/// a group message (awaiting this device's ack unless `user` sent it or it is DELIVERED to
/// them) or a membership event.
pub fn row_envelope(m: &PendingMessage, user: &str) -> (Arc<Envelope>, bool) {
    let own = m.sender_id == user;
    let (frame, awaits_ack) = match m.kind {
        RowKind::GroupEvent => {
            let event = GroupEvent::from_payload(&m.payload);
            let frame = wire::encode_group_event(EventView {
                id: &m.id,
                group: &m.reciever_id,
                by: &m.sender_id,
                event: &event,
                created_at_micros: m.created_at,
                seq: m.cseq,
                pos: m.seq,
            });
            (frame, false)
        }
        _ => (
            encode_message(m.view()),
            !own && m.status < Status::Delivered,
        ),
    };
    let env = Arc::new(Envelope {
        user: user.to_owned(),
        frame: frame.into(),
        message_id: Some(m.id.clone()),
        seq: m.seq,
        carbon: !awaits_ack,
        group: true,
        born: 0,
        except: None,
    });
    (env, awaits_ack)
}
