//! The HTTP/1.1 request head that precedes every WebSocket, parsed without I/O.
//!
//! The pod answers plain HTTP itself (`/healthz`, `401`, `404`, `426`) and writes the `101`
//! response by hand, so that authentication happens before any WebSocket state exists and
//! permessage-deflate is never negotiated (no `Sec-WebSocket-Extensions` is ever sent back).

use tungstenite::handshake::derive_accept_key;

/// Largest request head accepted; longer heads get `431`.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// What the request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// `GET /ws`: the messaging socket.
    Ws,
    /// `GET /echo`: the conformance echo socket (served only with `--echo`).
    Echo,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`: whether this pod should get new connections.
    Readyz,
    /// `GET /metrics` (Prometheus text format).
    Metrics,
    /// `GET /demo` or below it: the demo page (served only with `--demo-dir`); the path
    /// after `/demo`.
    Demo(String),
    /// `/api/` and below: the server HTTP API for backends (`socket::api`); the whole path.
    Api(String),
    /// Anything else.
    Other,
}

/// The parts of a request head the pod acts on.
#[derive(Debug)]
pub struct Head {
    pub method_get: bool,
    /// The request method as sent (the server API serves more than `GET`).
    pub method: String,
    /// The query string, undecoded (the server API reads its own parameters).
    pub query: String,
    /// `Content-Length`; `None` when absent or not a number.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding` was sent: bodies are read only by length (`411` otherwise).
    pub chunked: bool,
    /// `Idempotency-Key` (server API publish).
    pub idempotency_key: Option<String>,
    pub target: Target,
    pub bearer: Option<String>,
    pub token_param: Option<String>,
    pub user_id_param: Option<String>,
    /// `?since=`: the device syncs (protocol v2) from after this stream position.
    pub since_param: Option<String>,
    /// `Sec-WebSocket-Key`, when the request is a well-formed version-13 upgrade.
    pub ws_key: Option<String>,
    /// `Upgrade: websocket` and `Connection: upgrade` were present.
    pub wants_upgrade: bool,
    /// `Sec-WebSocket-Version` was 13.
    pub version_13: bool,
    /// The `Origin` header, lower-cased (browsers send it on every upgrade).
    pub origin: Option<String>,
}

/// The head could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("malformed HTTP request head")]
    Malformed,
    #[error("request head exceeds {MAX_HEAD_BYTES} bytes")]
    TooLarge,
}

/// Parses `buf`; `Ok(None)` means more bytes are needed. On success returns the head and its
/// length, so that bytes after it (an eager first frame) are handed to the WebSocket layer.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    let (path, query) = split_path(req.path.unwrap_or("/"));
    let mut head = Head {
        method_get: req.method == Some("GET"),
        method: req.method.unwrap_or_default().to_owned(),
        query: query.to_owned(),
        content_length: None,
        chunked: false,
        idempotency_key: None,
        target: match path {
            "/ws" => Target::Ws,
            "/echo" => Target::Echo,
            "/healthz" => Target::Healthz,
            "/readyz" => Target::Readyz,
            "/metrics" => Target::Metrics,
            p if p == "/demo" || p.starts_with("/demo/") => Target::Demo(p[5..].to_string()),
            p if p.starts_with("/api/") => Target::Api(p.to_owned()),
            _ => Target::Other,
        },
        bearer: None,
        token_param: query_param(query, "token"),
        user_id_param: query_param(query, "user_id"),
        since_param: query_param(query, "since"),
        ws_key: None,
        wants_upgrade: false,
        version_13: false,
        origin: None,
    };
    read_headers(req.headers, &mut head);
    Ok(Some((head, len)))
}

fn read_headers(headers: &[httparse::Header<'_>], head: &mut Head) {
    let (mut upgrade, mut connection) = (false, false);
    for h in headers {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade = value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection = value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
        } else if name.eq_ignore_ascii_case("sec-websocket-key") && !value.is_empty() {
            head.ws_key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            head.version_13 = value == "13";
        } else if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = true;
        } else if name.eq_ignore_ascii_case("idempotency-key") {
            head.idempotency_key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            head.origin = Some(value.to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case("authorization") {
            let bearer = value
                .strip_prefix("Bearer ")
                .or(value.strip_prefix("bearer "));
            head.bearer = bearer.map(|t| t.trim().to_owned());
        }
    }
    head.wants_upgrade = upgrade && connection;
}

fn split_path(full: &str) -> (&str, &str) {
    full.split_once('?').unwrap_or((full, ""))
}

/// The decoded value of `key` in a query string (the first one); `None` when absent or
/// badly escaped.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| percent_decode(v, true))
}

/// A path segment with its `%XX` escapes decoded (`+` stays `+`); `None` when badly escaped.
pub fn path_segment(s: &str) -> Option<String> {
    percent_decode(s, false)
}

/// Decodes `%XX` escapes, and `+` as a space when `plus_is_space` (query strings); `None`
/// when the result is not UTF-8 or an escape is broken.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `101` response completing the upgrade. `shard` is reported in `X-Distrisocks-Shard`
/// so that operators and tests can see where SO_REUSEPORT placed the connection.
pub fn switching_protocols(key: &str, shard: usize) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nX-Distrisocks-Shard: {shard}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
}

/// A complete JSON response that closes the connection (the server API's).
pub fn json(status: u16, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        reason_phrase(status),
        body.len()
    )
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// A complete plain response that closes the connection.
pub fn plain(status: u16, reason: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /ws?user_id=al%20ice&token=t HTTP/1.1\r\nHost: x\r\n\
        Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nEXTRA";

    #[test]
    fn parses_an_upgrade_and_keeps_trailing_bytes() {
        let (head, len) = parse_head(UPGRADE).unwrap().unwrap();
        assert_eq!(&UPGRADE[len..], b"EXTRA");
        assert_eq!(head.target, Target::Ws);
        assert!(head.method_get && head.wants_upgrade && head.version_13);
        assert_eq!(head.user_id_param.as_deref(), Some("al ice"));
        assert_eq!(head.token_param.as_deref(), Some("t"));
        let resp = switching_protocols(head.ws_key.as_deref().unwrap(), 1);
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(!resp.contains("Extensions"));
    }

    #[test]
    fn partial_oversize_and_garbage_heads() {
        assert!(parse_head(b"GET /ws HTTP/1.1\r\nHost").unwrap().is_none());
        let mut big = b"GET /ws HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 1, b'a');
        assert!(matches!(parse_head(&big), Err(HeadError::TooLarge)));
        assert!(matches!(
            parse_head(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(HeadError::Malformed)
        ));
    }
}
