//! Every stored fuzz input, replayed on the stable toolchain: the seed corpus of each target
//! (`fuzz/corpus/<target>/`) and every input a fuzz run ever failed on
//! (`fuzz/regressions/<target>/`, kept forever). The properties are the fuzz targets' own
//! (`fuzz/properties.rs`), so a crash the fuzzer found stays a failing test here until it is
//! fixed, without nightly or libFuzzer.

#[path = "../fuzz/properties.rs"]
mod properties;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target} fails on {}", path.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no stored inputs for {target}");
}

#[test]
fn client_frame_inputs() {
    replay("client_frame", properties::client_frame);
}

#[test]
fn http_head_inputs() {
    replay("http_head", properties::http_head);
}

#[test]
fn ws_frames_inputs() {
    replay("ws_frames", properties::ws_frames);
}

#[test]
fn jwt_inputs() {
    replay("jwt", properties::jwt);
}
