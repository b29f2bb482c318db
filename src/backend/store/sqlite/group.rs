//! Groups in the embedded store (migration 0005; the model is in `store::group`). Each
//! operation is one transaction; the store thread is the database's only writer, so the
//! conversation's counter needs no lock to order a group's sends and membership changes.

use rusqlite::{params, OptionalExtension, Transaction};

use super::counters::Counters;
use crate::backend::store::group::{
    Change, Fanout, GroupOp, GroupOutcome, GroupRead, GroupRefusal, Plan, Receipts, Row,
    READ_ALL_WINDOW,
};
use crate::backend::store::{
    NewMessage, StatusChange, StatusUpdate, StoreError, UpdateResult, COUNTER_CONVERSATION,
    COUNTER_STREAM,
};
use crate::protocol::group::MemberReceipt;
use crate::protocol::Status;

type Answer = Result<GroupOutcome, GroupRefusal>;

/// Runs `op` in `tx`; the caller commits only an `Ok(Ok(_))`.
pub(super) fn apply(
    tx: &Transaction<'_>,
    c: &mut Counters,
    op: &GroupOp,
) -> Result<Answer, StoreError> {
    match op {
        GroupOp::Create { change } => create(tx, c, change),
        GroupOp::Add { change } => add(tx, c, change),
        GroupOp::Remove { change } => remove(tx, c, change),
        GroupOp::Send { msg, system } => send(tx, c, msg, *system),
        GroupOp::Read { group, user, seq } => read(tx, c, group, user, *seq),
        GroupOp::Members { group, user } => match is_member(tx, group, user)? {
            true => Ok(Ok(GroupOutcome::Members {
                group: group.clone(),
                members: members_of(tx, group)?,
            })),
            false => Ok(Err(GroupRefusal::Unknown)),
        },
        GroupOp::Receipts { id, user } => receipts(tx, id, user),
    }
}

fn members_of(tx: &Transaction<'_>, group: &str) -> Result<Vec<String>, StoreError> {
    let mut q =
        tx.prepare_cached("SELECT user_id FROM members WHERE group_id = ?1 ORDER BY user_id")?;
    let rows = q.query_map([group], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<String>, _>>()?)
}

fn is_member(tx: &Transaction<'_>, group: &str, user: &str) -> Result<bool, StoreError> {
    let mut q = tx.prepare_cached("SELECT 1 FROM members WHERE group_id = ?1 AND user_id = ?2")?;
    Ok(q.exists(params![group, user])?)
}

