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
//! on one pod; recipients are still shared). `pg_flushers_many_users` keeps each flusher's
//! senders and spreads the recipients over a million users, as in a large deployment where two
//! pods rarely write one user's stream at the same moment: what is left of the contention on
//! per-user positions (each counter row stays locked until COMMIT) shows against the other two.

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

/// Who writes to whom (see the module doc).
#[derive(Clone, Copy)]
enum Traffic {
    Shared,
    OwnSenders,
    ManyUsers,
}

fn batch(flusher: usize, round: u64, traffic: Traffic) -> Vec<NewMessage> {
    (0..BATCH as u64)
        .map(|i| {
            let n = round * BATCH as u64 + i;
            let sender = match traffic {
                Traffic::Shared => n % 1000,
                _ => (n % 250) * 4 + flusher as u64,
            };
            let recipient = match traffic {
                // Above the senders' ids, scattered (a multiplicative hash of n and flusher).
                Traffic::ManyUsers => {
                    let h = (n ^ (flusher as u64) << 56).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    1000 + (h >> 20) % 1_000_000
                }
                _ => (n * 7 + flusher as u64) % 1000,
            };
            NewMessage {
                id: format!("f{flusher}-{n}-{}", std::process::id()),
                sender_id: format!("user-{sender}"),
                reciever_id: format!("user-{recipient}"),
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
fn run(stores: &mut [PostgresStore], iters: u64, round0: u64, traffic: Traffic) -> Duration {
    let start = Barrier::new(stores.len());
    let start = &start;
    let times: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (stores.iter_mut().enumerate())
            .map(|(f, store)| {
                s.spawn(move || {
                    start.wait();
                    let t = Instant::now();
                    for r in 0..iters {
                        let ms = batch(f, round0 + r, traffic);
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
    for traffic in [Traffic::Shared, Traffic::OwnSenders, Traffic::ManyUsers] {
        group(c, traffic);
    }
}

fn group(c: &mut Criterion, traffic: Traffic) {
    let name = match traffic {
        Traffic::Shared => "pg_flushers",
        Traffic::OwnSenders => "pg_flushers_own_senders",
        Traffic::ManyUsers => "pg_flushers_many_users",
    };
    let schema = format!("bench_{name}_{}", std::process::id());
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
                run(&mut stores, iters, (n as u64) << 40 | base, traffic)
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
