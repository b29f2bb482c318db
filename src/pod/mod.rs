//! The pod: starts the store thread and one pinned executor per shard, and stops them in two
//! phases (every shard drains, then every inbox closes, then the store flushes and stops).

mod cluster;
mod core;
mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::auth::{Authenticator, JwtPolicy, PublicKeys};
use crate::backend::routes::home_shard;
use crate::backend::store::{
    spawn_writer, EventSink, SqliteStore, StoreEvent, StoreHandle, StoreTuning,
};
use crate::backend::users::file::FileFeeder;
use crate::backend::users::topic::TopicFeeder;
use crate::backend::users::{Feeder, OnDeleted, UserDirectory};
use crate::backend::webhook::{WebhookConfig, WebhookThread, Webhooks};
use crate::config::{AuthMode, Config, ConfigError};
use crate::protocol::Limits;
use crate::shard::{Mesh, PodShared, Settings, ShardMsg};
use core::{core_main, CoreStart};

/// Why a pod could not start. Printed as one line by `main`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("store: {0}")]
    Store(#[from] crate::backend::store::StoreError),
    #[error("{0}")]
    Listen(String),
    #[error("cannot start executor for shard {0}: {1}")]
    Executor(usize, String),
    #[error("{0}")]
    Backend(String),
}

/// A running pod. Dropping it without [`Pod::shutdown`] leaves its threads running.
pub struct Pod {
    addr: SocketAddr,
    mesh: Mesh,
    store: StoreHandle,
    executors: Vec<glommio::ExecutorJoinHandle<()>>,
    store_threads: Vec<JoinHandle<()>>,
    drained: crossbeam_channel::Receiver<usize>,
    cluster: Option<cluster::ClusterParts>,
    users_feeder: Option<Feeder>,
    webhook_thread: Option<WebhookThread>,
}

/// Forwards store outcomes to shard inboxes: replies to the origin shard, status changes to
/// the sender's home shard (which routes them to the sender's devices).
#[derive(Clone)]
pub(crate) struct MeshSink {
    mesh: Mesh,
}

impl EventSink for MeshSink {
    fn emit(&self, events: Vec<StoreEvent>) {
        let shards = self.mesh.len();
        let mut per_shard: Vec<Vec<StoreEvent>> = (0..shards).map(|_| Vec::new()).collect();
        for event in events {
            let shard = match &event {
                StoreEvent::Inserted { reply, .. }
                | StoreEvent::InsertFailed { reply, .. }
                | StoreEvent::AckRefused { reply, .. } => reply.shard,
                StoreEvent::StatusChanged(c) => home_shard(&c.sender_id, shards),
            };
            per_shard[shard].push(event);
        }
        for (shard, batch) in per_shard.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            if self.mesh[shard]
                .send_blocking(ShardMsg::Store(batch))
                .is_err()
            {
                // Only during shutdown, after the shard stopped: the outcome is durable already.
                tracing::debug!(shard, "store outcomes for a stopped shard dropped");
            }
        }
    }
}

