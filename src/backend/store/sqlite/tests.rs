//! SQLite-only checks; the behaviour shared with Postgres runs from `store::conformance`.

use std::path::Path;

use super::*;
use crate::backend::store::Positions;

#[test]
fn migrations_apply_once_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path(), true).unwrap());
    let s = SqliteStore::open(dir.path(), true).unwrap();
    let n: i64 = s
        .conn
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, MIGRATIONS.len() as i64);
}

/// The page cache in force, in KiB (SQLite reports a size in KiB as a negative number).
fn cache_kib(s: &SqliteStore) -> i64 {
    let n: i64 = s
        .conn
        .query_row("PRAGMA cache_size", [], |r| r.get(0))
        .unwrap();
    -n
}

#[test]
fn the_page_cache_is_the_default_until_set() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), false).unwrap();
    assert_eq!(cache_kib(&s), i64::from(DEFAULT_CACHE_MIB) * 1024);
    let s = s.with_cache_mib(5).unwrap();
    assert_eq!(cache_kib(&s), 5 * 1024);
}

/// A database as the pod left it before migration 0003 (text ids and statuses, AUTOINCREMENT).
fn version_2_database(dir: &Path) {
    let db = Connection::open(dir.join("distrisocks.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .unwrap();
    for &(version, sql) in &MIGRATIONS[..2] {
        db.execute_batch(sql).unwrap();
        db.execute("INSERT INTO schema_migrations VALUES (?1, 0)", [version])
            .unwrap();
    }
    let rows = [
        ("01a220d3-e489-7599-9ae4-000000000001", "NONE", None),
        ("01a220d3-e489-7599-9ae4-000000000002", "SENT", Some("c-2")),
        ("01a220d3-e489-7599-9ae4-000000000003", "DELIVERED", None),
        ("legacy-id", "NONE", Some("c-4")),
    ];
    for (id, status, cmid) in rows {
        db.execute(
            "INSERT INTO messages (id, sender_id, reciever_id, client_msg_id, payload, status, created_at)
             VALUES (?1, 'alice', 'bob', ?3, 'p-' || ?1, ?2, 7)",
            params![id, status, cmid],
        )
        .unwrap();
    }
    db.execute(
        "INSERT INTO messages (id, sender_id, reciever_id, payload, status, created_at)
         VALUES ('from-carol', 'carol', 'bob', 'p', 'NONE', 7)",
        [],
    )
    .unwrap();
}

#[test]
fn a_version_2_database_migrates_with_every_row_intact() {
    let dir = tempfile::tempdir().unwrap();
    version_2_database(dir.path());
    let mut s = SqliteStore::open(dir.path(), true).unwrap();

    let pending = s.pending("bob", 0, 10).unwrap();
    let seen: Vec<_> = pending
        .iter()
        .map(|m| (m.seq, m.id.as_str(), m.status))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "01a220d3-e489-7599-9ae4-000000000001", Status::None),
            (2, "01a220d3-e489-7599-9ae4-000000000002", Status::Sent),
            (4, "legacy-id", Status::None),
            (5, "from-carol", Status::None),
        ]
    );
    // Migration 0004 numbered the streams and conversations in insertion order.
    let stream = |s: &mut SqliteStore, user| {
        let page = s.history(user, 0, 10).unwrap();
        let v: Vec<(i64, i64)> = page.messages.iter().map(|m| (m.seq, m.cseq)).collect();
        v
    };
    assert_eq!(
        stream(&mut s, "bob"),
        [(1, 1), (2, 2), (3, 3), (4, 4), (5, 1)]
    );
    assert_eq!(stream(&mut s, "alice"), [(1, 1), (2, 2), (3, 3), (4, 4)]);
    assert_eq!(stream(&mut s, "carol"), [(1, 1)]);
    assert_eq!(pending[2].payload, "p-legacy-id");
    let delivered = "01a220d3-e489-7599-9ae4-000000000003";
    assert_eq!(s.status_of(delivered).unwrap(), Some(Status::Delivered));
    let kinds: Vec<String> = s
        .conn
        .prepare("SELECT typeof(id) FROM messages WHERE sender_id = 'alice' ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kinds, ["blob", "blob", "blob", "text"]);

    // Idempotency keys still answer with the original message, compact or not.
    let again = |id: &str, cmid: &str| NewMessage {
        id: id.into(),
        sender_id: "alice".into(),
        reciever_id: "bob".into(),
        client_msg_id: Some(cmid.into()),
        payload: "resent".into(),
        created_at: 8,
    };
    let fresh = "01a220d3-e489-7599-9ae4-000000000009";
    let (ins, _) = s
        .commit(
            &[
                again(fresh, "c-2"),
                again(fresh, "c-4"),
                again(fresh, "c-5"),
            ],
            &[],
        )
        .unwrap();
    // Repeats name the migrated originals, with the positions the migration gave them.
    let repeat = |r: &InsertResult| match r {
        InsertResult::Duplicate {
            id,
            status,
            original: Some(o),
        } if o.reciever_id == "bob" && o.at.rpos > 0 => (id.clone(), *status),
        other => panic!("not a repeat of a migrated message: {other:?}"),
    };
    assert_eq!(
        [repeat(&ins[0]), repeat(&ins[1])],
        [
            ("01a220d3-e489-7599-9ae4-000000000002".into(), Status::Sent),
            ("legacy-id".into(), Status::None),
        ]
    );
    assert_eq!(
        ins[2],
        // The counters continue after the migrated rows.
        InsertResult::Inserted {
            at: Positions {
                rpos: 6,
                spos: 5,
                cseq: 5
            }
        }
    );
    let sequences: i64 = s
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_sequence WHERE name = 'messages'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sequences, 0, "no AUTOINCREMENT counter is left to write");
}

