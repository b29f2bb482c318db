//! Hot paths of the message path besides the codec: route lookup, store batches, hand-offs
//! between threads and cores. `cargo bench --bench hot_paths`; figures in perf/RESULTS.md.
//!
//! - `route/*`: the embedded route table (home-shard hash, directory lookup at 20k users).
//! - `users/*`: the user directory a send checks its recipient against (1M users), and
//!   one update of it (what a record of the auth service's topic costs the feeder), against
//!   a std `HashSet` probe of the same keys in the same run.
//! - `store/*`: one SQLite transaction (synchronous=NORMAL, as `--store-full-sync false`) per
//!   iteration, per command: batch size, and SENT+DELIVERED written apart vs folded into one
//!   update (what the store thread does when both are queued in one batch).
//! - `handoff/*`: store thread -> shard executor, one inbox message per event vs one per
//!   batch; and a request/reply between two executors (a cross-shard route lookup).

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use distrisocks::backend::routes::{home_shard, Directory};
use distrisocks::backend::store::{MessageStore, NewMessage, SqliteStore, StatusUpdate};
use distrisocks::protocol::Status;
use glommio::{LocalExecutorBuilder, Placement};

fn route(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(1));
    let users: Vec<String> = (0..20_000).map(|i| format!("user-{i}")).collect();
    let mut dir = Directory::default();
    for (i, u) in users.iter().enumerate() {
        dir.add(u, (i % 2) as u16);
    }
    g.bench_function("home_shard", |b| {
        b.iter(|| home_shard(black_box("user-12345"), 16))
    });
    let mut i = 0;
    g.bench_function("directory_shards_of_20k", |b| {
        b.iter(|| {
            i = (i + 7919) % users.len();
            dir.shards_of(black_box(&users[i]))
        })
    });
    g.finish();
}

fn users(c: &mut Criterion) {
    use distrisocks::backend::users::{UserDirectory, UserEvent};
    let mut g = c.benchmark_group("users");
    g.throughput(Throughput::Elements(1));
    let ids: Vec<String> = (0..1_000_000).map(|i| format!("user-{i}")).collect();
    let dir = UserDirectory::default();
    dir.apply(ids.iter().map(|id| UserEvent::Created {
        user_id: id.clone(),
        name: None,
    }));
    let mut i = 0;
    g.bench_function("knows_of_1m", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            dir.knows(black_box(&ids[i]))
        })
    });
    // The same-run baseline: one probe of a std HashSet of the same keys, same stride.
    let flat: std::collections::HashSet<&str> = ids.iter().map(|s| s.as_str()).collect();
    let mut j = 0;
    g.bench_function("std_hashset_of_1m", |b| {
        b.iter(|| {
            j = (j + 7919) % ids.len();
            flat.contains(black_box(ids[j].as_str()))
        })
    });
    let mut n = 0u64;
    g.bench_function("apply_one_of_1m", |b| {
        b.iter(|| {
            n += 1;
            dir.apply([UserEvent::Created {
                user_id: format!("new-{n}"),
                name: None,
            }])
        })
    });
    g.finish();
}

fn message(n: u64) -> NewMessage {
    NewMessage {
        id: format!("01a220d3-e489-7599-9ae4-{n:012}"),
        sender_id: format!("user-{}", n % 1000),
        reciever_id: format!("user-{}", (n + 500) % 1000),
        client_msg_id: Some(format!("c-{n}")),
        payload: "x".repeat(100),
        created_at: 1_795_846_207_000_000 + n as i64,
    }
}

