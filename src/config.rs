//! Configuration: flags, `DISTRISOCKS_*` environment variables, documented defaults.
//! The `///` line of each field is its `--help` text; README's reference table mirrors it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// JWT (`Authorization: Bearer` or `?token=`): HS256 with --jwt-secret, RS256/ES256
    /// with --jwt-public-keys; needs at least one of them.
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

/// How a message finds the pods holding its recipient (distributed mode): the seed's two
/// scaling methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Routing {
    /// A topic per pod, and `user -> pod/shard` routes in Redis (one lookup per message).
    PodTopic,
    /// One topic every pod consumes; each pod keeps only what its own connections need (no
    /// route table, every record read by every pod).
    Broadcast,
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

    /// Authentication mode. Default: jwt when a secret or public keys are set; dev only on a
    /// loopback address.
    #[arg(long, env = "DISTRISOCKS_AUTH", value_enum)]
    pub auth: Option<AuthMode>,

    /// HS256 secret for JWT authentication.
    #[arg(long, env = "DISTRISOCKS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Secrets being rotated out, comma-separated: tokens signed with them are still
    /// accepted until they expire. Rotate by moving the current secret here and setting a new
    /// `--jwt-secret`; drop it once the longest token lifetime has passed.
    #[arg(
        long,
        env = "DISTRISOCKS_JWT_PREVIOUS_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub jwt_previous_secrets: Vec<String>,

    /// Public keys for RS256/ES256 tokens, comma-separated files: each a PEM public key
    /// (RSA or P-256) or a JWKS document (`{"keys":[…]}`). A token's `kid` picks its key;
    /// rotate by listing the new key beside the old one. Read at startup only.
    #[arg(long, env = "DISTRISOCKS_JWT_PUBLIC_KEYS", value_delimiter = ',')]
    pub jwt_public_keys: Vec<std::path::PathBuf>,

    /// When set, a token's `iss` must equal it (the auth service that signs the tokens).
    #[arg(long, env = "DISTRISOCKS_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// When set, a token's `aud` must be or contain it, so tokens minted for another
    /// service with the same secret are refused.
    #[arg(long, env = "DISTRISOCKS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Seconds a token stays valid past its `exp` (and before its `nbf`), for clock skew
    /// between the auth service and the pods.
    #[arg(long, env = "DISTRISOCKS_JWT_LEEWAY_SECS", default_value_t = 0)]
    pub jwt_leeway_secs: u32,

    /// Web origins allowed to open sockets, comma-separated (`https://app.example.com`), or
    /// `*`. A browser sends its page's origin on every upgrade; one not listed is refused with
    /// 403, so a page on another site cannot use a visitor's credentials (cross-site WebSocket
    /// hijacking). Requests without an `Origin` (non-browser clients) are not affected. Empty
    /// (the default): every origin is allowed.
    #[arg(long, env = "DISTRISOCKS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Seconds a DELIVERED message is kept (for device sync and history); older ones are
    /// deleted. Undelivered messages are kept until delivered. 0 (the default) keeps every
    /// message. A device syncing from a deleted range is told so (`history_truncated`).
    #[arg(long, env = "DISTRISOCKS_RETENTION_SECS", default_value_t = 0)]
    pub retention_secs: u64,

    /// When a message counts as DELIVERED.
    #[arg(
        long,
        env = "DISTRISOCKS_DELIVERY_CONFIRM",
        value_enum,
        default_value = "ack"
    )]
    pub delivery_confirm: DeliveryConfirm,

    /// This pod's id: stable across restarts (like a StatefulSet name). Default: the host name.
    #[arg(long, env = "DISTRISOCKS_POD_ID")]
    pub pod_id: Option<String>,

    /// A file of `DISTRISOCKS_*=value` lines; flags and the environment take precedence.
    #[arg(long, env = "DISTRISOCKS_CONFIG")]
    pub config: Option<PathBuf>,

    /// Serve the conformance echo socket at `/echo` (off by default; no authentication).
    #[arg(long, env = "DISTRISOCKS_ECHO")]
    pub echo: bool,

    /// Serve the demo chat page (clients/demo, with the built client in its `client/`) at
    /// `/demo/`; off by default. Read once at start.
    #[arg(long, env = "DISTRISOCKS_DEMO_DIR")]
    pub demo_dir: Option<PathBuf>,

    /// Keys of the server HTTP API (`/api/v1/`, docs/API.md, docs/openapi.yaml), comma-separated,
    /// each at least 16 bytes: a backend sends one as `Authorization: Bearer <key>`. More than
    /// one: rotation (add the new key, move the backends, drop the old one). Unset: the API
    /// is off and `/api/` answers 404.
    #[arg(
        long,
        env = "DISTRISOCKS_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,

    /// The sender of messages the server API publishes without a `sender_id`. Not checked
    /// against the user directory: it is the application itself.
    #[arg(long, env = "DISTRISOCKS_API_SYSTEM_SENDER", default_value = "system")]
    pub api_system_sender: String,

    /// The auth service's user table as a file of JSON lines (docs/PROTOCOL.md, "User
    /// directory"), re-read whenever it changes. With a directory, only its users may
    /// connect or be sent messages, and a deleted user's sockets are closed.
    #[arg(long, env = "DISTRISOCKS_USERS_FILE", conflicts_with = "users_topic")]
    pub users_file: Option<PathBuf>,

    /// The auth service's Kafka topic of user events (distributed mode): every pod reads all
    /// of it before it serves, then tails it. Same effect as --users-file.
    #[arg(long, env = "DISTRISOCKS_USERS_TOPIC")]
    pub users_topic: Option<String>,

    /// URL the pod POSTs webhook events to (`user.connected`, `user.disconnected`,
    /// `message.undelivered`; see
    /// docs/PROTOCOL.md "Webhooks"). Off when unset. Needs --webhook-secret.
    #[arg(long, env = "DISTRISOCKS_WEBHOOK_URL", requires = "webhook_secret")]
    pub webhook_url: Option<String>,

    /// HMAC-SHA256 key of the `X-Distrisocks-Signature` header of every webhook request.
    #[arg(long, env = "DISTRISOCKS_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Webhook events waiting to be sent; one more is dropped (and counted), never waited for.
    #[arg(long, env = "DISTRISOCKS_WEBHOOK_QUEUE", default_value_t = 10_000)]
    pub webhook_queue: usize,

    /// A webhook request without a complete answer within this fails and is retried, ms.
    #[arg(long, env = "DISTRISOCKS_WEBHOOK_TIMEOUT_MS", default_value_t = 5_000)]
    pub webhook_timeout_ms: u64,

    /// Send `message.undelivered` for a direct message not DELIVERED this many seconds after
    /// it was stored (the hook for push notifications); 0: off.
    #[arg(
        long,
        env = "DISTRISOCKS_WEBHOOK_UNDELIVERED_AFTER_SECS",
        default_value_t = 0,
        requires = "webhook_url"
    )]
    pub webhook_undelivered_after_secs: u64,

    #[command(flatten)]
    pub cluster: Cluster,

    #[command(flatten)]
    pub tuning: Tuning,
}

