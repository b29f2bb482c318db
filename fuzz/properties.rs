//! What the fuzz targets check, one function per target. Shared by the libFuzzer binaries
//! (`fuzz_targets/`, nightly, `cargo fuzz run`) and by the stable regression test
//! (`tests/fuzz_regressions.rs`), which replays every stored input: the corpus in
//! `fuzz/corpus/` and every input that ever failed, kept in `fuzz/regressions/`.
//!
//! Each function panics when the pod's code misbehaves on `data`: a panic inside it, or a
//! result that breaks a rule the protocol document states.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use distrisocks::protocol::{self, decode_client_frame, group, ClientFrame, Limits};
use distrisocks::socket::http::{parse_head, MAX_HEAD_BYTES};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The user every decoded frame is attributed to.
const USER: &str = "alice";
/// A payload limit small enough for the fuzzer to cross.
const MAX_PAYLOAD: usize = 64;
/// The longest error text a refused frame may carry back: the error frame must not echo an
/// attacker's input at full length.
pub const MAX_ERROR_MESSAGE: usize = 256;
/// The secret the JWT target verifies against.
pub const SECRET: &[u8] = b"fuzz-secret";
/// The clock the JWT target verifies at.
pub const NOW: i64 = 1_800_000_000;

/// A client text frame, as the socket reader hands it to the decoder.
pub fn client_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_frame(text);
}

fn check_frame(text: &str) {
    let limits = Limits {
        max_payload_bytes: MAX_PAYLOAD,
    };
    let frame = match decode_client_frame(text, USER, limits) {
        Ok(frame) => frame,
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message");
            assert!(
                e.message.len() <= MAX_ERROR_MESSAGE,
                "error message of {} bytes: {:?}",
                e.message.len(),
                &e.message[..e.message.len().min(80)]
            );
            let echoed = e.client_msg_id.as_deref().map_or(0, str::len);
            assert!(
                echoed <= protocol::MAX_ID_BYTES,
                "echoed a long client_msg_id"
            );
            return;
        }
    };
    // JSON's grammar allows a lone surrogate escape (`"\udddd"`, RFC 8259 §8.2), which the
    // decoder skips inside an unknown field but `serde_json::Value` refuses (found by the
    // fuzzer): the frame must be JSON syntax, and its fields are read when Value can.
    serde_json::from_str::<serde::de::IgnoredAny>(text).expect("accepted frame is JSON");
    let json: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    match frame {
        ClientFrame::Send(s) => {
            assert!(s.payload.len() <= MAX_PAYLOAD, "payload over the limit");
            match s.group {
                true => assert!(group::is_group_id(&s.reciever_id), "bad group"),
                false => assert!(protocol::valid_user_id(&s.reciever_id), "bad recipient"),
            }
            let cmid = s.client_msg_id.as_deref().map_or(1, str::len);
            assert!(
                (1..=protocol::MAX_ID_BYTES).contains(&cmid),
                "bad client_msg_id"
            );
            if let Some(sender) = json.get("sender_id").and_then(|v| v.as_str()) {
                assert_eq!(sender, USER, "a spoofed sender_id was accepted");
            }
        }
        ClientFrame::Ack { id } => assert!(!id.is_empty()),
        ClientFrame::AckMany { ids } => {
            assert!((1..=protocol::MAX_ACK_IDS).contains(&ids.len()));
            assert!(ids.iter().all(|i| !i.is_empty()));
        }
        ClientFrame::Read {
            conversation_id,
            seq,
        } => {
            assert!(seq >= 1);
            assert_member(&conversation_id);
        }
        ClientFrame::Typing {
            conversation_id, ..
        } => assert_member(&conversation_id),
        ClientFrame::Auth { token } => assert!(!token.is_empty()),
        ClientFrame::Group(g) => group_frame(g),
        ClientFrame::Presence { users } => {
            assert!((1..=protocol::MAX_PRESENCE_USERS).contains(&users.len()));
            assert!(
                users.iter().all(|u| protocol::valid_user_id(u)),
                "bad user id"
            );
            let mut unique = users.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), users.len(), "a user asked about twice");
        }
        ClientFrame::Statuses { ids } => {
            assert!((1..=protocol::MAX_ACK_IDS).contains(&ids.len()));
            assert!(ids.iter().all(|i| !i.is_empty() && i.len() <= 128));
            let mut unique = ids.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), ids.len(), "an id asked about twice");
        }
    }
}

