//! Group scenarios (`store::group`), run against SQLite and Postgres with the same assertions.

use super::update;
use crate::backend::store::group::{
    Change, Fanout, GroupOp, GroupOutcome, GroupRead, GroupRefusal,
};
use crate::backend::store::{MessageStore, NewMessage, RowKind, UpdateResult};
use crate::protocol::group::MemberReceipt;
use crate::protocol::Status;

const G: &str = "g:team";

fn change(by: &str, members: &[&str], max: usize) -> Change {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Change {
        group: G.into(),
        by: by.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        event_id: format!("g-event-{n}"),
        at: 5,
        max_members: max,
    }
}

fn op(s: &mut impl MessageStore, op: GroupOp) -> Result<GroupOutcome, GroupRefusal> {
    s.group(&op).unwrap()
}

fn fanned(r: Result<GroupOutcome, GroupRefusal>) -> Fanout {
    match r {
        Ok(GroupOutcome::Fanned(f)) => f,
        other => panic!("not stored: {other:?}"),
    }
}

fn group_msg(id: &str, from: &str, cmid: Option<&str>) -> GroupOp {
    GroupOp::Send {
        msg: NewMessage {
            id: id.into(),
            sender_id: from.into(),
            reciever_id: G.into(),
            client_msg_id: cmid.map(Into::into),
            payload: format!("payload of {id}"),
            created_at: 9,
        },
        system: false,
    }
}

fn create(s: &mut impl MessageStore, members: &[&str]) -> Fanout {
    fanned(op(
        s,
        GroupOp::Create {
            change: change("alice", members, 10),
        },
    ))
}

fn places(f: &Fanout) -> Vec<(&str, i64)> {
    f.to.iter().map(|(u, p)| (u.as_str(), *p)).collect()
}

/// A group message is stored once and takes the next place in every member's stream (the
/// same counter as direct messages); v1's replay never shows group rows.
pub(crate) fn a_group_message_takes_a_place_in_every_members_stream(s: &mut impl MessageStore) {
    s.commit(&[super::msg("d1", "bob", None)], &[]).unwrap();
    let made = create(s, &["bob", "carol", "bob"]);
    assert_eq!(made.cseq, 1);
    assert_eq!(places(&made), [("alice", 2), ("bob", 2), ("carol", 1)]);
    let event = made.event.clone().unwrap();
    assert_eq!((event.event.as_str(), event.members.len()), ("created", 3));
    let again = op(
        s,
        GroupOp::Create {
            change: change("bob", &[], 10),
        },
    );
    assert_eq!(again, Err(GroupRefusal::Exists));
    let sent = fanned(op(s, group_msg("g-1", "alice", Some("k"))));
    assert_eq!((sent.cseq, sent.duplicate), (2, None));
    assert_eq!(places(&sent), [("alice", 3), ("bob", 3), ("carol", 2)]);
    let repeat = fanned(op(s, group_msg("g-1b", "alice", Some("k"))));
    assert_eq!((repeat.id.as_str(), repeat.cseq), ("g-1", 2));
    assert_eq!(
        (repeat.duplicate, places(&repeat)),
        (Some(Status::None), vec![("alice", 3)])
    );
    assert_eq!(
        op(s, group_msg("g-2", "mallory", None)),
        Err(GroupRefusal::Unknown)
    );
    assert_eq!(s.status_of("g-1").unwrap(), Some(Status::None));
    assert_eq!(
        s.status_of("g-1b").unwrap(),
        None,
        "the repeat stored nothing"
    );
    let bob = s.history("bob", 0, 10).unwrap().messages;
    let kinds: Vec<_> = bob.iter().map(|m| (m.seq, m.kind, m.id.as_str())).collect();
    assert_eq!(kinds[0], (1, RowKind::Direct, "d1"));
    assert_eq!(kinds[2], (3, RowKind::Group, "g-1"));
    assert_eq!((kinds[1].0, kinds[1].1), (2, RowKind::GroupEvent));
    assert_eq!(
        (bob[2].reciever_id.as_str(), bob[2].cseq, bob[2].status),
        (G, 2, Status::None)
    );
    let alice = s.history("alice", 2, 10).unwrap().messages;
    assert_eq!(
        (alice[0].id.as_str(), alice[0].status),
        ("g-1", Status::Delivered)
    );
    let carol = s.history("carol", 1, 10).unwrap().messages;
    assert_eq!(carol.iter().map(|m| m.seq).collect::<Vec<_>>(), [2]);
    let v1: Vec<String> = s
        .pending("bob", 0, 10)
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(v1, ["d1"]);
    let next = s.commit(&[super::msg("d2", "bob", None)], &[]).unwrap().0;
    assert!(
        matches!(next[0], crate::backend::store::InsertResult::Inserted { at } if at.rpos == 4 && at.spos == 4)
    );
}