/// The distributed mode: with all three of Kafka, Redis and Postgres set, the pod routes
/// through them instead of the embedded store, route table and bus.
#[derive(Debug, Clone, clap::Args)]
pub struct Cluster {
    /// Kafka bootstrap servers (host:port,...); any Kafka-protocol broker.
    #[arg(long, env = "DISTRISOCKS_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Redis URL of the route table, e.g. redis://127.0.0.1:6379/.
    #[arg(long, env = "DISTRISOCKS_REDIS_URL")]
    pub redis_url: Option<String>,

    /// PostgreSQL URL of the message store, e.g. postgres://user@host/db.
    #[arg(long, env = "DISTRISOCKS_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,

    /// Postgres schema holding the tables (created if missing).
    #[arg(long, env = "DISTRISOCKS_POSTGRES_SCHEMA", default_value = "public")]
    pub postgres_schema: String,

    /// How messages reach the recipient's pods (see the README's distributed mode).
    #[arg(
        long,
        env = "DISTRISOCKS_ROUTING",
        value_enum,
        default_value = "pod-topic"
    )]
    pub routing: Routing,

    /// Prefix of Kafka topics, consumer groups and Redis keys (isolates deployments).
    #[arg(long, env = "DISTRISOCKS_PREFIX", default_value = "distrisocks.")]
    pub prefix: String,

    /// Lease of a Redis route, ms; renewed every third of it. A crashed pod's routes expire.
    #[arg(long, env = "DISTRISOCKS_ROUTE_LEASE_MS", default_value_t = 15_000)]
    pub route_lease_ms: u64,

    /// How old the route thread's last completed Redis round trip may be for a shard to
    /// answer a status frame's or a carbon's route lookup from its cache, ms (0: no cache).
    /// Redis invalidates the cache on every route write (RESP3 client tracking); this bounds
    /// how long an invalidation can sit unread. Message lookups always go to Redis.
    #[arg(long, env = "DISTRISOCKS_ROUTE_CACHE_MAX_AGE_MS", default_value_t = 20)]
    pub route_cache_max_age_ms: u64,

    /// Redrive messages still NONE this long after creation (or after another pod claimed
    /// them), ms. Must exceed --kafka-produce-timeout-ms, so that a produce still in flight
    /// is never redriven beside itself.
    #[arg(
        long,
        env = "DISTRISOCKS_REDRIVE_NONE_AFTER_MS",
        default_value_t = 10_000
    )]
    pub redrive_none_after_ms: u64,

    /// Redrive messages still SENT this long after SENT (or after another pod claimed them),
    /// ms: their record may have been lost by the broker. A device that has the message and
    /// has not acked by then may see it again (its connection drops ids it showed recently).
    #[arg(
        long,
        env = "DISTRISOCKS_REDRIVE_SENT_AFTER_MS",
        default_value_t = 30_000
    )]
    pub redrive_sent_after_ms: u64,

    /// A record the broker has not acknowledged within this fails, ms (librdkafka
    /// `message.timeout.ms`); the message stays NONE for the redrive.
    #[arg(
        long,
        env = "DISTRISOCKS_KAFKA_PRODUCE_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub kafka_produce_timeout_ms: u64,

    /// How long the producer waits to fill a batch, ms (librdkafka `linger.ms`): every
    /// message waits up to this long, and the broker handles fewer, larger produce requests.
    #[arg(long, env = "DISTRISOCKS_KAFKA_LINGER_MS", default_value_t = 1)]
    pub kafka_linger_ms: u64,

    /// Idempotent producer (default true): the broker drops the copies that librdkafka's
    /// retries would otherwise write. With false, one request is in flight per broker so a
    /// retry cannot reorder records, and a retried record may land twice (connections drop
    /// an id they showed recently; stored status is unaffected). False is for brokers that
    /// mishandle idempotent producers: tansu 0.6 panics on the first produce after an
    /// epoch bump, which librdkafka performs after any delivery timeout.
    #[arg(long, env = "DISTRISOCKS_KAFKA_IDEMPOTENCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub kafka_idempotence: bool,

    /// Produce requests the producer keeps in flight per broker (librdkafka
    /// `max.in.flight.requests.per.connection`, 1–5; forced to 1 without idempotence). With
    /// more, librdkafka's broker thread polls between acknowledgements and costs more CPU
    /// than the pod's shards together; with 1, batches grow while the request is out.
    #[arg(long, env = "DISTRISOCKS_KAFKA_MAX_IN_FLIGHT", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub kafka_max_in_flight: u8,

    /// Replication factor of the topics this pod creates. 3 for production: with 1,
    /// `acks=all` waits for one broker and a lost disk loses records.
    #[arg(
        long,
        env = "DISTRISOCKS_KAFKA_REPLICATION_FACTOR",
        default_value_t = 3
    )]
    pub kafka_replication_factor: i32,

    /// `min.insync.replicas` of the topics this pod creates (capped at the replication
    /// factor): with 3 replicas and 2, a produce succeeds only once two brokers have it.
    #[arg(
        long,
        env = "DISTRISOCKS_KAFKA_MIN_INSYNC_REPLICAS",
        default_value_t = 2
    )]
    pub kafka_min_insync_replicas: i32,

    /// Pause of the status relay after a round that was not full (or found nothing due, or
    /// another pod relays), ms: about the most a status event waits in the outbox before it
    /// is produced. Rounds then carry what gathered meanwhile instead of a few events each.
    #[arg(long, env = "DISTRISOCKS_STATUS_RELAY_IDLE_MS", default_value_t = 50)]
    pub status_relay_idle_ms: u64,

    /// While commands keep coming, a Postgres batch of fewer than 64 commands waits until
    /// this long after the previous commit before it commits, µs (0: commit at once). The
    /// first command after an idle spell commits at once. A transaction costs far more than
    /// its statements (round trips, WAL flush), so fewer, fuller ones cut Postgres' CPU per
    /// message by a third at 1,000 msg/s and lower the latency of a busy cluster
    /// (perf/RESULTS.md §26).
    #[arg(
        long,
        env = "DISTRISOCKS_POSTGRES_COMMIT_WINDOW_US",
        default_value_t = 10_000
    )]
    pub postgres_commit_window_us: u64,

    /// Run this pod's status relay (default true). With false the pod still writes status
    /// events to the outbox, and another pod relays them.
    #[arg(long, env = "DISTRISOCKS_STATUS_RELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub status_relay: bool,

    /// Postgres connections committing in parallel, each on its own store thread. Commands
    /// are spread by recipient (inserts) and message id (statuses), so order per recipient
    /// holds. One by default: with the commit window, one connection's fuller batches cost
    /// Postgres, the pods and the latency less than two half-full ones (perf/RESULTS.md §26);
    /// raise it when one pod's commits, not Postgres' CPU, are the limit (thousands of
    /// messages per second per pod on a Postgres host of its own).
    #[arg(long, env = "DISTRISOCKS_POSTGRES_FLUSHERS", default_value_t = 1)]
    pub postgres_flushers: usize,

    /// Longest time the broker may hold a consumer fetch open, ms (librdkafka `fetch.wait.max.ms`).
    /// Apache Kafka answers as soon as data arrives; a broker that waits the full time adds up
    /// to this much latency to every message.
    #[arg(long, env = "DISTRISOCKS_KAFKA_FETCH_WAIT_MS", default_value_t = 100)]
    pub kafka_fetch_wait_ms: u64,

    /// Period of the redrive sweep, ms.
    #[arg(long, env = "DISTRISOCKS_REDRIVE_INTERVAL_MS", default_value_t = 2_000)]
    pub redrive_interval_ms: u64,
}

