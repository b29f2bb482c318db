//! What every shard of a distributed pod shares: its clients' per-shard handles and settings.

use std::time::Duration;

use crate::backend::kafka::KafkaBus;
use crate::backend::redis_routes::RouteHandles;
use crate::config::Routing;

/// Handles cloned per shard, set only in the distributed mode.
pub struct ClusterShared {
    pub routes: RouteHandles,
    pub bus: KafkaBus,
    pub redrive: RedriveSettings,
    pub routing: Routing,
}

/// Timing of the redrive.
#[derive(Debug, Clone, Copy)]
pub struct RedriveSettings {
    pub interval: Duration,
    /// How long a message stays NONE (or claimed by another pod) before a sweep claims it.
    pub none_after: Duration,
    /// The same for SENT: long enough for a live device to ack in the normal case. `None`:
    /// SENT messages are not redriven (`--routing broadcast`).
    pub sent_after: Option<Duration>,
}