/// The application's system sender (server API) sends to a group it is not a member of:
/// every member takes a place and must confirm, its own copy is DELIVERED from the start (so
/// a repeat of its key answers the first message), and only the flag lets a non-member in.
pub(crate) fn the_system_sender_reaches_a_group_it_is_not_in(s: &mut impl MessageStore) {
    create(s, &["bob"]);
    let system = |id: &str, cmid: Option<&str>, flag: bool| match group_msg(id, "system", cmid) {
        GroupOp::Send { msg, .. } => GroupOp::Send { msg, system: flag },
        _ => unreachable!(),
    };
    let sent = fanned(op(s, system("g-s1", Some("k"), true)));
    assert_eq!(places(&sent), [("alice", 2), ("bob", 2), ("system", 1)]);
    let repeat = fanned(op(s, system("g-s1b", Some("k"), true)));
    assert_eq!(
        (repeat.id.as_str(), repeat.duplicate),
        ("g-s1", Some(Status::None))
    );
    assert_eq!(
        op(s, system("g-s2", None, false)),
        Err(GroupRefusal::Unknown)
    );
    let elsewhere = match system("g-s3", None, true) {
        GroupOp::Send { mut msg, system } => {
            msg.reciever_id = "g:none".into();
            GroupOp::Send { msg, system }
        }
        _ => unreachable!(),
    };
    assert_eq!(
        op(s, elsewhere),
        Err(GroupRefusal::Unknown),
        "no such group"
    );
    s.commit(&[], &[update("g-s1", Status::Delivered, Some("bob"))])
        .unwrap();
    assert_eq!(
        s.status_of("g-s1").unwrap(),
        Some(Status::None),
        "alice has not"
    );
    s.commit(&[], &[update("g-s1", Status::Delivered, Some("alice"))])
        .unwrap();
    assert_eq!(s.status_of("g-s1").unwrap(), Some(Status::Delivered));
    let members = op(
        s,
        GroupOp::Members {
            group: G.into(),
            user: "system".into(),
        },
    );
    assert_eq!(
        members,
        Err(GroupRefusal::Unknown),
        "sending made it no member"
    );
}

/// SENT is the pod's; DELIVERED comes once every member but the sender confirmed; only a
/// member (not the sender) may confirm.
pub(crate) fn group_statuses_aggregate_over_the_members(s: &mut impl MessageStore) {
    create(s, &["bob", "carol"]);
    fanned(op(s, group_msg("g-1", "alice", None)));
    let ups = [
        update("g-1", Status::Sent, None),
        update("g-1", Status::Delivered, Some("bob")),
        update("g-1", Status::Delivered, Some("bob")),
        update("g-1", Status::Delivered, Some("mallory")),
        update("g-1", Status::Delivered, Some("alice")),
    ];
    let (_, r) = s.commit(&[], &ups).unwrap();
    assert!(matches!(&r[0], UpdateResult::Changed(c)
        if c.status == Status::Sent && c.sender_id == "alice" && c.reciever_id == G));
    assert_eq!(
        r[1..],
        [
            UpdateResult::Unchanged,
            UpdateResult::Unchanged,
            UpdateResult::NotRecipient,
            UpdateResult::NotRecipient
        ]
    );
    assert_eq!(s.status_of("g-1").unwrap(), Some(Status::Sent));
    let (_, r) = s
        .commit(&[], &[update("g-1", Status::Delivered, Some("carol"))])
        .unwrap();
    assert!(matches!(&r[0], UpdateResult::Changed(c) if c.status == Status::Delivered));
    assert_eq!(s.status_of("g-1").unwrap(), Some(Status::Delivered));
    let asked = GroupOp::Receipts {
        id: "g-1".into(),
        user: "bob".into(),
    };
    let Ok(GroupOutcome::Receipts(r)) = op(s, asked) else {
        panic!("no receipts")
    };
    assert_eq!(
        (r.group.as_str(), r.cseq, r.status),
        (G, 2, Status::Delivered)
    );
    let member = |u: &str| MemberReceipt {
        user_id: u.into(),
        status: Status::Delivered,
        read: false,
    };
    assert_eq!(r.members, [member("bob"), member("carol")]);
    let stranger = GroupOp::Receipts {
        id: "g-1".into(),
        user: "mallory".into(),
    };
    assert_eq!(op(s, stranger), Err(GroupRefusal::Unknown));
}

