//! A real local HTTP receiver of the pod's webhooks, checking every request's signature.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub const SECRET: &str = "hook-secret";

/// What the receiver saw: every request's event, and whether it was answered 2xx.
#[derive(Default)]
pub struct Seen {
    pub taken: Vec<serde_json::Value>,
    pub refused: usize,
}

/// Serves `listener`: answers 503 to the first `refuse` requests, then 200; checks each
/// request's signature (a bad one fails the test).
pub fn receive(listener: TcpListener, refuse: usize, seen: Arc<Mutex<Seen>>) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with("POST "), "{line}");
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let Some((k, v)) = line.trim_end().split_once(": ") else {
                    break;
                };
                headers.insert(k.to_ascii_lowercase(), v.to_owned());
            }
            let len: usize = headers["content-length"].parse().unwrap();
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let ts: i64 = headers["x-distrisocks-timestamp"].parse().unwrap();
            let want = distrisocks::backend::webhook::sign(SECRET.as_bytes(), ts, &body);
            assert_eq!(headers["x-distrisocks-signature"], format!("sha256={want}"));
            let event: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                headers["x-distrisocks-event-id"],
                event["id"].as_str().unwrap()
            );
            let mut s = seen.lock().unwrap();
            let code = if s.refused < refuse {
                s.refused += 1;
                "503 Service Unavailable"
            } else {
                s.taken.push(event);
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
}
