//! The accept loop of one shard. Every shard binds the same address with SO_REUSEPORT, so
//! the kernel spreads new connections over the cores.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};

use super::handshake::{handshake, Upgraded};
use crate::shard::Shard;

/// Accepts until the task is dropped (shutdown drops it, closing the listener).
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "set_nodelay failed");
                }
                glommio::spawn_local(serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning; existing sockets go on.
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub(super) async fn serve(shard: Rc<Shard>, mut stream: TcpStream) {
    // Boxed so its ~2 KiB of state (head and drain buffers, timeout) is freed once the
    // upgrade is done instead of staying inside this task for the connection's lifetime.
    let upgraded = Box::pin(handshake(&shard, &mut stream)).await;
    match upgraded {
        Some(Upgraded::Ws { user, rest }) => super::session::run(shard, stream, user, rest).await,
        Some(Upgraded::Echo { rest }) => Box::pin(super::echo::run(shard, stream, rest)).await,
        None => {}
    }
}
