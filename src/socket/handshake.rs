//! The upgrade: read the request head within the handshake timeout, answer plain HTTP or
//! authenticate and switch protocols.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::http::{parse_head, plain, switching_protocols, Head, Target};
use crate::auth::Credentials;
use crate::shard::Shard;

/// A completed upgrade. `rest` holds bytes read past the request head (an eager first frame).
/// `ip` is set when the connection holds a per-address slot (`--max-connections-per-ip`),
/// which the connection gives back when it ends.
pub enum Upgraded {
    Ws {
        user: String,
        rest: Vec<u8>,
        ip: Option<IpAddr>,
        since: Option<i64>,
        /// When the token stops being accepted, seconds since the epoch (`i64::MAX`: never).
        expires_at: i64,
    },
    Echo {
        rest: Vec<u8>,
        ip: Option<IpAddr>,
    },
    /// A server API request (`/api/…`): its head, and the body bytes read with it.
    Api {
        head: Box<Head>,
        rest: Vec<u8>,
    },
}

/// How long a refused client should wait before it tries again (429 and 503 answers).
pub const RETRY_AFTER_SECS: u32 = 5;

/// What to do with a parsed head.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer with this complete response and close.
    Respond(String),
    /// Upgrade to the messaging socket as `user`; `since` is a v2 device's sync cursor.
    Ws {
        user: String,
        since: Option<i64>,
        expires_at: i64,
    },
    /// Upgrade to the echo socket.
    Echo,
}

/// Runs the whole upgrade under `--handshake-timeout-ms`; `None` means the connection ends.
pub async fn handshake(shard: &Shard, stream: &mut TcpStream) -> Option<Upgraded> {
    let limit = shard.settings().tuning.handshake_timeout();
    let upgrade = glommio::timer::timeout(limit, async { Ok(negotiate(shard, stream).await) });
    match upgrade.await {
        Ok(u) => u,
        Err(_) => {
            tracing::debug!(shard = shard.id, "handshake timed out");
            None
        }
    }
}

async fn negotiate(shard: &Shard, stream: &mut TcpStream) -> Option<Upgraded> {
    let (head, rest) = match read_head(stream).await {
        Ok(Some(h)) => h,
        Ok(None) => return None,
        Err(response) => {
            answer_and_close(stream, &response).await;
            return None;
        }
    };
    if let Target::Api(_) = head.target {
        // Authenticated by its API key and answered by `socket::api`, after its body.
        return Some(Upgraded::Api {
            head: Box::new(head),
            rest,
        });
    }
    // Before `decide`, which authenticates: a storm of upgrades costs no signature checks.
    let upgrade = matches!(head.target, Target::Ws | Target::Echo) && head.wants_upgrade;
    if upgrade {
        if let Err(response) = take_handshake_token(shard, stream) {
            answer_and_close(stream, &response).await;
            return None;
        }
    }
    let decision = decide(shard, &head);
    if let Decision::Respond(r) = &decision {
        answer_and_close(stream, r).await;
        return None;
    }
    let (ip, user_slot) = match take_slots(shard, stream, &decision) {
        Ok(slots) => slots,
        Err(response) => {
            answer_and_close(stream, &response).await;
            return None;
        }
    };
    let serving = match &decision {
        Decision::Ws { user, .. } => serving_shard(shard, user),
        _ => shard.id,
    };
    let accept = switching_protocols(head.ws_key.as_deref().unwrap_or_default(), serving);
    if stream.write_all(accept.as_bytes()).await.is_err() {
        release_slots(shard, ip, user_slot);
        return None;
    }
    match decision {
        Decision::Ws {
            user,
            since,
            expires_at,
        } => Some(Upgraded::Ws {
            user,
            rest,
            ip,
            since,
            expires_at,
        }),
        _ => Some(Upgraded::Echo { rest, ip }),
    }
}