impl Pod {
    /// Starts a pod and returns once every shard listens.
    pub fn start(config: Config) -> Result<Pod, StartError> {
        config.validate()?;
        let settings = settings(&config)?;
        let shards = config.shard_count();
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards)
            .map(|_| async_channel::bounded(config.tuning.shard_inbox))
            .unzip();
        let mesh: Mesh = Arc::new(senders);
        let tuning = StoreTuning {
            queue: config.tuning.store_queue,
            batch_max: config.tuning.store_batch_max,
            pace: std::time::Duration::from_micros(config.tuning.store_commit_window_us),
            ..StoreTuning::default()
        };
        let metrics = Arc::new(crate::metrics::Metrics::new(shards));
        let lease_epoch = Arc::default();
        let users = (config.users_file.is_some() || config.users_topic.is_some())
            .then(|| Arc::new(UserDirectory::default()));
        let (store, store_threads, cluster, parts) = if config.cluster.enabled()? {
            let c = cluster::start(&config, &mesh, tuning, &metrics, &lease_epoch)?;
            (c.store, c.threads, Some(c.shared), Some(c.parts))
        } else {
            let dir = &config.data_dir;
            std::fs::create_dir_all(dir)
                .map_err(|e| StartError::DataDir(dir.display().to_string(), e))?;
            let sqlite = SqliteStore::open(dir, config.tuning.store_full_sync)?
                .with_cache_mib(config.tuning.store_cache_mib)?
                .with_background_checkpoints()?;
            let sink = MeshSink { mesh: mesh.clone() };
            let (h, t) = spawn_writer(sqlite, sink, tuning, metrics.clone());
            (h, vec![t], None, None)
        };
        let (webhooks, webhook_thread) = match start_webhooks(&config, &metrics)? {
            Some((h, t)) => (Some(h), Some(t)),
            None => (None, None),
        };
        let pod = Arc::new(PodShared {
            settings,
            mesh: mesh.clone(),
            store: store.clone(),
            cluster,
            metrics,
            lease_epoch,
            sockets: Arc::new(socket_caps(&config.tuning)),
            spares: Default::default(),
            syncing: Default::default(),
            users: users.clone(),
            webhooks,
        });
        let (drained_tx, drained) = crossbeam_channel::unbounded();
        let mut started = Pod {
            addr: config.listen,
            mesh,
            store,
            executors: Vec::new(),
            store_threads,
            drained,
            cluster: parts,
            users_feeder: None,
            webhook_thread,
        };
        if let Some(dir) = users {
            match start_users_feeder(&config, dir, &started.mesh) {
                Ok(f) => started.users_feeder = Some(f),
                Err(e) => {
                    started.shutdown();
                    return Err(StartError::Backend(e));
                }
            }
        }
        for (id, inbox) in receivers.into_iter().enumerate() {
            let start = CoreStart {
                id,
                pod: pod.clone(),
                inbox,
                listen: started.addr,
                bound: crossbeam_channel::bounded(1).0,
                drained: drained_tx.clone(),
            };
            if let Err(e) = started.start_core(start) {
                started.shutdown();
                return Err(e);
            }
        }
        tracing::info!(addr = %started.addr, shards, "pod started");
        Ok(started)
    }

    /// Starts one executor; the first one resolves port 0 for the others.
    fn start_core(&mut self, mut start: CoreStart) -> Result<(), StartError> {
        let id = start.id;
        let (bound_tx, bound_rx) = crossbeam_channel::bounded(1);
        start.bound = bound_tx;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let spin = std::time::Duration::from_micros(start.pod.settings.tuning.spin_before_park_us);
        let handle = LocalExecutorBuilder::new(Placement::Fixed(id % cpus))
            .name(&format!("shard-{id}"))
            .spin_before_park(spin)
            .spawn(move || core_main(start))
            .map_err(|e| StartError::Executor(id, e.to_string()))?;
        self.executors.push(handle);
        match bound_rx.recv() {
            Ok(Ok(addr)) => {
                self.addr = addr;
                Ok(())
            }
            Ok(Err(e)) => Err(StartError::Listen(e)),
            Err(_) => Err(StartError::Executor(
                id,
                "executor ended before binding".into(),
            )),
        }
    }

    /// The address every shard listens on (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to the store thread, for tools and tests (`sync` waits for commits).
    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    /// Graceful stop: drain every shard, close inboxes, flush and stop the store.
    pub fn shutdown(mut self) {
        let shards = self.executors.len();
        for inbox in self.mesh.iter().take(shards) {
            let _ = inbox.send_blocking(ShardMsg::Shutdown); // Closed: that shard is gone.
        }
        let wait = Duration::from_secs(30);
        for _ in 0..shards {
            if self.drained.recv_timeout(wait).is_err() {
                tracing::warn!("a shard did not finish draining in time");
                break;
            }
        }
        for inbox in self.mesh.iter() {
            inbox.close();
        }
        for handle in self.executors.drain(..) {
            if let Err(e) = handle.join() {
                tracing::error!(error = %e, "shard thread failed");
            }
        }
        if let Some(feeder) = self.users_feeder.take() {
            feeder.stop();
        }
        if let Some(hooks) = self.webhook_thread.take() {
            hooks.stop(); // After the shards: their last user.disconnected are queued.
        }
        if let Some(parts) = self.cluster.take() {
            parts.stop();
        }
        self.store.sync();
        self.store.stop();
        for t in self.store_threads.drain(..) {
            let _ = t.join();
        }
        tracing::info!("pod stopped");
    }
}

type StartedWebhooks = Option<(Webhooks, WebhookThread)>;

