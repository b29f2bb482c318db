//! Property tests of the parsers that read untrusted bytes before anything else: the client
//! frame decoder and the HTTP head parser. Arbitrary input must end in a defined outcome (a
//! frame, or an error with a code and a message), never a panic, and what is accepted must
//! satisfy the checks the rest of the path relies on. The WebSocket framing itself is covered
//! by the Autobahn suite (`scripts/conformance.sh`).

use distrisocks::protocol::{decode_client_frame, ClientFrame, Limits};
use distrisocks::socket::http::{parse_head, Target};
use proptest::prelude::*;

const LIMITS: Limits = Limits {
    max_payload_bytes: 64,
};

/// JSON-looking frames: the decoder's interesting inputs are near-valid ones.
fn frame_like() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "type",
        "payload",
        "reciever_id",
        "receiver_id",
        "sender_id",
        "client_msg_id",
        "id",
        "ids",
        "conversation_id",
        "seq",
        "token",
        "members",
        "user_ids",
        "x",
    ]);
    let value = prop_oneof![
        Just("\"send\"".to_owned()),
        Just("\"ack\"".to_owned()),
        Just("\"read\"".to_owned()),
        Just("\"typing\"".to_owned()),
        Just("\"auth\"".to_owned()),
        Just("\"dm:5:alice:bob\"".to_owned()),
        Just("\"dm:3:bob:carol\"".to_owned()),
        Just("\"g:team\"".to_owned()),
        Just("\"g:\"".to_owned()),
        Just("\"group_create\"".to_owned()),
        Just("\"group_add\"".to_owned()),
        Just("\"group_leave\"".to_owned()),
        Just("\"receipts\"".to_owned()),
        Just("\"presence\"".to_owned()),
        Just("\"g-01a2\"".to_owned()),
        Just("[\"bob\",\"bob\",\"carol\"]".to_owned()),
        Just("null".to_owned()),
        Just("[]".to_owned()),
        Just("[\"a\",\"\"]".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "\\PC{0,80}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        "[\\\\\"a-z\\\\u{0}]{0,12}".prop_map(|s| format!("\"{s}\"")),
    ];
    prop::collection::vec((key, value), 0..6).prop_map(|kv| {
        let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", fields.join(","))
    })
}

fn check_frame(text: &str) {
    match decode_client_frame(text, "alice", LIMITS) {
        Ok(ClientFrame::Send(s)) => {
            assert!(s.payload.len() <= LIMITS.max_payload_bytes, "{text}");
            assert!(
                !s.reciever_id.is_empty() && s.reciever_id.len() <= 128,
                "{text}"
            );
            assert!(!s.reciever_id.chars().any(char::is_control), "{text}");
            if let Some(c) = &s.client_msg_id {
                assert!(!c.is_empty() && c.len() <= 128, "{text}");
            }
        }
        Ok(ClientFrame::Ack { id }) => assert!(!id.is_empty(), "{text}"),
        Ok(ClientFrame::Auth { token }) => assert!(!token.is_empty(), "{text}"),
        Ok(ClientFrame::AckMany { ids }) => {
            assert!((1..=256).contains(&ids.len()), "{text}");
            assert!(ids.iter().all(|i| !i.is_empty()), "{text}");
        }
        Ok(ClientFrame::Typing {
            conversation_id, ..
        }) => assert!(alices(&conversation_id), "{text}"),
        Ok(ClientFrame::Read {
            conversation_id,
            seq,
        }) => {
            assert!(seq >= 1, "{text}");
            assert!(alices(&conversation_id), "{text}");
        }
        Ok(ClientFrame::Group(g)) => {
            use distrisocks::protocol::group::{is_group_id, GroupFrame};
            let members = match g {
                GroupFrame::Create { group, members } => {
                    assert!(group.map_or(true, |g| is_group_id(&g)), "{text}");
                    members
                }
                GroupFrame::Add { group, members } | GroupFrame::Remove { group, members } => {
                    assert!(is_group_id(&group) && !members.is_empty(), "{text}");
                    members
                }
                GroupFrame::Members { group } => {
                    assert!(is_group_id(&group), "{text}");
                    Vec::new()
                }
                GroupFrame::Receipts { id } => {
                    assert!(id.starts_with("g-") && id.len() <= 128, "{text}");
                    Vec::new()
                }
            };
            let unique: std::collections::HashSet<&String> = members.iter().collect();
            assert_eq!(unique.len(), members.len(), "{text}");
        }
        Ok(ClientFrame::Presence { users }) => {
            assert!((1..=100).contains(&users.len()), "{text}");
            assert!(
                users.iter().all(|u| !u.is_empty() && u.len() <= 128),
                "{text}"
            );
        }
        Ok(ClientFrame::Statuses { ids }) => {
            assert!((1..=256).contains(&ids.len()), "{text}");
            assert!(
                ids.iter().all(|i| !i.is_empty() && i.len() <= 128),
                "{text}"
            );
        }
        Err(e) => assert!(!e.message.is_empty(), "{text}"),
    }
}

/// A direct conversation of alice's, or a group (whose membership the store checks).
fn alices(conversation_id: &str) -> bool {
    let members = distrisocks::protocol::direct_conversation_members(conversation_id);
    members.is_some_and(|(lo, hi)| lo == "alice" || hi == "alice")
        || distrisocks::protocol::group::is_group_id(conversation_id)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_text_frame_is_decoded_or_refused_with_a_code(text in "\\PC{0,200}") {
        check_frame(&text);
    }

    #[test]
    fn near_valid_frames_meet_every_check_they_pass(text in frame_like()) {
        check_frame(&text);
    }

    #[test]
    fn any_bytes_before_the_upgrade_parse_or_fail_cleanly(
        bytes in prop::collection::vec(any::<u8>(), 0..600)
    ) {
        if let Ok(Some((_, len))) = parse_head(&bytes) {
            prop_assert!(len <= bytes.len());
        }
    }

    #[test]
    fn request_heads_with_hostile_paths_and_headers_parse_cleanly(
        path in "/[a-z?=&%+0-9A-F]{0,60}",
        name in "[A-Za-z-]{1,20}",
        value in "[ -~]{0,80}",
    ) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{name}: {value}\r\n\r\n");
        match parse_head(req.as_bytes()) {
            Ok(Some((head, len))) => {
                prop_assert_eq!(len, req.len());
                prop_assert!(head.method_get);
                let ws = path == "/ws" || path.starts_with("/ws?");
                prop_assert_eq!(head.target == Target::Ws, ws);
            }
            Ok(None) => prop_assert!(false, "a complete head is not partial: {req:?}"),
            Err(_) => {} // Refused: the connection gets 400 or 431.
        }
    }
}
