//! Groups in the distributed store (migration 0006; the model is in `store::group`): the same
//! results as `sqlite/group.rs`, checked by the shared conformance scenarios. Each operation
//! is one transaction that locks its group's row first, then the counters it bumps in
//! (kind, id) order (the order every inserting transaction uses), so several pods serving one
//! group take turns and never deadlock, and no lock spans groups.

use std::collections::BTreeMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use super::{parse_status, to_micros, to_time};
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
type Tx<'a> = Transaction<'a>;

/// Runs `op` in `tx`; the caller commits only an `Ok(Ok(_))`.
pub(super) async fn apply(tx: &Tx<'_>, op: &GroupOp) -> Result<Answer, StoreError> {
    match op {
        GroupOp::Create { change } => create(tx, change).await,
        GroupOp::Add { change } => add(tx, change).await,
        GroupOp::Remove { change } => remove(tx, change).await,
        GroupOp::Send { msg, system } => send(tx, msg, *system).await,
        GroupOp::Read { group, user, seq } => read(tx, group, user, *seq).await,
        GroupOp::Members { group, user } => match is_member(tx, group, user).await? {
            true => Ok(Ok(GroupOutcome::Members {
                group: group.clone(),
                members: members_of(tx, group).await?,
            })),
            false => Ok(Err(GroupRefusal::Unknown)),
        },
        GroupOp::Receipts { id, user } => receipts(tx, id, user).await,
    }
}

/// Locks the group's row for this transaction; its creator, or `None` if there is no group.
async fn lock(tx: &Tx<'_>, group: &str) -> Result<Option<String>, StoreError> {
    let rows = tx
        .query(
            "SELECT created_by FROM groups WHERE id = $1 FOR UPDATE",
            &[&group],
        )
        .await?;
    Ok(rows.first().map(|r| r.try_get(0)).transpose()?)
}

