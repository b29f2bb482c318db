//! Scenarios every [`MessageStore`] must pass with identical assertions: each backend's tests
//! run them on a fresh store, so the backends cannot drift apart. The SQLite runs are at the
//! bottom; the Postgres ones in `postgres/tests.rs`, which also compares both backends on a
//! generated workload ([`workload`]).

use super::StuckAfter;
use super::{InsertResult, MessageStore, NewMessage, PendingMessage, StatusUpdate, UpdateResult};
use crate::protocol::Status;

mod api;
mod groups;
mod workload;
pub(crate) use api::*;
pub(crate) use groups::*;
pub(crate) use workload::transcript;

pub(crate) fn msg(id: &str, to: &str, cmid: Option<&str>) -> NewMessage {
    NewMessage {
        id: id.into(),
        sender_id: "alice".into(),
        reciever_id: to.into(),
        client_msg_id: cmid.map(Into::into),
        payload: format!("payload of {id}"),
        created_at: 1,
    }
}

pub(crate) fn update(id: &str, status: Status, recipient: Option<&str>) -> StatusUpdate {
    StatusUpdate {
        id: id.into(),
        status,
        recipient: recipient.map(Into::into),
        at: 7,
    }
}

fn ids(v: Vec<PendingMessage>) -> Vec<String> {
    v.into_iter().map(|m| m.id).collect()
}

fn changed(r: &UpdateResult, status: Status) -> bool {
    matches!(r, UpdateResult::Changed(c) if c.status == status)
}

pub(crate) fn inserts_dedupe_and_replay_in_order(s: &mut impl MessageStore) {
    let batch = [
        msg("m1", "bob", Some("k")),
        msg("m2", "bob", None),
        msg("m3", "bob", Some("k")),
    ];
    let (ins, _) = s.commit(&batch, &[]).unwrap();
    assert!(matches!(ins[0], InsertResult::Inserted { .. }));
    assert!(matches!(ins[1], InsertResult::Inserted { .. }));
    assert_eq!(ins[2], repeat_of("m1", Status::None, "bob", &ins[0]));
    let p = s.pending("bob", 0, 10).unwrap();
    assert_eq!(ids(p.clone()), ["m1", "m2"]);
    assert!(p[0].seq < p[1].seq);
    assert_eq!(s.pending("bob", p[0].seq, 10).unwrap().len(), 1);
}

pub(crate) fn statuses_only_move_forward_and_acks_check_the_recipient(s: &mut impl MessageStore) {
    s.commit(&[msg("m1", "bob", None)], &[]).unwrap();
    let updates = [
        update("m1", Status::Delivered, Some("mallory")),
        update("m1", Status::Sent, None),
        update("m1", Status::Delivered, Some("bob")),
        update("m1", Status::Sent, None),
        update("m1", Status::Delivered, Some("bob")),
        update("nope", Status::Delivered, Some("bob")),
    ];
    let (_, ups) = s.commit(&[], &updates).unwrap();
    assert_eq!(ups[0], UpdateResult::NotRecipient);
    assert!(matches!(&ups[1], UpdateResult::Changed(c)
        if c.status == Status::Sent && c.sender_id == "alice" && c.reciever_id == "bob"));
    assert!(changed(&ups[2], Status::Delivered));
    assert_eq!(ups[3], UpdateResult::Unchanged);
    assert_eq!(ups[4], UpdateResult::Unchanged);
    assert_eq!(ups[5], UpdateResult::NotRecipient);
    assert_eq!(s.status_of("m1").unwrap(), Some(Status::Delivered));
    assert!(s.pending("bob", 0, 10).unwrap().is_empty());
}

