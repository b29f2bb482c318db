//! Token refresh on an open socket (`{"type":"auth","token":…}`) and the close of a socket
//! whose token expired without one (4011). The expiry is real time: tokens here live two
//! seconds, and every wait is for a frame or a close, bounded by the harness' deadline.

mod common;

use common::*;
use distrisocks::auth::sign_hs256;
use serde_json::json;

const SECRET: &[u8] = b"refresh-secret";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(user: &str, exp: i64) -> String {
    sign_hs256(&json!({"sub": user, "exp": exp}).to_string(), SECRET)
}

fn connect(addr: std::net::SocketAddr, user: &str, exp: i64) -> Client {
    let mut c = try_connect(addr, "", Some(&token(user, exp))).expect("connects");
    c.user = user.to_owned();
    c
}

#[test]
fn a_refreshed_socket_outlives_its_first_token_and_an_unrefreshed_one_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |c| c.jwt_secret = Some("refresh-secret".into()));
    let addr = pod.local_addr();
    let (a, b) = (user("alice"), user("bob"));
    let first_exp = now() + 2;
    let mut kept = connect(addr, &a, first_exp);
    let mut lapsed = connect(addr, &b, first_exp);

    // Refused refreshes change nothing and say why.
    let refused = [
        (token(&b, now() + 60), "another user"),
        (token(&a, now() - 10), "expired"),
        (
            sign_hs256(&json!({"sub": a, "exp": now() + 60}).to_string(), b"x"),
            "signature",
        ),
        ("not.a.jwt".to_owned(), "malformed"),
    ];
    for (t, why) in &refused {
        kept.send(json!({"type": "auth", "token": t}));
        let e = kept.recv_type("error");
        assert_eq!(e["code"], "invalid_token", "{why}: {e}");
        assert!(e["message"].as_str().unwrap().contains(why), "{why}: {e}");
    }
    kept.send(json!({"type": "auth"}));
    assert_eq!(kept.recv_type("error")["code"], "invalid_frame");

    let new_exp = now() + 120;
    kept.send(json!({"type": "auth", "token": token(&a, new_exp)}));
    let ok = kept.recv_type("token_accepted");
    assert_eq!(ok["expires_at"], new_exp);

    // bob's token lapses: closed with 4011, not before its exp.
    assert_eq!(lapsed.expect_close(), 4011);
    assert!(now() >= first_exp, "closed before the token expired");
    // alice's socket is past its first token's exp and still serves.
    let mut bob = connect(addr, &b, now() + 60);
    let acc = kept.send_msg(&b, "still here", None);
    assert_eq!(bob.recv_type("message")["id"], acc["id"]);
    pod.shutdown();
}

#[test]
fn dev_auth_refuses_a_token_on_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let mut c = Client::connect(pod.local_addr(), &user("dev"));
    c.send(json!({"type": "auth", "token": "a.b.c"}));
    let e = c.recv_type("error");
    assert_eq!(e["code"], "invalid_token");
    assert!(e["message"].as_str().unwrap().contains("dev auth"), "{e}");
    pod.shutdown();
}