impl Cluster {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled()? {
            return Ok(());
        }
        let timeout = self.kafka_produce_timeout_ms;
        if self.redrive_none_after_ms <= timeout || self.redrive_sent_after_ms <= timeout {
            return Err(ConfigError::RedriveBeforeProduceTimeout);
        }
        if self.kafka_replication_factor < 1 || self.kafka_min_insync_replicas < 1 {
            return Err(ConfigError::Replication);
        }
        if !(1..=64).contains(&self.postgres_flushers) {
            return Err(ConfigError::Flushers);
        }
        if self.postgres_commit_window_us > MAX_COMMIT_WINDOW_US {
            return Err(ConfigError::CommitWindow);
        }
        Ok(())
    }

    /// Whether the distributed mode is configured; `Err` when only some backends are.
    pub fn enabled(&self) -> Result<bool, ConfigError> {
        let set = [&self.kafka_brokers, &self.redis_url, &self.postgres_url]
            .iter()
            .filter(|v| v.is_some())
            .count();
        match set {
            0 => Ok(false),
            3 => Ok(true),
            _ => Err(ConfigError::PartialCluster),
        }
    }
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

    /// Most members a group may have (protocol v2 groups): `group_create` and `group_add`
    /// past it get `group_full`. Every group message takes a row per member.
    #[arg(long, env = "DISTRISOCKS_MAX_GROUP_MEMBERS", default_value_t = 5_000)]
    pub max_group_members: usize,

    /// Groups up to this many members announce each member's read receipt to every member;
    /// in larger ones it goes to the reader's own devices only (READ still reaches senders,
    /// and `receipts` still shows who read what). Each announcement is a produce per member:
    /// in a group of 1,000 where everyone reads every message, a million per message.
    #[arg(long, env = "DISTRISOCKS_GROUP_READ_FANOUT_MAX", default_value_t = 256)]
    pub group_read_fanout_max: usize,

    /// Largest message on `/echo` (raise to 16 MiB for Autobahn's 9.* cases).
    #[arg(long, env = "DISTRISOCKS_ECHO_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub echo_max_message_bytes: usize,

    /// Read buffer of each shard, bytes: the most one socket read takes. Connections share it
    /// (`socket::wire`) and keep only the bytes of an incomplete frame, so its size costs no
    /// memory per idle connection (it was a per-connection buffer before: perf/RESULTS.md
    /// §8h, §18). It does bound what a connection that the pod stopped reading (flow control,
    /// docs/PROTOCOL.md) can hold beyond the frame being handled: one read's worth.
    #[arg(long, env = "DISTRISOCKS_READ_BUFFER_BYTES", default_value_t = 16 * 1024)]
    pub read_buffer_bytes: usize,

    /// How long an idle shard busy-polls before it parks, µs (glommio `spin_before_park`).
    /// Parking costs a sleep and, for work from another thread, an eventfd wake-up; on hosts
    /// where each shard has a core to itself a few tens of µs of spinning saves both. 0 (the
    /// default) suits shared hosts, where a spinning shard takes CPU from its neighbours.
    #[arg(long, env = "DISTRISOCKS_SPIN_BEFORE_PARK_US", default_value_t = 0)]
    pub spin_before_park_us: u64,

    /// Serve every WebSocket connection on its user's home shard (default true): a shard
    /// that accepted a socket for another shard's user hands it over after the upgrade. A
    /// user's routes, devices and status frames then live on one core, so a message crosses
    /// at most one core boundary on its way to the recipient and none on the way back to the
    /// sender (perf/RESULTS.md §25). false keeps each connection where the kernel put it.
    #[arg(long, env = "DISTRISOCKS_STEER_CONNECTIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub steer_connections: bool,

    /// Most bytes of frames a connection's writer puts into one socket write; a batch that
    /// reaches it is written and the next batch starts (one frame may exceed it).
    #[arg(long, env = "DISTRISOCKS_WRITE_BUFFER_BYTES", default_value_t = 16 * 1024)]
    pub write_buffer_bytes: usize,

    /// Text frames a connection may send per second on average, in bursts of up to as many at
    /// once; frames beyond it get `rate_limited` and are not processed (nothing stored). One
    /// connection then cannot fill the store queue that every connection of the pod shares.
    /// 0 (the default): no limit.
    #[arg(long, env = "DISTRISOCKS_MAX_FRAMES_PER_SEC", default_value_t = 0)]
    pub max_frames_per_sec: u32,

    /// Text frames one user may send per second over all of their connections on this pod,
    /// with the same bucket rules as `--max-frames-per-sec` (bursts up to the rate,
    /// `rate_limited`, then 4029). Without it every device of a user adds a connection's
    /// rate. Per pod, like `--max-connections-per-user`. 0 (the default): no limit.
    #[arg(
        long,
        env = "DISTRISOCKS_MAX_FRAMES_PER_USER_PER_SEC",
        default_value_t = 0
    )]
    pub max_frames_per_user_per_sec: u32,

    /// Sockets the pod keeps open at once (connections and handshakes in progress); an upgrade
    /// beyond it is answered 503 with `Retry-After`, while `/healthz` and `/metrics` are still
    /// served. 0 (the default): the open-file limit minus a reserve (an eighth of it, at most
    /// 512), so a full pod answers instead of failing its accepts.
    #[arg(long, env = "DISTRISOCKS_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// WebSocket connections one client address may hold on this pod; one more is answered
    /// 429 with `Retry-After`. 0 (the default): no limit (clients behind one NAT share an
    /// address).
    #[arg(long, env = "DISTRISOCKS_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: u32,

    /// WebSocket connections (devices) one user may hold on this pod; one more is answered
    /// 429 with `Retry-After`. Per pod: a user spread over N pods may hold N times as many.
    /// 0 (the default): no limit.
    #[arg(
        long,
        env = "DISTRISOCKS_MAX_CONNECTIONS_PER_USER",
        default_value_t = 0
    )]
    pub max_connections_per_user: u32,

    /// WebSocket handshakes one client address may start per second on this pod (a bucket
    /// of one second's worth); one more is answered 429 with `Retry-After: 1`. Caps the CPU
    /// a reconnect storm or a scripted client spends on authentication. 0 (the default): no
    /// limit.
    #[arg(
        long,
        env = "DISTRISOCKS_HANDSHAKES_PER_IP_PER_SEC",
        default_value_t = 0
    )]
    pub handshakes_per_ip_per_sec: u32,

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

    /// Group-commit pacing of the embedded store, µs: while commands keep coming, a batch of
    /// fewer than 64 commands is taken no sooner than this long after the last commit ended;
    /// the first command after an idle spell commits at once.
    /// Without it every message at low load gets its own commits (and fsyncs) and wake-ups;
    /// with it a message waits up to this long more for `accepted` and each status. 0
    /// commits at once. perf/RESULTS.md §10 and §25 have the measured trade-offs (3000: about
    /// a quarter less CPU at 1,000 msg/s, twice the p50 at 4,000).
    #[arg(
        long,
        env = "DISTRISOCKS_STORE_COMMIT_WINDOW_US",
        default_value_t = 1000
    )]
    pub store_commit_window_us: u64,

    /// fsync each store commit (`synchronous=FULL`): survives power loss, not only crashes.
    #[arg(long, env = "DISTRISOCKS_STORE_FULL_SYNC", default_value_t = true, action = clap::ArgAction::Set)]
    pub store_full_sync: bool,

    /// Page cache of the embedded store's connection, MiB (SQLite `cache_size`), filled only
    /// as pages are used. SQLite's own 2 MiB default held less than a running pod's hot index
    /// pages, so the store thread re-read pages from the kernel and spilled dirty ones to the
    /// WAL mid-transaction; perf/RESULTS.md §28 measures the difference.
    #[arg(long, env = "DISTRISOCKS_STORE_CACHE_MIB", default_value_t = crate::backend::store::SQLITE_DEFAULT_CACHE_MIB)]
    pub store_cache_mib: u32,

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
    #[error("--auth jwt needs --jwt-secret or --jwt-public-keys")]
    JwtWithoutSecret,
    #[error("--jwt-public-keys: {0}")]
    JwtKeys(String),
    #[error("every --api-keys key must be at least 16 bytes: a short key can be guessed")]
    ShortApiKey,
    #[error("--api-system-sender must be a valid user id (1 to 128 bytes, no control characters)")]
    SystemSender,
    #[error("--jwt-secret and --jwt-previous-secrets must not be empty: anyone can sign with an empty key")]
    EmptyJwtSecret,
    #[error("no --jwt-secret on non-loopback {0}: set one, or pass --auth dev explicitly")]
    NoAuthOnPublicAddress(SocketAddr),
    #[error("--shards must be between 1 and 1024")]
    Shards,
    #[error("--max-payload-bytes must be below --max-message-bytes")]
    PayloadLimit,
    #[error("--pod-id must be 1 to 128 characters of [A-Za-z0-9._-]")]
    PodId,
    #[error("distributed mode needs all of --kafka-brokers, --redis-url and --postgres-url")]
    PartialCluster,
    #[error("--redrive-none-after-ms and --redrive-sent-after-ms must exceed --kafka-produce-timeout-ms")]
    RedriveBeforeProduceTimeout,
    #[error("--kafka-replication-factor and --kafka-min-insync-replicas must be at least 1")]
    Replication,
    #[error("--postgres-flushers must be between 1 and 64")]
    Flushers,
    #[error("--users-topic needs --kafka-brokers (the distributed mode); use --users-file without a broker")]
    UsersTopicWithoutKafka,
    #[error("--store-commit-window-us and --postgres-commit-window-us must be at most 100000 (100 ms): every send would wait that long")]
    CommitWindow,
    #[error("--store-cache-mib must be between 1 and 65536")]
    StoreCache,
    #[error("--demo-dir: {0}")]
    Demo(String),
}