async fn members_of(tx: &Tx<'_>, group: &str) -> Result<Vec<String>, StoreError> {
    let sql = "SELECT user_id FROM members WHERE group_id = $1 ORDER BY user_id";
    let rows = tx.query(sql, &[&group]).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

async fn is_member(tx: &Tx<'_>, group: &str, user: &str) -> Result<bool, StoreError> {
    let sql = "SELECT 1 FROM members WHERE group_id = $1 AND user_id = $2";
    Ok(!tx.query(sql, &[&group, &user]).await?.is_empty())
}

async fn create(tx: &Tx<'_>, ch: &Change) -> Result<Answer, StoreError> {
    let sql = "INSERT INTO groups (id, created_by, created_at) VALUES ($1, $2, $3)
               ON CONFLICT (id) DO NOTHING";
    if tx
        .execute(sql, &[&ch.group, &ch.by, &to_time(ch.at)])
        .await?
        == 0
    {
        return Ok(Err(GroupRefusal::Exists));
    }
    // A refusal rolls the insert back with the transaction.
    let plan = match ch.plan_create() {
        Ok(plan) => plan,
        Err(r) => return Ok(Err(r)),
    };
    let fan = store_event(tx, ch, &plan).await?;
    join(tx, &ch.group, &plan.moving, fan.cseq).await?;
    Ok(Ok(GroupOutcome::Fanned(fan)))
}

async fn add(tx: &Tx<'_>, ch: &Change) -> Result<Answer, StoreError> {
    if lock(tx, &ch.group).await?.is_none() || !is_member(tx, &ch.group, &ch.by).await? {
        return Ok(Err(GroupRefusal::Unknown));
    }
    let plan = match ch.plan_add(members_of(tx, &ch.group).await?) {
        Ok(plan) => plan,
        Err(r) => return Ok(Err(r)),
    };
    let fan = store_event(tx, ch, &plan).await?;
    join(tx, &ch.group, &plan.moving, fan.cseq).await?;
    Ok(Ok(GroupOutcome::Fanned(fan)))
}

async fn remove(tx: &Tx<'_>, ch: &Change) -> Result<Answer, StoreError> {
    let Some(creator) = lock(tx, &ch.group).await? else {
        return Ok(Err(GroupRefusal::Unknown));
    };
    if !is_member(tx, &ch.group, &ch.by).await? {
        return Ok(Err(GroupRefusal::Unknown));
    }
    let plan = match ch.plan_remove(members_of(tx, &ch.group).await?, &creator) {
        Ok(plan) => plan,
        Err(r) => return Ok(Err(r)),
    };
    let fan = store_event(tx, ch, &plan).await?;
    let sql = "DELETE FROM members WHERE group_id = $1 AND user_id = ANY($2)";
    tx.execute(sql, &[&ch.group, &plan.moving]).await?;
    Ok(Ok(GroupOutcome::Fanned(fan)))
}

/// New members have read everything before (and including) the event that added them.
async fn join(tx: &Tx<'_>, group: &str, users: &[String], seq: i64) -> Result<(), StoreError> {
    let sql = "INSERT INTO members (group_id, user_id, joined_seq)
               SELECT $1, u, $3 FROM unnest($2::text[]) AS u";
    tx.execute(sql, &[&group, &users, &seq]).await?;
    let sql = "INSERT INTO reads AS r (user_id, conversation_id, peer, seq)
               SELECT u, $1, $1, $3 FROM unnest($2::text[]) AS u
               ON CONFLICT (user_id, conversation_id)
               DO UPDATE SET seq = GREATEST(r.seq, EXCLUDED.seq)";
    tx.execute(sql, &[&group, &users, &seq]).await?;
    Ok(())
}

async fn store_event(tx: &Tx<'_>, ch: &Change, plan: &Plan) -> Result<Fanout, StoreError> {
    let payload = plan.event.to_payload();
    let mut fan = insert_row(tx, &Row::event(ch, &payload), &plan.to).await?;
    fan.event = Some(plan.event.clone());
    Ok(fan)
}

/// Bumps the conversation and every stream of `to` by one, in (kind, id) order (the bump
/// statement of `batch`), and returns the new values.
async fn bump(
    tx: &Tx<'_>,
    group: &str,
    to: &[String],
) -> Result<BTreeMap<(i16, String), i64>, StoreError> {
    let mut keys: Vec<(i16, &str)> = to.iter().map(|u| (COUNTER_STREAM, u.as_str())).collect();
    keys.push((COUNTER_CONVERSATION, group));
    keys.sort_unstable();
    let kinds: Vec<i16> = keys.iter().map(|k| k.0).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let ones = vec![1i64; keys.len()];
    let rows = tx.query(super::BUMP_SQL, &[&kinds, &ids, &ones]).await?;
    let mut out = BTreeMap::new();
    for r in rows {
        out.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
    }
    Ok(out)
}

/// Stores `row` once with a place in the stream of every user of `to`; events and the
/// sender's own copy are DELIVERED from the start.
async fn insert_row(tx: &Tx<'_>, row: &Row<'_>, to: &[String]) -> Result<Fanout, StoreError> {
    let at = bump(tx, row.group, to).await?;
    let get = |kind: i16, id: &str| {
        (at.get(&(kind, id.to_owned())).copied())
            .ok_or_else(|| StoreError::Corrupt(format!("counter ({kind}, {id}) not bumped")))
    };
    let cseq = get(COUNTER_CONVERSATION, row.group)?;
    let undelivered = match row.event {
        true => 0,
        false => to.iter().filter(|u| *u != row.sender).count() as i64,
    };
    let status = if undelivered == 0 {
        "DELIVERED"
    } else {
        "NONE"
    };
    let sql = "INSERT INTO group_messages (id, group_id, cseq, sender_id, client_msg_id, event,
                   payload, created_at, status, undelivered)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    let event = row.event as i16;
    let created = to_time(row.at);
    let args: [&(dyn ToSql + Sync); 10] = [
        &row.id,
        &row.group,
        &cseq,
        &row.sender,
        &row.client_msg_id,
        &event,
        &row.payload,
        &created,
        &status,
        &undelivered,
    ];
    tx.execute(sql, &args).await?;
    let mut places = Vec::with_capacity(to.len());
    let (mut users, mut poss, mut sts) = (Vec::new(), Vec::new(), Vec::new());
    for u in to {
        let pos = get(COUNTER_STREAM, u)?;
        let st = if row.event || u == row.sender {
            "DELIVERED"
        } else {
            "NONE"
        };
        users.push(u.as_str());
        poss.push(pos);
        sts.push(st);
        places.push((u.clone(), pos));
    }
    let sql = "INSERT INTO deliveries (user_id, pos, message_id, status)
               SELECT u, p, $4, s FROM unnest($1::text[], $2::int8[], $3::text[]) AS x(u, p, s)";
    tx.execute(sql, &[&users, &poss, &sts, &row.id]).await?;
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

/// As `sqlite/group.rs` sends: a member, or the system sender (`system`) to a group that
/// exists, which then takes a place in its own stream.
async fn send(tx: &Tx<'_>, m: &NewMessage, system: bool) -> Result<Answer, StoreError> {
    if lock(tx, &m.reciever_id).await?.is_none() {
        return Ok(Err(GroupRefusal::Unknown));
    }
    let member = is_member(tx, &m.reciever_id, &m.sender_id).await?;
    if !member && !system {
        return Ok(Err(GroupRefusal::Unknown));
    }
    if let Some(cmid) = &m.client_msg_id {
        if let Some(fan) = original(tx, &m.sender_id, cmid).await? {
            return Ok(Ok(GroupOutcome::Fanned(fan)));
        }
    }
    let mut to = members_of(tx, &m.reciever_id).await?;
    if !member {
        to.push(m.sender_id.clone()); // The system sender's own copy.
    }
    let row = Row::message(m);
    Ok(Ok(GroupOutcome::Fanned(insert_row(tx, &row, &to).await?)))
}

async fn original(tx: &Tx<'_>, sender: &str, cmid: &str) -> Result<Option<Fanout>, StoreError> {
    let sql = "SELECT g.id, g.group_id, g.cseq, g.created_at, g.status, d.pos
               FROM group_messages g
               JOIN deliveries d ON d.message_id = g.id AND d.user_id = g.sender_id
               WHERE g.sender_id = $1 AND g.client_msg_id = $2";
    let rows = tx.query(sql, &[&sender, &cmid]).await?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(Fanout {
        id: r.try_get(0)?,
        group: r.try_get(1)?,
        cseq: r.try_get(2)?,
        created_at: to_micros(r.try_get(3)?)?,
        duplicate: Some(parse_status(r.try_get(4)?)?),
        to: vec![(sender.to_owned(), r.try_get(5)?)],
        event: None,
    }))
}

