//! WebSocket framing, server side (RFC 6455), sans I/O: bytes a client sent go in, whole
//! messages and control frames come out; frames the pod sends are encoded into a byte buffer.
//!
//! Why not async-tungstenite: its stream keeps a read buffer, a write buffer, a split lock
//! and two waker proxies for every connection for as long as it lives, about 1.3 KiB of an
//! idle connection's 3.1 KiB (perf/RESULTS.md §18). Here an idle connection holds no buffer:
//! the shard reads into one buffer of its own ([`crate::shard::Shard::read_buf`]) and
//! [`Decoder`] keeps bytes only while a frame or a fragmented message is incomplete.
//! tungstenite still names the close codes ([`CloseCode::is_allowed`]), and Autobahn
//! (`scripts/conformance.sh`) checks this code through `/echo`, which runs it like `/ws`.

use tungstenite::protocol::frame::coding::CloseCode;

use crate::protocol::codes::close;

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A whole message or a control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary(Vec<u8>),
    /// To be answered with a pong carrying the same bytes.
    Ping(Vec<u8>),
    Pong,
    /// The client's close: its code and reason, if it gave one (a code the protocol does
    /// not allow on the wire is a [`FrameError`] instead).
    Close(Option<(u16, String)>),
}

/// A client broke the protocol; the connection is closed with [`FrameError::close`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("reserved bits set (no extension was negotiated)")]
    Reserved,
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("client frames must be masked")]
    Unmasked,
    #[error("control frames must be whole and at most 125 bytes")]
    Control,
    #[error("a continuation frame with no message to continue")]
    UnexpectedContinuation,
    #[error("a new message before the fragmented one ended")]
    ExpectedContinuation,
    #[error("message of at least {0} bytes, over the limit")]
    TooBig(u64),
    #[error("text is not valid UTF-8")]
    NotUtf8,
    #[error("close frame with a 1-byte payload")]
    ShortClose,
    #[error("close code {0} is not allowed on the wire")]
    CloseCode(u16),
}

impl FrameError {
    /// The close code and reason the pod answers this error with (docs/PROTOCOL.md).
    pub fn close(&self) -> (u16, &'static str) {
        match self {
            FrameError::TooBig(_) => (close::MESSAGE_TOO_BIG, "message too big"),
            FrameError::NotUtf8 => (close::INVALID_PAYLOAD, "text frame is not valid UTF-8"),
            _ => (close::PROTOCOL_ERROR, "WebSocket protocol error"),
        }
    }
}

/// A frame's header, parsed from the front of the received bytes.
struct Head {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    payload_len: u64,
}

/// A fragmented message being put together.
struct Partial {
    text: bool,
    data: Vec<u8>,
    /// Bytes of `data` known to be valid UTF-8 (text only): a fragment may end inside a
    /// character, and invalid bytes fail the message at once, not at its end.
    checked: usize,
}

/// The read side of one connection. `Default` holds nothing on the heap.
#[derive(Default)]
pub struct Decoder {
    /// Received bytes not yet consumed, from `at`; freed when all are consumed.
    buf: Vec<u8>,
    at: usize,
    partial: Option<Box<Partial>>,
}

impl Decoder {
    /// Starts with bytes read past the upgrade's request head.
    pub fn with_bytes(rest: Vec<u8>) -> Self {
        Decoder {
            buf: rest,
            ..Decoder::default()
        }
    }

    /// Appends bytes the socket gave.
    pub fn feed(&mut self, fresh: &[u8]) {
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(fresh);
    }

