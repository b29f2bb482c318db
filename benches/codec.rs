//! Envelope codec: decode a send frame, encode a message frame (the two per-message costs of
//! the wire protocol). `cargo bench --bench codec`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use distrisocks::protocol::{decode_client_frame, encode_message, Limits, MessageView};

const SEND: &str = r#"{"payload":"hello bob, this is a hundred-byte message body used by the codec benchmark....!","reciever_id":"bob","sender_id":"alice","client_msg_id":"c-12345"}"#;

fn codec(c: &mut Criterion) {
    let limits = Limits {
        max_payload_bytes: 32 * 1024,
    };
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    // Baseline: the same frame into a generic serde_json::Value, as a dynamic decoder would.
    g.bench_function("decode_send_baseline_value", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(SEND)).unwrap())
    });
    g.bench_function("decode_send", |b| {
        b.iter(|| decode_client_frame(black_box(SEND), "alice", limits).unwrap())
    });
    let view = MessageView {
        id: "01a220d3-e489-7599-9ae4-8a67143a4030",
        sender_id: "alice",
        reciever_id: "bob",
        message: "hello bob, this is a hundred-byte message body used by the codec benchmark....!",
        created_at_micros: 1_795_846_207_000_001,
        cseq: 41,
        pos: 1_207,
        group: None,
    };
    g.bench_function("encode_message", |b| {
        b.iter(|| encode_message(black_box(view)))
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
