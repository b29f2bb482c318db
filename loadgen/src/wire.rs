//! The generator's WebSocket framing (RFC 6455, client side), sans I/O: masked client frames
//! appended to a byte buffer, server frames read in place from another.
//!
//! Why not async-tungstenite: a split async-tungstenite stream is two tasks per connection
//! with a lock between them, and allocates a message per frame each way. Here a connection is
//! one task (`conn`), a frame is encoded straight into the connection's write buffer, and a
//! received text frame is handed on as a `&str` into the read buffer (`received`). The
//! framing is small because a load generator needs only what a client needs: no extensions,
//! no server role. Autobahn conformance is the gateway's business; `tests/loadgen.rs` runs
//! these frames against tungstenite's server and a real pod.

/// Opcodes (RFC 6455 §5.2).
pub(crate) const CONTINUATION: u8 = 0x0;
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xA;

/// Largest message the generator accepts from a server (the gateway's frames are under 64 KiB).
pub(crate) const MAX_MESSAGE: usize = 16 << 20;

/// A frame's header, parsed from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub fin: bool,
    pub opcode: u8,
    /// Servers must not mask; a masked frame is unmasked all the same.
    pub mask: Option<[u8; 4]>,
    /// Bytes of the header, payload excluded.
    pub header_len: usize,
    pub payload_len: usize,
}

impl Head {
    /// Header and payload.
    pub fn total(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// A server broke the protocol; the connection ends with this as its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    Reserved(u8),
    UnknownOpcode(u8),
    ControlTooLong(usize),
    FragmentedControl,
    TooLarge(u64),
    UnexpectedContinuation,
    ExpectedContinuation,
    NotUtf8,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Reserved(b) => write!(f, "reserved bits set in first byte {b:#04x}"),
            WireError::UnknownOpcode(o) => write!(f, "unknown opcode {o:#x}"),
            WireError::ControlTooLong(n) => write!(f, "control frame of {n} bytes (max 125)"),
            WireError::FragmentedControl => f.write_str("fragmented control frame"),
            WireError::TooLarge(n) => write!(f, "frame of {n} bytes over the {MAX_MESSAGE} limit"),
            WireError::UnexpectedContinuation => f.write_str("continuation without a start"),
            WireError::ExpectedContinuation => f.write_str("new message inside a fragmented one"),
            WireError::NotUtf8 => f.write_str("text message is not UTF-8"),
        }
    }
}

impl std::error::Error for WireError {}

/// Parses the header at the front of `buf`; `None` until the whole header is there.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, WireError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(WireError::Reserved(b0));
    }
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(WireError::UnknownOpcode(opcode));
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10),
        126 | 127 => return Ok(None),
        n => (n as u64, 2),
    };
    if opcode >= CLOSE {
        if len > 125 {
            return Err(WireError::ControlTooLong(len as usize));
        }
        if !fin {
            return Err(WireError::FragmentedControl);
        }
    }
    if len > MAX_MESSAGE as u64 {
        return Err(WireError::TooLarge(len));
    }
    let mask = if masked {
        let Some(m) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some(m.try_into().unwrap())
    } else {
        None
    };
    Ok(Some(Head {
        fin,
        opcode,
        mask,
        header_len: at,
        payload_len: len as usize,
    }))
}

/// XORs `data` with `mask` (masking and unmasking are the same operation).
pub(crate) fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes((&*c).try_into().unwrap()) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Appends one complete, masked client frame to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let n = payload.len();
    match n {
        0..=125 => out.push(0x80 | n as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// The payload of a close frame with `code` (none: an empty close).
pub(crate) fn close_payload(code: Option<u16>) -> Vec<u8> {
    code.map_or_else(Vec::new, |c| c.to_be_bytes().to_vec())
}

/// The status code of a close frame's payload, if it carries one.
pub(crate) fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// Unpredictable masks (RFC 6455 §5.3) without a syscall per frame: xorshift64*, seeded per
/// connection from the clock and the connection's index.
#[derive(Debug, Clone)]
pub(crate) struct Masks(u64);

impl Masks {
    pub fn new(seed: u64) -> Masks {
        Masks(seed | 1)
    }

    pub fn next(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use tungstenite::protocol::frame::FrameHeader;

    /// Our encoder, read by tungstenite's own frame parser: an independent check.
    #[test]
    fn tungstenite_reads_our_frames() {
        let mut masks = Masks::new(7);
        for len in [0usize, 1, 5, 125, 126, 127, 300, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode(&mut out, TEXT, &payload, masks.next());
            let mut cur = Cursor::new(&out);
            let (head, n) = FrameHeader::parse(&mut cur).unwrap().unwrap();
            assert_eq!(n as usize, len, "{len}");
            assert!(head.is_final);
            let mask = head.mask.expect("client frames are masked");
            let mut body = out[cur.position() as usize..].to_vec();
            apply_mask(&mut body, mask);
            assert_eq!(body, payload, "{len}");
            let ours = parse_head(&out).unwrap().unwrap();
            assert_eq!(
                (ours.header_len, ours.payload_len),
                (cur.position() as usize, len)
            );
        }
    }

    /// Frames tungstenite writes as a server, read by our parser.
    #[test]
    fn we_read_tungstenite_frames() {
        use tungstenite::protocol::frame::Frame;
        let mut out = Vec::new();
        Frame::message(
            vec![b'a'; 200],
            tungstenite::protocol::frame::coding::OpCode::Data(
                tungstenite::protocol::frame::coding::Data::Text,
            ),
            true,
        )
        .format(&mut out)
        .unwrap();
        Frame::ping(vec![1, 2, 3]).format(&mut out).unwrap();
        let h = parse_head(&out).unwrap().unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.payload_len),
            (true, TEXT, None, 200)
        );
        let h2 = parse_head(&out[h.total()..]).unwrap().unwrap();
        assert_eq!((h2.opcode, h2.payload_len), (PING, 3));
    }

    #[test]
    fn partial_headers_wait_and_bad_ones_are_named() {
        assert_eq!(parse_head(&[]), Ok(None));
        assert_eq!(parse_head(&[0x81]), Ok(None));
        assert_eq!(parse_head(&[0x81, 126, 1]), Ok(None));
        assert_eq!(parse_head(&[0x81, 127, 0, 0]), Ok(None));
        assert_eq!(parse_head(&[0x81, 0x85, 1, 2]), Ok(None)); // mask key cut
        assert_eq!(parse_head(&[0xC1, 0]), Err(WireError::Reserved(0xC1)));
        assert_eq!(parse_head(&[0x83, 0]), Err(WireError::UnknownOpcode(3)));
        assert_eq!(
            parse_head(&[0x89, 126, 0, 200]),
            Err(WireError::ControlTooLong(200))
        );
        assert_eq!(parse_head(&[0x09, 0]), Err(WireError::FragmentedControl));
        let huge = [0x81, 127, 0, 0, 0, 0, 0x10, 0, 0, 0];
        assert!(matches!(parse_head(&huge), Err(WireError::TooLarge(_))));
    }

    #[test]
    fn masks_differ_and_unmask_round_trips() {
        let mut m = Masks::new(1);
        let (a, b) = (m.next(), m.next());
        assert_ne!(a, b);
        let mut data = b"hello, websocket".to_vec();
        apply_mask(&mut data, a);
        assert_ne!(&data, b"hello, websocket");
        apply_mask(&mut data, a);
        assert_eq!(&data, b"hello, websocket");
        assert_eq!(close_code(&close_payload(Some(4008))), Some(4008));
        assert_eq!(close_code(&close_payload(None)), None);
    }
}
