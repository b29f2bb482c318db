//! A pod as its own process (the real binary), for what an in-process pod cannot show: its
//! log output, and behaviour under a lowered open-file limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::WAIT;

/// An embedded-mode pod process with its stderr collected line by line.
pub struct ProcPod {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl ProcPod {
    /// Starts the pod on 127.0.0.1:0 storing under `dir`, under `ulimit -n nofile` when given,
    /// with `DISTRISOCKS_LOG` at `trace` (every log line the pod can write); `args` come last.
    pub fn start(dir: &Path, nofile: Option<u32>, args: &[&str]) -> ProcPod {
        ProcPod::start_env(dir, nofile, &[], args)
    }

    /// [`start`](Self::start) with `env` added to the pod's environment.
    pub fn start_env(
        dir: &Path,
        nofile: Option<u32>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> ProcPod {
        let bin = env!("CARGO_BIN_EXE_distrisocks");
        let limit = nofile
            .map(|n| format!("ulimit -n {n} && "))
            .unwrap_or_default();
        let script = format!("{limit}exec \"$0\" \"$@\"");
        let mut child = Command::new("sh")
            .args(["-c", &script, bin, "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir)
            .args(["--store-full-sync", "false"])
            .args(args)
            .env("DISTRISOCKS_LOG", "trace")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = lines.next().expect("pod exited before starting").unwrap();
            let started = line
                .contains("pod started")
                .then(|| line.split("addr=").nth(1));
            if let Some(Some(at)) = started {
                break at.split_whitespace().next().unwrap().parse().unwrap();
            }
            log.lock().unwrap().push(line);
        };
        let sink = log.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        ProcPod { child, addr, log }
    }

    /// Waits for the process to end and returns how it ended.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Every line logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ProcPod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The raw upgrade request of a WebSocket connection for `user`.
pub fn upgrade_request(user: &str) -> String {
    format!(
        "GET /ws?user_id={user} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Connects and upgrades; `None` when the pod closed the socket without upgrading it.
pub fn upgrade_or_closed(addr: SocketAddr, n: usize) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(upgrade_request(&format!("fd-{n}")).as_bytes())
        .ok()?;
    let mut head = [0u8; 12];
    match s.read_exact(&mut head) {
        Ok(()) if &head == b"HTTP/1.1 101" => Some(s),
        Ok(()) => panic!("unexpected answer {:?}", String::from_utf8_lossy(&head)),
        Err(e) => {
            // Closed or reset by the pod: what it does when it has no descriptor left.
            assert_ne!(
                e.kind(),
                std::io::ErrorKind::WouldBlock,
                "the pod left a client hanging"
            );
            None
        }
    }
}

/// `n` clients one after another through [`upgrade_or_closed`] (which fails the test on one
/// left hanging): the upgraded sockets, held open, and how many the pod closed.
pub fn upgrade_each(addr: SocketAddr, n: usize) -> (Vec<TcpStream>, usize) {
    let mut open = Vec::new();
    let mut shed = 0;
    for i in 0..n {
        match upgrade_or_closed(addr, i) {
            Some(s) => open.push(s),
            None => shed += 1,
        }
    }
    (open, shed)
}
