//! Postgres group commit with 1, 2 and 4 concurrent flushers (each a store on its own
//! connection, as the flushers of one pod or of several pods are): is there a serial point?
//! `cargo bench --bench pg_flushers` (needs Postgres: `DISTRISOCKS_TEST_POSTGRES_URL`, default
//! the local trust-auth `postgres://postgres@127.0.0.1:5432/test`); figures in perf/RESULTS.md.
//!
//! One iteration = every flusher commits one batch of 64 inserts (1:1 traffic over 1000
//! recipients, so flushers share recipients as pods do), then one batch acking them. Throughput
//! is messages (insert + ack) per second over all flushers.
//!
//! Since protocol v2 an insert also locks its sender's stream and its conversation. Two
//! groups: `pg_flushers` (every flusher's batch has the *same* 64 senders in each round: the
//! worst case, as if each sender wrote through every pod at once) and
//! `pg_flushers_own_senders` (each flusher has its own senders, as a user's connection lives
//! on one pod; recipients are still shared).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use distrisocks::backend::store::{MessageStore, NewMessage, PostgresStore, StatusUpdate};
use distrisocks::protocol::Status;

const BATCH: usize = 64;

fn url() -> String {
    std::env::var("DISTRISOCKS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn batch(flusher: usize, round: u64, own_senders: bool) -> Vec<NewMessage> {
    (0..BATCH as u64)
        .map(|i| {
            let n = round * BATCH as u64 + i;
            let sender = match own_senders {
                true => (n % 250) * 4 + flusher as u64,
                false => n % 1000,
            };
            NewMessage {
                id: format!("f{flusher}-{n}-{}", std::process::id()),
                sender_id: format!("user-{sender}"),
                reciever_id: format!("user-{}", (n * 7 + flusher as u64) % 1000),
                client_msg_id: None,
                payload: "x".repeat(100),
                created_at: 1_795_846_207_000_000 + n as i64,
            }
        })
        .collect()
}

fn acks(ms: &[NewMessage]) -> Vec<StatusUpdate> {
    (ms.iter())
        .map(|m| StatusUpdate {
            id: m.id.clone(),
            status: Status::Delivered,
            recipient: Some(m.reciever_id.clone()),
            at: m.created_at + 1,
        })
        .collect()
}

/// `iters` rounds on each of `stores` at once; the wall time of the slowest.
fn run(stores: &mut [PostgresStore], iters: u64, round0: u64, own: bool) -> Duration {
    let start = Barrier::new(stores.len());
    let start = &start;
    let times: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (stores.iter_mut().enumerate())
            .map(|(f, store)| {
                s.spawn(move || {
                    start.wait();
                    let t = Instant::now();
                    for r in 0..iters {
                        let ms = batch(f, round0 + r, own);
                        store.commit(&ms, &[]).expect("insert batch");
                        store.commit(&[], &acks(&ms)).expect("ack batch");
                    }
                    t.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    times.into_iter().max().unwrap_or_default()
}

fn flushers(c: &mut Criterion) {
    for own in [false, true] {
        group(c, own);
    }
}

fn group(c: &mut Criterion, own: bool) {
    let schema = format!("bench_flushers_{}_{own}", std::process::id());
    let name = if own {
        "pg_flushers_own_senders"
    } else {
        "pg_flushers"
    };
    let mut g = c.benchmark_group(name);
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for n in [1usize, 2, 4] {
        let mut stores: Vec<PostgresStore> = (0..n)
            .map(|_| PostgresStore::connect(&url(), &schema).expect("postgres reachable"))
            .collect();
        g.throughput(Throughput::Elements((n * BATCH) as u64));
        let mut next = 0u64;
        g.bench_function(format!("{n}"), |b| {
            b.iter_custom(|iters| {
                let base = next;
                next += iters;
                run(&mut stores, iters, (n as u64) << 40 | base, own)
            })
        });
    }
    g.finish();
    let drop = std::process::Command::new("psql")
        .arg(url())
        .args(["-qc", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")])
        .status();
    if !matches!(drop, Ok(s) if s.success()) {
        eprintln!("bench schema {schema} not dropped");
    }
}

criterion_group!(benches, flushers);
criterion_main!(benches);
