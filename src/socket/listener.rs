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

async fn serve(shard: Rc<Shard>, mut stream: TcpStream) {
    match handshake(&shard, &mut stream).await {
        Some(Upgraded::Ws { user, rest }) => super::session::run(shard, stream, user, rest).await,
        Some(Upgraded::Echo { rest }) => super::echo::run(shard, stream, rest).await,
        None => {}
    }
}