/// Reads a `--config` file: `KEY=value` lines in the dotenv format (comments, quotes,
/// escapes, `export`), parsed by dotenvy rather than by hand. Every key must be a variable the
/// pod reads: a typo in a file written for the pod is an error, never silently ignored.
fn read_config_file(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let shown = path.display();
    let entries = dotenvy::from_path_iter(path).map_err(|e| format!("config file {shown}: {e}"))?;
    let known = Config::known_variables();
    let mut vars = Vec::new();
    for entry in entries {
        let (key, value) = entry.map_err(|e| format!("config file {shown}: {e}"))?;
        if !known.contains(&key) {
            let what = match key.starts_with("DISTRISOCKS_") {
                true => "is not a variable of this pod (see --help)",
                false => "is not a DISTRISOCKS_ variable",
            };
            return Err(format!("config file {shown}: {key} {what}"));
        }
        vars.push((key, value));
    }
    Ok(vars)
}

/// Longest group-commit window accepted, µs.
const MAX_COMMIT_WINDOW_US: u64 = 100_000;

impl Config {
    /// Parses flags and environment, then, with `--config FILE`, fills every variable the
    /// environment does not set from the file and parses again.
    pub fn load() -> Result<Config, String> {
        let first = Config::parse();
        let Some(path) = first.config.clone() else {
            return Ok(first);
        };
        for (key, value) in read_config_file(&path)? {
            if std::env::var_os(&key).is_none() {
                std::env::set_var(key, value);
            }
        }
        Ok(Config::parse())
    }

