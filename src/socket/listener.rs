//! The accept loop of one shard. Every shard binds the same address with SO_REUSEPORT, so
//! the kernel spreads new connections over the cores.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};

use super::handshake::{handshake, Upgraded};
use crate::shard::Shard;

/// Accepts until the task is dropped (shutdown drops it, closing the listener).
///
/// Out of descriptors (EMFILE/ENFILE: the connection cap is set above the open-file limit, or
/// the pod's other files grew into its reserve), the kernel keeps the pending connection in
/// the backlog and every accept fails again. The loop then frees a descriptor it holds in
/// reserve, accepts that connection and closes it at once (the client sees the connection
/// end, instead of hanging until its timeout), and takes the reserve back.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let mut reserve = spare_descriptor();
    let failures = crate::metrics::LogEvery::default();
    loop {
        match listener.accept().await {
            Ok(stream) => {
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
                if out_of_descriptors(&e) {
                    if let Some(spare) = reserve.take() {
                        drop(spare);
                        drop(listener.accept().await); // Closed at once: see above.
                    }
                    // Another shard's accept may have taken the freed descriptor (it then
                    // serves that connection): the reserve is retaken when one is free.
                    reserve = spare_descriptor();
                    if reserve.is_some() {
                        continue;
                    }
                }
                // Back off instead of spinning; existing sockets go on.
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A descriptor held in reserve for [`accept_loop`]; `None` if none could be opened.
fn spare_descriptor() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
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
            let session = super::session::Setup {
                ip,
                since,
                expires_at,
            };
            glommio::spawn_local(super::session::run(shard, stream, user, rest, session)).detach();
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