/// The redrive's claims: stuck NONE and SENT messages once per window, never DELIVERED
/// ones, parked ones only once their age has doubled, oldest first, up to the limit of
/// each status.
pub(crate) fn claims_take_stuck_messages_once_and_parked_later(s: &mut impl MessageStore) {
    let mut young = msg("young", "bob", None);
    young.created_at = 100;
    let batch = [
        msg("old-none", "bob", None),
        msg("old-sent", "bob", None),
        msg("done", "bob", None),
        msg("parked", "carol", None),
        young,
    ];
    s.commit(&batch, &[]).unwrap();
    let updates = [
        update("old-sent", Status::Sent, None),
        update("done", Status::Delivered, None),
    ];
    s.commit(&[], &updates).unwrap();
    // Parked at 150 (created at 1): out of the redrive until 299, so due after 299 + 50.
    s.park(&["parked".to_owned()], 150).unwrap();
    let after = |none, sent| StuckAfter { none, sent };
    // created_at = 1 for msg(), SENT at 7: at 60, NONE for 50 means created before 10.
    assert_eq!(
        ids(s.claim_stuck(60, after(50, 1000), 10).unwrap()),
        ["old-none"]
    );
    // Claimed at 60: a second sweep (another pod's) finds nothing until 110.
    assert!(s.claim_stuck(60, after(50, 1000), 10).unwrap().is_empty());
    assert!(s.claim_stuck(110, after(50, 1000), 10).unwrap().is_empty());
    // At 200 with both windows 50: old-sent (SENT at 7), old-none (claimed at 60), then
    // young (created at 100); the limit holds per status.
    let first = ids(s.claim_stuck(200, after(50, 50), 1).unwrap());
    assert_eq!(first, ["old-sent", "old-none"]);
    assert_eq!(
        ids(s.claim_stuck(200, after(50, 50), 10).unwrap()),
        ["young"]
    );
    let at_340 = ids(s.claim_stuck(340, after(50, 50), 10).unwrap());
    assert_eq!(at_340.len(), 3, "{at_340:?}");
    assert!(!at_340.contains(&"parked".to_owned()), "still parked");
    assert_eq!(
        ids(s.claim_stuck(360, after(50, 50), 10).unwrap()),
        ["parked"]
    );
    let far = 4_000_000_000_000_000;
    let all = ids(s.claim_stuck(far, after(50, 50), 10).unwrap());
    assert_eq!(all, ["old-none", "old-sent", "young", "parked"]);
}

/// `open` opens the same database each time.
pub(crate) fn reopening_keeps_data<S: MessageStore>(mut open: impl FnMut() -> S) {
    let mut s = open();
    s.commit(&[msg("m1", "bob", None)], &[]).unwrap();
    drop(s);
    let mut s = open();
    assert_eq!(s.status_of("m1").unwrap(), Some(Status::None));
    assert_eq!(s.status_of("m2").unwrap(), None);
}

/// Timestamps are microseconds in the trait; a backend must neither round nor shift them.
pub(crate) fn timestamps_round_trip_to_the_microsecond(s: &mut impl MessageStore) {
    const NOW: i64 = 1_700_000_000_123_457;
    let times = [
        0,
        1,
        -1,
        NOW,
        NOW + 1,
        4_102_444_799_999_999,
        -62_135_596_800_000_001,
    ];
    let batch: Vec<NewMessage> = (0..times.len())
        .map(|i| NewMessage {
            created_at: times[i],
            ..msg(&format!("t{i}"), "bob", None)
        })
        .collect();
    s.commit(&batch, &[]).unwrap();
    let got: Vec<i64> = s
        .pending("bob", 0, 100)
        .unwrap()
        .iter()
        .map(|m| m.created_at)
        .collect();
    assert_eq!(got, times);
    // created_at boundaries: "stuck since before" is strict, to the microsecond.
    let never = StuckAfter {
        none: 0,
        sent: i64::MAX / 2,
    };
    let mut claimed = ids(s.claim_stuck(NOW, never, 100).unwrap());
    claimed.sort();
    assert_eq!(claimed, ["t0", "t1", "t2", "t6"]);
    // Those four were claimed at NOW, so at NOW + 1 they and t3 (created at NOW) are due.
    assert_eq!(s.claim_stuck(NOW + 1, never, 100).unwrap().len(), 5);
    // A SENT message is not claimed before its own window; the one from 2099 is, at its
    // instant plus one.
    s.commit(&[], &[update("t0", Status::Sent, None)]).unwrap();
    let mut claimed = ids(s.claim_stuck(times[5] + 1, never, 100).unwrap());
    claimed.sort();
    assert_eq!(claimed, ["t1", "t2", "t3", "t4", "t5", "t6"]);
}