/// The shard that serves `user`'s connection: their home shard with `--steer-connections`
/// (the accepting shard hands the socket over, `listener`), else the accepting one.
pub(super) fn serving_shard(shard: &Shard, user: &str) -> usize {
    match shard.settings().tuning.steer_connections {
        true => crate::backend::routes::home_shard(user, shard.shard_count()),
        false => shard.id,
    }
}

/// Takes the per-address and per-user slots an upgrade needs; `Err` with the 429 to answer
/// when one is exhausted (holding none then).
fn take_slots<'d>(
    shard: &Shard,
    stream: &TcpStream,
    decision: &'d Decision,
) -> Result<(Option<IpAddr>, Option<&'d str>), String> {
    let ip = take_ip_slot(shard, stream)?;
    let user = match decision {
        Decision::Ws { user, .. } => take_user_slot(shard, user),
        _ => Ok(None),
    };
    user.map(|u| (ip, u))
        .inspect_err(|_| release_slots(shard, ip, None))
}

/// Takes a slot of the client's address when `--max-connections-per-ip` is set: `Ok(None)`
/// without a limit, `Err` with the 429 to answer when the address has no slot left.
fn take_ip_slot(shard: &Shard, stream: &TcpStream) -> Result<Option<IpAddr>, String> {
    let caps = &shard.pod.sockets;
    if !caps.limits_ips() {
        return Ok(None);
    }
    let Ok(peer) = stream.peer_addr() else {
        return Ok(None); // The peer is gone already; the upgrade's write will fail.
    };
    if caps.take_ip(peer.ip()) {
        return Ok(Some(peer.ip()));
    }
    tracing::debug!(shard = shard.id, ip = %peer.ip(), "upgrade refused: per-address cap");
    let retry = format!("Retry-After: {RETRY_AFTER_SECS}\r\n");
    let body = "too many connections from this address\n";
    Err(plain(429, "Too Many Requests", &retry, body))
}

/// Spends a handshake token of the client's address when `--handshakes-per-ip-per-sec` is
/// set; `Err` with the 429 to answer when its bucket is empty. Only upgrades count: plain
/// HTTP (`/healthz`) is never limited. Checked before the token's signature.
fn take_handshake_token(shard: &Shard, stream: &TcpStream) -> Result<(), String> {
    let caps = &shard.pod.sockets;
    if !caps.limits_handshakes() {
        return Ok(());
    }
    let Ok(peer) = stream.peer_addr() else {
        return Ok(());
    };
    if caps.take_handshake(peer.ip(), std::time::Instant::now()) {
        return Ok(());
    }
    tracing::debug!(shard = shard.id, ip = %peer.ip(), "upgrade refused: handshake rate");
    let body = "too many handshakes from this address\n";
    Err(plain(429, "Too Many Requests", "Retry-After: 1\r\n", body))
}

/// Takes a slot of `user` when `--max-connections-per-user` is set: `Ok(None)` without a
/// limit, `Err` with the 429 to answer when the user holds that many connections here. The
/// connection gives it back when it ends (`session::run`).
fn take_user_slot<'u>(shard: &Shard, user: &'u str) -> Result<Option<&'u str>, String> {
    let caps = &shard.pod.sockets;
    if !caps.limits_users() {
        return Ok(None);
    }
    if caps.take_user(user) {
        return Ok(Some(user));
    }
    tracing::debug!(shard = shard.id, "upgrade refused: per-user cap");
    let retry = format!("Retry-After: {RETRY_AFTER_SECS}\r\n");
    let body = "too many connections for this user\n";
    Err(plain(429, "Too Many Requests", &retry, body))
}

/// Gives back the slots of an upgrade that did not happen.
fn release_slots(shard: &Shard, ip: Option<IpAddr>, user: Option<&str>) {
    if let Some(ip) = ip {
        shard.pod.sockets.release_ip(ip);
    }
    if let Some(user) = user {
        shard.pod.sockets.release_user(user);
    }
}

