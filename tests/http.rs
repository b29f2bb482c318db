//! Plain HTTP answers, authentication before the upgrade, handshake and ping timeouts.

mod common;

use common::*;
use distrisocks::auth::sign_hs256;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::Message;

fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn healthz_not_found_and_upgrade_required() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    assert!(raw_get(addr, "/healthz").starts_with("HTTP/1.1 200 OK"));
    assert!(raw_get(addr, "/nope").starts_with("HTTP/1.1 404"));
    assert!(
        raw_get(addr, "/echo").starts_with("HTTP/1.1 404"),
        "echo is off by default"
    );
    assert!(raw_get(addr, "/ws?user_id=a").starts_with("HTTP/1.1 426"));
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let post = format!("POST /ws?user_id=a HTTP/1.1\r\nHost: x\r\n{upgrade}\r\n");
    assert!(raw(addr, &post).starts_with("HTTP/1.1 405"));
    let old = format!("GET /ws?user_id=a HTTP/1.1\r\n{upgrade}Sec-WebSocket-Version: 8\r\n\r\n");
    let answer = raw(addr, &old);
    assert!(answer.starts_with("HTTP/1.1 426") && answer.contains("Sec-WebSocket-Version: 13"));
    let keyless =
        format!("GET /ws?user_id=a HTTP/1.1\r\n{upgrade}Sec-WebSocket-Version: 13\r\n\r\n");
    assert!(raw(addr, &keyless).starts_with("HTTP/1.1 400"));
    let huge = format!("GET /ws HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert!(raw(addr, &huge).starts_with("HTTP/1.1 431"));
    assert!(raw(addr, "\x16\x03\x01 not http\r\n\r\n").starts_with("HTTP/1.1 400"));
    match try_connect(addr, "", None) {
        Err(ConnectError::Http(401, body)) => assert!(body.contains("user_id"), "{body}"),
        other => panic!(
            "dev mode without user_id must be 401, got {:?}",
            other.map(|c| c.shard)
        ),
    }
    pod.shutdown();
}

#[test]
fn the_demo_page_is_served_only_with_demo_dir() {
    let dir = tempfile::tempdir().unwrap();
    let off = start_pod(dir.path(), |_| {});
    assert!(raw_get(off.local_addr(), "/demo/").starts_with("HTTP/1.1 404"));
    off.shutdown();
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/demo");
    let data = tempfile::tempdir().unwrap();
    let pod = start_pod(data.path(), |c| c.demo_dir = Some(demo.clone()));
    let addr = pod.local_addr();
    assert!(raw_get(addr, "/demo").starts_with("HTTP/1.1 301"));
    let page = raw_get(addr, "/demo/");
    let index = std::fs::read_to_string(demo.join("index.html")).unwrap();
    assert!(
        page.starts_with("HTTP/1.1 200 OK") && page.ends_with(&index),
        "{page}"
    );
    assert!(raw_get(addr, "/demo/app.js").contains("Content-Type: text/javascript"));
    for hidden in [
        "/demo/package.json.bak",
        "/demo/test/demo.test.mjs",
        "/demo/../Cargo.toml",
    ] {
        assert!(
            raw_get(addr, hidden).starts_with("HTTP/1.1 404"),
            "{hidden}"
        );
    }
    pod.shutdown();
}