/// A full group commit (the writer's default `batch_max` is 2048) in one call each way.
pub(crate) fn large_batches_commit_in_one_call(s: &mut impl MessageStore) {
    const N: usize = 2000;
    let batch: Vec<NewMessage> = (0..N)
        .map(|i| msg(&format!("big{i:04}"), "bob", Some(&format!("c{i}"))))
        .collect();
    let (ins, _) = s.commit(&batch, &[]).unwrap();
    let seqs: Vec<i64> = ins
        .iter()
        .map(|r| match r {
            InsertResult::Inserted { at } => at.rpos,
            other => panic!("not inserted: {other:?}"),
        })
        .collect();
    let expected: Vec<i64> = (1..=N as i64).collect();
    assert_eq!(seqs, expected, "positions follow batch order, gapless");
    let pending = s.pending("bob", 0, 5000).unwrap();
    assert_eq!(
        ids(pending),
        batch.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
    );
    let updates: Vec<StatusUpdate> = batch
        .iter()
        .enumerate()
        .map(|(i, m)| match i % 2 {
            0 => update(&m.id, Status::Sent, None),
            _ => update(&m.id, Status::Delivered, Some("bob")),
        })
        .collect();
    let (_, ups) = s.commit(&[], &updates).unwrap();
    assert!(ups.iter().all(|u| matches!(u, UpdateResult::Changed(_))));
    assert_eq!(s.pending("bob", 0, 5000).unwrap().len(), N / 2);
}

/// Inserts come before updates within a batch, updates apply in order, and a duplicate
/// reports its original's status as it was before this batch's updates.
pub(crate) fn one_batch_mixes_inserts_and_updates_in_order(s: &mut impl MessageStore) {
    let (old, _) = s.commit(&[msg("old", "bob", Some("k-old"))], &[]).unwrap();
    let inserts = [
        msg("a", "bob", Some("k")),
        msg("b", "bob", Some("k")),
        msg("c", "carol", None),
        msg("again", "bob", Some("k-old")),
    ];
    let updates = [
        update("old", Status::Sent, None),
        update("a", Status::Sent, None),
        update("c", Status::Delivered, Some("mallory")),
        update("a", Status::Delivered, Some("bob")),
        update("b", Status::Sent, None),
        update("a", Status::None, Some("mallory")),
        update("c", Status::Sent, Some("carol")),
        update("a", Status::Sent, None),
        update("c", Status::Delivered, None),
    ];
    let (ins, ups) = s.commit(&inserts, &updates).unwrap();
    let dup = |id: &str, first: &InsertResult| repeat_of(id, Status::None, "bob", first);
    assert_eq!(
        (ins[1].clone(), ins[3].clone()),
        (dup("a", &ins[0]), dup("old", &old[0]))
    );
    assert!(changed(&ups[0], Status::Sent) && changed(&ups[1], Status::Sent));
    assert_eq!(ups[2], UpdateResult::NotRecipient);
    assert!(changed(&ups[3], Status::Delivered));
    assert_eq!(ups[4], UpdateResult::Unchanged, "b was never stored");
    assert_eq!(ups[5], UpdateResult::Unchanged, "a move to NONE is no move");
    assert!(changed(&ups[6], Status::Sent) && changed(&ups[8], Status::Delivered));
    assert_eq!(ups[7], UpdateResult::Unchanged);
    let first = ins[0].clone();
    let (ins, _) = s.commit(&[msg("late", "bob", Some("k"))], &[]).unwrap();
    assert_eq!(ins[0], repeat_of("a", Status::Delivered, "bob", &first));
}

/// What a repeat of the message stored as `stored` (for `to`) answers: its id, its status
/// now, and where it stands, so the repeated `accepted` names the same positions.
fn repeat_of(id: &str, status: Status, to: &str, stored: &InsertResult) -> InsertResult {
    let InsertResult::Inserted { at } = stored else {
        panic!("{id} was not inserted: {stored:?}");
    };
    InsertResult::Duplicate {
        id: id.into(),
        status,
        original: Some(super::Original {
            reciever_id: to.into(),
            at: *at,
        }),
    }
}