fn read(s: &mut impl MessageStore, user: &str, seq: i64) -> Option<GroupRead> {
    let asked = GroupOp::Read {
        group: G.into(),
        user: user.into(),
        seq,
    };
    match op(s, asked) {
        Ok(GroupOutcome::Read(r)) => r,
        other => panic!("read refused: {other:?}"),
    }
}

fn read_by_all(r: Option<GroupRead>) -> Vec<(String, String)> {
    r.expect("moved").read_by_all
}

/// Receipts only move forward and stop at the last seq; a message is READ once every member
/// but its sender read it, announced once.
pub(crate) fn group_reads_announce_read_by_all_once(s: &mut impl MessageStore) {
    create(s, &["bob", "carol"]);
    fanned(op(s, group_msg("g-1", "alice", None)));
    fanned(op(s, group_msg("g-2", "bob", None)));
    let r = read(s, "bob", 9).expect("moved");
    assert_eq!((r.seq, r.read_by_all.len(), r.members.len()), (3, 0, 3));
    assert_eq!(read(s, "bob", 2), None, "backwards");
    let pair = |id: &str, by: &str| (id.to_string(), by.to_string());
    assert_eq!(read_by_all(read(s, "carol", 3)), [pair("g-1", "alice")]);
    assert_eq!(read_by_all(read(s, "alice", 3)), [pair("g-2", "bob")]);
    let stranger = GroupOp::Read {
        group: G.into(),
        user: "mallory".into(),
        seq: 1,
    };
    assert_eq!(op(s, stranger), Err(GroupRefusal::Unknown));
    let seen: Vec<(String, i64)> = (s.reads_of("carol").unwrap().into_iter())
        .filter(|r| r.conversation_id == G)
        .map(|r| (r.user_id, r.seq))
        .collect();
    assert_eq!(
        seen,
        [("alice".into(), 3), ("bob".into(), 3), ("carol".into(), 3)]
    );
}

/// Membership changes are events with their own seq, reach the members (and the removed),
/// and are checked: size, creator-only removal, no-op changes.
pub(crate) fn membership_changes_are_events_and_checked(s: &mut impl MessageStore) {
    fanned(op(
        s,
        GroupOp::Create {
            change: change("alice", &["bob"], 3),
        },
    ));
    let added = fanned(op(
        s,
        GroupOp::Add {
            change: change("bob", &["carol"], 3),
        },
    ));
    assert_eq!(added.cseq, 2);
    assert_eq!(added.event.clone().unwrap().members, ["carol"]);
    assert_eq!(places(&added).len(), 3);
    let full = op(
        s,
        GroupOp::Add {
            change: change("bob", &["dave"], 3),
        },
    );
    assert_eq!(full, Err(GroupRefusal::Full));
    let none = op(
        s,
        GroupOp::Add {
            change: change("bob", &["carol"], 3),
        },
    );
    assert_eq!(none, Err(GroupRefusal::NoChange));
    let denied = op(
        s,
        GroupOp::Remove {
            change: change("bob", &["carol"], 3),
        },
    );
    assert_eq!(denied, Err(GroupRefusal::NotAllowed));
    let left = fanned(op(
        s,
        GroupOp::Remove {
            change: change("carol", &["carol"], 3),
        },
    ));
    assert_eq!(left.event.clone().unwrap().event, "left");
    assert!(
        places(&left).iter().any(|(u, _)| *u == "carol"),
        "told of it"
    );
    assert_eq!(
        op(s, group_msg("g-9", "carol", None)),
        Err(GroupRefusal::Unknown)
    );
    let removed = fanned(op(
        s,
        GroupOp::Remove {
            change: change("alice", &["bob"], 3),
        },
    ));
    assert_eq!(
        removed.event.unwrap(),
        crate::protocol::group::GroupEvent {
            event: "removed".into(),
            members: vec!["bob".into()],
        }
    );
    let asked = GroupOp::Members {
        group: G.into(),
        user: "alice".into(),
    };
    assert_eq!(
        op(s, asked),
        Ok(GroupOutcome::Members {
            group: G.into(),
            members: vec!["alice".into()]
        })
    );
    let stranger = GroupOp::Members {
        group: G.into(),
        user: "bob".into(),
    };
    assert_eq!(op(s, stranger), Err(GroupRefusal::Unknown));
    // A member added later has read what came before: it holds back no READ of it.
    fanned(op(
        s,
        GroupOp::Add {
            change: change("alice", &["erin"], 3),
        },
    ));
    let sent = fanned(op(s, group_msg("g-10", "alice", None)));
    let pair = ("g-10".to_string(), "alice".to_string());
    assert_eq!(read_by_all(read(s, "erin", sent.cseq)), [pair]);
}

