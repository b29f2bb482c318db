use super::*;

fn msg(id: &str, to: &str, cmid: Option<&str>) -> NewMessage {
    NewMessage {
        id: id.into(),
        sender_id: "alice".into(),
        reciever_id: to.into(),
        client_msg_id: cmid.map(Into::into),
        payload: format!("payload of {id}"),
        created_at: 1,
    }
}

fn update(id: &str, status: Status, recipient: Option<&str>) -> StatusUpdate {
    StatusUpdate {
        id: id.into(),
        status,
        recipient: recipient.map(Into::into),
        at: 7,
    }
}

#[test]
fn inserts_dedupes_and_replays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path(), false).unwrap();
    let (ins, _) = s
        .commit(
            &[
                msg("m1", "bob", Some("k")),
                msg("m2", "bob", None),
                msg("m3", "bob", Some("k")),
            ],
            &[],
        )
        .unwrap();
    assert!(matches!(ins[0], InsertResult::Inserted { .. }));
    assert!(matches!(ins[1], InsertResult::Inserted { .. }));
    assert_eq!(
        ins[2],
        InsertResult::Duplicate {
            id: "m1".into(),
            status: Status::None
        }
    );
    let p = s.pending("bob", 0, 10).unwrap();
    assert_eq!(
        p.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m1", "m2"]
    );
    assert!(p[0].seq < p[1].seq);
    assert_eq!(s.pending("bob", p[0].seq, 10).unwrap().len(), 1);
}

#[test]
fn statuses_only_move_forward_and_acks_check_the_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path(), false).unwrap();
    s.commit(&[msg("m1", "bob", None)], &[]).unwrap();
    let (_, ups) = s
        .commit(
            &[],
            &[
                update("m1", Status::Delivered, Some("mallory")),
                update("m1", Status::Sent, None),
                update("m1", Status::Delivered, Some("bob")),
                update("m1", Status::Sent, None),
                update("m1", Status::Delivered, Some("bob")),
                update("nope", Status::Delivered, Some("bob")),
            ],
        )
        .unwrap();
    assert_eq!(ups[0], UpdateResult::NotRecipient);
    assert!(
        matches!(&ups[1], UpdateResult::Changed(c) if c.status == Status::Sent && c.sender_id == "alice")
    );
    assert!(matches!(&ups[2], UpdateResult::Changed(c) if c.status == Status::Delivered));
    assert_eq!(ups[3], UpdateResult::Unchanged);
    assert_eq!(ups[4], UpdateResult::Unchanged);
    assert_eq!(ups[5], UpdateResult::NotRecipient);
    assert_eq!(s.status_of("m1").unwrap(), Some(Status::Delivered));
    assert!(s.pending("bob", 0, 10).unwrap().is_empty());
}

#[test]
fn reopening_keeps_data_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path(), true).unwrap();
    s.commit(&[msg("m1", "bob", None)], &[]).unwrap();
    drop(s);
    let mut s = SqliteStore::open(dir.path(), true).unwrap();
    assert_eq!(s.status_of("m1").unwrap(), Some(Status::None));
    let n: i64 = s
        .conn
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn stuck_lists_old_none_and_old_sent_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path(), false).unwrap();
    let mut young = msg("young", "bob", None);
    young.created_at = 100;
    s.commit(
        &[
            msg("old-none", "bob", None),
            msg("old-sent", "bob", None),
            msg("done", "bob", None),
            young,
        ],
        &[],
    )
    .unwrap();
    s.commit(
        &[],
        &[
            update("old-sent", Status::Sent, None),
            update("done", Status::Delivered, None),
        ],
    )
    .unwrap();
    // created_at = 1 for msg(); updates happen at 7.
    let ids = |v: Vec<PendingMessage>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.stuck(0, 50, 50, 10).unwrap()),
        ["old-none", "old-sent"]
    );
    assert_eq!(ids(s.stuck(0, 50, 5, 10).unwrap()), ["old-none"]);
    assert_eq!(ids(s.stuck(0, 200, 5, 10).unwrap()), ["old-none", "young"]);
    let first = s.stuck(0, 200, 5, 1).unwrap();
    assert_eq!(ids(first.clone()), ["old-none"]);
    assert_eq!(ids(s.stuck(first[0].seq, 200, 5, 10).unwrap()), ["young"]);
}