#[test]
fn the_readable_view_shows_ids_and_statuses_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path(), true).unwrap();
    let id = "01a220d3-e489-7599-9ae4-00000000000a";
    let m = NewMessage {
        id: id.into(),
        sender_id: "alice".into(),
        reciever_id: "bob".into(),
        client_msg_id: None,
        payload: "p".into(),
        created_at: 1,
    };
    let sent = StatusUpdate {
        id: id.into(),
        status: Status::Sent,
        recipient: None,
        at: 2,
    };
    s.commit(&[m], &[sent]).unwrap();
    let (read_id, status): (String, String) = s
        .conn
        .query_row("SELECT id, status FROM messages_readable", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((read_id.as_str(), status.as_str()), (id, "SENT"));
}

#[test]
fn an_undecodable_status_is_reported_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path(), true).unwrap();
    // Written behind the store's back, bypassing the CHECK.
    s.conn
        .execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             INSERT INTO messages (id, sender_id, reciever_id, payload, status, created_at)
             VALUES ('x', 'alice', 'bob', 'p', 9, 1);",
        )
        .unwrap();
    let err = s.status_of("x").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

/// Committed pages reach the database file without the store's own connection checkpointing
/// (its auto-checkpoint waits for 16k WAL pages): the background checkpointer copied them.
/// The reader opens the file `immutable`, which ignores the WAL.
#[test]
fn background_checkpoints_copy_commits_into_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path(), true)
        .unwrap()
        .with_background_checkpoints()
        .unwrap();
    let batch: Vec<_> = (0..10)
        .map(|i| crate::backend::store::conformance::msg(&format!("m{i}"), "bob", None))
        .collect();
    s.commit(&batch, &[]).unwrap();
    let file = format!(
        "file:{}?immutable=1",
        dir.path().join("distrisocks.db").display()
    );
    let in_file = || {
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let db = Connection::open_with_flags(&file, flags).unwrap();
        db.query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))
            .unwrap_or(0) // No table yet: the migrations are still only in the WAL.
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while in_file() != 10 {
        assert!(std::time::Instant::now() < deadline, "not checkpointed");
        std::thread::sleep(checkpoint::MIN_PERIOD);
    }
    drop(s); // Stops and joins the checkpoint thread.
}

/// A store without a database file (never the pod's) refuses background checkpoints instead
/// of checkpointing some other database.
#[test]
fn background_checkpoints_need_a_database_file() {
    let s = SqliteStore {
        conn: Connection::open_in_memory().unwrap(),
        checkpointer: None,
        committed: Default::default(),
    };
    let e = s.with_background_checkpoints().err().expect("refused");
    assert!(e.to_string().contains("in-memory"), "{e}");
}

/// A direct message between `from` and `to`, created at `t`.
fn dm(id: &str, from: &str, to: &str, t: i64) -> NewMessage {
    NewMessage {
        id: id.into(),
        sender_id: from.into(),
        reciever_id: to.into(),
        client_msg_id: None,
        payload: "p".into(),
        created_at: t,
    }
}