    /// Whether the decoder holds anything (bytes or a message in pieces); the tests' view of
    /// "an idle connection holds nothing".
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.buf.len() == self.at && self.partial.is_none()
    }

    /// The next message or control frame, `Ok(None)` until more bytes are fed. Messages and
    /// frames larger than `max_message` bytes are refused as soon as their header says so.
    pub fn next(&mut self, max_message: usize) -> Result<Option<Incoming>, FrameError> {
        loop {
            let Some(head) = parse_head(&self.buf[self.at..])? else {
                return Ok(None);
            };
            self.check(&head, max_message)?;
            let total = head.header_len + head.payload_len as usize;
            let available = self.buf.len() - self.at;
            if available < total {
                self.buf.reserve(total - available);
                return Ok(None);
            }
            let start = self.at + head.header_len;
            let payload = &mut self.buf[start..start + head.payload_len as usize];
            unmask(payload, head.mask);
            let frame = self.take(&head, start)?;
            self.at += total;
            if self.at == self.buf.len() {
                self.buf = Vec::new(); // An idle connection keeps no buffer.
                self.at = 0;
            }
            if frame.is_some() {
                return Ok(frame);
            }
        }
    }

    /// The rules a header breaks by itself, checked before its payload is waited for.
    fn check(&self, head: &Head, max_message: usize) -> Result<(), FrameError> {
        let control = head.opcode >= CLOSE;
        if control && (!head.fin || head.payload_len > 125) {
            return Err(FrameError::Control);
        }
        match (head.opcode, &self.partial) {
            (CONTINUATION, None) => return Err(FrameError::UnexpectedContinuation),
            (TEXT | BINARY, Some(_)) => return Err(FrameError::ExpectedContinuation),
            _ => {}
        }
        // Saturating: a length near 2^64 after a fragment must not wrap below the limit
        // (found by the ws_frames fuzz target: the wrapped length then sliced out of range).
        let before = self.partial.as_ref().map_or(0, |p| p.data.len()) as u64;
        let size = before.saturating_add(head.payload_len);
        if !control && size > max_message as u64 {
            return Err(FrameError::TooBig(size));
        }
        Ok(())
    }

    /// What a whole frame (its payload unmasked at `start`) amounts to: a message, a control
    /// frame, or nothing yet (a fragment).
    fn take(&mut self, head: &Head, start: usize) -> Result<Option<Incoming>, FrameError> {
        let payload = &self.buf[start..start + head.payload_len as usize];
        Ok(Some(match head.opcode {
            PING => Incoming::Ping(payload.to_vec()),
            PONG => Incoming::Pong,
            CLOSE => Incoming::Close(close_payload(payload)?),
            TEXT if head.fin => Incoming::Text(text(payload.to_vec())?),
            BINARY if head.fin => Incoming::Binary(payload.to_vec()),
            TEXT | BINARY => {
                let mut p = Partial {
                    text: head.opcode == TEXT,
                    data: payload.to_vec(),
                    checked: 0,
                };
                check_utf8(&mut p)?;
                self.partial = Some(Box::new(p));
                return Ok(None);
            }
            _ => {
                let mut p = self.partial.take().expect("checked: a message is open");
                p.data.extend_from_slice(payload);
                check_utf8(&mut p)?;
                if !head.fin {
                    self.partial = Some(p);
                    return Ok(None);
                }
                match p.text {
                    true => Incoming::Text(text(p.data)?),
                    false => Incoming::Binary(p.data),
                }
            }
        }))
    }
}

fn parse_head(b: &[u8]) -> Result<Option<Head>, FrameError> {
    let [b0, b1, ..] = *b else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    let opcode = b0 & 0x0F;
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(FrameError::Opcode(opcode));
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (payload_len, len_bytes) = match b1 & 0x7F {
        126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 2),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()), 8),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 0),
    };
    let header_len = 2 + len_bytes + 4;
    if b.len() < header_len {
        return Ok(None);
    }
    Ok(Some(Head {
        fin: b0 & 0x80 != 0,
        opcode,
        mask: b[header_len - 4..header_len].try_into().unwrap(),
        header_len,
        payload_len,
    }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

fn text(bytes: Vec<u8>) -> Result<String, FrameError> {
    String::from_utf8(bytes).map_err(|_| FrameError::NotUtf8)
}

/// Validates what a text message received since the last check; an incomplete character at
/// the end may still be completed by the next fragment.
fn check_utf8(p: &mut Partial) -> Result<(), FrameError> {
    if !p.text {
        return Ok(());
    }
    match std::str::from_utf8(&p.data[p.checked..]) {
        Ok(_) => p.checked = p.data.len(),
        Err(e) if e.error_len().is_some() => return Err(FrameError::NotUtf8),
        Err(e) => p.checked += e.valid_up_to(),
    }
    Ok(())
}

fn close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::ShortClose),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !CloseCode::from(code).is_allowed() {
                return Err(FrameError::CloseCode(code));
            }
            Ok(Some((code, text(reason.to_vec())?)))
        }
    }
}

/// Appends one whole, unmasked frame (the server never masks).
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.reserve(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame; `None` sends one with no code (the reply to a close without one).
pub fn encode_close(out: &mut Vec<u8>, code: Option<(u16, &str)>) {
    let mut payload = Vec::new();
    if let Some((code, reason)) = code {
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
    }
    encode(out, CLOSE, &payload);
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
