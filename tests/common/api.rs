//! A client of the server HTTP API over a raw socket: what a backend sends, byte for byte.

use std::net::SocketAddr;

use serde_json::Value;

pub const KEY: &str = "test-api-key-0123456789";

/// `method path` with the API key (`None`: no Authorization), an optional JSON body and extra
/// header lines; the answer's status and JSON body.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
    headers: &str,
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{headers}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    parse(&super::raw(addr, &request))
}

/// The status and JSON body of a raw response.
pub fn parse(response: &str) -> (u16, Value) {
    let status = response[9..12].parse().expect("a status line");
    let (_, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `POST /api/v1/messages` with `body` and, when given, an `Idempotency-Key`.
pub fn publish(addr: SocketAddr, body: &Value, key: Option<&str>) -> (u16, Value) {
    let header = key
        .map(|k| format!("Idempotency-Key: {k}\r\n"))
        .unwrap_or_default();
    call(
        addr,
        "POST",
        "/api/v1/messages",
        Some(KEY),
        Some(body),
        &header,
    )
}

pub fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    call(addr, "GET", path, Some(KEY), None, "")
}