fn from(sender: &str, id: &str, to: &str, cmid: Option<&str>) -> NewMessage {
    NewMessage {
        sender_id: sender.into(),
        ..msg(id, to, cmid)
    }
}

fn at(rpos: i64, spos: i64, cseq: i64) -> InsertResult {
    InsertResult::Inserted {
        at: super::Positions { rpos, spos, cseq },
    }
}

/// Protocol v2's positions: one gapless stream per user over what they receive and send,
/// one gapless sequence per conversation; repeats take no position, inside a batch or across.
pub(crate) fn streams_and_conversations_are_numbered_without_holes(s: &mut impl MessageStore) {
    let batch = [
        from("alice", "a1", "bob", Some("k")),
        from("bob", "b1", "alice", None),
        from("alice", "again", "bob", Some("k")),
        from("alice", "self", "alice", None),
        from("carol", "c1", "bob", None),
    ];
    let (ins, _) = s.commit(&batch, &[]).unwrap();
    let dup = repeat_of("a1", Status::None, "bob", &at(1, 1, 1));
    assert_eq!(
        ins,
        [at(1, 1, 1), at(2, 2, 2), dup, at(3, 3, 1), at(3, 1, 1)]
    );
    let (ins, _) = s
        .commit(
            &[
                from("alice", "x", "bob", Some("k")),
                from("bob", "b2", "alice", None),
            ],
            &[],
        )
        .unwrap();
    assert_eq!(ins[0], repeat_of("a1", Status::None, "bob", &at(1, 1, 1)));
    assert_eq!(ins[1], at(4, 4, 3), "the repeat took no position");

    let whole = positions(s, "alice", 0);
    let expect = [(1, 1, "a1"), (2, 2, "b1"), (3, 1, "self"), (4, 3, "b2")];
    assert_eq!(whole, expect.map(|(p, c, id)| (p, c, id.to_string())));
    assert_eq!(
        positions(s, "alice", 2),
        whole[2..].to_vec(),
        "after a cursor"
    );
    let bob = positions(s, "bob", 0);
    let ids: Vec<&str> = bob.iter().map(|(_, _, id)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["a1", "b1", "c1", "b2"],
        "received and sent, in bob's order"
    );
    let page = s.history("bob", 0, 2).unwrap();
    assert_eq!(page.messages.len(), 2, "limit holds across both sides");
    assert_eq!(page.pruned_through, 0);
}

/// Retention walks the table window by window, deletes only DELIVERED messages older than the
/// cutoff, and each stream remembers how far it was pruned.
pub(crate) fn retention_deletes_old_delivered_messages_and_marks_the_streams(
    s: &mut impl MessageStore,
) {
    let aged = |sender: &str, id: &str, to: &str, t: i64| NewMessage {
        created_at: t,
        ..from(sender, id, to, None)
    };
    let batch = [
        aged("alice", "old1", "bob", 1),
        aged("alice", "old2", "bob", 2),
        aged("alice", "undelivered", "bob", 3),
        aged("carol", "old4", "alice", 4),
        aged("alice", "young", "bob", 100),
    ];
    let acks = ["old1", "old2", "old4"].map(|id| update(id, Status::Delivered, None));
    s.commit(&batch, &acks).unwrap();
    let first = s.prune(50, 0, 2).unwrap();
    assert_eq!((first.deleted, first.reached_recent), (2, false));
    let second = s.prune(50, first.scanned_through.unwrap(), 2).unwrap();
    assert_eq!((second.deleted, second.reached_recent), (1, false));
    let third = s.prune(50, second.scanned_through.unwrap(), 2).unwrap();
    assert_eq!((third.deleted, third.reached_recent), (0, true));
    let end = s.prune(50, third.scanned_through.unwrap(), 2).unwrap();
    assert_eq!(end, super::PruneRound::default(), "past the last row");

    let bob = s.history("bob", 0, 10).unwrap();
    assert_eq!(bob.pruned_through, 2);
    let kept: Vec<&str> = bob.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(kept, ["undelivered", "young"]);
    let alice = s.history("alice", 0, 10).unwrap();
    assert_eq!(alice.pruned_through, 4, "old4 was alice's fourth");
    assert_eq!(positions(s, "alice", 0).len(), 2);
    assert_eq!(s.history("carol", 0, 10).unwrap().pruned_through, 1);
    assert_eq!(
        ids(s.pending("bob", 0, 10).unwrap()),
        ["undelivered", "young"]
    );
}