#[test]
fn jwt_accepted_and_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.jwt_secret = Some("s3cret".into()));
    let addr = pod.local_addr();
    let good = sign_hs256(
        &format!(r#"{{"sub":"jane","exp":{}}}"#, now() + 600),
        b"s3cret",
    );
    let mut c = try_connect(addr, "", Some(&good)).expect("bearer token accepted");
    c.user = "jane".into();
    // The user is the token's, never the one a frame claims.
    c.send_text(r#"{"payload":"x","reciever_id":"kim","sender_id":"jane"}"#);
    assert_eq!(c.recv_type("accepted")["status"], "NONE");
    assert!(
        try_connect(addr, &format!("token={good}"), None).is_ok(),
        "?token= accepted"
    );
    let reject =
        |query: &str, bearer: Option<&str>, why: &str| match try_connect(addr, query, bearer) {
            Err(ConnectError::Http(401, body)) => assert!(body.contains(why), "{body}"),
            other => panic!("expected 401 ({why}), got {:?}", other.map(|c| c.shard)),
        };
    let forged = sign_hs256(
        &format!(r#"{{"sub":"jane","exp":{}}}"#, now() + 600),
        b"wrong",
    );
    reject("", Some(&forged), "signature");
    let expired = sign_hs256(
        &format!(r#"{{"sub":"jane","exp":{}}}"#, now() - 10),
        b"s3cret",
    );
    reject("", Some(&expired), "expired");
    let none = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        base64_url(&format!(r#"{{"sub":"jane","exp":{}}}"#, now() + 600))
    );
    reject("", Some(&none), "algorithm");
    reject("user_id=jane", None, "credentials");
    pod.shutdown();
}

/// RS256 and ES256 tokens signed by the auth service, verified with its JWKS document on
/// disk: `kid` picks the key; an unknown key id or another service's key gets 401.
#[test]
fn jwt_public_keys_from_a_jwks_document() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| {
        c.jwt_public_keys = vec![format!("{fixtures}/jwks.json").into()];
    });
    let addr = pod.local_addr();
    let token = |alg: Algorithm, kid: &str, private: &str| {
        let pem = std::fs::read(format!("{fixtures}/{private}")).unwrap();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        let claims = serde_json::json!({"sub": "jane", "exp": now() + 600});
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let rs = token(Algorithm::RS256, "rsa-2026", "rsa2_private.pem");
    let es = token(Algorithm::ES256, "ec-2026", "ec1_private.pem");
    for t in [&rs, &es] {
        let mut c = try_connect(addr, "", Some(t)).expect("signed by a published key");
        c.user = "jane".into();
        c.send_text(r#"{"payload":"x","reciever_id":"kim"}"#);
        assert_eq!(c.recv_type("accepted")["status"], "NONE");
    }
    let refused = |t: String, why: &str| match try_connect(addr, "", Some(&t)) {
        Err(ConnectError::Http(401, body)) => assert!(body.contains(why), "{body}"),
        other => panic!("expected 401 ({why}), got {:?}", other.map(|c| c.shard)),
    };
    refused(
        token(Algorithm::RS256, "rsa-2025", "rsa1_private.pem"),
        "key id",
    );
    refused(
        token(Algorithm::RS256, "rsa-2026", "rsa1_private.pem"),
        "signature",
    );
    refused(
        sign_hs256(r#"{"sub":"jane","exp":4000000000}"#, b"guess"),
        "algorithm",
    );
    pod.shutdown();
}

/// Rotation: tokens signed with the previous secret still connect; with `--jwt-issuer` and
/// `--jwt-audience` a token from another issuer or for another service gets 401.
#[test]
fn jwt_rotation_issuer_and_audience() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| {
        c.jwt_secret = Some("new-secret".into());
        c.jwt_previous_secrets = vec!["old-secret".into()];
        c.jwt_issuer = Some("https://auth.example".into());
        c.jwt_audience = Some("chat".into());
    });
    let addr = pod.local_addr();
    let token = |iss: &str, aud: &str, key: &[u8]| {
        let exp = now() + 600;
        let claims = format!(r#"{{"sub":"jane","exp":{exp},"iss":"{iss}","aud":"{aud}"}}"#);
        sign_hs256(&claims, key)
    };
    for key in [&b"new-secret"[..], b"old-secret"] {
        let t = token("https://auth.example", "chat", key);
        assert!(
            try_connect(addr, "", Some(&t)).is_ok(),
            "signed with {key:?}"
        );
    }
    let refused = |t: String, why: &str| match try_connect(addr, "", Some(&t)) {
        Err(ConnectError::Http(401, body)) => assert!(body.contains(why), "{body}"),
        other => panic!("expected 401 ({why}), got {:?}", other.map(|c| c.shard)),
    };
    refused(
        token("https://evil.example", "chat", b"new-secret"),
        "issuer",
    );
    refused(
        token("https://auth.example", "billing", b"new-secret"),
        "audience",
    );
    refused(
        token("https://auth.example", "chat", b"retired"),
        "signature",
    );
    pod.shutdown();
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn stalled_handshakes_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.tuning.handshake_timeout_ms = 300);
    let mut s = TcpStream::connect(pod.local_addr()).unwrap();
    s.write_all(b"GET /ws?user_id=slow HTTP/1.1\r\n").unwrap(); // ...and never finish.
    s.set_read_timeout(Some(WAIT)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    assert_eq!(
        s.read(&mut buf).unwrap(),
        0,
        "server closes without answering"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    pod.shutdown();
}

#[test]
fn silent_clients_are_pinged_then_closed_with_4001() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| {
        c.tuning.ping_interval_ms = 200;
        c.tuning.pong_timeout_ms = 200;
    });
    let addr = pod.local_addr();
    // A reading client answers pings (tungstenite queues pongs) and stays open.
    let mut alive = Client::connect(addr, &user("alive"));
    let reader = std::thread::spawn(move || {
        alive.expect_silence(Duration::from_millis(1500));
        alive.send_text(r#"{"payload":"x","reciever_id":"y"}"#);
        alive.recv_type("accepted");
    });
    // A client that never reads never answers: pinged, then closed with 4001.
    let mut dead = Client::connect(addr, &user("dead"));
    std::thread::sleep(Duration::from_millis(900));
    let mut saw_ping = false;
    loop {
        match dead.ws.read().unwrap() {
            Message::Ping(_) => saw_ping = true,
            Message::Close(Some(f)) => {
                assert_eq!(u16::from(f.code), 4001);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_ping);
    reader.join().expect("the reading client is still served");
    pod.shutdown();
}

#[test]
fn metrics_count_connections_messages_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (mut alice, mut bob) = pair(addr, addr);
    send_and_confirm(&mut alice, &mut bob, "counted");
    alice.send_text("{oops");
    alice.recv_type("error");
    let text = raw_get(addr, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let sum = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(sum("distrisocks_connections{"), 2);
    assert_eq!(sum("distrisocks_messages_accepted_total{"), 1);
    assert_eq!(sum("distrisocks_messages_sent_total{"), 1);
    assert_eq!(sum("distrisocks_messages_delivered_total{"), 1);
    assert_eq!(sum("distrisocks_errors_total{code=\"malformed_json\"}"), 1);
    assert!(sum("distrisocks_store_batches_total") >= 1);
    assert!(sum("distrisocks_frames_written_total{") >= 5);
    // Latency histograms: the message's hand-off to bob's connection was observed once on
    // the shard holding bob, its commits at least once; every bucket line is cumulative.
    assert_eq!(sum("distrisocks_handoff_seconds_count{"), 1, "{text}");
    assert!(sum("distrisocks_store_commit_seconds_count") >= 1);
    assert_eq!(
        sum("distrisocks_handoff_seconds_bucket{shard=\"0\",le=\"+Inf\"}")
            + sum("distrisocks_handoff_seconds_bucket{shard=\"1\",le=\"+Inf\"}"),
        1,
        "{text}"
    );
    assert!(text.contains("# TYPE distrisocks_handoff_seconds histogram"));
    pod.shutdown();
}

/// With `--allowed-origins`, a browser page from another site cannot open a socket (403), a
/// listed origin can (compared without case), and clients that send no `Origin` are unaffected.
#[test]
fn upgrades_from_origins_not_allowed_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| {
        c.allowed_origins = vec!["https://app.example.com".into()];
    });
    let addr = pod.local_addr();
    let upgrade = |origin: &str| {
        format!(
            "GET /ws?user_id=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{origin}\r\n"
        )
    };
    let evil = raw(addr, &upgrade("Origin: https://evil.example\r\n"));
    assert!(evil.starts_with("HTTP/1.1 403"), "{evil}");
    assert!(evil.contains("origin not allowed"), "{evil}");
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(upgrade("Origin: https://APP.example.com\r\n").as_bytes())
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    // No Origin: a native client, as every other test connects.
    let mut alice = Client::connect(addr, &user("alice"));
    let b = user("bob");
    let acc = alice.send_msg(&b, "hi", None);
    assert_eq!(acc["type"], "accepted");
    pod.shutdown();
}

/// Tokens and the secret never reach the log, at the most verbose level, whether a token is
/// accepted or refused, sent as `?token=` or as a bearer header.
#[test]
fn tokens_and_secrets_are_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-never-logged-4f1c";
    let pod = common::process::ProcPod::start(
        dir.path(),
        None,
        &["--shards", "2", "--jwt-secret", secret],
    );
    let addr = pod.addr;
    let good = sign_hs256(
        &format!(r#"{{"sub":"tok-user","exp":{}}}"#, now() + 600),
        secret.as_bytes(),
    );
    let expired = sign_hs256(r#"{"sub":"tok-user","exp":1}"#, secret.as_bytes());
    let forged = sign_hs256(
        &format!(r#"{{"sub":"tok-user","exp":{}}}"#, now() + 600),
        b"another-secret",
    );
    let mut alice = try_connect(addr, &format!("token={good}"), None).expect("query token");
    let mut bob = try_connect(addr, "", Some(&good)).expect("bearer token");
    alice.send(serde_json::json!({"reciever_id": "tok-user", "payload": "hi"}));
    assert_eq!(bob.recv_type("message")["message"], "hi");
    for bad in [&expired, &forged] {
        assert!(matches!(
            try_connect(addr, &format!("token={bad}"), None),
            Err(ConnectError::Http(401, _))
        ));
        assert!(matches!(
            try_connect(addr, "", Some(bad)),
            Err(ConnectError::Http(401, _))
        ));
    }
    drop((alice, bob));
    assert!(
        eventually(|| pod.log().iter().any(|l| l.contains("upgrade refused"))),
        "the refusals are logged (so the log was read)"
    );
    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    let log = pod.log();
    for needle in [
        secret.to_owned(),
        signature(&good),
        signature(&expired),
        signature(&forged),
    ] {
        let hit = log.iter().find(|l| l.contains(&needle));
        assert!(hit.is_none(), "logged: {hit:?}");
    }
}

/// `--config` files are strict (an unknown key stops the start, exit 2, naming it); the
/// environment is shared with other tools, so an unknown `DISTRISOCKS_` variable there is a
/// warning in the log, and the pod starts with the file's settings.
#[test]
fn config_files_refuse_unknown_keys_and_the_environment_warns_of_them() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.env");
    let bin = env!("CARGO_BIN_EXE_distrisocks");
    std::fs::write(
        &file,
        "DISTRISOCKS_LISTEN=127.0.0.1:0\nDISTRISOCKS_SHARDZ=2\n",
    )
    .unwrap();
    let out = Command::new(bin)
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DISTRISOCKS_SHARDZ is not a variable of this pod"),
        "{err}"
    );

    let text = "# one shard\nDISTRISOCKS_LISTEN=127.0.0.1:0\nexport DISTRISOCKS_SHARDS='1'\n";
    std::fs::write(&file, text).unwrap();
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("DISTRISOCKS_JWT_SECRT", "typo")
        .env("DISTRISOCKS_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let started = line.contains("pod started");
        log.push(line);
        if started {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let all = log.join("\n");
    assert!(
        all.contains("pod started") && all.contains("shards=1"),
        "{all}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("WARN") && l.contains("DISTRISOCKS_JWT_SECRT")),
        "{all}"
    );
}
