//! Operations that fail in a narrow window (a race with another thread, a full descriptor
//! table) made to fail on purpose through the fault points of `src/failpoints.rs`, and what
//! the pod does then: no client left hanging, no message lost or shown twice.
//!
//! Needs `--features failpoints`: `cargo test --features failpoints --test fault_points`;
//! `scripts/test.sh` runs it.
#![cfg(feature = "failpoints")]

mod common;

use common::process::{upgrade_each, upgrade_or_closed, ProcPod};
use common::*;

fn fired(pod: &ProcPod, point: &str) -> bool {
    pod.log()
        .iter()
        .any(|l| l.contains("failpoint fired") && l.contains(point))
}

/// Out of descriptors, the accept loop sheds a connection with its spare descriptor and
/// retakes the spare. Here the retake fails once, as when another thread of the pod opened
/// a file in that instant. The slot is free again a moment later: the next connection must
/// not be served in it (the table would be full with no spare, and every client after it
/// would hang until a socket closed), so it is shed too and the spare taken back. Every one
/// of the 150 clients is upgraded or closed; none waits for its timeout.
#[test]
fn a_spare_descriptor_lost_to_a_race_is_taken_back_before_serving_again() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("FAILPOINTS", "accept_reserve_lost=1*return")];
    let args = ["--shards", "1", "--max-connections", "10000"];
    let pod = ProcPod::start_env(dir.path(), Some(96), &env, &args);
    let (open, shed) = upgrade_each(pod.addr, 150);
    assert!(fired(&pod, "accept_reserve_lost"), "the fault was injected");
    assert!(shed > 1, "open {} shed {shed}", open.len());
    drop(open);
    assert!(
        eventually(|| upgrade_or_closed(pod.addr, 1000).is_some()),
        "the pod serves again once sockets closed"
    );
}

/// A connection accepted on a shard other than its user's home is handed over as a
/// duplicate of its descriptor. When the duplicate cannot be made (no descriptor left), the
/// session runs where it was accepted: messages to and from such users still arrive once
/// each, with their statuses.
#[test]
fn a_connection_that_cannot_be_steered_is_served_where_it_was_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("FAILPOINTS", "steer_dup_fails=return")];
    let pod = ProcPod::start_env(dir.path(), None, &env, &["--shards", "2"]);
    // The kernel picks the accepting shard: connect until one connection was not steered.
    let mut clients = Vec::new();
    while clients.len() < 8 || (!fired(&pod, "steer_dup_fails") && clients.len() < 200) {
        let home = clients.len() % 2;
        clients.push(Client::connect(pod.addr, &user_homed("u", home, 2)));
    }
    assert!(
        eventually(|| fired(&pod, "steer_dup_fails")),
        "some connection was accepted away from its home shard"
    );
    if clients.len() % 2 == 1 {
        clients.pop();
    }
    for pair in clients.chunks_mut(2) {
        let [a, b] = pair else { unreachable!() };
        send_and_confirm(a, b, "there");
        send_and_confirm(b, a, "and back");
    }
    // One copy each: no frame other than the settle answer is left on any connection.
    for c in &mut clients {
        c.settled();
    }
}