/// Read receipts only move forward and never past the conversation's last message.
/// A sender learns the status of their own messages only, in the order asked.
pub(crate) fn a_sender_reads_the_statuses_of_its_own_messages(s: &mut impl MessageStore) {
    let batch = [
        from("alice", "a1", "bob", None),
        from("alice", "a2", "bob", None),
        from("carol", "c1", "bob", None),
    ];
    s.commit(&batch, &[update("a2", Status::Delivered, None)])
        .unwrap();
    let ask = ["a2", "c1", "nope", "a1"].map(String::from);
    let got = s.sent_statuses("alice", &ask).unwrap();
    let want = [("a2", Status::Delivered), ("a1", Status::None)];
    assert_eq!(got, want.map(|(i, st)| (i.to_string(), st)));
    assert_eq!(
        s.sent_statuses("bob", &ask).unwrap(),
        [],
        "bob sent none of them"
    );
}

/// The undelivered sweep looks at each message once, in insertion order, stops at the first
/// one too young, and reports only those below DELIVERED; what existed before its first
/// round is never reported.
pub(crate) fn the_undelivered_sweep_reports_each_message_once(s: &mut impl MessageStore) {
    let aged = |id: &str, to: &str, t: i64| NewMessage {
        created_at: t,
        ..from("alice", id, to, None)
    };
    s.commit(&[aged("before", "bob", 1)], &[]).unwrap();
    let start = s.undelivered(1_000, 10).unwrap();
    assert_eq!(
        start,
        super::UndeliveredRound::default(),
        "the first round only starts"
    );
    let batch = [
        aged("late", "bob", 10),
        aged("acked", "bob", 11),
        aged("sent", "carol", 12),
        aged("young", "bob", 100),
        aged("older-but-after", "bob", 13),
    ];
    s.commit(&batch, &[]).unwrap();
    s.commit(&[], &[update("acked", Status::Delivered, None)])
        .unwrap();
    s.commit(&[], &[update("sent", Status::Sent, None)])
        .unwrap();
    let first = s.undelivered(50, 2).unwrap();
    assert_eq!(first.looked_at, 2);
    let got: Vec<(&str, &str, Status, i64)> = (first.found.iter())
        .map(|u| {
            (
                u.id.as_str(),
                u.reciever_id.as_str(),
                u.status,
                u.created_at,
            )
        })
        .collect();
    assert_eq!(
        got,
        [("late", "bob", Status::None, 10)],
        "two looked at, one delivered"
    );
    let second = s.undelivered(50, 10).unwrap();
    let ids =
        |r: &super::UndeliveredRound| r.found.iter().map(|u| u.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&second),
        ["sent"],
        "stops at the first row younger than the cutoff"
    );
    assert_eq!(
        (second.looked_at, second.found[0].status),
        (1, Status::Sent)
    );
    let none = s.undelivered(50, 10).unwrap();
    assert_eq!(
        none,
        super::UndeliveredRound::default(),
        "nothing is looked at twice"
    );
    s.commit(&[], &[update("young", Status::Delivered, None)])
        .unwrap();
    assert_eq!(ids(&s.undelivered(1_000, 10).unwrap()), ["older-but-after"]);
}

