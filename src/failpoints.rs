//! Crash points at the message path's precise windows, for the crash tests
//! (`tests/crash_windows.rs`, issue 11), and fault points that make one operation fail as a
//! race or a full descriptor table would (`tests/fault_points.rs`). Built only with
//! `--features failpoints`, which release builds refuse; without it [`crash_point`] and
//! [`fault_point`] are empty inline functions.
//!
//! Armed at start from the `FAILPOINTS` environment variable, in the `fail` crate's syntax
//! (`FAILPOINTS='after_commit_before_accepted=return'`): `return` aborts the process right
//! there, as a `kill -9` at that instant would; `sleep(ms)`, `pause` and `panic` act as the
//! crate defines them. The points, in message-path order:
//!
//! | name | where |
//! |---|---|
//! | `after_commit_before_accepted` | the store committed a batch; no shard has heard of it |
//! | `after_produce_before_sent` | the broker acknowledged a record; SENT is not submitted |
//! | `after_consume_before_offset` | a consumed record reached the socket writers; its offset is not stored |
//! | `after_status_commit_before_event` | the relay read committed status events; none is produced |
//!
//! Fault points (armed with `return`, the operation fails and the pod goes on):
//!
//! | name | what fails |
//! |---|---|
//! | `accept_reserve_lost` | retaking the accept loop's spare descriptor after shedding a connection, as when another thread opened a file in that instant |
//! | `steer_dup_fails` | duplicating an upgraded socket's descriptor to hand it to its home shard |

/// Aborts the process here when the point `name` is armed with `return`.
#[cfg(feature = "failpoints")]
pub fn crash_point(name: &str) {
    if fail::eval(name, |_| ()).is_some() {
        eprintln!("failpoint {name}: aborting the process");
        std::process::abort();
    }
}

/// Failpoints are compiled out.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn crash_point(_name: &str) {}

/// True when the point `name` is armed with `return`: the caller then fails the operation
/// the point names. Logged, so a test can tell that the fault was injected.
#[cfg(feature = "failpoints")]
pub fn fault_point(name: &str) -> bool {
    let fired = fail::eval(name, |_| ()).is_some();
    if fired {
        tracing::warn!(point = name, "failpoint fired");
    }
    fired
}

/// Failpoints are compiled out.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn fault_point(_name: &str) -> bool {
    false
}

/// Arms the points named in `FAILPOINTS`; they stay armed while the guard lives.
#[cfg(feature = "failpoints")]
pub fn arm_from_env() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}
