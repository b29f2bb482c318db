//! Against a real server: `DISTRISOCKS_TEST_POSTGRES_URL`, by default the local trust-auth
//! `postgres://postgres@127.0.0.1:5432/test`. Each test works in a fresh schema of its own, so
//! tests run in parallel and leave nothing behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::migrate::MIGRATIONS;
use super::*;
use crate::backend::store::conformance::{self as c, msg, update};
use crate::backend::store::SqliteStore;

fn url() -> String {
    std::env::var("DISTRISOCKS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema for one test, dropped when the test ends (even by a failed assertion).
struct TestSchema {
    name: String,
}

impl TestSchema {
    fn new() -> TestSchema {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("t_{}_{n}", std::process::id());
        admin(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).unwrap();
        TestSchema { name }
    }

    fn open(&self) -> PostgresStore {
        PostgresStore::connect(&url(), &self.name)
            .unwrap_or_else(|e| panic!("{e}; is Postgres up? see DISTRISOCKS_TEST_POSTGRES_URL"))
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let _ = admin(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

/// Runs `sql` on a connection of its own, outside any store.
fn admin(sql: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let run = async {
        let (client, conn) = tokio_postgres::connect(&url(), NoTls).await?;
        let conn = tokio::spawn(conn);
        client.batch_execute(sql).await?;
        drop(client);
        let _ = conn.await;
        Ok(())
    };
    rt.block_on(run)
        .map_err(|e: tokio_postgres::Error| describe(&e))
}

/// `sql` on the store's own session (and so in its schema).
fn rows(s: &mut PostgresStore, sql: &str) -> Vec<Row> {
    let (rt, session) = s.session().unwrap();
    rt.block_on(session.client.query(sql, &[])).unwrap()
}

fn exec(s: &mut PostgresStore, sql: &str) {
    let (rt, session) = s.session().unwrap();
    rt.block_on(session.client.batch_execute(sql)).unwrap();
}

fn run(scenario: fn(&mut PostgresStore)) {
    let schema = TestSchema::new();
    scenario(&mut schema.open());
}

#[test]
fn groups_store_once_and_fan_out_to_every_stream() {
    run(c::a_group_message_takes_a_place_in_every_members_stream);
}

#[test]
fn group_statuses_aggregate_over_the_members() {
    run(c::group_statuses_aggregate_over_the_members);
}

#[test]
fn group_reads_announce_read_by_all_once() {
    run(c::group_reads_announce_read_by_all_once);
}

#[test]
fn membership_changes_are_events_and_checked() {
    run(c::membership_changes_are_events_and_checked);
}

#[test]
fn retention_deletes_old_group_rows_every_member_has() {
    run(c::retention_deletes_old_group_rows_every_member_has);
}

#[test]
fn queued_group_operations_are_answered_in_order() {
    run(c::queued_group_operations_are_answered_in_order);
}

#[test]
fn presence_is_visible_only_to_peers() {
    run(c::presence_is_visible_only_to_peers);
}

#[test]
fn inserts_dedupe_and_replay_in_order() {
    run(c::inserts_dedupe_and_replay_in_order);
}

#[test]
fn statuses_only_move_forward_and_acks_check_the_recipient() {
    run(c::statuses_only_move_forward_and_acks_check_the_recipient);
}

#[test]
fn claims_take_stuck_messages_once_and_parked_later() {
    run(c::claims_take_stuck_messages_once_and_parked_later);
}

#[test]
fn timestamps_round_trip_to_the_microsecond() {
    run(c::timestamps_round_trip_to_the_microsecond);
}

#[test]
fn large_batches_commit_in_one_call() {
    run(c::large_batches_commit_in_one_call);
}

#[test]
fn one_batch_mixes_inserts_and_updates_in_order() {
    run(c::one_batch_mixes_inserts_and_updates_in_order);
}

#[test]
fn streams_and_conversations_are_numbered_without_holes() {
    run(c::streams_and_conversations_are_numbered_without_holes);
}

#[test]
fn a_sender_reads_the_statuses_of_its_own_messages() {
    run(c::a_sender_reads_the_statuses_of_its_own_messages);
}

#[test]
fn the_undelivered_sweep_reports_each_message_once() {
    run(c::the_undelivered_sweep_reports_each_message_once);
}

#[test]
fn retention_deletes_old_delivered_messages_and_marks_the_streams() {
    run(c::retention_deletes_old_delivered_messages_and_marks_the_streams);
}

#[test]
fn the_system_sender_reaches_a_group_it_is_not_in() {
    run(c::the_system_sender_reaches_a_group_it_is_not_in);
}

#[test]
fn the_server_apis_reads() {
    run(c::history_pages_a_conversation_newest_first);
    run(c::conversation_lists_count_unread_messages);
    run(c::last_seen_answers_for_every_user_asked);
}

#[test]
fn reads_move_forward_only_and_stop_at_the_last_message() {
    run(c::reads_move_forward_only_and_stop_at_the_last_message);
}

/// A failing statement rolls the whole batch back, and the store stays usable. (The shared
/// scenario fails a batch by repeating an id; here that is a retry, answered as inserted.)
#[test]
fn a_failed_batch_commits_nothing() {
    let schema = TestSchema::new();
    let mut s = schema.open();
    s.commit(&[msg("x", "bob", None)], &[]).unwrap();
    let nul = NewMessage {
        payload: "\0".into(),
        ..msg("z", "bob", None)
    };
    let bad = [msg("y", "bob", None), nul];
    assert!(
        s.commit(&bad, &[]).is_err(),
        "a NUL byte is no Postgres text"
    );
    assert_eq!(s.status_of("y").unwrap(), None);
    s.commit(&[msg("y", "bob", None)], &[]).unwrap();
    let pending: Vec<String> = s
        .pending("bob", 0, 10)
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(pending, ["x", "y"]);
}

#[test]
fn answers_exactly_like_sqlite_on_a_generated_workload() {
    for seed in [1, 2, 3, 0xdead_beef] {
        let dir = tempfile::tempdir().unwrap();
        let lite = c::transcript(&mut SqliteStore::open(dir.path(), false).unwrap(), seed, 40);
        let schema = TestSchema::new();
        let pg = c::transcript(&mut schema.open(), seed, 40);
        for (l, p) in lite.iter().zip(&pg) {
            assert_eq!(l, p, "seed {seed}");
        }
        assert_eq!(lite.len(), pg.len());
    }
}

#[test]
fn reconnecting_keeps_data_and_migrations_are_idempotent() {
    let schema = TestSchema::new();
    c::reopening_keeps_data(|| schema.open());
    let mut s = schema.open();
    let versions = rows(&mut s, "SELECT version FROM schema_migrations");
    let versions: Vec<i32> = versions.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
}

/// Ids are compared in byte order (migrations/postgres/0005), whatever the database's
/// default collation: the fast comparison path, and the same order as SQLite's.
#[test]
fn every_stored_identifier_compares_in_byte_order() {
    let schema = TestSchema::new();
    let mut s = schema.open();
    let sql = format!(
        "SELECT a.attrelid::regclass::text || '.' || a.attname, c.collname
         FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = r.relnamespace
         LEFT JOIN pg_collation c ON c.oid = a.attcollation
         WHERE n.nspname = '{}' AND r.relkind = 'r' AND a.attnum > 0
           AND a.atttypid = 'text'::regtype
           AND r.relname IN ('messages', 'counters', 'reads', 'groups', 'members',
                             'group_messages', 'deliveries', 'presence')
           AND a.attname NOT IN ('payload', 'status')",
        schema.name
    );
    let cols = rows(&mut s, &sql);
    // messages: id, sender_id, reciever_id, client_msg_id; counters: id; reads: 3; groups:
    // id, created_by; members: 2; group_messages: id, group_id, sender_id, client_msg_id;
    // deliveries: user_id, message_id; presence: user_id.
    assert_eq!(cols.len(), 19, "the id columns of every table");
    for row in cols {
        let (col, coll): (String, Option<String>) = (row.get(0), row.get(1));
        assert_eq!(coll.as_deref(), Some("C"), "{col}");
    }
}

#[test]
fn pods_starting_together_migrate_once() {
    let schema = TestSchema::new();
    std::thread::scope(|scope| {
        let pods: Vec<_> = (0..4).map(|_| scope.spawn(|| schema.open())).collect();
        for pod in pods {
            drop(pod.join().unwrap());
        }
    });
    let n = rows(&mut schema.open(), "SELECT count(*) FROM schema_migrations");
    assert_eq!(n[0].get::<_, i64>(0), MIGRATIONS.len() as i64);
}

#[test]
fn an_unreachable_server_or_a_bad_url_is_an_open_error() {
    let refused = PostgresStore::connect("postgres://app:secret@127.0.0.1:1/test", "s");
    match refused {
        Err(StoreError::Open { location, reason }) => {
            assert_eq!(location, "postgres://app@127.0.0.1:1/test (schema s)");
            assert!(reason.contains("error connecting to server"), "{reason}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    for bad in ["postgres://[::1", "host=x port=notaport", "mysql://x"] {
        let e = PostgresStore::connect(bad, "s").map(|_| ()).unwrap_err();
        assert!(matches!(e, StoreError::Open { .. }), "{bad}: {e}");
    }
}

#[test]
fn server_errors_are_described() {
    let schema = TestSchema::new();
    let mut s = schema.open();
    let nul = NewMessage {
        payload: "a\0b".into(),
        ..msg("x", "bob", None)
    };
    match s.commit(&[nul], &[]) {
        Err(StoreError::Query(e)) => assert!(e.contains("invalid byte sequence"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn delivery_keeps_the_first_sent_at() {
    let schema = TestSchema::new();
    let mut s = schema.open();
    s.commit(&[msg("m1", "bob", None), msg("m2", "bob", None)], &[])
        .unwrap();
    let at = |u: StatusUpdate, at: i64| StatusUpdate { at, ..u };
    let ups = [
        at(update("m1", Status::Sent, None), 5),
        at(update("m1", Status::Delivered, Some("bob")), 9),
        at(update("m2", Status::Delivered, None), 11),
    ];
    s.commit(&[], &ups).unwrap();
    let got = rows(
        &mut s,
        "SELECT id, (extract(epoch FROM sent_at) * 1000000)::bigint,
                (extract(epoch FROM delivered_at) * 1000000)::bigint FROM messages ORDER BY seq",
    );
    let got: Vec<(String, i64, i64)> = got.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got, [("m1".into(), 5, 9), ("m2".into(), 11, 11)]);
}

#[test]
fn claims_and_replay_read_their_partial_indexes() {
    let schema = TestSchema::new();
    let mut s = schema.open();
    exec(&mut s, "SET enable_seqscan = off");
    let plan = |s: &mut PostgresStore, sql: String| {
        let plan = rows(s, &format!("EXPLAIN {sql}"));
        plan.iter()
            .map(|r| r.get(0))
            .collect::<Vec<String>>()
            .join("\n")
    };
    let claim = (CLAIM_SQL.replace("$1", "now()").replace("$2", "now()"))
        .replace("$3", "10")
        .replace("$4", "now()");
    let claim = plan(&mut s, claim);
    assert!(claim.contains("messages_stuck_none"), "{claim}");
    assert!(claim.contains("messages_stuck_sent"), "{claim}");
    let pending = PENDING_SQL
        .replace("$1", "'bob'")
        .replace("$2", "0")
        .replace("$3", "10");
    let pending = plan(&mut s, pending);
    assert!(pending.contains("messages_pending"), "{pending}");
}

/// Sequential scans of `messages` this session has run so far (its pending statistics
/// flushed first, so the count is exact, not up to a second behind).
fn seq_scans_of_messages(s: &mut PostgresStore) -> i64 {
    rows(s, "SELECT pg_stat_force_next_flush()");
    let q = "SELECT seq_scan FROM pg_stat_user_tables
             WHERE relname = 'messages' AND schemaname = current_schema()";
    rows(s, q)[0].get(0)
}

/// The message path's statements find rows by index however the table grew since they were
/// prepared, without an ANALYZE (autovacuum off, or a young table): a plan cached while the
/// table was empty would scan all of it for every batch, and Postgres' cost per message
/// would grow with the table.
#[test]
fn batches_read_messages_by_index_after_the_table_grew_unanalyzed() {
    let schema = TestSchema::new();
    let mut s = schema.open();
    for i in 0..8 {
        // Past the five runs after which Postgres may settle on a generic plan.
        let (id, cmid) = (format!("warm{i}"), format!("c-warm{i}"));
        s.commit(&[msg(&id, "bob", Some(&cmid))], &[]).unwrap();
        s.commit(&[], &[update(&id, Status::Sent, None)]).unwrap();
    }
    exec(
        &mut s,
        "INSERT INTO messages (id, sender_id, reciever_id, client_msg_id, payload, created_at,
                               rpos, spos, cseq)
         SELECT 'bulk' || i, 's' || i, 'r' || i, 'c' || i, 'x', now(), 1, 1, 1
         FROM generate_series(1, 20000) i",
    );
    let before = seq_scans_of_messages(&mut s);
    let (ins, ups) = s
        .commit(
            &[
                msg("m1", "bob", Some("c-m1")),
                msg("m2", "carol", Some("c-m2")),
            ],
            &[
                update("bulk7", Status::Sent, None),
                update("warm3", Status::Delivered, Some("bob")),
            ],
        )
        .unwrap();
    assert!(matches!(
        ins[..],
        [InsertResult::Inserted { .. }, InsertResult::Inserted { .. }]
    ));
    assert!(
        ups.iter().all(|u| matches!(u, UpdateResult::Changed(_))),
        "{ups:?}"
    );
    assert_eq!(
        seq_scans_of_messages(&mut s) - before,
        0,
        "whole-table scans per batch"
    );
}

/// Pod A's inserting transaction for `m` (the real statement), left open.
fn begin_insert(s: &mut PostgresStore, m: &NewMessage) {
    exec(s, "BEGIN");
    let (rt, session) = s.session().unwrap();
    let insert = batch::insert_all(&session.client, &session.st.batch, std::slice::from_ref(m));
    rt.block_on(insert).unwrap();
}

/// Whether some session of this schema's test waits for a row lock.
fn someone_waits_for_a_lock(s: &mut PostgresStore) -> bool {
    let q = "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO counters%'
               AND datname = current_database()";
    rows(s, q)[0].get::<_, i64>(0) > 0
}

/// No gap and no duplicate in replay when two pods commit messages for one recipient around
/// that recipient's connect, in the worst order: pod A's transaction is open (its row not yet
/// visible), pod B commits a later message, the connecting device reads its replay, then A
/// commits. Replay's rule (a live copy is skipped when its seq is at or below the last seq
/// replayed) must then deliver each message exactly once. Without per-recipient order, B's
/// row would be read with the larger seq and A's live copy skipped: lost.
#[test]
fn replay_around_two_pods_interleaved_commits_has_no_gap_and_no_duplicate() {
    let schema = TestSchema::new();
    let (mut pod_a, mut probe) = (schema.open(), schema.open());
    let (m1, m2) = (msg("m1", "bob", None), msg("m2", "bob", None));
    begin_insert(&mut pod_a, &m1);
    let (done, finished) = std::sync::mpsc::channel();
    let mut pod_b = schema.open();
    let b = std::thread::spawn(move || {
        let r = pod_b.commit(&[m2], &[]).unwrap();
        let _ = done.send(());
        r
    });
    // B either commits at once (no per-recipient order) or waits behind A's row lock.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !someone_waits_for_a_lock(&mut probe) && finished.try_recv().is_err() {
        assert!(
            Instant::now() < deadline,
            "pod B neither committed nor waited"
        );
        std::thread::yield_now();
    }
    // bob connects on a third pod: route registered, then the replay reads.
    let replayed = probe.pending("bob", 0, 100).unwrap();
    let cursor = replayed.iter().map(|m| m.seq).max().unwrap_or(0);
    exec(&mut pod_a, "COMMIT");
    let (ins, _) = b.join().unwrap();
    let InsertResult::Inserted { at } = ins[0] else {
        panic!("{ins:?}")
    };
    let seq2 = at.rpos;
    let seq1: i64 = rows(&mut probe, "SELECT rpos FROM messages WHERE id = 'm1'")[0].get(0);
    // Both pods route live copies to bob's new connection.
    let mut shown: Vec<&str> = replayed.iter().map(|m| m.id.as_str()).collect();
    for (id, seq) in [("m1", seq1), ("m2", seq2)] {
        if seq > cursor {
            shown.push(id);
        }
    }
    shown.sort();
    assert_eq!(
        shown,
        ["m1", "m2"],
        "replayed {replayed:?}, seqs {seq1} {seq2}"
    );
    assert!(seq1 < seq2, "commit order is the recipient's order");
}

/// Per-user order is not a serial point: while pod A's transaction for alice → bob is open,
/// pod B commits dave → carol without waiting. (A message locks the streams of its two users
/// and their conversation, so alice's own next message would wait: per user, not per
/// cluster.)
#[test]
fn inserts_between_other_users_do_not_wait() {
    let schema = TestSchema::new();
    let mut pod_a = schema.open();
    begin_insert(&mut pod_a, &msg("m1", "bob", None));
    let mut pod_b = schema.open();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let m2 = NewMessage {
            sender_id: "dave".into(),
            ..msg("m2", "carol", None)
        };
        let r = pod_b.commit(&[m2], &[]).map(|_| ());
        let _ = done.send(r.is_ok());
    });
    let b = finished.recv_timeout(Duration::from_secs(10));
    exec(&mut pod_a, "COMMIT");
    assert_eq!(b, Ok(true), "pod B waited for pod A");
}

/// A COMMIT whose reply was lost: the writer retries the batch, and the retry must answer the
/// rows the first attempt stored as inserted, with their seq, not fail on their ids.
#[test]
fn retrying_a_committed_batch_answers_inserted_with_the_same_seq() {
    let schema = TestSchema::new();
    let mut s = schema.open();
    let batch = [
        msg("m1", "bob", None),
        msg("m2", "bob", Some("c-2")),
        msg("m3", "carol", None),
    ];
    let (first, _) = s.commit(&batch, &[]).unwrap();
    let (again, _) = s.commit(&batch, &[]).unwrap();
    assert_eq!(first, again);
    assert!(again
        .iter()
        .all(|r| matches!(r, InsertResult::Inserted { .. })));
    let n: i64 = rows(&mut s, "SELECT count(*) FROM messages")[0].get(0);
    assert_eq!(n, 3);
    // A resend of c-2 under a new id is still a duplicate of m2.
    let (dup, _) = s.commit(&[msg("m4", "bob", Some("c-2"))], &[]).unwrap();
    let InsertResult::Inserted { at } = first[1] else {
        panic!("m2 stored: {:?}", first[1]);
    };
    let original = Some(crate::backend::store::Original {
        reciever_id: "bob".into(),
        at,
    });
    assert_eq!(
        dup[0],
        InsertResult::Duplicate {
            id: "m2".into(),
            status: Status::None,
            original,
        }
    );
}

/// Two pods insert and ack the same messages (in opposite orders) at the same time.
#[test]
fn pods_committing_at_once_neither_fail_nor_deadlock() {
    let schema = TestSchema::new();
    let together = std::sync::Barrier::new(2);
    let errors: Vec<String> = std::thread::scope(|scope| {
        let (schema, together) = (&schema, &together);
        let pods: Vec<_> = (0..2)
            .map(|pod| scope.spawn(move || busy_pod(schema, pod, together)))
            .collect();
        pods.into_iter().flat_map(|p| p.join().unwrap()).collect()
    });
    assert!(errors.is_empty(), "{errors:?}");
    let n = rows(&mut schema.open(), "SELECT count(*) FROM messages");
    assert_eq!(n[0].get::<_, i64>(0), 4000);
}

/// 20 rounds of: insert 100 messages, wait for the other pod, ack pod 0's previous 100.
/// Failures are collected, not raised, so that the other pod never waits alone.
fn busy_pod(schema: &TestSchema, pod: usize, together: &std::sync::Barrier) -> Vec<String> {
    let mut s = schema.open();
    // As on a big table: rows are locked in the order of the batch's arrays.
    exec(
        &mut s,
        "SET enable_hashjoin = off; SET enable_mergejoin = off",
    );
    let mut errors = Vec::new();
    for b in 0..20 {
        let ins: Vec<NewMessage> = (0..100)
            .map(|i| msg(&format!("p{pod}-{b}-{i}"), "bob", None))
            .collect();
        let mut acks: Vec<StatusUpdate> = (0..100)
            .map(|i| format!("p0-{}-{i}", b.max(1) - 1))
            .map(|id| update(&id, Status::Delivered, Some("bob")))
            .collect();
        if pod == 1 {
            acks.reverse();
        }
        errors.extend(s.commit(&ins, &[]).err().map(|e| e.to_string()));
        together.wait();
        errors.extend(s.commit(&[], &acks).err().map(|e| e.to_string()));
    }
    errors
}

#[test]
fn a_lost_connection_is_reopened_by_the_next_call() {
    let schema = TestSchema::new();
    let mut s = schema.open();
    let pid: i32 = rows(&mut s, "SELECT pg_backend_pid()")[0].get(0);
    admin(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
    // The first call may only learn of the loss (the writer retries); the next reconnects.
    let _ = s.commit(&[msg("m1", "bob", None)], &[]);
    s.commit(&[msg("m2", "bob", None)], &[]).unwrap();
    assert_eq!(s.status_of("m2").unwrap(), Some(Status::None));
}

/// `cargo test --lib time_full_batches -- --ignored --nocapture`
#[test]
#[ignore = "timing; prints the median of 7 runs"]
fn time_full_batches() {
    let schema = TestSchema::new();
    let mut s = schema.open();
    let (mut ins, mut ups) = (Vec::new(), Vec::new());
    for run in 0..7 {
        let batch: Vec<NewMessage> = (0..2000)
            .map(|i| NewMessage {
                payload: "x".repeat(200),
                created_at: crate::protocol::now_micros(),
                ..msg(
                    &format!("r{run}-{i}"),
                    &format!("u{}", i % 97),
                    Some(&format!("{run}-{i}")),
                )
            })
            .collect();
        let t = Instant::now();
        s.commit(&batch, &[]).unwrap();
        ins.push(t.elapsed());
        let acks: Vec<StatusUpdate> = (batch.iter())
            .map(|m| update(&m.id, Status::Delivered, Some(&m.reciever_id)))
            .collect();
        let t = Instant::now();
        s.commit(&[], &acks).unwrap();
        ups.push(t.elapsed());
    }
    ins.sort();
    ups.sort();
    eprintln!("2000 inserts: median {:?} of {ins:?}", ins[3]);
    eprintln!("2000 updates: median {:?} of {ups:?}", ups[3]);
}

/// A deployment on schema version 1 (global seq under the insert lock) upgrades in place:
/// stored messages keep their replay order, and new ones for the same recipient follow them.
#[test]
fn version_1_data_migrates_to_per_recipient_order() {
    let schema = TestSchema::new();
    let v1 = MIGRATIONS[0].1;
    let name = &schema.name;
    admin(&format!(
        "CREATE SCHEMA {name}; SET search_path TO {name}; {v1}
         CREATE TABLE schema_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (version) VALUES (1);
         INSERT INTO messages (id, sender_id, reciever_id, payload, created_at)
         VALUES ('old1', 'alice', 'bob', 'x', now()), ('old2', 'alice', 'carol', 'x', now()),
                ('old3', 'alice', 'bob', 'x', now());"
    ))
    .unwrap();
    let mut s = schema.open();
    let (ins, _) = s.commit(&[msg("new1", "bob", None)], &[]).unwrap();
    let pending = s.pending("bob", 0, 10).unwrap();
    let order: Vec<&str> = pending.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(order, ["old1", "old3", "new1"]);
    let seqs: Vec<i64> = pending.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        [1, 2, 3],
        "renumbered from 1 by 0004, the new one after them"
    );
    let InsertResult::Inserted { at } = ins[0] else {
        panic!("{ins:?}")
    };
    assert_eq!(
        (at.rpos, at.spos, at.cseq),
        (3, 4, 3),
        "alice sent old1..3 before"
    );
}

/// `cargo test --release --lib time_small_commits -- --ignored --nocapture`
#[test]
#[ignore = "timing; prints the mean of 200 one-row commits"]
fn time_small_commits() {
    let schema = TestSchema::new();
    let mut s = schema.open();
    let t = Instant::now();
    for i in 0..200 {
        s.commit(&[msg(&format!("s{i}"), &format!("u{}", i % 7), None)], &[])
            .unwrap();
    }
    eprintln!("one-row insert commit: {:?} mean", t.elapsed() / 200);
    let t = Instant::now();
    for i in 0..200 {
        let u = update(
            &format!("s{i}"),
            Status::Delivered,
            Some(&format!("u{}", i % 7)),
        );
        s.commit(&[], &[u]).unwrap();
    }
    eprintln!("one-row ack commit: {:?} mean", t.elapsed() / 200);
}

/// The COMMIT succeeded but its reply was lost (a failpoint): the store thread retries the
/// batch, and the sender hears `accepted` once, with the seq the row got, instead of
/// `store_unavailable` for a message that is stored.
#[test]
fn a_lost_commit_reply_is_retried_and_answered_accepted_once() {
    use crate::backend::store::{spawn_writer, EventSink, ReplyTo, StoreCmd, StoreEvent};
    #[derive(Clone, Default)]
    struct Events(std::sync::Arc<std::sync::Mutex<Vec<StoreEvent>>>);
    impl EventSink for Events {
        fn emit(&self, events: Vec<StoreEvent>) {
            self.0.lock().unwrap().extend(events);
        }
    }
    let schema = TestSchema::new();
    let mut store = schema.open();
    store.lose_commit_replies = 1;
    let events = Events::default();
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new(1));
    let tuning = crate::backend::store::StoreTuning::default();
    let (handle, thread) = spawn_writer(store, events.clone(), tuning, metrics);
    let reply = ReplyTo { shard: 0, conn: 1 };
    let cmd = StoreCmd::Insert {
        msg: msg("m1", "bob", None),
        reply,
    };
    handle.try_submit(cmd).unwrap();
    handle.sync();
    handle.stop();
    thread.join().unwrap();
    let mut check = schema.open();
    let row = &rows(
        &mut check,
        "SELECT rpos, spos, cseq FROM messages WHERE id = 'm1'",
    )[0];
    let at = crate::backend::store::Positions {
        rpos: row.get(0),
        spos: row.get(1),
        cseq: row.get(2),
    };
    let events = events.0.lock().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    match &events[0] {
        StoreEvent::Inserted { msg, result, .. } => {
            assert_eq!(msg.id, "m1");
            assert_eq!(*result, InsertResult::Inserted { at });
        }
        other => panic!("{other:?}"),
    }
    let n: i64 = rows(&mut check, "SELECT count(*) FROM messages")[0].get(0);
    assert_eq!(n, 1);
}

/// A TCP relay to Postgres that, once `hold` is set, swallows every byte both ways (the
/// connection goes silent without a reset, as in a partition) or, with `cut`, closes the
/// connections it carries.
fn blackholing_proxy(hold: std::sync::Arc<std::sync::atomic::AtomicBool>, cut: bool) -> u16 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config: Config = url().parse().unwrap();
    let upstream = (
        "127.0.0.1",
        config.get_ports().first().copied().unwrap_or(5432),
    );
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect(upstream).unwrap();
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                let hold = hold.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        let held = hold.load(std::sync::atomic::Ordering::SeqCst);
                        if held && cut || !held && to.write_all(&buf[..n]).is_err() {
                            let _ = to.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                    }
                });
            }
        }
    });
    port
}

