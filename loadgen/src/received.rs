//! What a connection read and has not parsed yet, sans I/O: complete frames come out of the
//! buffer in place, a fragmented message is put together, and the buffer grows for a frame
//! larger than it. The connection's task ([`super::conn`]) only fills it.

use super::wire::{self, WireError};

/// Read buffer of a connection; a larger frame grows it (up to [`wire::MAX_MESSAGE`]).
pub(crate) const READ_BUFFER: usize = 4096;

/// Bytes read from a socket and not parsed yet, and a message being put together from
/// fragments: the parsing half of a connection, without the socket.
pub(crate) struct Received {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A fragmented message being put together (the gateway does not fragment; peers may).
    partial: Option<Vec<u8>>,
    /// The last message put together from fragments, lent out by [`Received::next_frame`].
    assembled: Vec<u8>,
}

/// A complete frame, as far as the generator cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Got<'a> {
    Text(&'a str),
    Ping(&'a [u8]),
    Close(Option<u16>),
    /// Binary, pong, or a fragment of a message not complete yet.
    Nothing,
}

impl Received {
    pub fn new(rest: Vec<u8>) -> Received {
        let mut buf = rest;
        let end = buf.len();
        buf.resize(end.max(READ_BUFFER), 0);
        Received {
            buf,
            start: 0,
            end,
            partial: None,
            assembled: Vec::new(),
        }
    }

    /// The next complete frame in the buffer; `None` when it needs more bytes.
    pub fn next_frame(&mut self) -> Result<Option<Got<'_>>, WireError> {
        let Some(head) = wire::parse_head(&self.buf[self.start..self.end])? else {
            return Ok(None);
        };
        if self.end - self.start < head.total() {
            return Ok(None);
        }
        let at = self.start + head.header_len;
        let payload = at..at + head.payload_len;
        self.start += head.total();
        if let Some(mask) = head.mask {
            wire::apply_mask(&mut self.buf[payload.clone()], mask);
        }
        match head.opcode {
            wire::PING => Ok(Some(Got::Ping(&self.buf[payload]))),
            wire::CLOSE => Ok(Some(Got::Close(wire::close_code(&self.buf[payload])))),
            wire::PONG => Ok(Some(Got::Nothing)),
            op => self.data_frame(op, head.fin, payload),
        }
    }

    /// A text, binary or continuation frame: a whole message, or a part of one.
    fn data_frame(
        &mut self,
        op: u8,
        fin: bool,
        payload: std::ops::Range<usize>,
    ) -> Result<Option<Got<'_>>, WireError> {
        let data = &self.buf[payload];
        let (op, data) = match (op, self.partial.as_mut()) {
            (wire::CONTINUATION, None) => return Err(WireError::UnexpectedContinuation),
            (wire::CONTINUATION, Some(p)) => {
                if p.len() + data.len() > wire::MAX_MESSAGE {
                    return Err(WireError::TooLarge((p.len() + data.len()) as u64));
                }
                p.extend_from_slice(data);
                if !fin {
                    return Ok(Some(Got::Nothing));
                }
                self.assembled = self.partial.take().unwrap_or_default();
                (self.assembled[0], &self.assembled[1..])
            }
            (_, Some(_)) => return Err(WireError::ExpectedContinuation),
            (op, None) if !fin => {
                // The opcode rides in the first byte of the assembly.
                let mut p = Vec::with_capacity(1 + data.len());
                p.push(op);
                p.extend_from_slice(data);
                self.partial = Some(p);
                return Ok(Some(Got::Nothing));
            }
            (op, None) => (op, data),
        };
        match op {
            wire::TEXT => match std::str::from_utf8(data) {
                Ok(t) => Ok(Some(Got::Text(t))),
                Err(_) => Err(WireError::NotUtf8),
            },
            _ => Ok(Some(Got::Nothing)),
        }
    }

    /// `n` bytes were read into [`Received::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// The free end of the buffer, after making room: unparsed bytes move to the front, and
    /// the buffer grows for a frame larger than it.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            let need = wire::parse_head(&self.buf[..self.end])
                .ok()
                .flatten()
                .map_or(0, |h| h.total());
            let want = need.max(self.end + READ_BUFFER / 2).max(READ_BUFFER);
            if want > self.buf.len() {
                self.buf.resize(want, 0);
            }
        }
        &mut self.buf[self.end..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked unless `mask` is given), as tungstenite or a peer writes it.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::new();
        wire::encode(&mut out, opcode, payload, mask.unwrap_or_default());
        out[0] = if fin { 0x80 | opcode } else { opcode };
        if mask.is_none() {
            out[1] &= 0x7F; // No mask bit, and the zero key out of the header.
            out.drain(out.len() - payload.len() - 4..out.len() - payload.len());
        }
        out
    }

    fn frames(rx: &mut Received) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(g) = rx.next_frame().unwrap() {
            seen.push(format!("{g:?}"));
        }
        seen
    }

    #[test]
    fn fragments_are_put_together_around_a_ping() {
        let mut bytes = server_frame(false, wire::TEXT, b"hel", None);
        bytes.extend(server_frame(true, wire::PING, b"p", None));
        bytes.extend(server_frame(
            false,
            wire::CONTINUATION,
            "lo, ".as_bytes(),
            None,
        ));
        bytes.extend(server_frame(
            true,
            wire::CONTINUATION,
            "wörld".as_bytes(),
            None,
        ));
        bytes.extend(server_frame(true, wire::TEXT, b"next", Some([1, 2, 3, 4])));
        bytes.extend(server_frame(
            true,
            wire::CLOSE,
            &4008u16.to_be_bytes(),
            None,
        ));
        let mut rx = Received::new(bytes);
        assert_eq!(
            frames(&mut rx),
            [
                "Nothing",
                "Ping([112])",
                "Nothing",
                "Text(\"hello, wörld\")",
                "Text(\"next\")",
                "Close(Some(4008))"
            ]
        );
    }

    #[test]
    fn a_frame_split_anywhere_waits_for_its_rest() {
        let whole = server_frame(true, wire::TEXT, &[b'a'; 300], None);
        for cut in 0..whole.len() {
            let mut rx = Received::new(whole[..cut].to_vec());
            assert_eq!(rx.next_frame().unwrap(), None, "cut at {cut}");
            let spare = rx.spare();
            let rest = &whole[cut..];
            spare[..rest.len()].copy_from_slice(rest);
            rx.filled(rest.len());
            assert_eq!(frames(&mut rx).len(), 1, "cut at {cut}");
        }
    }

    #[test]
    fn a_frame_larger_than_the_buffer_grows_it() {
        let whole = server_frame(true, wire::TEXT, &vec![b'z'; 3 * READ_BUFFER], None);
        let mut rx = Received::new(Vec::new());
        let mut fed = 0;
        while fed < whole.len() {
            let spare = rx.spare();
            let n = spare.len().min(whole.len() - fed).min(1000);
            spare[..n].copy_from_slice(&whole[fed..fed + n]);
            rx.filled(n);
            fed += n;
        }
        assert!(matches!(rx.next_frame(), Ok(Some(Got::Text(t))) if t.len() == 3 * READ_BUFFER));
    }

    #[test]
    fn protocol_breaks_are_errors() {
        let bad_utf8 = server_frame(true, wire::TEXT, &[0xFF, 0xFE], None);
        assert_eq!(
            Received::new(bad_utf8).next_frame(),
            Err(WireError::NotUtf8)
        );
        let lone = server_frame(true, wire::CONTINUATION, b"x", None);
        let mut rx = Received::new(lone);
        assert_eq!(rx.next_frame(), Err(WireError::UnexpectedContinuation));
        let mut two = server_frame(false, wire::TEXT, b"a", None);
        two.extend(server_frame(true, wire::TEXT, b"b", None));
        rx = Received::new(two);
        assert_eq!(rx.next_frame(), Ok(Some(Got::Nothing)));
        assert_eq!(rx.next_frame(), Err(WireError::ExpectedContinuation));
    }
}