async fn read(tx: &Tx<'_>, group: &str, user: &str, seq: i64) -> Result<Answer, StoreError> {
    if lock(tx, group).await?.is_none() || !is_member(tx, group, user).await? {
        return Ok(Err(GroupRefusal::Unknown));
    }
    let sql =
        "SELECT coalesce((SELECT seq FROM reads WHERE user_id = $1 AND conversation_id = $2), 0),
                      coalesce((SELECT last FROM counters WHERE kind = 2 AND id = $2), 0)";
    let row = tx.query_one(sql, &[&user, &group]).await?;
    let (before, last): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    let seq = seq.min(last);
    if seq <= before {
        return Ok(Ok(GroupOutcome::Read(None)));
    }
    let sql = "UPDATE reads SET seq = $3 WHERE user_id = $1 AND conversation_id = $2";
    tx.execute(sql, &[&user, &group, &seq]).await?;
    let read_by_all = newly_read_by_all(tx, group, user, before, seq).await?;
    let members = members_of(tx, group).await?;
    Ok(Ok(GroupOutcome::Read(Some(GroupRead {
        seq,
        members,
        read_by_all,
    }))))
}

/// As in `sqlite/group.rs`: the group's two lowest receipts decide for every sender.
async fn newly_read_by_all(
    tx: &Tx<'_>,
    group: &str,
    user: &str,
    before: i64,
    seq: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    let sql = "SELECT m.user_id, coalesce(r.seq, 0) AS s FROM members m
               LEFT JOIN reads r ON r.user_id = m.user_id AND r.conversation_id = m.group_id
               WHERE m.group_id = $1 ORDER BY s LIMIT 2";
    let lowest: Vec<(String, i64)> = (tx.query(sql, &[&group]).await?.iter())
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, StoreError>>()?;
    let sql = "SELECT id, sender_id, cseq FROM group_messages
               WHERE group_id = $1 AND NOT read_all AND event = 0 AND cseq > $2 AND cseq <= $3
                 AND sender_id <> $4 ORDER BY cseq";
    let from = before.max(seq - READ_ALL_WINDOW);
    let mut done = Vec::new();
    for r in tx.query(sql, &[&group, &from, &seq, &user]).await? {
        let (id, sender, cseq): (String, String, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        if crate::backend::store::group::others_have_read(&lowest, &sender, cseq) {
            done.push((id, sender));
        }
    }
    let ids: Vec<&str> = done.iter().map(|(id, _)| id.as_str()).collect();
    if !ids.is_empty() {
        let sql = "UPDATE group_messages SET read_all = true WHERE id = ANY($1)";
        tx.execute(sql, &[&ids]).await?;
    }
    Ok(done)
}

async fn receipts(tx: &Tx<'_>, id: &str, user: &str) -> Result<Answer, StoreError> {
    let sql = "SELECT group_id, cseq, status, sender_id FROM group_messages
               WHERE id = $1 AND event = 0";
    let rows = tx.query(sql, &[&id]).await?;
    let Some(r) = rows.first() else {
        return Ok(Err(GroupRefusal::Unknown));
    };
    let (group, cseq, sender): (String, i64, String) =
        (r.try_get(0)?, r.try_get(1)?, r.try_get(3)?);
    let status = parse_status(r.try_get(2)?)?;
    if !is_member(tx, &group, user).await? {
        return Ok(Err(GroupRefusal::Unknown));
    }
    let sql = "SELECT d.user_id, d.status, coalesce(r.seq, 0) >= $3 FROM deliveries d
               LEFT JOIN reads r ON r.user_id = d.user_id AND r.conversation_id = $2
               WHERE d.message_id = $1 AND d.user_id <> $4 ORDER BY d.user_id";
    let mut members = Vec::new();
    for r in tx.query(sql, &[&id, &group, &cseq, &sender]).await? {
        members.push(MemberReceipt {
            user_id: r.try_get(0)?,
            status: parse_status(r.try_get(1)?)?,
            read: r.try_get(2)?,
        });
    }
    Ok(Ok(GroupOutcome::Receipts(Receipts {
        id: id.to_owned(),
        group,
        cseq,
        status,
        members,
    })))
}

/// One status update of a group message, as `sqlite/group.rs::update` applies it. The
/// member's row is updated first: acks of one message by several members in one batch take
/// the message's row lock one after the other.
pub(super) async fn update(tx: &Tx<'_>, u: &StatusUpdate) -> Result<UpdateResult, StoreError> {
    let changed = |rows: Vec<tokio_postgres::Row>| -> Result<UpdateResult, StoreError> {
        Ok(match rows.first() {
            Some(r) => UpdateResult::Changed(StatusChange {
                id: u.id.clone(),
                status: u.status,
                sender_id: r.try_get(0)?,
                reciever_id: r.try_get(1)?,
                at: u.at,
            }),
            None => UpdateResult::Unchanged,
        })
    };
    match (u.status, &u.recipient) {
        (Status::Sent, None) => {
            let sql = "UPDATE group_messages SET status = 'SENT' WHERE id = $1 AND status = 'NONE'
                       RETURNING sender_id, group_id";
            changed(tx.query(sql, &[&u.id]).await?)
        }
        (Status::Delivered, Some(member)) => {
            let sql = "UPDATE deliveries SET status = 'DELIVERED', at = $3
                       WHERE message_id = $1 AND user_id = $2 AND status <> 'DELIVERED'";
            if tx.execute(sql, &[&u.id, member, &to_time(u.at)]).await? == 0 {
                let sql = "SELECT 1 FROM deliveries d JOIN group_messages g ON g.id = d.message_id
                           WHERE d.message_id = $1 AND d.user_id = $2 AND g.sender_id <> $2
                             AND g.event = 0";
                return Ok(match tx.query(sql, &[&u.id, member]).await?.is_empty() {
                    true => UpdateResult::NotRecipient,
                    false => UpdateResult::Unchanged,
                });
            }
            let sql = "UPDATE group_messages SET undelivered = undelivered - 1,
                           status = CASE WHEN undelivered <= 1 THEN 'DELIVERED' ELSE status END
                       WHERE id = $1
                       RETURNING sender_id, group_id, undelivered";
            let rows = tx.query(sql, &[&u.id]).await?;
            let done = rows.first().map(|r| r.try_get::<_, i64>(2)).transpose()? == Some(0);
            match done {
                true => changed(rows),
                false => Ok(UpdateResult::Unchanged),
            }
        }
        _ => Ok(UpdateResult::Unchanged),
    }
}