/// Writes a final plain-HTTP answer, then closes gracefully: half-close, and discard what the
/// client still sends (bounded by the handshake timeout and 64 KiB). Closing with unread input
/// would make the kernel send a reset, and the client could lose the answer (a 431 for a long
/// head, for example).
pub(super) async fn answer_and_close(stream: &mut TcpStream, response: &str) {
    if stream.write_all(response.as_bytes()).await.is_err() {
        return; // The peer is gone: nothing to deliver.
    }
    if stream.shutdown(std::net::Shutdown::Write).await.is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    for _ in 0..64 {
        if !matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {
            return;
        }
    }
}

/// Reads until the head is complete. `Ok(None)`: the peer went away; `Err`: answer and close.
async fn read_head(stream: &mut TcpStream) -> Result<Option<(Head, Vec<u8>)>, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Ok(Some((head, len))) => return Ok(Some((head, buf.split_off(len)))),
            Ok(None) => continue,
            Err(e) => {
                let status = match e {
                    super::http::HeadError::TooLarge => (431, "Request Header Fields Too Large"),
                    super::http::HeadError::Malformed => (400, "Bad Request"),
                };
                if is_api_request(&buf) {
                    // The server API answers JSON, even before its head is parsed.
                    let body = serde_json::json!({"type": "error", "code": "invalid_request", "message": e.to_string()});
                    return Err(super::http::json(status.0, "", &body.to_string()));
                }
                return Err(plain(status.0, status.1, "", &format!("{e}\n")));
            }
        }
    }
}

/// Whether a request line names a path under `/api/`.
fn is_api_request(head: &[u8]) -> bool {
    let mut parts = head.split(|b| *b == b' ');
    parts.nth(1).is_some_and(|path| path.starts_with(b"/api/"))
}

/// Routing, upgrade checks and authentication, without I/O.
pub fn decide(shard: &Shard, head: &Head) -> Decision {
    let settings = shard.settings();
    let respond = |code, reason, extra: &str, body: &str| {
        Decision::Respond(plain(code, reason, extra, &format!("{body}\n")))
    };
    if !head.method_get {
        return respond(
            405,
            "Method Not Allowed",
            "Allow: GET\r\n",
            "only GET is served",
        );
    }
    match head.target {
        Target::Healthz => return respond(200, "OK", "", "ok"),
        Target::Readyz => return readiness(shard),
        Target::Metrics => return Decision::Respond(metrics_response(shard)),
        Target::Other | Target::Api(_) => return respond(404, "Not Found", "", "not found"),
        Target::Demo(ref path) => {
            return match &settings.demo {
                Some(demo) => Decision::Respond(demo.respond(path)),
                None => respond(404, "Not Found", "", "not found"),
            }
        }
        Target::Echo if settings.echo_max_message_bytes.is_none() => {
            return respond(404, "Not Found", "", "not found")
        }
        _ => {}
    }
    if !head.wants_upgrade {
        return respond(
            426,
            "Upgrade Required",
            "Upgrade: websocket\r\n",
            "WebSocket upgrade required",
        );
    }
    if !head.version_13 {
        return respond(
            426,
            "Upgrade Required",
            "Sec-WebSocket-Version: 13\r\n",
            "WebSocket version 13 required",
        );
    }
    if head.ws_key.is_none() {
        return respond(400, "Bad Request", "", "missing Sec-WebSocket-Key");
    }
    if shard.pod.sockets.full() {
        tracing::debug!(
            shard = shard.id,
            "upgrade refused: pod at its connection cap"
        );
        let retry = format!("Retry-After: {RETRY_AFTER_SECS}\r\n");
        let body = "pod at its connection limit; retry later or on another pod";
        return respond(503, "Service Unavailable", &retry, body);
    }
    if head.target == Target::Echo {
        return Decision::Echo;
    }
    let since = match head.since_param.as_deref().map(parse_since) {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => {
            let body = "since must be a stream position: an integer from 0";
            return respond(400, "Bad Request", "", body);
        }
    };
    if !origin_allowed(&settings.allowed_origins, head.origin.as_deref()) {
        tracing::debug!(shard = shard.id, origin = ?head.origin, "upgrade refused: origin");
        return respond(403, "Forbidden", "", "origin not allowed");
    }
    let creds = Credentials {
        bearer: head.bearer.as_deref(),
        token_param: head.token_param.clone(),
        user_id_param: head.user_id_param.clone(),
    };
    let now = crate::protocol::now_micros() / 1_000_000;
    match settings.auth.authenticate(&creds, now) {
        Ok(id) if !shard.pod.user_exists(&id.user) => {
            let user = id.user;
            tracing::debug!(
                shard = shard.id,
                user,
                "upgrade refused: not in the directory"
            );
            respond(403, "Forbidden", "", "user not in the directory")
        }
        Ok(id) => Decision::Ws {
            user: id.user,
            since,
            expires_at: id.expires_at.unwrap_or(i64::MAX),
        },
        Err(e) => {
            tracing::debug!(shard = shard.id, error = %e, "upgrade refused");
            let challenge = "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n";
            respond(401, "Unauthorized", challenge, &e.to_string())
        }
    }
}

