//! The history: one JSON line per client operation, in the order this process saw them, with
//! a timestamp from one monotonic clock (µs since the run started). The checker
//! (`perf/chaos/check.py`) reads nothing else, so every fact it needs is written here, as
//! the client saw it on the wire: the pod's own view is never trusted.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Map, Value};

/// Cheap to clone; every device thread holds one.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    tx: Sender<Value>,
}

impl Recorder {
    /// Starts the writer thread; the file is complete once every `Recorder` is dropped and
    /// the handle joined.
    pub fn create(path: &Path) -> std::io::Result<(Recorder, JoinHandle<std::io::Result<()>>)> {
        let file = BufWriter::new(File::create(path)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = std::thread::Builder::new()
            .name("history".into())
            .spawn(move || write_all(file, rx))?;
        let start = Instant::now();
        Ok((Recorder { start, tx }, writer))
    }

    /// Records `ev` for user `u` in session `s` (0 for events outside any session) with the
    /// fields of `fields`, which must be a JSON object.
    pub fn record(&self, u: &str, s: u32, ev: &str, fields: Value) {
        let mut line = Map::new();
        line.insert("t".into(), json!(self.start.elapsed().as_micros() as u64));
        line.insert("u".into(), json!(u));
        line.insert("s".into(), json!(s));
        line.insert("ev".into(), json!(ev));
        if let Value::Object(extra) = fields {
            line.extend(extra);
        }
        // The writer outlives every recorder; a send can only fail after it died on an I/O
        // error, which its join reports.
        let _ = self.tx.send(Value::Object(line));
    }
}

fn write_all(mut file: BufWriter<File>, rx: Receiver<Value>) -> std::io::Result<()> {
    for line in rx {
        serde_json::to_writer(&mut file, &line)?;
        file.write_all(b"\n")?;
    }
    file.flush()
}
