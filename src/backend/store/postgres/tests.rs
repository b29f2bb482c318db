//! Against a real server: `DISTRISOCKS_TEST_POSTGRES_URL`, by default the local trust-auth
//! `postgres://postgres@127.0.0.1:5432/test`. Each test works in a fresh schema of its own, so
//! tests run in parallel and leave nothing behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

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
fn inserts_dedupe_and_replay_in_order() {
    run(c::inserts_dedupe_and_replay_in_order);
}

#[test]
fn statuses_only_move_forward_and_acks_check_the_recipient() {
    run(c::statuses_only_move_forward_and_acks_check_the_recipient);
}

#[test]
fn stuck_lists_old_none_and_old_sent_only() {
    run(c::stuck_lists_old_none_and_old_sent_only);
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
fn a_failed_batch_commits_nothing() {
    run(c::a_failed_batch_commits_nothing);
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
    assert_eq!(versions, [1]);
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
    assert_eq!(n[0].get::<_, i64>(0), 1);
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
    let clash = [msg("x", "bob", None), msg("x", "bob", None)];
    match s.commit(&clash, &[]) {
        Err(StoreError::Query(e)) => assert!(e.contains("duplicate key value"), "{e}"),
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
fn stuck_reads_the_partial_indexes() {
    let schema = TestSchema::new();
    let mut s = schema.open();
    exec(&mut s, "SET enable_seqscan = off");
    let sql = STUCK_SQL
        .replace("$1", "now()")
        .replace("$2", "now()")
        .replace("$3", "10")
        .replace("$4", "0");
    let plan = rows(&mut s, &format!("EXPLAIN {sql}"));
    let plan: Vec<String> = plan.iter().map(|r| r.get(0)).collect();
    let plan = plan.join("\n");
    assert!(plan.contains("messages_stuck_none"), "{plan}");
    assert!(plan.contains("messages_stuck_sent"), "{plan}");
}

/// The insert lock makes `seq` order commit order across pods: a second inserter waits.
#[test]
fn inserting_batches_take_turns() {
    let schema = TestSchema::new();
    let mut holder = schema.open();
    let key = schema_key(&schema.name);
    exec(
        &mut holder,
        &format!("BEGIN; SELECT pg_advisory_xact_lock({INSERT_LOCK}, {key})"),
    );
    let mut s = schema.open();
    let (done, finished) = std::sync::mpsc::channel();
    let pod = std::thread::spawn(move || {
        let r = s.commit(&[msg("m1", "bob", None)], &[]).map(|_| ());
        done.send(()).unwrap();
        r.is_ok()
    });
    let wait = finished.recv_timeout(Duration::from_millis(300));
    assert!(wait.is_err(), "the insert did not wait for the lock");
    exec(&mut holder, "COMMIT");
    finished.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(pod.join().unwrap());
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
        // Separate commits: update-only batches do not take the insert lock.
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