fn create(tx: &Transaction<'_>, c: &mut Counters, ch: &Change) -> Result<Answer, StoreError> {
    let mut q = tx.prepare_cached("SELECT 1 FROM groups WHERE id = ?1")?;
    if q.exists([&ch.group])? {
        return Ok(Err(GroupRefusal::Exists));
    }
    let plan = match ch.plan_create() {
        Ok(plan) => plan,
        Err(r) => return Ok(Err(r)),
    };
    tx.prepare_cached("INSERT INTO groups (id, created_by, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![ch.group, ch.by, ch.at])?;
    let fan = store_event(tx, c, ch, &plan)?;
    join(tx, &ch.group, &plan.moving, fan.cseq)?;
    Ok(Ok(GroupOutcome::Fanned(fan)))
}

fn add(tx: &Transaction<'_>, c: &mut Counters, ch: &Change) -> Result<Answer, StoreError> {
    if !is_member(tx, &ch.group, &ch.by)? {
        return Ok(Err(GroupRefusal::Unknown));
    }
    let plan = match ch.plan_add(members_of(tx, &ch.group)?) {
        Ok(plan) => plan,
        Err(r) => return Ok(Err(r)),
    };
    let fan = store_event(tx, c, ch, &plan)?;
    join(tx, &ch.group, &plan.moving, fan.cseq)?;
    Ok(Ok(GroupOutcome::Fanned(fan)))
}

fn remove(tx: &Transaction<'_>, c: &mut Counters, ch: &Change) -> Result<Answer, StoreError> {
    if !is_member(tx, &ch.group, &ch.by)? {
        return Ok(Err(GroupRefusal::Unknown));
    }
    let creator: String = tx
        .prepare_cached("SELECT created_by FROM groups WHERE id = ?1")?
        .query_row([&ch.group], |r| r.get(0))?;
    let plan = match ch.plan_remove(members_of(tx, &ch.group)?, &creator) {
        Ok(plan) => plan,
        Err(r) => return Ok(Err(r)),
    };
    let fan = store_event(tx, c, ch, &plan)?;
    let mut del = tx.prepare_cached("DELETE FROM members WHERE group_id = ?1 AND user_id = ?2")?;
    for m in &plan.moving {
        del.execute(params![ch.group, m])?;
    }
    Ok(Ok(GroupOutcome::Fanned(fan)))
}

/// New members have read everything before (and including) the event that added them.
fn join(tx: &Transaction<'_>, group: &str, users: &[String], seq: i64) -> Result<(), StoreError> {
    let mut ins = tx.prepare_cached(
        "INSERT INTO members (group_id, user_id, joined_seq) VALUES (?1, ?2, ?3)",
    )?;
    let mut read = tx.prepare_cached(
        "INSERT INTO reads (user_id, conversation_id, peer, seq) VALUES (?2, ?1, ?1, ?3)
         ON CONFLICT (user_id, conversation_id) DO UPDATE SET seq = max(seq, excluded.seq)",
    )?;
    for u in users {
        ins.execute(params![group, u, seq])?;
        read.execute(params![group, u, seq])?;
    }
    Ok(())
}

fn store_event(
    tx: &Transaction<'_>,
    c: &mut Counters,
    ch: &Change,
    plan: &Plan,
) -> Result<Fanout, StoreError> {
    let payload = plan.event.to_payload();
    let mut fan = insert_row(tx, c, &Row::event(ch, &payload), &plan.to)?;
    fan.event = Some(plan.event.clone());
    Ok(fan)
}

/// Stores `row` once and gives it a place in the stream of every user of `to`. Events and
/// the sender's own copy are DELIVERED from the start: nobody acks them.
fn insert_row(
    tx: &Transaction<'_>,
    c: &mut Counters,
    row: &Row<'_>,
    to: &[String],
) -> Result<Fanout, StoreError> {
    let cseq = c.bump(tx, COUNTER_CONVERSATION, row.group)?;
    let undelivered = match row.event {
        true => 0,
        false => to.iter().filter(|u| *u != row.sender).count() as i64,
    };
    let status = if undelivered == 0 { 2 } else { 0 };
    tx.prepare_cached(
        "INSERT INTO group_messages (id, group_id, cseq, sender_id, client_msg_id, event,
             payload, created_at, status, undelivered)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        row.id,
        row.group,
        cseq,
        row.sender,
        row.client_msg_id,
        row.event as i64,
        row.payload,
        row.at,
        status,
        undelivered
    ])?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO deliveries (user_id, pos, message_id, status) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut places = Vec::with_capacity(to.len());
    for u in to {
        let pos = c.bump(tx, COUNTER_STREAM, u)?;
        let st = if row.event || u == row.sender { 2 } else { 0 };
        ins.execute(params![u, pos, row.id, st])?;
        places.push((u.clone(), pos));
    }
    Ok(Fanout {
        id: row.id.to_owned(),
        group: row.group.to_owned(),
        cseq,
        created_at: row.at,
        to: places,
        duplicate: None,
        event: None,
    })
}

fn send(
    tx: &Transaction<'_>,
    c: &mut Counters,
    m: &NewMessage,
    system: bool,
) -> Result<Answer, StoreError> {
    let member = is_member(tx, &m.reciever_id, &m.sender_id)?;
    let exists = || -> Result<bool, StoreError> {
        let mut q = tx.prepare_cached("SELECT 1 FROM groups WHERE id = ?1")?;
        Ok(q.exists([&m.reciever_id])?)
    };
    let allowed = member || (system && exists()?);
    if !allowed {
        return Ok(Err(GroupRefusal::Unknown));
    }
    if let Some(cmid) = &m.client_msg_id {
        if let Some(fan) = original(tx, &m.sender_id, cmid)? {
            return Ok(Ok(GroupOutcome::Fanned(fan)));
        }
    }
    let mut to = members_of(tx, &m.reciever_id)?;
    if !member {
        to.push(m.sender_id.clone()); // The system sender's own copy.
    }
    let row = Row::message(m);
    Ok(Ok(GroupOutcome::Fanned(insert_row(tx, c, &row, &to)?)))
}

