//! The accept loop of one shard. Every shard binds the same address with SO_REUSEPORT, so
//! the kernel spreads new connections over the cores; an upgraded messaging connection then
//! moves to its user's home shard (`--steer-connections`), where the user's routes are, so
//! that a message and its statuses cross fewer cores.

use std::rc::Rc;
use std::time::Duration;

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};

use glommio::net::{TcpListener, TcpStream};

use super::handshake::{handshake, Upgraded};
use super::session::Setup;
use crate::shard::{HeldSlots, Shard, ShardMsg};

/// Accepts until the task is dropped (shutdown drops it, closing the listener).
///
/// Out of descriptors (EMFILE/ENFILE: the connection cap is set above the open-file limit, or
/// the pod's other files grew into its reserve), the loop sheds the pending connection with a
/// spare from the pod's pool ([`Spares`](crate::shard::Spares)). A slot freed that way may be
/// taken by any thread of the process in between, so no connection is served while the pool
/// is short and cannot be topped up: with the table full and no spare, every later client
/// would hang until a socket closed.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let spares = &shard.pod.spares;
    let failures = crate::metrics::LogEvery::default();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if !spares.refill() {
                    // This connection took a spare's slot: it is shed and the slot goes back.
                    drop(stream);
                    spares.refill();
                    continue;
                }
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "set_nodelay failed");
                }
                shard.pod.sockets.opened();
                glommio::spawn_local(serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                if let Some(n) = failures.count_now() {
                    let id = shard.id;
                    tracing::warn!(shard = id, error = %e, failed = n, "accepts failed (latest error shown)");
                }
                if out_of_descriptors(&e) && shed(spares, &listener).await {
                    continue;
                }
                // Back off instead of spinning; existing sockets go on.
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Frees a spare, accepts the pending connection in its slot and closes it at once, then tops
/// the pool up; true when it is full again.
async fn shed(spares: &crate::shard::Spares, listener: &TcpListener) -> bool {
    if let Some(spare) = spares.take() {
        drop(spare);
        drop(listener.accept().await);
    }
    if crate::failpoints::fault_point("accept_reserve_lost") {
        return false; // As if another thread had opened a file in this instant.
    }
    spares.refill()
}

fn out_of_descriptors(e: &glommio::GlommioError<()>) -> bool {
    matches!(e, glommio::GlommioError::IoError(io)
        if matches!(io.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)))
}

/// One accepted socket from handshake to close; counted open (`SocketCaps`) from the accept
/// until it ends (the connection or echo task gives the count back itself).
///
/// The upgraded connection runs as a task of its own: awaited here, it would sit inside
/// this task's state beside the stream this function was given (an async fn keeps room for
/// its arguments while it lives), 1,104 B per idle connection instead of the session's own
/// few hundred (perf/RESULTS.md §18).
pub(super) async fn serve(shard: Rc<Shard>, mut stream: TcpStream) {
    // Boxed so its ~2 KiB of state (head and drain buffers, timeout) is freed once the
    // upgrade is done.
    match Box::pin(handshake(&shard, &mut stream)).await {
        Some(Upgraded::Ws {
            user,
            rest,
            ip,
            since,
            expires_at,
        }) => {
            let setup = super::session::Setup {
                ip,
                since,
                expires_at,
            };
            let home = super::handshake::serving_shard(&shard, &user);
            if home != shard.id {
                hand_over(&shard, home, stream, user, rest, setup).await;
            } else {
                glommio::spawn_local(super::session::run(shard, stream, user, rest, setup))
                    .detach();
            }
        }
        Some(Upgraded::Api { head, rest }) => {
            glommio::spawn_local(super::api::serve(shard, stream, head, rest)).detach();
        }
        Some(Upgraded::Echo { rest, ip }) => {
            glommio::spawn_local(super::echo::run(shard, stream, rest, ip)).detach();
        }
        None => shard.pod.sockets.closed(),
    }
}

/// Moves an upgraded connection to `home`, its user's home shard (`--steer-connections`),
/// where its session runs: the socket travels as a duplicate of its descriptor (the stream
/// this executor polled is closed here; none of its operations is pending after the
/// upgrade), with the bytes read past the upgrade. Out of descriptors, the session runs
/// here instead (its `X-Distrisocks-Shard` header named `home` all the same): steering
/// saves cross-core hops, nothing depends on it. When `home` has
/// stopped (the pod is shutting down) the connection is closed, as shutdown closes every
/// other one.
async fn hand_over(
    shard: &Rc<Shard>,
    home: usize,
    stream: TcpStream,
    user: String,
    rest: Vec<u8>,
    setup: Setup,
) {
    // SAFETY: the descriptor is the stream's own and stays open for this call.
    let dup = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned();
    let dup = dup
        .ok()
        .filter(|_| !crate::failpoints::fault_point("steer_dup_fails"));
    let Some(fd) = dup else {
        let session = super::session::run(shard.clone(), stream, user, rest, setup);
        glommio::spawn_local(session).detach();
        return;
    };
    let caps = shard.pod.sockets.clone();
    let held = HeldSlots::new(caps, setup.ip, Some(user.clone()));
    let start = move |home: &Rc<Shard>| {
        held.keep();
        // SAFETY: `fd` is an open socket descriptor that nothing else owns.
        let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
        glommio::spawn_local(super::session::run(home.clone(), stream, user, rest, setup)).detach();
    };
    drop(stream);
    // Refused or dropped unrun (`home` stopped), the closure closes the descriptor and its
    // `HeldSlots` gives back the socket's count and slots.
    let _ = shard.pod.mesh[home]
        .send(ShardMsg::Run(Box::new(start)))
        .await;
}