/// Last-seen times only move forward; presence is visible to users who share a direct
/// conversation (one with a message) or a group, and to oneself, in the order asked.
pub(crate) fn presence_is_visible_only_to_peers(s: &mut impl MessageStore) {
    s.commit(&[super::msg("d1", "bob", None)], &[]).unwrap(); // alice and bob talk.
    create(s, &["carol"]); // alice and carol share g:team.
    s.record_seen(&[("bob".into(), 50), ("carol".into(), 70), ("bob".into(), 40)])
        .unwrap();
    s.record_seen(&[("bob".into(), 30)]).unwrap();
    let asked: Vec<String> = ["mallory", "carol", "alice", "bob"]
        .map(Into::into)
        .to_vec();
    let seen = s.peers_seen("alice", &asked).unwrap();
    let want = [("carol", Some(70)), ("alice", None), ("bob", Some(50))];
    let want: Vec<(String, Option<i64>)> = want.iter().map(|(u, t)| (u.to_string(), *t)).collect();
    assert_eq!(
        seen, want,
        "mallory shares nothing with alice; bob's time never goes back"
    );
    let strangers = s
        .peers_seen("mallory", &["bob".into(), "carol".into()])
        .unwrap();
    assert!(strangers.is_empty());
    let peer = s
        .peers_seen("bob", &["carol".into(), "alice".into()])
        .unwrap();
    assert_eq!(
        peer,
        [("alice".to_string(), None)],
        "bob and carol share nothing"
    );
}

/// Retention deletes group rows every member has once they are old, marks each member's
/// stream pruned through them, keeps the rest, and never hands a position out twice.
pub(crate) fn retention_deletes_old_group_rows_every_member_has(s: &mut impl MessageStore) {
    create(s, &["bob"]); // The event (created at 5): bob's pos 1.
    fanned(op(s, group_msg("g-1", "alice", None))); // bob's pos 2, created at 9.
    fanned(op(s, group_msg("g-2", "alice", None))); // bob's pos 3, never confirmed.
    s.commit(&[], &[update("g-1", Status::Delivered, Some("bob"))])
        .unwrap();
    let young = s.prune(9, 0, 10).unwrap();
    assert_eq!(young.deleted, 1, "only the event is older than 9");
    let round = s.prune(50, 0, 10).unwrap();
    assert_eq!(round.deleted, 1, "g-1; g-2 waits for bob");
    let bob = s.history("bob", 0, 10).unwrap();
    assert_eq!(bob.pruned_through, 2);
    let kept: Vec<&str> = bob.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(kept, ["g-2"]);
    assert_eq!(s.history("alice", 0, 10).unwrap().pruned_through, 2);
    let next = fanned(op(s, group_msg("g-3", "alice", None)));
    assert_eq!(
        places(&next),
        [("alice", 4), ("bob", 4)],
        "no position handed out twice"
    );
    assert_eq!(next.cseq, 4);
}

/// Operations that queued together are answered index for index, in order, a refusal among
/// them changing nothing for the others.
pub(crate) fn queued_group_operations_are_answered_in_order(s: &mut impl MessageStore) {
    create(s, &["bob"]);
    let ops = [
        group_msg("g-1", "alice", None),
        group_msg("g-x", "mallory", None),
        GroupOp::Add {
            change: change("bob", &["carol"], 10),
        },
        group_msg("g-2", "bob", None),
        GroupOp::Read {
            group: G.into(),
            user: "carol".into(),
            seq: 9,
        },
    ];
    let answers: Vec<_> = (s.group_batch(&ops).into_iter())
        .map(Result::unwrap)
        .collect();
    let seq = |a: &Result<GroupOutcome, GroupRefusal>| match a {
        Ok(GroupOutcome::Fanned(f)) => f.cseq,
        other => panic!("not stored: {other:?}"),
    };
    assert_eq!(
        (seq(&answers[0]), seq(&answers[2]), seq(&answers[3])),
        (2, 3, 4)
    );
    assert_eq!(answers[1], Err(GroupRefusal::Unknown));
    let Ok(GroupOutcome::Fanned(g2)) = &answers[3] else {
        unreachable!()
    };
    assert_eq!(places(g2).len(), 3, "carol, added just before, gets g-2");
    assert!(matches!(&answers[4], Ok(GroupOutcome::Read(Some(r))) if r.seq == 4));
    assert_eq!(s.status_of("g-x").unwrap(), None);
    let carol: Vec<i64> = s
        .history("carol", 0, 10)
        .unwrap()
        .messages
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(carol, [1, 2], "the added event and g-2");
}
