use super::*;

/// A client's frame: masked, with the mask a client would pick.
fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Everything `bytes` decodes to, fed `chunk` bytes at a time, and the error that ended it.
fn decode(bytes: &[u8], chunk: usize) -> (Vec<Incoming>, Option<FrameError>) {
    let mut d = Decoder::default();
    let mut got = Vec::new();
    for piece in bytes.chunks(chunk) {
        d.feed(piece);
        loop {
            match d.next(1024) {
                Ok(Some(f)) => got.push(f),
                Ok(None) => break,
                Err(e) => return (got, Some(e)),
            }
        }
    }
    (got, None)
}

#[test]
fn messages_split_at_every_boundary_come_out_whole_and_in_order() {
    let mut bytes = client(true, TEXT, "héllo".as_bytes());
    bytes.extend(client(true, PING, b"p"));
    bytes.extend(client(false, TEXT, "wör".as_bytes()[..2].as_ref()));
    bytes.extend(client(true, PONG, b""));
    bytes.extend(client(true, CONTINUATION, "wör".as_bytes()[2..].as_ref()));
    bytes.extend(client(true, BINARY, &[0, 255, 7]));
    bytes.extend(client(true, TEXT, &[b'x'; 300]));
    bytes.extend(client(true, CLOSE, &[0x03, 0xE8, b'b', b'y', b'e']));
    let want = vec![
        Incoming::Text("héllo".into()),
        Incoming::Ping(b"p".to_vec()),
        Incoming::Pong,
        Incoming::Text("wör".into()),
        Incoming::Binary(vec![0, 255, 7]),
        Incoming::Text("x".repeat(300)),
        Incoming::Close(Some((1000, "bye".into()))),
    ];
    for chunk in 1..=bytes.len() {
        assert_eq!(decode(&bytes, chunk), (want.clone(), None), "chunk {chunk}");
    }
}

#[test]
fn an_idle_decoder_holds_no_buffer() {
    let mut d = Decoder::with_bytes(client(true, TEXT, b"hi"));
    d.feed(&client(true, TEXT, b"there")[..3]);
    assert_eq!(d.next(1024), Ok(Some(Incoming::Text("hi".into()))));
    assert_eq!(d.next(1024), Ok(None));
    assert!(
        !d.is_empty() && d.buf.capacity() > 0,
        "half a frame is kept"
    );
    d.feed(&client(true, TEXT, b"there")[3..]);
    assert_eq!(d.next(1024), Ok(Some(Incoming::Text("there".into()))));
    assert!(d.is_empty());
    assert_eq!(d.buf.capacity(), 0, "nothing left: the buffer is freed");
}

#[test]
fn protocol_violations_end_with_their_close_codes() {
    let cases: Vec<(Vec<u8>, FrameError, u16)> = vec![
        (vec![0xC1, 0x80, 0, 0, 0, 0], FrameError::Reserved, 1002),
        (client(true, 0x3, b""), FrameError::Opcode(3), 1002),
        (vec![0x81, 0x01, b'a'], FrameError::Unmasked, 1002),
        (client(false, PING, b""), FrameError::Control, 1002),
        (client(true, PING, &[0; 126]), FrameError::Control, 1002),
        (
            client(true, CONTINUATION, b"a"),
            FrameError::UnexpectedContinuation,
            1002,
        ),
        (
            [client(false, TEXT, b"a"), client(true, TEXT, b"b")].concat(),
            FrameError::ExpectedContinuation,
            1002,
        ),
        (client(true, TEXT, &[0xff]), FrameError::NotUtf8, 1007),
        (client(true, CLOSE, &[3]), FrameError::ShortClose, 1002),
        (
            client(true, CLOSE, &[0x03, 0xED]),
            FrameError::CloseCode(1005),
            1002,
        ),
        (
            client(true, CLOSE, &[0x03, 0xE8, 0xff]),
            FrameError::NotUtf8,
            1007,
        ),
        (
            client(true, BINARY, &[0; 1025]),
            FrameError::TooBig(1025),
            1009,
        ),
        (
            [
                client(false, BINARY, &[0; 1000]),
                client(true, CONTINUATION, &[0; 25]),
            ]
            .concat(),
            FrameError::TooBig(1025),
            1009,
        ),
    ];
    for (bytes, error, code) in cases {
        let (_, got) = decode(&bytes, bytes.len());
        assert_eq!(got.as_ref(), Some(&error), "{bytes:?}");
        assert_eq!(error.close().0, code, "{error}");
    }
}

#[test]
fn invalid_text_fails_at_the_fragment_that_breaks_it_not_at_the_end() {
    let mut bytes = client(false, TEXT, b"ok \xce"); // Half a character: may be completed.
    bytes.extend(client(false, CONTINUATION, b"\xba then \xff"));
    let (got, error) = decode(&bytes, bytes.len());
    assert_eq!((got, error), (vec![], Some(FrameError::NotUtf8)));
    let unfinished = client(true, CONTINUATION, b"");
    let bytes = [client(false, TEXT, b"\xce"), unfinished].concat();
    assert_eq!(decode(&bytes, 1).1, Some(FrameError::NotUtf8));
}

#[test]
fn an_oversized_header_is_refused_before_its_payload_arrives() {
    let mut d = Decoder::default();
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&(1u64 << 40).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    d.feed(&head);
    assert_eq!(d.next(1024), Err(FrameError::TooBig(1 << 40)));
}

#[test]
fn a_continuation_claiming_2_pow_64_bytes_is_too_big_not_a_wrapped_length() {
    let mut bytes = client(false, TEXT, b"a");
    bytes.extend_from_slice(&[0x80, 0x80 | 127]);
    bytes.extend_from_slice(&u64::MAX.to_be_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 4]);
    let (got, error) = decode(&bytes, bytes.len());
    assert_eq!((got, error), (vec![], Some(FrameError::TooBig(u64::MAX))));
}

#[test]
fn encoded_frames_carry_their_length_in_the_shortest_form() {
    for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
        let mut out = Vec::new();
        encode(&mut out, TEXT, &vec![b'a'; len]);
        assert_eq!(out.len(), header + len, "{len}");
        assert_eq!(out[0], 0x81);
    }
    let mut out = Vec::new();
    encode_close(&mut out, Some((4001, "bad token")));
    assert_eq!(out[..4], [0x88, 11, 0x0F, 0xA1]);
    out.clear();
    encode_close(&mut out, None);
    assert_eq!(out, [0x88, 0]);
}
