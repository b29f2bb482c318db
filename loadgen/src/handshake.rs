//! Our side of the WebSocket upgrade (our own lets a refusal report its HTTP status and body),
//! and the Engine.IO v4 open exchange that a Socket.IO peer expects before any event.

use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::conn::Link;
use super::connect::ConnectError;
use super::wire;

/// Largest HTTP response head we wait for.
const MAX_HEAD: usize = 16 * 1024;

/// Sends the upgrade request and reads the answer; returns the stream and any bytes already
/// read past the head (the first frames may come in the same segment).
pub(crate) async fn upgrade(
    mut stream: TcpStream,
    host: &str,
    path: &str,
) -> Result<(TcpStream, Vec<u8>), ConnectError> {
    let key = tungstenite::handshake::client::generate_key();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ConnectError::new(
                "eof",
                "connection closed during the upgrade",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(done) = parse_head(&buf, &key)? {
            return Ok((stream, buf.split_off(done)));
        }
        if buf.len() > MAX_HEAD {
            return Err(ConnectError::new("bad_http", "response head too large"));
        }
    }
}

/// `Some(head length)` once a complete `101` with the right accept key is in `buf`.
fn parse_head(buf: &[u8], key: &str) -> Result<Option<usize>, ConnectError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ConnectError::new("bad_http", e.to_string())),
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        let body = String::from_utf8_lossy(&buf[len..]);
        let text = format!("HTTP {code}: {}", body.trim());
        return Err(ConnectError::new(format!("http_{code}"), text));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accept = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"));
    match accept {
        Some(h) if h.value == expected.as_bytes() => Ok(Some(len)),
        _ => Err(ConnectError::new(
            "bad_http",
            "wrong or missing Sec-WebSocket-Accept",
        )),
    }
}

/// Engine.IO v4 open: server `0{...}`, client `40`, server `40{"sid":...}`.
pub(crate) async fn engineio_open(link: &mut Link) -> Result<(), ConnectError> {
    let first = link.next_text().await?;
    if !first.starts_with('0') {
        return Err(ConnectError::new(
            "engineio",
            format!("expected open packet, got {first:.60}"),
        ));
    }
    link.send_now(wire::TEXT, b"40").await?;
    loop {
        let t = link.next_text().await?;
        match t.as_str() {
            s if s.starts_with("40") => return Ok(()),
            "2" => link.send_now(wire::TEXT, b"3").await?,
            s if s.starts_with("44") => return Err(ConnectError::new("engineio", s.to_owned())),
            _ => {}
        }
    }
}
