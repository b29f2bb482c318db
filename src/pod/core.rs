//! The main future of one executor: bind, serve, and the shard's half of the shutdown.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use glommio::net::TcpListener;

use crate::backend::bus::PodFirstBus;
use crate::backend::routes::Directory;
use crate::backend::routes::RouteTable;
use crate::config::Routing;
use crate::flow::dispatch::run_inbox;
use crate::protocol::codes::close;
use crate::shard::{BroadcastRoutes, LocalBus, LocalRoutes, PodShared, Shard, ShardMsg};
use crate::socket::listener::accept_loop;

/// Everything an executor thread needs to start its shard.
pub struct CoreStart {
    pub id: usize,
    pub pod: Arc<PodShared>,
    pub inbox: async_channel::Receiver<ShardMsg>,
    pub listen: SocketAddr,
    /// Reports the bound address (or the bind error) once.
    pub bound: crossbeam_channel::Sender<Result<SocketAddr, String>>,
    /// Reports that the shard finished draining.
    pub drained: crossbeam_channel::Sender<usize>,
}

/// Runs the shard until the pod closes its inbox.
pub async fn core_main(start: CoreStart) {
    let listener = match TcpListener::bind(start.listen) {
        Ok(l) => l,
        Err(e) => {
            let _ = start
                .bound
                .send(Err(format!("cannot listen on {}: {e}", start.listen)));
            return;
        }
    };
    let addr = listener.local_addr().unwrap_or(start.listen);
    let _ = start.bound.send(Ok(addr)); // The starter waits for exactly this message.
    let shard = Rc::new(new_shard(start.id, start.pod.clone()));
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let inbox = glommio::spawn_local(run_inbox(shard.clone(), start.inbox, shutdown_tx));
    let accept = glommio::spawn_local(accept_loop(shard.clone(), listener));
    let keepalive = glommio::spawn_local(crate::shard::keepalive::run(shard.clone()));
    if let (0, Some(c)) = (start.id, &start.pod.cluster) {
        glommio::spawn_local(crate::flow::redrive::run(shard.clone(), c.redrive)).detach();
    }
    if let (0, Some(keep)) = (start.id, start.pod.settings.retention) {
        glommio::spawn_local(crate::flow::retention::run(shard.clone(), keep)).detach();
    }
    if let (0, Some(after)) = (start.id, start.pod.settings.undelivered_after) {
        glommio::spawn_local(crate::flow::undelivered::run(shard.clone(), after)).detach();
    }
    tracing::info!(shard = start.id, %addr, "shard serving");
    let _ = shutdown_rx.await; // Err: inbox closed without Shutdown; drain all the same.
    drop(accept); // Stops accepting and closes this shard's listener.
    drop(keepalive); // Draining connections close by themselves.
    drain(&shard).await;
    let _ = start.drained.send(start.id); // The pod may have given up waiting; fine.
    inbox.await;
    tracing::info!(shard = start.id, "shard stopped");
}

fn new_shard(id: usize, pod: Arc<PodShared>) -> Shard {
    let directory = Rc::new(RefCell::new(Directory::default()));
    let pod_id = pod.settings.pod_id.clone();
    let local_bus = LocalBus {
        pod: pod_id.clone(),
        mesh: pod.mesh.clone(),
    };
    let routes = LocalRoutes {
        shard: id,
        pod: pod_id.clone(),
        mesh: pod.mesh.clone(),
        directory: directory.clone(),
    };
    if let Some(c) = &pod.cluster {
        let bus = PodFirstBus {
            pod: pod_id,
            local: Box::new(local_bus),
            remote: Box::new(c.bus.clone().timed(pod.metrics.latency.produce_of(id))),
        };
        let routes: Box<dyn RouteTable> = match c.routing {
            Routing::PodTopic => Box::new(c.routes.for_shard(id, pod.metrics.clone())),
            Routing::Broadcast => Box::new(BroadcastRoutes { local: routes }),
        };
        return Shard::new(id, pod.clone(), directory, routes, Box::new(bus));
    }
    Shard::new(id, pod, directory, Box::new(routes), Box::new(local_bus))
}

/// Finish in-flight messages (bounded by the patience window), then close every socket with
/// 1001 so clients reconnect, and wait (bounded) for the connections to end.
async fn drain(shard: &Shard) {
    shard.draining.set(true);
    let patience = shard.settings().tuning.shutdown_patience();
    if !wait_until(patience, || shard.in_flight.get() == 0).await {
        let left = shard.in_flight.get();
        tracing::warn!(
            shard = shard.id,
            left,
            "shutdown patience ran out with work in flight"
        );
    }
    let mut closed = 0;
    shard.conns.borrow().for_each_outbox(|outbox| {
        closed += 1;
        let reason = "pod shutting down; reconnect";
        outbox.borrow_mut().close(close::GOING_AWAY, reason);
    });
    wait_until(Duration::from_secs(3), || shard.conns.borrow().is_empty()).await;
    let left = shard.conns.borrow().len();
    tracing::info!(shard = shard.id, closed, left, "connections closed");
}

/// Polls `done` until it holds (true) or `limit` passes (false).
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    true
}
