//! The server API's reads (history, conversation lists, last seen), on both backends.

use super::from;
use crate::backend::store::group::{GroupOp, GroupOutcome};
use crate::backend::store::{ConversationSummary, MessageStore, NewMessage, ReadState, RowKind};
use crate::protocol::{direct_conversation_id as dm, Status};

fn page(s: &mut impl MessageStore, conv: &str, before: i64, limit: usize) -> Vec<(i64, String)> {
    let rows = s.conversation(conv, before, limit).unwrap();
    rows.into_iter().map(|m| (m.seq, m.id)).collect()
}

fn pairs(list: &[(i64, &str)]) -> Vec<(i64, String)> {
    list.iter().map(|(n, id)| (*n, id.to_string())).collect()
}

/// History pages newest first through both directions of a direct conversation, and only
/// that conversation; a conversation with oneself is read once.
pub(crate) fn history_pages_a_conversation_newest_first(s: &mut impl MessageStore) {
    let batch = [
        from("alice", "h1", "bob", None),
        from("bob", "h2", "alice", None),
        from("alice", "other", "carol", None),
        from("alice", "h3", "bob", None),
        from("alice", "me", "alice", None),
    ];
    s.commit(&batch, &[]).unwrap();
    let ab = dm("alice", "bob");
    assert_eq!(page(s, &ab, i64::MAX, 2), pairs(&[(3, "h3"), (2, "h2")]));
    assert_eq!(page(s, &ab, 2, 2), pairs(&[(1, "h1")]));
    assert_eq!(page(s, &ab, 1, 2), []);
    assert_eq!(
        page(s, &dm("alice", "alice"), i64::MAX, 10),
        pairs(&[(1, "me")])
    );
    assert_eq!(page(s, &dm("bob", "carol"), i64::MAX, 10), []);
    let row = &s.conversation(&ab, i64::MAX, 1).unwrap()[0];
    assert_eq!(
        (row.sender_id.as_str(), row.reciever_id.as_str()),
        ("alice", "bob")
    );
    assert_eq!(
        (row.payload.as_str(), row.status),
        ("payload of h3", Status::None)
    );
}

fn summary(list: &[ConversationSummary], id: &str) -> (i64, i64, i64) {
    let c = list.iter().find(|c| c.conversation_id == id).expect(id);
    (c.last_seq, c.read_seq, c.unread)
}

/// Unread counts only what others sent after the user's read receipt (in a group, after they
/// joined: joining reads up to the event that added them); the list is most recent first.
pub(crate) fn conversation_lists_count_unread_messages(s: &mut impl MessageStore) {
    let at = |m: NewMessage, t| NewMessage { created_at: t, ..m };
    let batch = [
        at(from("alice", "u1", "bob", None), 10),
        at(from("alice", "u2", "bob", None), 11),
        at(from("bob", "u3", "alice", None), 12),
        at(from("carol", "u4", "bob", None), 20),
    ];
    s.commit(&batch, &[]).unwrap();
    let read = ReadState {
        conversation_id: dm("alice", "bob"),
        user_id: "bob".into(),
        seq: 1,
    };
    s.mark_read(&read, "alice").unwrap();
    let list = s.conversations_of("bob", 10).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[0].conversation_id,
        dm("bob", "carol"),
        "most recent first"
    );
    assert_eq!(list[0].last_at, Some(20));
    assert_eq!(
        summary(&list, &dm("alice", "bob")),
        (3, 1, 1),
        "u2 only: u3 is bob's own"
    );
    assert_eq!(
        summary(
            &s.conversations_of("alice", 10).unwrap(),
            &dm("alice", "bob")
        ),
        (3, 0, 1)
    );
    assert_eq!(s.conversations_of("bob", 1).unwrap().len(), 1, "the limit");
    assert!(s.conversations_of("nobody", 10).unwrap().is_empty());
    group_unread(s);
}

fn group_unread(s: &mut impl MessageStore) {
    let change = |members: &[&str], event: &str| crate::backend::store::group::Change {
        group: "g:api".into(),
        by: "alice".into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        event_id: event.into(),
        at: 30,
        max_members: 10,
    };
    let send = |id: &str| GroupOp::Send {
        msg: NewMessage {
            reciever_id: "g:api".into(),
            created_at: 31,
            ..from("alice", id, "g:api", None)
        },
        system: false,
    };
    let ok = |r: Result<GroupOutcome, _>| assert!(matches!(r, Ok(GroupOutcome::Fanned(_))));
    ok(s.group(&GroupOp::Create {
        change: change(&["bob"], "e1"),
    })
    .unwrap());
    ok(s.group(&send("gm1")).unwrap());
    ok(s.group(&GroupOp::Add {
        change: change(&["dave"], "e2"),
    })
    .unwrap());
    ok(s.group(&send("gm2")).unwrap());
    let bob = s.conversations_of("bob", 10).unwrap();
    assert_eq!(bob[0].conversation_id, "g:api");
    assert_eq!(
        summary(&bob, "g:api"),
        (4, 1, 2),
        "two messages; events do not count"
    );
    let dave = s.conversations_of("dave", 10).unwrap();
    assert_eq!(
        summary(&dave, "g:api"),
        (4, 3, 1),
        "only what came after joining"
    );
    assert_eq!(
        summary(&s.conversations_of("alice", 10).unwrap(), "g:api").2,
        0,
        "own"
    );
    let rows = s.conversation("g:api", i64::MAX, 10).unwrap();
    let kinds: Vec<_> = rows.iter().map(|m| (m.seq, m.kind)).collect();
    use RowKind::{Group, GroupEvent};
    assert_eq!(
        kinds,
        [(4, Group), (3, GroupEvent), (2, Group), (1, GroupEvent)]
    );
}

/// Last-seen times for anyone (the API sees every user), in the order asked.
pub(crate) fn last_seen_answers_for_every_user_asked(s: &mut impl MessageStore) {
    s.record_seen(&[("bob".into(), 5), ("bob".into(), 9)])
        .unwrap();
    let asked = ["zed".to_string(), "bob".to_string()];
    let seen = s.last_seen(&asked).unwrap();
    assert_eq!(
        seen,
        [("zed".to_string(), None), ("bob".to_string(), Some(9))]
    );
}