fn start_webhooks(
    config: &Config,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<StartedWebhooks, StartError> {
    let (Some(url), Some(secret)) = (&config.webhook_url, &config.webhook_secret) else {
        return Ok(None);
    };
    let hooks = WebhookConfig {
        url: url.clone(),
        secret: secret.as_bytes().to_vec(),
        queue: config.webhook_queue,
        timeout: Duration::from_millis(config.webhook_timeout_ms),
    };
    let started = WebhookThread::start(hooks, metrics.webhooks.clone());
    started.map(Some).map_err(StartError::Backend)
}

/// Loads the user directory from its source and keeps it current. Deleted users' sockets
/// are closed through every shard's inbox (blocking: the feeder thread may wait for room).
fn start_users_feeder(
    config: &Config,
    dir: Arc<UserDirectory>,
    mesh: &Mesh,
) -> Result<Feeder, String> {
    let mesh = mesh.clone();
    let on_deleted: OnDeleted = Box::new(move |gone| {
        tracing::info!(users = gone.len(), "deleted users' connections closing");
        let gone: Arc<[String]> = gone.into();
        for inbox in mesh.iter() {
            let _ = inbox.send_blocking(ShardMsg::UsersDeleted(gone.clone())); // Closed: stopping.
        }
    });
    if let Some(path) = &config.users_file {
        return FileFeeder::start(path.clone(), dir, on_deleted).map(Feeder::File);
    }
    let topic = config.users_topic.as_deref().unwrap_or_default();
    let brokers = config.cluster.kafka_brokers.as_deref().unwrap_or_default();
    TopicFeeder::start(brokers, topic, dir, on_deleted).map(Feeder::Topic)
}

/// The allowlist as compared: trimmed, lower-cased, without a trailing slash; `*` anywhere in
/// it allows every origin (an empty list).
/// `--max-connections` 0 means: derived from the open-file limit (see `SocketCaps`).
fn socket_caps(t: &crate::config::Tuning) -> crate::shard::SocketCaps {
    let max = match t.max_connections {
        0 => crate::shard::open_file_limit()
            .map_or(usize::MAX, crate::shard::default_max_connections),
        n => n,
    };
    let (per_ip, per_user) = (t.max_connections_per_ip, t.max_connections_per_user);
    tracing::info!(max, per_ip, per_user, "connection caps");
    crate::shard::SocketCaps::new(max, per_ip)
        .per_user(per_user)
        .handshakes_per_ip(t.handshakes_per_ip_per_sec)
        .frames_per_user(t.max_frames_per_user_per_sec)
}

fn allowed_origins(list: &[String]) -> Vec<String> {
    let list: Vec<String> = list
        .iter()
        .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
        .filter(|o| !o.is_empty())
        .collect();
    match list.iter().any(|o| o == "*") {
        true => Vec::new(),
        false => list,
    }
}

fn settings(config: &Config) -> Result<Settings, StartError> {
    let t = &config.tuning;
    let auth = match config.auth_mode()? {
        AuthMode::Jwt => {
            let current = config.jwt_secret.iter().chain(&config.jwt_previous_secrets);
            let keys = PublicKeys::load(&config.jwt_public_keys).map_err(ConfigError::JwtKeys)?;
            Authenticator::Jwt(JwtPolicy {
                secrets: current.map(|s| s.as_bytes().to_vec()).collect(),
                public_keys: std::sync::Arc::new(keys),
                issuer: config.jwt_issuer.clone(),
                audience: config.jwt_audience.clone(),
                leeway_secs: config.jwt_leeway_secs,
            })
        }
        AuthMode::Dev => {
            tracing::warn!("dev auth: user ids are taken from ?user_id= without any check");
            Authenticator::Dev
        }
    };
    Ok(Settings {
        pod_id: config.pod_id().into(),
        auth,
        limits: Limits {
            max_payload_bytes: t.max_payload_bytes,
        },
        echo_max_message_bytes: config.echo.then_some(t.echo_max_message_bytes),
        delivery: config.delivery_confirm,
        tuning: t.clone(),
        allowed_origins: allowed_origins(&config.allowed_origins),
        retention: (config.retention_secs > 0)
            .then(|| std::time::Duration::from_secs(config.retention_secs)),
        undelivered_after: (config.webhook_undelivered_after_secs > 0
            && config.webhook_url.is_some())
        .then(|| std::time::Duration::from_secs(config.webhook_undelivered_after_secs)),
        demo: match &config.demo_dir {
            Some(dir) => Some(std::sync::Arc::new(
                crate::demo::DemoFiles::load(dir).map_err(ConfigError::Demo)?,
            )),
            None => None,
        },
        api_keys: config.api_keys.clone(),
        api_system_sender: config.api_system_sender.clone(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_origin_allowlist_is_normalised_and_a_star_allows_all() {
        let list = |l: &[&str]| {
            super::allowed_origins(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            list(&[" https://App.example.com/ ", ""]),
            ["https://app.example.com"]
        );
        assert!(list(&["https://a.example", "*"]).is_empty());
        assert!(list(&[]).is_empty());
    }
}