fn update(id: &str, status: Status) -> StatusUpdate {
    StatusUpdate {
        id: id.to_owned(),
        status,
        recipient: None,
        at: 1_795_846_207_000_000,
    }
}

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = std::cell::RefCell::new(SqliteStore::open(dir.path(), false).unwrap());
    let mut next = 0u64;
    let mut fresh = |n: usize| -> Vec<NewMessage> {
        (0..n)
            .map(|_| {
                next += 1;
                message(next)
            })
            .collect()
    };
    let mut g = c.benchmark_group("store");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for n in [1usize, 64, 1024] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("insert_batch_{n}"), |b| {
            b.iter_batched(
                || fresh(n),
                |batch| db.borrow_mut().commit(&batch, &[]).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    // Per message: SENT then DELIVERED as two updates, or folded into DELIVERED alone. The
    // messages are inserted in the setup, outside the timed part.
    let n = 256;
    g.throughput(Throughput::Elements(n as u64));
    for folded in [false, true] {
        let name = if folded {
            "statuses_folded_256"
        } else {
            "statuses_apart_256"
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let batch = fresh(n);
                    db.borrow_mut().commit(&batch, &[]).unwrap();
                    let mut ups = Vec::with_capacity(2 * n);
                    for m in &batch {
                        if !folded {
                            ups.push(update(&m.id, Status::Sent));
                        }
                        ups.push(update(&m.id, Status::Delivered));
                    }
                    ups
                },
                |ups| db.borrow_mut().commit(&[], &ups).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// A shard executor on CPU `cpu` that counts what arrives and reports every `every` items.
fn counting_shard(
    cpu: usize,
    every: u64,
) -> (
    async_channel::Sender<Vec<u64>>,
    async_channel::Sender<u64>,
    crossbeam_channel::Receiver<()>,
) {
    let (batch_tx, batch_rx) = async_channel::bounded::<Vec<u64>>(1024);
    let (one_tx, one_rx) = async_channel::bounded::<u64>(65_536);
    let (done_tx, done_rx) = crossbeam_channel::bounded(16);
    LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .spawn(move || async move {
            let seen = std::rc::Rc::new(std::cell::Cell::new(0u64));
            let count = {
                let seen = seen.clone();
                move |x: u64| {
                    black_box(x);
                    seen.set(seen.get() + 1);
                    if seen.get() % every == 0 {
                        let _ = done_tx.send(());
                    }
                }
            };
            let singles = {
                let count = count.clone();
                glommio::spawn_local(async move {
                    while let Ok(x) = one_rx.recv().await {
                        count(x);
                    }
                })
            };
            while let Ok(v) = batch_rx.recv().await {
                v.into_iter().for_each(&count);
            }
            singles.await;
        })
        .unwrap();
    (batch_tx, one_tx, done_rx)
}

fn handoff(c: &mut Criterion) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut g = c.benchmark_group("handoff");
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    let n = 64u64;
    g.throughput(Throughput::Elements(n));
    let (batch_tx, one_tx, done) = counting_shard(cpus - 1, n);
    g.bench_function("thread_to_shard_per_event_64", |b| {
        b.iter(|| {
            for i in 0..n {
                one_tx.send_blocking(i).unwrap();
            }
            done.recv().unwrap();
        })
    });
    g.bench_function("thread_to_shard_per_batch_64", |b| {
        b.iter(|| {
            batch_tx.send_blocking((0..n).collect()).unwrap();
            done.recv().unwrap();
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("shard_to_shard_request_reply", |b| {
        b.iter_custom(|iters| request_reply(iters, cpus))
    });
    g.finish();
}

/// `iters` request/reply round trips from an executor on CPU 0 to one on the last CPU, the
/// shape of an embedded route lookup on another shard.
fn request_reply(iters: u64, cpus: usize) -> Duration {
    type Req = (u64, futures::channel::oneshot::Sender<u64>);
    let (tx, rx) = async_channel::bounded::<Req>(1024);
    let server = LocalExecutorBuilder::new(Placement::Fixed(cpus - 1))
        .spawn(move || async move {
            while let Ok((x, reply)) = rx.recv().await {
                let _ = reply.send(x + 1);
            }
        })
        .unwrap();
    let client = LocalExecutorBuilder::new(Placement::Fixed(0))
        .spawn(move || async move {
            let started = Instant::now();
            for i in 0..iters {
                let (reply, answer) = futures::channel::oneshot::channel();
                tx.send((i, reply)).await.unwrap();
                black_box(answer.await.unwrap());
            }
            started.elapsed()
        })
        .unwrap();
    let took = client.join().unwrap();
    server.join().unwrap();
    took
}

criterion_group!(benches, route, users, store, handoff);
criterion_main!(benches);