/// The message a repeated `client_msg_id` names, with the sender's place in their stream.
fn original(tx: &Transaction<'_>, sender: &str, cmid: &str) -> Result<Option<Fanout>, StoreError> {
    let mut q = tx.prepare_cached(
        "SELECT g.id, g.group_id, g.cseq, g.created_at, g.status, d.pos
         FROM group_messages g JOIN deliveries d ON d.message_id = g.id AND d.user_id = g.sender_id
         WHERE g.sender_id = ?1 AND g.client_msg_id = ?2",
    )?;
    let found = q
        .query_row(params![sender, cmid], |r| {
            Ok(Fanout {
                id: r.get(0)?,
                group: r.get(1)?,
                cseq: r.get(2)?,
                created_at: r.get(3)?,
                duplicate: Some(status(r.get(4)?)),
                to: vec![(sender.to_owned(), r.get(5)?)],
                event: None,
            })
        })
        .optional()?;
    Ok(found)
}

fn status(n: i64) -> Status {
    match n {
        0 => Status::None,
        1 => Status::Sent,
        _ => Status::Delivered,
    }
}

fn read(
    tx: &Transaction<'_>,
    c: &mut Counters,
    group: &str,
    user: &str,
    seq: i64,
) -> Result<Answer, StoreError> {
    if !is_member(tx, group, user)? {
        return Ok(Err(GroupRefusal::Unknown));
    }
    let last = c.peek(tx, COUNTER_CONVERSATION, group)?;
    let before: i64 = tx
        .prepare_cached("SELECT seq FROM reads WHERE user_id = ?1 AND conversation_id = ?2")?
        .query_row(params![user, group], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let seq = seq.min(last);
    if seq <= before {
        return Ok(Ok(GroupOutcome::Read(None)));
    }
    tx.prepare_cached(
        "INSERT INTO reads (user_id, conversation_id, peer, seq) VALUES (?1, ?2, ?2, ?3)
         ON CONFLICT (user_id, conversation_id) DO UPDATE SET seq = excluded.seq",
    )?
    .execute(params![user, group, seq])?;
    let read_by_all = newly_read_by_all(tx, group, user, before, seq)?;
    let members = members_of(tx, group)?;
    Ok(Ok(GroupOutcome::Read(Some(GroupRead {
        seq,
        members,
        read_by_all,
    }))))
}

/// Messages in `(before, seq]` not sent by `user` that every other member has now read. A
/// message of sender S is read by all once the lowest receipt among the members but S
/// reaches it: the lowest two receipts of the group answer that for every S.
fn newly_read_by_all(
    tx: &Transaction<'_>,
    group: &str,
    user: &str,
    before: i64,
    seq: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut q = tx.prepare_cached(
        "SELECT m.user_id, coalesce(r.seq, 0) AS s FROM members m
         LEFT JOIN reads r ON r.user_id = m.user_id AND r.conversation_id = m.group_id
         WHERE m.group_id = ?1 ORDER BY s LIMIT 2",
    )?;
    let lowest: Vec<(String, i64)> = q
        .query_map([group], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut q = tx.prepare_cached(
        "SELECT id, sender_id, cseq FROM group_messages
         WHERE group_id = ?1 AND read_all = 0 AND event = 0 AND cseq > ?2 AND cseq <= ?3
           AND sender_id <> ?4 ORDER BY cseq",
    )?;
    let from = before.max(seq - READ_ALL_WINDOW);
    let candidates: Vec<(String, String, i64)> = q
        .query_map(params![group, from, seq, user], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut done = Vec::new();
    let mut mark = tx.prepare_cached("UPDATE group_messages SET read_all = 1 WHERE id = ?1")?;
    for (id, sender, cseq) in candidates {
        if super::super::group::others_have_read(&lowest, &sender, cseq) {
            mark.execute([&id])?;
            done.push((id, sender));
        }
    }
    Ok(done)
}

fn receipts(tx: &Transaction<'_>, id: &str, user: &str) -> Result<Answer, StoreError> {
    let mut q = tx.prepare_cached(
        "SELECT group_id, cseq, status, sender_id FROM group_messages WHERE id = ?1 AND event = 0",
    )?;
    let Some((group, cseq, st, sender)) = q
        .query_row([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .optional()?
    else {
        return Ok(Err(GroupRefusal::Unknown));
    };
    if !is_member(tx, &group, user)? {
        return Ok(Err(GroupRefusal::Unknown));
    }
    let mut q = tx.prepare_cached(
        "SELECT d.user_id, d.status, coalesce(r.seq, 0) >= ?3 FROM deliveries d
         LEFT JOIN reads r ON r.user_id = d.user_id AND r.conversation_id = ?2
         WHERE d.message_id = ?1 AND d.user_id <> ?4 ORDER BY d.user_id",
    )?;
    let members = q
        .query_map(params![id, group, cseq, sender], |r| {
            Ok(MemberReceipt {
                user_id: r.get(0)?,
                status: status(r.get(1)?),
                read: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Ok(GroupOutcome::Receipts(Receipts {
        id: id.to_owned(),
        group,
        cseq,
        status: status(st),
        members,
    })))
}

/// A status update of a group message: SENT (the pod's, no recipient) moves the aggregate
/// from NONE; DELIVERED from a member moves that member's copy, and the aggregate once the
/// last member confirmed.
pub(super) fn update(tx: &Transaction<'_>, u: &StatusUpdate) -> Result<UpdateResult, StoreError> {
    let changed = |row: Option<(String, String)>| match row {
        Some((sender_id, reciever_id)) => UpdateResult::Changed(StatusChange {
            id: u.id.clone(),
            status: u.status,
            sender_id,
            reciever_id,
            at: u.at,
        }),
        None => UpdateResult::Unchanged,
    };
    let pair = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
    match (u.status, &u.recipient) {
        (Status::Sent, None) => {
            let mut q = tx.prepare_cached(
                "UPDATE group_messages SET status = 1 WHERE id = ?1 AND status = 0
                 RETURNING sender_id, group_id",
            )?;
            Ok(changed(q.query_row([&u.id], pair).optional()?))
        }
        (Status::Delivered, Some(member)) => {
            let mut q = tx.prepare_cached(
                "UPDATE deliveries SET status = 2, at = ?3
                 WHERE message_id = ?1 AND user_id = ?2 AND status < 2",
            )?;
            if q.execute(params![u.id, member, u.at])? == 0 {
                let mut q = tx.prepare_cached(
                    "SELECT 1 FROM deliveries d JOIN group_messages g ON g.id = d.message_id
                     WHERE d.message_id = ?1 AND d.user_id = ?2 AND g.sender_id <> ?2
                       AND g.event = 0",
                )?;
                return Ok(match q.exists(params![u.id, member])? {
                    true => UpdateResult::Unchanged,
                    false => UpdateResult::NotRecipient,
                });
            }
            let mut q = tx.prepare_cached(
                "UPDATE group_messages SET undelivered = undelivered - 1,
                     status = CASE WHEN undelivered <= 1 THEN 2 ELSE status END
                 WHERE id = ?1 AND undelivered = 1 RETURNING sender_id, group_id",
            )?;
            let done = q.query_row([&u.id], pair).optional()?;
            if done.is_none() {
                tx.prepare_cached(
                    "UPDATE group_messages SET undelivered = undelivered - 1 WHERE id = ?1",
                )?
                .execute([&u.id])?;
            }
            Ok(changed(done))
        }
        _ => Ok(UpdateResult::Unchanged),
    }
}