/// Inserted with the same number in both streams and the conversation.
fn inserted_at(n: i64) -> InsertResult {
    let at = Positions {
        rpos: n,
        spos: n,
        cseq: n,
    };
    InsertResult::Inserted { at }
}

/// A direct conversation keeps no counter row per message (its last `cseq` comes from
/// `messages_conversation`), yet its numbering, read receipts, summary and "shared" answer
/// continue across retention deleting all of it and a reopen that forgets what was cached.
#[test]
fn a_direct_conversation_continues_after_retention_deleted_it_and_a_reopen() {
    use crate::backend::store::conformance::update;
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path(), false).unwrap();
    let batch = [
        dm("m1", "alice", "bob", 1),
        dm("m2", "bob", "alice", 2),
        // Retention never deletes the newest row.
        dm("newest", "carol", "dave", 100),
    ];
    let acks = ["m1", "m2"].map(|id| update(id, Status::Delivered, None));
    s.commit(&batch, &acks).unwrap();
    let rows = |s: &SqliteStore| -> i64 {
        let q = "SELECT count(*) FROM counters WHERE kind = 2";
        s.conn.query_row(q, [], |r| r.get(0)).unwrap()
    };
    assert_eq!(rows(&s), 0, "no counter row is written per message");
    assert_eq!(s.prune(50, 0, 10).unwrap().deleted, 2);
    drop(s);

    let mut s = SqliteStore::open(dir.path(), false).unwrap();
    let conv = crate::protocol::direct_conversation_id("alice", "bob");
    let read = |s: &mut SqliteStore, seq| {
        let state = ReadState {
            conversation_id: conv.clone(),
            user_id: "bob".into(),
            seq,
        };
        s.mark_read(&state, "alice").unwrap()
    };
    assert_eq!(
        read(&mut s, 99),
        Some(2),
        "clamped to what retention deleted"
    );
    let shared = s.peers_seen("alice", &["bob".into()]).unwrap();
    assert_eq!(shared.len(), 1, "a pruned conversation is still shared");

    let (ins, _) = s.commit(&[dm("m3", "alice", "bob", 200)], &[]).unwrap();
    assert_eq!(ins, [inserted_at(3)]);
    assert_eq!(read(&mut s, 99), Some(3));
    let summary = s.conversations_of("bob", 10).unwrap();
    let last: Vec<_> = summary
        .iter()
        .map(|c| (c.conversation_id.as_str(), c.last_seq))
        .collect();
    assert_eq!(last, [(conv.as_str(), 3)]);
    assert_eq!(rows(&s), 1, "only retention's mark");
}

/// A message to oneself is its own conversation, numbered from the same index.
#[test]
fn a_conversation_with_oneself_is_numbered_without_a_counter_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path(), false).unwrap();
    s.commit(&[dm("n1", "alice", "alice", 1)], &[]).unwrap();
    drop(s);
    let mut s = SqliteStore::open(dir.path(), false).unwrap();
    let (ins, _) = s.commit(&[dm("n2", "alice", "alice", 2)], &[]).unwrap();
    assert_eq!(ins, [inserted_at(2)]);
}

/// A database written before direct conversations lost their counter rows, whose retention
/// then deleted the conversation's messages: only the row's `last` remembers the numbering,
/// and the next message, the read clamp and the "shared" answer all follow it.
#[test]
fn an_older_databases_counter_row_still_numbers_its_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path(), false).unwrap();
    let conv = crate::protocol::direct_conversation_id("alice", "bob");
    s.conn
        .execute(
            "INSERT INTO counters (kind, id, last, pruned) VALUES (2, ?1, 5, 0)",
            [&conv],
        )
        .unwrap();
    let read = ReadState {
        conversation_id: conv.clone(),
        user_id: "bob".into(),
        seq: 99,
    };
    assert_eq!(s.mark_read(&read, "alice").unwrap(), Some(5));
    assert_eq!(s.peers_seen("alice", &["bob".into()]).unwrap().len(), 1);
    let (ins, _) = s.commit(&[dm("m6", "alice", "bob", 1)], &[]).unwrap();
    let InsertResult::Inserted { at } = &ins[0] else {
        panic!("not inserted: {ins:?}");
    };
    assert_eq!(at.cseq, 6, "after the row's last");
}