/// A connection that goes silent fails the call after the reply timeout (instead of holding
/// the store thread forever) and is dropped; the next call reconnects and works.
#[test]
fn a_silent_connection_fails_the_call_in_time_and_is_replaced() {
    let hold = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = blackholing_proxy(hold.clone(), false);
    let schema = TestSchema::new();
    drop(schema.open()); // migrated directly, not through the proxy
    let proxied = format!("postgres://postgres@127.0.0.1:{port}/test");
    let mut s = PostgresStore::connect(&proxied, &schema.name).unwrap();
    s.reply_timeout = Duration::from_secs(1);
    s.commit(&[msg("before", "bob", None)], &[]).unwrap();
    hold.store(true, std::sync::atomic::Ordering::SeqCst);
    let t = Instant::now();
    let e = s.commit(&[msg("during", "bob", None)], &[]).unwrap_err();
    assert!(
        e.to_string().contains("no reply from postgres within 1s"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    hold.store(false, std::sync::atomic::Ordering::SeqCst);
    s.commit(&[msg("after", "bob", None)], &[]).unwrap();
    let ids: Vec<String> = (s.pending("bob", 0, 10).unwrap().into_iter())
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, ["before", "after"], "the silent call stored nothing");
}

/// The status relay's connection is replaced after it was lost (before, the relay kept
/// failing on the dead connection until the pod restarted: found by the chaos suite).
#[test]
fn the_status_outbox_reconnects_after_its_connection_is_lost() {
    let hold = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = blackholing_proxy(hold.clone(), true);
    let schema = TestSchema::new();
    drop(schema.open());
    let proxied = format!("postgres://postgres@127.0.0.1:{port}/test");
    let store = PostgresStore::connect(&proxied, &schema.name).unwrap();
    let mut outbox = store.outbox().unwrap();
    assert_eq!(outbox.begin(10).unwrap(), Some(Vec::new()));
    outbox.abort();
    hold.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        outbox.begin(10).is_err(),
        "the cut connection fails the round"
    );
    hold.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        outbox.begin(10).unwrap(),
        Some(Vec::new()),
        "a new connection"
    );
    outbox.abort();
}
