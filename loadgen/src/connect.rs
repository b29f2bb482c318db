//! Opening one generator connection: a TCP socket bound to its own loopback source address,
//! our own HTTP upgrade (so a refusal reports its status and body), then for Socket.IO the
//! Engine.IO open exchange. Every step is bounded by the caller's timeout.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use glommio::net::TcpStream;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use super::conn::Link;
use super::{handshake, Protocol};

/// Linux errno values we name in reports (no libc dependency for four constants).
const ERRNO_NAMES: [(i32, &str); 9] = [
    (24, "EMFILE"),
    (23, "ENFILE"),
    (99, "EADDRNOTAVAIL"),
    (98, "EADDRINUSE"),
    (111, "ECONNREFUSED"),
    (104, "ECONNRESET"),
    (110, "ETIMEDOUT"),
    (113, "EHOSTUNREACH"),
    (32, "EPIPE"),
];
const EINPROGRESS: i32 = 115;

/// Why a connection attempt failed: a short stable `kind` to count by, and the full text.
#[derive(Debug, Clone)]
pub(crate) struct ConnectError {
    pub kind: String,
    pub text: String,
}

impl ConnectError {
    pub(crate) fn new(kind: impl Into<String>, text: impl Into<String>) -> ConnectError {
        ConnectError {
            kind: kind.into(),
            text: text.into(),
        }
    }
}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> ConnectError {
        ConnectError::new(io_kind(&e), e.to_string())
    }
}

/// The errno name of `e` (EMFILE, EADDRNOTAVAIL, ECONNREFUSED, ...) or its kind.
pub(crate) fn io_kind(e: &io::Error) -> String {
    let named = e
        .raw_os_error()
        .and_then(|n| ERRNO_NAMES.iter().find(|(c, _)| *c == n));
    match named {
        Some((_, name)) => (*name).to_owned(),
        None => format!("{:?}", e.kind()),
    }
}

/// One pod: where to connect and what to ask for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub addr: SocketAddr,
    /// `host:port` as written, for the Host header.
    pub host: String,
    /// Path with a query prefix: `/ws?` or `/ws?a=b&`, ready for the credentials.
    pub path_prefix: String,
}

/// Parses `ws://host:port/path[?query]`; Socket.IO targets get `/socket.io/` unless the path
/// already names it, and the Engine.IO parameters.
pub(crate) fn parse_url(url: &str, protocol: Protocol) -> Result<Target, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: host resolves to nothing"))?;
    let (mut path, query) = path.split_once('?').unwrap_or((path, ""));
    if protocol == Protocol::Socketio && !path.contains("socket.io") {
        path = "/socket.io/";
    }
    let mut path_prefix = format!("{}?", if path.is_empty() { "/" } else { path });
    if protocol == Protocol::Socketio {
        path_prefix.push_str("EIO=4&transport=websocket&");
    }
    if !query.is_empty() {
        path_prefix.push_str(query);
        path_prefix.push('&');
    }
    Ok(Target {
        addr,
        host: host.to_owned(),
        path_prefix,
    })
}

/// Percent-encodes a query value (user ids may hold any printable character).
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The loopback source address for global user `i`: 127.0.0.2..=254 round-robin, so that the
/// 4-tuples to one pod port do not run out at ~28k (one source address's ephemeral ports).
pub(crate) fn source_ip(target: &SocketAddr, i: u64, enabled: bool) -> Option<Ipv4Addr> {
    match target.ip() {
        IpAddr::V4(v4) if enabled && v4.is_loopback() => {
            Some(Ipv4Addr::new(127, 0, 0, 2 + (i % 253) as u8))
        }
        _ => None,
    }
}

/// Connects, upgrades and (Socket.IO) opens, all within `limit`.
pub(crate) async fn open(
    target: &Target,
    src: Option<Ipv4Addr>,
    path: &str,
    protocol: Protocol,
    limit: Duration,
) -> Result<Link, ConnectError> {
    let work = async {
        let stream = tcp_connect(target.addr, src).await?;
        let (stream, rest) = handshake::upgrade(stream, &target.host, path).await?;
        let mut link = Link::new(stream, rest);
        if protocol == Protocol::Socketio {
            handshake::engineio_open(&mut link).await?;
        }
        Ok(link)
    };
    match glommio::timer::timeout(limit, async { Ok(work.await) }).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::new(
            "timeout",
            format!("no connection within {limit:?}"),
        )),
    }
}

/// A non-blocking connect from a bound socket. glommio's own `connect` cannot bind first, so
/// we poll the socket's state until the kernel finishes the handshake (microseconds on
/// loopback) and hand the connected socket to glommio.
async fn tcp_connect(addr: SocketAddr, src: Option<Ipv4Addr>) -> Result<TcpStream, ConnectError> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sock = Socket::new(domain, Type::STREAM, Some(SockProtocol::TCP))?;
    if let Some(ip) = src {
        sock.bind(&SocketAddr::new(ip.into(), 0).into())?;
    }
    sock.set_nonblocking(true)?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) => wait_connected(&sock).await?,
        Err(e) => return Err(e.into()),
    }
    sock.set_nonblocking(false)?;
    sock.set_nodelay(true)?;
    Ok(TcpStream::from(sock))
}

/// Polls `sock` until connected or failed (SO_ERROR); the caller's timeout bounds it.
async fn wait_connected(sock: &Socket) -> io::Result<()> {
    let mut pause = Duration::from_micros(100);
    loop {
        if let Some(e) = sock.take_error()? {
            return Err(e);
        }
        if sock.peer_addr().is_ok() {
            return Ok(());
        }
        glommio::timer::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_request_prefixes() {
        let t = parse_url("ws://127.0.0.1:9/ws", Protocol::Distrisocks).unwrap();
        assert_eq!(
            (t.host.as_str(), t.path_prefix.as_str()),
            ("127.0.0.1:9", "/ws?")
        );
        let t = parse_url("ws://127.0.0.1:9/ws?a=1", Protocol::Distrisocks).unwrap();
        assert_eq!(t.path_prefix, "/ws?a=1&");
        let t = parse_url("ws://127.0.0.1:9", Protocol::Socketio).unwrap();
        assert_eq!(t.path_prefix, "/socket.io/?EIO=4&transport=websocket&");
        assert!(parse_url("http://x/ws", Protocol::Distrisocks).is_err());
    }

    #[test]
    fn sources_rotate_over_loopback_only() {
        let lo: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(source_ip(&lo, 0, true), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(
            source_ip(&lo, 252, true),
            Some(Ipv4Addr::new(127, 0, 0, 254))
        );
        assert_eq!(source_ip(&lo, 253, true), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_ip(&lo, 1, false), None);
        assert_eq!(source_ip(&"[::1]:80".parse().unwrap(), 1, true), None);
    }

    #[test]
    fn errors_are_named() {
        assert_eq!(io_kind(&io::Error::from_raw_os_error(24)), "EMFILE");
        assert_eq!(io_kind(&io::Error::from_raw_os_error(111)), "ECONNREFUSED");
        assert_eq!(query_escape("a b/é"), "a%20b%2F%C3%A9");
    }
}