/// `/readyz`: 200 `ready`, or 503 naming every reason this pod should get no new
/// connections: it is shutting down, at its connection cap, or its last attempt to reach the
/// store, the route table or the broker failed. `/healthz` stays 200 meanwhile: the process
/// is alive and must not be restarted for a backend's outage.
fn readiness(shard: &Shard) -> Decision {
    let pod = &shard.pod;
    let reach = &pod.metrics.reach;
    let down = [
        (shard.draining.get(), "shutting down"),
        (pod.sockets.full(), "at its connection limit"),
        (pod.metrics.store.failing.load(Relaxed), "store unreachable"),
        (
            reach.routes_failing.load(Relaxed),
            "route table unreachable",
        ),
        (reach.bus_failing.load(Relaxed), "broker unreachable"),
    ];
    let reasons: Vec<&str> = down.iter().filter(|(d, _)| *d).map(|(_, r)| *r).collect();
    let (code, reason, body) = match reasons.is_empty() {
        true => (200, "OK", "ready".to_owned()),
        false => (503, "Service Unavailable", reasons.join(", ")),
    };
    Decision::Respond(plain(code, reason, "", &format!("{body}\n")))
}

/// A sync cursor: a position in the user's stream, 0 for "from the beginning".
fn parse_since(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|n| *n >= 0)
}

/// Whether a request from `origin` may upgrade. Only browsers send `Origin`, and they always
/// do on a WebSocket upgrade: a request without one is not a cross-site page.
fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    match origin {
        Some(o) if !allowed.is_empty() => allowed.iter().any(|a| a == o.trim_end_matches('/')),
        _ => true,
    }
}

fn metrics_response(shard: &Shard) -> String {
    let pod = &shard.pod;
    let depths = crate::metrics::Depths {
        inboxes: pod.mesh.iter().map(|m| m.len()).collect(),
        store_queue: pod.store.queued(),
    };
    let body = pod.metrics.render(depths);
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn origins_are_checked_only_against_a_list_and_only_when_sent() {
        let list = vec!["https://app.example.com".to_owned()];
        assert!(origin_allowed(&list, Some("https://app.example.com")));
        assert!(origin_allowed(&list, Some("https://app.example.com/")));
        assert!(!origin_allowed(&list, Some("https://evil.example")));
        assert!(
            !origin_allowed(&list, Some("null")),
            "sandboxed pages send null"
        );
        assert!(origin_allowed(&list, None));
        assert!(origin_allowed(&[], Some("https://evil.example")));
    }
}