pub(crate) fn reads_move_forward_only_and_stop_at_the_last_message<S: MessageStore>(s: &mut S) {
    let conv = crate::protocol::direct_conversation_id("alice", "bob");
    let state = |user: &str, seq| super::ReadState {
        conversation_id: conv.clone(),
        user_id: user.into(),
        seq,
    };
    let read = |s: &mut S, user: &str, seq| {
        let peer = if user == "bob" { "alice" } else { "bob" };
        s.mark_read(&state(user, seq), peer).unwrap()
    };
    assert_eq!(read(s, "bob", 1), None, "no messages yet");
    let batch = ["r1", "r2", "r3"].map(|id| msg(id, "bob", None));
    s.commit(&batch, &[]).unwrap();
    assert_eq!(read(s, "bob", 2), Some(2));
    assert_eq!(read(s, "bob", 1), None, "backwards");
    assert_eq!(read(s, "bob", 2), None, "the same");
    assert_eq!(read(s, "bob", 99), Some(3), "clamped");
    assert_eq!(read(s, "bob", 5), None);
    assert_eq!(read(s, "alice", 1), Some(1), "per user");
    let both = vec![state("alice", 1), state("bob", 3)];
    assert_eq!(s.reads_of("bob").unwrap(), both, "its own and its peer's");
    assert_eq!(s.reads_of("alice").unwrap(), both);
    assert_eq!(s.reads_of("carol").unwrap(), []);
}

fn positions(s: &mut impl MessageStore, user: &str, after: i64) -> Vec<(i64, i64, String)> {
    let page = s.history(user, after, 100).unwrap();
    page.messages
        .into_iter()
        .map(|m| (m.seq, m.cseq, m.id))
        .collect()
}

/// A failing statement rolls the whole batch back, and the store stays usable.
pub(crate) fn a_failed_batch_commits_nothing(s: &mut impl MessageStore) {
    s.commit(&[msg("x", "bob", None)], &[]).unwrap();
    let clash = [msg("y", "bob", None), msg("x", "bob", None)];
    assert!(s.commit(&clash, &[]).is_err(), "same id twice");
    assert_eq!(s.status_of("y").unwrap(), None);
    s.commit(&[msg("y", "bob", None)], &[]).unwrap();
    assert_eq!(ids(s.pending("bob", 0, 10).unwrap()), ["x", "y"]);
}

#[cfg(test)]
mod on_sqlite {
    use crate::backend::store::SqliteStore;

    fn run(scenario: fn(&mut SqliteStore)) {
        let dir = tempfile::tempdir().unwrap();
        scenario(&mut SqliteStore::open(dir.path(), false).unwrap());
    }

    #[test]
    fn scenarios() {
        run(super::inserts_dedupe_and_replay_in_order);
        run(super::statuses_only_move_forward_and_acks_check_the_recipient);
        run(super::claims_take_stuck_messages_once_and_parked_later);
        run(super::timestamps_round_trip_to_the_microsecond);
        run(super::large_batches_commit_in_one_call);
        run(super::one_batch_mixes_inserts_and_updates_in_order);
        run(super::a_failed_batch_commits_nothing);
        run(super::streams_and_conversations_are_numbered_without_holes);
        run(super::retention_deletes_old_delivered_messages_and_marks_the_streams);
        run(super::the_undelivered_sweep_reports_each_message_once);
        run(super::a_sender_reads_the_statuses_of_its_own_messages);
        run(super::reads_move_forward_only_and_stop_at_the_last_message);
        run(super::a_group_message_takes_a_place_in_every_members_stream);
        run(super::group_statuses_aggregate_over_the_members);
        run(super::group_reads_announce_read_by_all_once);
        run(super::membership_changes_are_events_and_checked);
        run(super::presence_is_visible_only_to_peers);
        run(super::retention_deletes_old_group_rows_every_member_has);
        run(super::queued_group_operations_are_answered_in_order);
        run(super::the_system_sender_reaches_a_group_it_is_not_in);
        run(super::history_pages_a_conversation_newest_first);
        run(super::conversation_lists_count_unread_messages);
        run(super::last_seen_answers_for_every_user_asked);
        let dir = tempfile::tempdir().unwrap();
        super::reopening_keeps_data(|| SqliteStore::open(dir.path(), true).unwrap());
    }
}