/// Group ids are well formed, member lists are valid user ids, each once, within the bound.
fn group_frame(g: group::GroupFrame<'_>) {
    let members_ok = |m: &[String]| {
        assert!(m.len() <= group::MAX_MEMBERS_PER_FRAME, "too many members");
        assert!(
            m.iter().all(|u| protocol::valid_user_id(u)),
            "bad member id"
        );
        let mut sorted = m.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), m.len(), "a member named twice");
    };
    match g {
        group::GroupFrame::Create { group: id, members } => {
            assert!(
                id.map_or(true, |id| group::is_group_id(&id)),
                "bad group id"
            );
            members_ok(&members);
        }
        group::GroupFrame::Add { group: id, members }
        | group::GroupFrame::Remove { group: id, members } => {
            assert!(group::is_group_id(&id), "bad group id");
            assert!(!members.is_empty(), "a change naming nobody");
            members_ok(&members);
        }
        group::GroupFrame::Members { group: id } => assert!(group::is_group_id(&id)),
        group::GroupFrame::Receipts { id } => {
            assert!(group::is_group_message_id(&id) && id.len() <= protocol::MAX_ID_BYTES)
        }
    }
}

fn assert_member(conversation_id: &str) {
    if group::is_group_id(conversation_id) {
        return; // A group's membership is the store's to check.
    }
    let (lo, hi) = protocol::direct_conversation_members(conversation_id)
        .expect("accepted a conversation id that does not parse");
    assert!(
        lo == USER || hi == USER,
        "accepted another pair's conversation"
    );
    assert_eq!(
        protocol::direct_conversation_id(lo, hi),
        conversation_id,
        "accepted a non-canonical conversation id"
    );
}

/// Bytes a client sends before its upgrade, as the listener buffers them.
pub fn http_head(data: &[u8]) {
    match parse_head(data) {
        Ok(Some((head, len))) => {
            assert!(len <= data.len(), "head longer than its input");
            let again = parse_head(&data[..len]).expect("the same head parses again");
            assert_eq!(again.map(|(_, l)| l), Some(len), "head length is unstable");
            for param in [&head.token_param, &head.user_id_param, &head.since_param] {
                assert!(param.as_ref().map_or(0, String::len) <= data.len());
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEAD_BYTES, "waits past the head limit"),
        Err(_) => {}
    }
}

/// A client's bytes after the upgrade, read by the pod's own decoder (`socket::frame`) with a
/// small message limit (so the fuzzer reaches it), each text message then decoded as a
/// frame. The first byte sets how many bytes each socket read returns: whatever the split,
/// the decoder must give the same messages and the same error as with the whole input at once.
pub fn ws_frames(data: &[u8]) {
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let split = decode_frames(input, usize::from(chunk).max(1));
    assert_eq!(
        split,
        decode_frames(input, input.len().max(1)),
        "split changed the outcome"
    );
    let (frames, error) = split;
    for frame in &frames {
        use distrisocks::socket::frame::Incoming;
        match frame {
            Incoming::Text(t) => {
                assert!(t.len() <= 1024, "text message over the limit");
                check_frame(t);
            }
            Incoming::Binary(b) => assert!(b.len() <= 1024, "message over the limit"),
            Incoming::Ping(p) => assert!(p.len() <= 125, "control frame over 125 bytes"),
            Incoming::Pong | Incoming::Close(_) => {}
        }
    }
    if let Some(e) = error {
        let (code, _) = e.close();
        assert!(matches!(code, 1002 | 1007 | 1009), "close code {code}");
    }
}

type Decoded = (
    Vec<distrisocks::socket::frame::Incoming>,
    Option<distrisocks::socket::frame::FrameError>,
);

/// Feeds `input` `chunk` bytes at a time; stops at the first error, as the pod does.
fn decode_frames(input: &[u8], chunk: usize) -> Decoded {
    let mut decoder = distrisocks::socket::frame::Decoder::default();
    let mut frames = Vec::new();
    for piece in input.chunks(chunk) {
        decoder.feed(piece);
        loop {
            match decoder.next(1024) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// A token in an upgrade or an auth frame, verified with HS256: it is accepted only when its
/// signature really is the HMAC of its first two parts under the secret.
pub fn jwt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(user) = distrisocks::auth::verify_hs256(token, SECRET, NOW) else {
        return;
    };
    assert!(!user.is_empty(), "accepted a token without a subject");
    let (signed, sig) = token.rsplit_once('.').expect("three parts");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(signed.as_bytes());
    let expected = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    let given = URL_SAFE_NO_PAD
        .decode(sig)
        .expect("accepted signature is base64url");
    assert_eq!(
        URL_SAFE_NO_PAD.encode(given),
        expected,
        "accepted a token whose signature is not its HMAC"
    );
}
