//! Configuration: flags, `DISTRISOCKS_*` environment variables, documented defaults.
//! The `///` line of each field is its `--help` text; README's reference table mirrors it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// HS256 JWT (`Authorization: Bearer` or `?token=`); needs --jwt-secret.
    Jwt,
    /// Trust `?user_id=` (development only; logged as a warning).
    Dev,
}

/// When a message becomes DELIVERED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeliveryConfirm {
    /// When a recipient device sends `{"type":"ack","id":...}`: DELIVERED means seen by a device.
    Ack,
    /// When the frame is flushed to a recipient socket (the seed's behaviour): cheaper, but a
    /// device that dies with the frame in its kernel buffer never sees the message.
    Write,
}

/// distriSocks: a thread-per-core WebSocket messaging gateway.
#[derive(Debug, Clone, Parser)]
#[command(name = "distrisocks", version, about)]
pub struct Config {
    /// Address for WebSocket (`/ws`) and HTTP (`/healthz`); every shard listens on it (SO_REUSEPORT).
    #[arg(long, env = "DISTRISOCKS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Executor threads (shards), one pinned per CPU. Default: the CPUs available.
    #[arg(long, env = "DISTRISOCKS_SHARDS")]
    pub shards: Option<usize>,

    /// Directory of the embedded message store.
    #[arg(long, env = "DISTRISOCKS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Authentication mode. Default: jwt when a secret is set; dev only on a loopback address.
    #[arg(long, env = "DISTRISOCKS_AUTH", value_enum)]
    pub auth: Option<AuthMode>,

    /// HS256 secret for JWT authentication.
    #[arg(long, env = "DISTRISOCKS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// When a message counts as DELIVERED.
    #[arg(
        long,
        env = "DISTRISOCKS_DELIVERY_CONFIRM",
        value_enum,
        default_value = "ack"
    )]
    pub delivery_confirm: DeliveryConfirm,

    /// This pod's id: stable across restarts (like a StatefulSet name).
    #[arg(long, env = "DISTRISOCKS_POD_ID", default_value = "pod-0")]
    pub pod_id: String,

    /// Serve the conformance echo socket at `/echo` (off by default; no authentication).
    #[arg(long, env = "DISTRISOCKS_ECHO")]
    pub echo: bool,

    #[command(flatten)]
    pub tuning: Tuning,
}

/// Tuning knobs; the defaults suit many mostly-idle connections.
#[derive(Debug, Clone, clap::Args)]
pub struct Tuning {
    /// Largest WebSocket message (and frame) accepted on `/ws`; bigger ones close with 1009.
    #[arg(long, env = "DISTRISOCKS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Largest `payload` of a send frame; bigger ones get `payload_too_large`.
    #[arg(long, env = "DISTRISOCKS_MAX_PAYLOAD_BYTES", default_value_t = 32 * 1024)]
    pub max_payload_bytes: usize,

    /// Largest message on `/echo` (raise to 16 MiB for Autobahn's 9.* cases).
    #[arg(long, env = "DISTRISOCKS_ECHO_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub echo_max_message_bytes: usize,

    /// Read buffer per connection, bytes. Small keeps idle connections cheap.
    #[arg(long, env = "DISTRISOCKS_READ_BUFFER_BYTES", default_value_t = 4096)]
    pub read_buffer_bytes: usize,

    /// Bytes buffered for writing before a flush is forced.
    #[arg(long, env = "DISTRISOCKS_WRITE_BUFFER_BYTES", default_value_t = 16 * 1024)]
    pub write_buffer_bytes: usize,

    /// Frames queued per connection before it is closed with 4008 (slow consumer).
    #[arg(long, env = "DISTRISOCKS_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,

    /// Time allowed for the HTTP upgrade, milliseconds; slower clients are dropped.
    #[arg(long, env = "DISTRISOCKS_HANDSHAKE_TIMEOUT_MS", default_value_t = 5000)]
    pub handshake_timeout_ms: u64,

    /// Server ping period on a quiet connection, milliseconds.
    #[arg(long, env = "DISTRISOCKS_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,

    /// Time allowed for any frame after a ping, milliseconds; then close 4001.
    #[arg(long, env = "DISTRISOCKS_PONG_TIMEOUT_MS", default_value_t = 10_000)]
    pub pong_timeout_ms: u64,

    /// Store commands queued before senders get `overloaded`.
    #[arg(long, env = "DISTRISOCKS_STORE_QUEUE", default_value_t = 65_536)]
    pub store_queue: usize,

    /// Most commands committed in one store transaction.
    #[arg(long, env = "DISTRISOCKS_STORE_BATCH_MAX", default_value_t = 2048)]
    pub store_batch_max: usize,

    /// fsync each store commit (`synchronous=FULL`): survives power loss, not only crashes.
    #[arg(long, env = "DISTRISOCKS_STORE_FULL_SYNC", default_value_t = true, action = clap::ArgAction::Set)]
    pub store_full_sync: bool,

    /// Messages queued per shard inbox (cross-shard hand-off).
    #[arg(long, env = "DISTRISOCKS_SHARD_INBOX", default_value_t = 16_384)]
    pub shard_inbox: usize,

    /// Shutdown patience: time to finish in-flight messages before closing sockets, ms.
    #[arg(long, env = "DISTRISOCKS_SHUTDOWN_PATIENCE_MS", default_value_t = 5000)]
    pub shutdown_patience_ms: u64,
}

/// Invalid combinations, reported as one line before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--auth jwt needs --jwt-secret (or DISTRISOCKS_JWT_SECRET)")]
    JwtWithoutSecret,
    #[error("no --jwt-secret on non-loopback {0}: set one, or pass --auth dev explicitly")]
    NoAuthOnPublicAddress(SocketAddr),
    #[error("--shards must be between 1 and 1024")]
    Shards,
    #[error("--max-payload-bytes must be below --max-message-bytes")]
    PayloadLimit,
    #[error("--pod-id must be 1 to 128 characters of [A-Za-z0-9._-]")]
    PodId,
}

impl Config {
    /// A configuration with every default, as if parsed from no arguments.
    pub fn defaults() -> Self {
        Config::parse_from(["distrisocks"])
    }

    /// Shards to run: the flag, or the CPUs available.
    pub fn shard_count(&self) -> usize {
        self.shards
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The authentication mode in force, after defaults.
    pub fn auth_mode(&self) -> Result<AuthMode, ConfigError> {
        match (self.auth, &self.jwt_secret) {
            (Some(AuthMode::Jwt), None) => Err(ConfigError::JwtWithoutSecret),
            (Some(mode), _) => Ok(mode),
            (None, Some(_)) => Ok(AuthMode::Jwt),
            (None, None) if self.listen.ip().is_loopback() => Ok(AuthMode::Dev),
            (None, None) => Err(ConfigError::NoAuthOnPublicAddress(self.listen)),
        }
    }

    /// Checks everything that can be checked without touching the network or disk.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.auth_mode()?;
        if !(1..=1024).contains(&self.shard_count()) {
            return Err(ConfigError::Shards);
        }
        if self.tuning.max_payload_bytes >= self.tuning.max_message_bytes {
            return Err(ConfigError::PayloadLimit);
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if self.pod_id.is_empty() || self.pod_id.len() > 128 || !self.pod_id.chars().all(ok) {
            return Err(ConfigError::PodId);
        }
        Ok(())
    }
}

impl Tuning {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }
    pub fn pong_timeout(&self) -> Duration {
        Duration::from_millis(self.pong_timeout_ms)
    }
    pub fn shutdown_patience(&self) -> Duration {
        Duration::from_millis(self.shutdown_patience_ms)
    }
}
