use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::*;

fn at(pod: &str, shard: u16) -> Location {
    Location {
        pod: pod.into(),
        shard,
    }
}

/// Each place's lease runs out the given ms after now.
fn fetched(places: &[(&str, i64)], round: u64, epoch: u64) -> Fetched {
    let now = local_ms();
    Fetched {
        places: places.iter().map(|(p, e)| (at(p, 0), now + *e)).collect(),
        round,
        epoch,
    }
}

fn cache(max_age_ms: u64) -> (ShardCache, Sender<Invalidation>, Arc<CacheShared>) {
    let shared = Arc::new(CacheShared::new(Duration::from_millis(max_age_ms)));
    let (tx, rx) = crossbeam_channel::unbounded();
    (ShardCache::new(shared.clone(), rx), tx, shared)
}

fn invalidate(tx: &Sender<Invalidation>, user: &str, round: u64) {
    tx.send(Invalidation {
        user: user.into(),
        round,
    })
    .unwrap();
}

#[test]
fn a_fill_is_served_while_round_trips_vouch_for_it_and_expired_places_are_left_out() {
    let (mut c, _tx, shared) = cache(60_000);
    c.fill("u", fetched(&[("a", 1_000), ("b", 2_000)], 1, 0));
    assert_eq!(c.get("u"), None, "no round trip completed yet");
    shared.completed(Instant::now());
    assert_eq!(c.get("u"), Some(vec![at("a", 0), at("b", 0)]));
    shared.set_clock_offset(1_500); // Redis' clock 1.5 s ahead of this host's.
    assert_eq!(c.get("u"), Some(vec![at("b", 0)]), "a's lease ran out");
    assert_eq!(c.get("other"), None);
}

#[test]
fn a_quiet_route_thread_sends_lookups_to_redis() {
    let (mut c, _tx, shared) = cache(5);
    shared.completed(Instant::now());
    c.fill("u", fetched(&[("a", 1_000)], 1, 0));
    assert!(c.get("u").is_some());
    std::thread::sleep(Duration::from_millis(20)); // Ages the last round trip past 5 ms.
    assert_eq!(c.get("u"), None);
}

#[test]
fn an_invalidation_drops_entries_read_in_its_round_trip_or_earlier() {
    let (mut c, tx, shared) = cache(60_000);
    shared.completed(Instant::now());
    c.fill("u", fetched(&[("a", 1_000)], 5, 0));
    c.fill("v", fetched(&[("a", 1_000)], 7, 0));
    invalidate(&tx, "u", 5);
    invalidate(&tx, "v", 6); // A write v's later read already saw.
    assert_eq!(c.get("u"), None);
    assert!(c.get("v").is_some());
}

#[test]
fn a_fill_read_before_an_invalidation_already_drained_is_refused() {
    let (mut c, tx, shared) = cache(60_000);
    shared.completed(Instant::now());
    invalidate(&tx, "u", 8);
    assert_eq!(c.get("u"), None); // Drains the invalidation.
    c.fill("u", fetched(&[("a", 1_000)], 8, 0));
    assert_eq!(c.get("u"), None, "read in the invalidation's round trip");
    c.fill("u", fetched(&[("b", 1_000)], 9, 0));
    assert_eq!(c.get("u"), Some(vec![at("b", 0)]));
}

#[test]
fn a_flush_empties_the_cache_and_refuses_fills_read_before_it() {
    let (mut c, _tx, shared) = cache(60_000);
    shared.completed(Instant::now());
    c.fill("u", fetched(&[("a", 1_000)], 1, 0));
    shared.flush();
    assert_eq!(c.get("u"), None);
    c.fill("u", fetched(&[("a", 1_000)], 2, 0));
    assert_eq!(c.get("u"), None, "read on the connection before the flush");
    c.fill("u", fetched(&[("a", 1_000)], 3, 1));
    assert!(c.get("u").is_some());
}

#[test]
fn a_fill_too_old_to_judge_is_refused_and_remembered_invalidations_stay_bounded() {
    let (mut c, tx, shared) = cache(60_000);
    shared.completed(Instant::now());
    let users = MAX_REMEMBERED as u64 + 10;
    for i in 0..users {
        invalidate(&tx, &format!("x{i}"), KEEP_ROUNDS * 2 * i / users);
    }
    c.get("none");
    assert!(
        c.invalidated.len() <= MAX_REMEMBERED,
        "{}",
        c.invalidated.len()
    );
    c.fill("old", fetched(&[("a", 1_000)], 1, 0));
    assert_eq!(c.get("old"), None);
}

#[test]
fn with_no_max_age_nothing_is_cached() {
    let (mut c, _tx, shared) = cache(0);
    shared.completed(Instant::now());
    c.fill("u", fetched(&[("a", 1_000)], 1, 0));
    assert_eq!(c.get("u"), None);
}

#[test]
fn a_shard_whose_queue_is_full_loses_its_whole_cache_instead_of_an_invalidation() {
    let shared = CacheShared::new(Duration::from_millis(60_000));
    let (tx, rx) = crossbeam_channel::bounded(1);
    tell(std::slice::from_ref(&tx), &shared, "u", 1);
    assert_eq!(shared.epoch(), 0);
    tell(std::slice::from_ref(&tx), &shared, "v", 1);
    assert_eq!(shared.epoch(), 1, "v's invalidation did not fit");
    assert_eq!(&*rx.try_recv().unwrap().user, "u");
}
