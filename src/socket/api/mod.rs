//! The server HTTP API (`/api/v1/`): what a backend does without opening a socket as a user.
//! `docs/openapi.yaml` is its contract, `docs/PROTOCOL.md` ("Server API") its error codes.
//!
//! A request is authenticated by an API key (`--api-keys`), never by a user token: the key
//! holder is the application, which may act as any user. Writes act as a user on the very
//! path a socket's frame takes ([`act`]): the same checks, the same store commit before the
//! answer, the same routing and carbons, so nothing here is a second message path to keep
//! in step. Reads ([`reads`]) ask the store thread and the route table, like presence does.
//! One request per connection (`Connection: close`): backends call this at their own pace,
//! and a keep-alive loop would be a second reader to bound.

mod act;
mod reads;
mod reply;
mod routes;

use std::rc::Rc;
use std::time::Duration;

use futures::AsyncReadExt;
use glommio::net::TcpStream;

use super::handshake::answer_and_close;
use super::http::Head;
use crate::shard::Shard;
use reply::Reply;

/// The longest a request may take, its body's arrival included. A publish that waits longer
/// (a store far behind) is answered 504: the message may still be stored, and a retry with
/// the same `Idempotency-Key` tells.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one request and closes the connection; the socket was counted open at accept.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream, head: Box<Head>, rest: Vec<u8>) {
    let answer = glommio::timer::timeout(REQUEST_TIMEOUT, async {
        Ok(answer(&shard, &mut stream, &head, rest).await)
    });
    let reply = match answer.await {
        Ok(Some(reply)) => Some(reply),
        Ok(None) => None, // The client went away before its body arrived.
        Err(_) => Some(Reply::error(
            504,
            "timeout",
            "no answer in time; a publish may still be stored: retry with the same Idempotency-Key",
        )),
    };
    if let Some(reply) = reply {
        answer_and_close(&mut stream, &reply.to_http()).await;
    }
    shard.pod.sockets.closed();
}

/// Authenticates, reads the body, routes. `None`: the peer left before sending its body.
async fn answer(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    head: &Head,
    rest: Vec<u8>,
) -> Option<Reply> {
    let keys = &shard.settings().api_keys;
    if keys.is_empty() {
        return Some(Reply::error(
            404,
            "not_found",
            "the server API is off (no --api-keys)",
        ));
    }
    if !head.bearer.as_deref().is_some_and(|b| key_matches(keys, b)) {
        return Some(Reply::error(
            401,
            "unauthorized",
            "an API key is required: Authorization: Bearer <key>",
        ));
    }
    // A body that trickles in is cut off like a slow upgrade (`--handshake-timeout-ms`).
    let limit = shard.settings().tuning.handshake_timeout();
    let body = glommio::timer::timeout(limit, async {
        Ok(read_body(shard, stream, head, rest).await)
    });
    let body = match body.await {
        Ok(Ok(Some(body))) => body,
        Ok(Ok(None)) => return None,
        Ok(Err(reply)) => return Some(reply),
        Err(_) => {
            let text = "the body did not arrive within the handshake timeout";
            return Some(Reply::error(408, "request_timeout", text));
        }
    };
    Some(routes::route(shard, head, &body).await)
}

/// Whether `given` is one of `keys`, comparing every byte of every key whatever matches
/// (no early exit a timing attack could measure).
fn key_matches(keys: &[String], given: &str) -> bool {
    let mut found = false;
    for key in keys {
        let (a, b) = (key.as_bytes(), given.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ b.get(i).copied().unwrap_or(!x);
        }
        found |= diff == 0;
    }
    found
}

/// The largest body taken: a publish of the largest payload, every byte escaped as `\uXXXX`,
/// with room for the other fields.
fn max_body(shard: &Shard) -> usize {
    shard.settings().limits.max_payload_bytes * 6 + 64 * 1024
}

/// The body, by `Content-Length` (none: empty). `Err`: the answer for a body that is refused.
async fn read_body(
    shard: &Shard,
    stream: &mut TcpStream,
    head: &Head,
    mut body: Vec<u8>,
) -> Result<Option<Vec<u8>>, Reply> {
    if head.chunked {
        return Err(Reply::error(
            411,
            "length_required",
            "send the body with a Content-Length",
        ));
    }
    let len = head.content_length.unwrap_or(0);
    if len > max_body(shard) {
        let text = format!("the body exceeds {} bytes", max_body(shard));
        return Err(Reply::error(413, "body_too_large", &text));
    }
    let mut chunk = vec![0u8; 16 * 1024];
    while body.len() < len {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(len);
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::key_matches;

    #[test]
    fn keys_match_only_exactly() {
        let keys = vec![
            "k1-0123456789abcdef".to_owned(),
            "k2-0123456789abcdef".to_owned(),
        ];
        assert!(key_matches(&keys, "k2-0123456789abcdef"));
        assert!(!key_matches(&keys, "k2-0123456789abcde"));
        assert!(!key_matches(&keys, "k2-0123456789abcdefX"));
        assert!(!key_matches(&keys, ""));
        assert!(!key_matches(&[], "k1-0123456789abcdef"));
    }
}