    /// Every variable the pod reads: each flag's, and the log filter's.
    pub fn known_variables() -> Vec<String> {
        use clap::CommandFactory;
        let cmd = Config::command();
        let flags = cmd.get_arguments().filter_map(|a| a.get_env());
        let mut known: Vec<String> = flags.map(|e| e.to_string_lossy().into_owned()).collect();
        known.push("DISTRISOCKS_LOG".into());
        known
    }

    /// `DISTRISOCKS_*` variables of the environment that the pod does not read (a typo, or
    /// a flag renamed since): logged as warnings, not refused, because the environment is
    /// shared with other tools (test harnesses set their own `DISTRISOCKS_TEST_*`).
    pub fn unknown_env_variables() -> Vec<String> {
        let known = Config::known_variables();
        let ours = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
        ours.filter(|k| k.starts_with("DISTRISOCKS_") && !known.contains(k))
            .collect()
    }

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
        let keyed = self.jwt_secret.is_some() || !self.jwt_public_keys.is_empty();
        match (self.auth, keyed) {
            (Some(AuthMode::Jwt), false) => Err(ConfigError::JwtWithoutSecret),
            (Some(mode), _) => Ok(mode),
            (None, true) => Ok(AuthMode::Jwt),
            (None, false) if self.listen.ip().is_loopback() => Ok(AuthMode::Dev),
            (None, false) => Err(ConfigError::NoAuthOnPublicAddress(self.listen)),
        }
    }

    /// Checks everything that can be checked without touching the network or disk.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.auth_mode()?;
        let secrets = self.jwt_secret.iter().chain(&self.jwt_previous_secrets);
        if secrets.into_iter().any(|s| s.is_empty()) {
            return Err(ConfigError::EmptyJwtSecret);
        }
        if self.api_keys.iter().any(|k| k.len() < 16) {
            return Err(ConfigError::ShortApiKey);
        }
        if !crate::protocol::valid_user_id(&self.api_system_sender) {
            return Err(ConfigError::SystemSender);
        }
        if !(1..=1024).contains(&self.shard_count()) {
            return Err(ConfigError::Shards);
        }
        if self.tuning.max_payload_bytes >= self.tuning.max_message_bytes {
            return Err(ConfigError::PayloadLimit);
        }
        if self.tuning.store_commit_window_us > MAX_COMMIT_WINDOW_US {
            return Err(ConfigError::CommitWindow);
        }
        if !(1..=65_536).contains(&self.tuning.store_cache_mib) {
            return Err(ConfigError::StoreCache);
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        let pod = self.pod_id();
        if pod.is_empty() || pod.len() > 128 || !pod.chars().all(ok) {
            return Err(ConfigError::PodId);
        }
        if self.users_topic.is_some() && self.cluster.kafka_brokers.is_none() {
            return Err(ConfigError::UsersTopicWithoutKafka);
        }
        self.cluster.validate()
    }

    /// The pod id in force: the flag, or the host name (stable for a StatefulSet pod).
    pub fn pod_id(&self) -> String {
        self.pod_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "pod-0".into())
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(args: &[&str]) -> Result<(), ConfigError> {
        let base = [
            "distrisocks",
            "--kafka-brokers",
            "k:9092",
            "--redis-url",
            "redis://r/",
        ];
        let pg = ["--postgres-url", "postgres://p/db"];
        Config::parse_from(base.iter().chain(&pg).chain(args)).validate()
    }

    #[test]
    fn distributed_settings_that_cannot_work_are_refused() {
        assert!(cluster(&[]).is_ok());
        let early = [
            "--redrive-none-after-ms",
            "1000",
            "--kafka-produce-timeout-ms",
            "1000",
        ];
        assert!(matches!(
            cluster(&early),
            Err(ConfigError::RedriveBeforeProduceTimeout)
        ));
        let early = [
            "--redrive-sent-after-ms",
            "500",
            "--kafka-produce-timeout-ms",
            "1000",
        ];
        assert!(matches!(
            cluster(&early),
            Err(ConfigError::RedriveBeforeProduceTimeout)
        ));
        let none = ["--kafka-replication-factor", "0"];
        assert!(matches!(cluster(&none), Err(ConfigError::Replication)));
        for n in ["0", "65"] {
            let flushers = ["--postgres-flushers", n];
            assert!(matches!(cluster(&flushers), Err(ConfigError::Flushers)));
        }
        let slow = ["--postgres-commit-window-us", "100001"];
        assert!(matches!(cluster(&slow), Err(ConfigError::CommitWindow)));
        assert!(cluster(&["--postgres-commit-window-us", "100000"]).is_ok());
    }

    /// librdkafka accepts 1–5 requests in flight for an idempotent producer; anything else is
    /// refused when the flags are parsed, with the range in the message.
    #[test]
    fn requests_in_flight_outside_one_to_five_are_refused() {
        let parse = |n: &str| Config::try_parse_from(["distrisocks", "--kafka-max-in-flight", n]);
        assert_eq!(parse("1").unwrap().cluster.kafka_max_in_flight, 1);
        assert_eq!(parse("5").unwrap().cluster.kafka_max_in_flight, 5);
        for n in ["0", "6", "many"] {
            let e = parse(n).expect_err("refused").to_string();
            assert!(e.contains("--kafka-max-in-flight"), "{n}: {e}");
        }
        let d = Config::parse_from(["distrisocks"]);
        assert_eq!(d.cluster.kafka_max_in_flight, 1, "one in flight by default");
    }

    #[test]
    fn a_config_file_is_read_as_dotenv_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod.env");
        let text = "# pod settings\nDISTRISOCKS_SHARDS=3\nexport DISTRISOCKS_POD_ID='pod-7'\n\
                    DISTRISOCKS_JWT_ISSUER=\"https://auth.example # not a comment\"\n";
        std::fs::write(&path, text).unwrap();
        let vars = read_config_file(&path).unwrap();
        let get = |k: &str| {
            vars.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("DISTRISOCKS_SHARDS"), Some("3"));
        assert_eq!(get("DISTRISOCKS_POD_ID"), Some("pod-7"));
        assert_eq!(
            get("DISTRISOCKS_JWT_ISSUER"),
            Some("https://auth.example # not a comment")
        );
        for (line, want) in [
            (
                "DISTRISOCKS_JWT_SECRT=x",
                "DISTRISOCKS_JWT_SECRT is not a variable of this pod",
            ),
            ("PATH=/bin", "PATH is not a DISTRISOCKS_ variable"),
            ("DISTRISOCKS_SHARDS", "config file"),
        ] {
            std::fs::write(&path, format!("DISTRISOCKS_SHARDS=2\n{line}\n")).unwrap();
            let e = read_config_file(&path).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
        assert!(read_config_file(&dir.path().join("missing")).is_err());
        let known = Config::known_variables();
        for var in [
            "DISTRISOCKS_LISTEN",
            "DISTRISOCKS_KAFKA_BROKERS",
            "DISTRISOCKS_OUTBOUND_QUEUE",
        ] {
            assert!(
                known.iter().any(|k| k == var),
                "{var} (flattened groups too)"
            );
        }
    }

    #[test]
    fn a_users_topic_needs_a_broker_and_excludes_a_users_file() {
        let c = Config::parse_from(["distrisocks", "--users-topic", "auth.users"]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::UsersTopicWithoutKafka)
        ));
        let both =
            Config::try_parse_from(["distrisocks", "--users-topic", "t", "--users-file", "f"]);
        assert!(both.is_err(), "one source of users at a time");
        let hook = Config::try_parse_from(["distrisocks", "--webhook-url", "http://x/"]);
        assert!(hook.is_err(), "a webhook URL without a secret is refused");
    }

    #[test]
    fn empty_jwt_secrets_are_refused() {
        let parse = |args: &[&str]| {
            let all = ["distrisocks"].iter().chain(args);
            Config::parse_from(all).validate()
        };
        assert!(matches!(
            parse(&["--jwt-secret", ""]),
            Err(ConfigError::EmptyJwtSecret)
        ));
        let trailing = ["--jwt-secret", "k", "--jwt-previous-secrets", "old,"];
        assert!(matches!(parse(&trailing), Err(ConfigError::EmptyJwtSecret)));
        assert!(parse(&["--jwt-secret", "k", "--jwt-previous-secrets", "old"]).is_ok());
    }

    #[test]
    fn a_commit_window_that_would_stall_every_send_is_refused() {
        let parse =
            |w: &str| Config::parse_from(["distrisocks", "--store-commit-window-us", w]).validate();
        assert!(matches!(parse("100001"), Err(ConfigError::CommitWindow)));
        assert!(parse("100000").is_ok() && parse("0").is_ok());
    }

    #[test]
    fn a_store_cache_outside_1_mib_to_64_gib_is_refused() {
        let parse =
            |m: &str| Config::parse_from(["distrisocks", "--store-cache-mib", m]).validate();
        assert!(matches!(parse("0"), Err(ConfigError::StoreCache)));
        assert!(matches!(parse("65537"), Err(ConfigError::StoreCache)));
        assert!(parse("1").is_ok() && parse("65536").is_ok());
        let default = Config::parse_from(["distrisocks"]).tuning.store_cache_mib;
        assert_eq!(default, crate::backend::store::SQLITE_DEFAULT_CACHE_MIB);
    }
}
