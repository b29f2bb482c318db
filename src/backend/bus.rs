//! Step 4 of the message path: produce an envelope to the place that owns a connection.
//!
//! In the embedded default the bus is the pod's shard mesh; in the distributed mode it is the
//! seed's Kafka pod topic (topic = pod, partition = shard).

use std::sync::Arc;

use futures::future::LocalBoxFuture;

use super::Location;

/// What travels to an owning shard: one frame for every local connection of `user`.
#[derive(Debug)]
pub struct Envelope {
    /// The user whose connections receive the frame.
    pub user: String,
    /// The complete JSON text frame, encoded once for every device and shard.
    pub frame: tungstenite::Utf8Bytes,
    /// Set for `message` frames: the id whose status a delivery advances.
    pub message_id: Option<String>,
    /// The message's position in `user`'s stream (0 for other frames): lets a connection
    /// drop a live copy of a message its replay already sent.
    pub seq: i64,
    /// A frame for v2 devices only, which never moves a status: a copy of a message `user`
    /// sent, for the user's other devices (a carbon), or a read receipt. Only connections
    /// that sync (`?since=`) take it.
    pub carbon: bool,
    /// Group traffic (a group message, a membership event, a group's receipt): for v2
    /// devices only, like a carbon, but a group message addressed to `user` awaits their ack
    /// like a direct one (`carbon` false).
    pub group: bool,
    /// When the message was created, µs since the epoch (0: not a message, or a carbon): the
    /// start of the hand-off histogram (`metrics::Latency::handoff_of`).
    pub born: i64,
    /// The connection that must not get it: a carbon skips the connection that sent the
    /// message, which has its `accepted`. Carried by Kafka too (`--routing broadcast` brings
    /// a pod's own records back to it).
    pub except: Option<Except>,
}

/// One connection, named pod-wide: connection ids count per shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Except {
    pub pod: Arc<str>,
    pub shard: usize,
    pub conn: u64,
}

impl Except {
    /// `pod/shard/conn`, the Kafka header's value; the pod id is the part before the last
    /// two slashes, so a pod id may contain `/`.
    pub fn to_header(&self) -> String {
        format!("{}/{}/{}", self.pod, self.shard, self.conn)
    }

    pub fn from_header(s: &str) -> Option<Except> {
        let (rest, conn) = s.rsplit_once('/')?;
        let (pod, shard) = rest.rsplit_once('/')?;
        Some(Except {
            pod: pod.into(),
            shard: shard.parse().ok()?,
            conn: conn.parse().ok()?,
        })
    }
}

/// A record consumed from a shard's partition, on its way to the owning shard. The shard
/// reports `offset` on `ack` once it handed the frame on (or found nobody to hand it to), and
/// only then may the consumer store the offset: at-least-once.
pub struct Consumed {
    pub env: Arc<Envelope>,
    pub offset: i64,
    pub ack: crossbeam_channel::Sender<i64>,
}

/// Bus failures; the message stays at its current status for a later replay or redrive.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The target shard's inbox is closed (it is shutting down).
    #[error("shard {0} is not running")]
    ShardGone(u16),
    /// The target is on another pod and this bus cannot reach pods.
    #[error("pod {0} is not reachable on this bus")]
    UnknownPod(String),
    /// The broker refused or timed out the produce.
    #[error("produce failed: {0}")]
    Produce(String),
}

/// A per-shard producer handle.
pub trait Bus {
    /// Hands `env` to the owning shard at `to`; resolves when it is accepted there (embedded)
    /// or acknowledged by the broker (distributed).
    fn publish(&self, to: Location, env: Arc<Envelope>)
        -> LocalBoxFuture<'_, Result<(), BusError>>;
}

/// The distributed mode's bus: an envelope for a place on this pod goes straight to that
/// shard (`local`), one for another pod through the broker (`remote`). The message is already
/// stored when it is published, so the broker adds no durability for a recipient on this pod:
/// it is the cross-pod transport, and skipping it saves a produce, a consume and their
/// latency. Both paths mean the same thing for SENT: the owning shard has the envelope.
pub struct PodFirstBus {
    pub pod: Arc<str>,
    pub local: Box<dyn Bus>,
    pub remote: Box<dyn Bus>,
}

impl Bus for PodFirstBus {
    fn publish(
        &self,
        to: Location,
        env: Arc<Envelope>,
    ) -> LocalBoxFuture<'_, Result<(), BusError>> {
        if to.pod == self.pod {
            self.local.publish(to, env)
        } else {
            self.remote.publish(to, env)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Except;

    #[test]
    fn an_except_survives_its_kafka_header_even_with_slashes_in_the_pod_id() {
        let e = Except {
            pod: "eu/west/pod-7".into(),
            shard: 3,
            conn: 42,
        };
        assert_eq!(e.to_header(), "eu/west/pod-7/3/42");
        assert_eq!(Except::from_header(&e.to_header()), Some(e));
        for bad in ["", "pod", "pod/3", "pod/x/1", "pod/1/-2"] {
            assert_eq!(Except::from_header(bad), None, "{bad}");
        }
    }
}
