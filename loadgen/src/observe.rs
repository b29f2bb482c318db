//! Looking at the system under test from outside: the pods' own counters (`GET /metrics`
//! before and after, so the report can set the gateway's view beside the generator's) and the
//! resident memory of watched processes (what the connections cost a pod).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Samples of one scrape: `name{labels}` to value, distrisocks_* only.
pub(crate) type Samples = BTreeMap<String, f64>;

const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches and parses `url` (http://host:port/path) with a plain HTTP/1.1 GET.
pub(crate) fn scrape(url: &str) -> Result<Samples, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// is supported"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/metrics" } else { path };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let body = get(addr, host, path).map_err(|e| format!("{url}: {e}"))?;
    Ok(parse(&body))
}

fn get(addr: std::net::SocketAddr, host: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let status = head.lines().next().unwrap_or("no answer");
        return Err(std::io::Error::other(format!("answered {status}")));
    }
    Ok(body.to_owned())
}

/// The distrisocks_* samples of a Prometheus text exposition.
pub(crate) fn parse(text: &str) -> Samples {
    text.lines()
        .filter(|l| l.starts_with("distrisocks_"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// After minus before, for every sample present after (a missing "before" counts as zero).
pub(crate) fn delta(before: &Samples, after: &Samples) -> Samples {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// VmRSS of `pid` in KiB, from /proc.
pub(crate) fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// RSS samples of the watched pids, by pid and moment.
#[derive(Default)]
pub(crate) struct Rss {
    pub samples: BTreeMap<String, BTreeMap<String, u64>>,
    pids: Vec<u32>,
}

impl Rss {
    pub fn new(pids: &[u32]) -> Rss {
        Rss {
            samples: BTreeMap::new(),
            pids: pids.to_vec(),
        }
    }

    /// Records every watched pid's RSS under `moment` (pids that are gone are skipped).
    pub fn sample(&mut self, moment: &str) {
        for pid in &self.pids {
            if let Some(kib) = vm_rss_kib(*pid) {
                let per_pid = self.samples.entry(pid.to_string()).or_default();
                per_pid.insert(moment.to_owned(), kib);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_subtracts_samples() {
        let before = parse("# HELP x\ndistrisocks_connections{shard=\"0\"} 3\nother 1\n");
        let after = parse(
            "distrisocks_connections{shard=\"0\"} 10\ndistrisocks_errors_total{code=\"overloaded\"} 2\n",
        );
        let d = delta(&before, &after);
        assert_eq!(d["distrisocks_connections{shard=\"0\"}"], 7.0);
        assert_eq!(d["distrisocks_errors_total{code=\"overloaded\"}"], 2.0);
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn reads_own_rss() {
        assert!(vm_rss_kib(std::process::id()).unwrap() > 0);
    }
}
