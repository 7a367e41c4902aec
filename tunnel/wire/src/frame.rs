//! Frames: typed, length-prefixed messages inside a stream.
//!
//! ```text
//! frame = type u8 || length u32 (big-endian) || body
//! ```
//!
//! Before the handshake completes, the handshake messages travel as frames in
//! the clear on the control stream; afterwards frames are the plaintext of
//! the records of each stream. A frame may span several records and a record
//! may hold several frames. The decoder checks a frame's type and declared
//! length as soon as its 5-byte header is in, so it never buffers more than
//! one frame of at most its limit.

use crate::codec::{DecodeError, Reader};

/// Frame header length.
pub const FRAME_HEADER_LEN: usize = 5;
/// The largest MCP JSON-RPC message carried (16 MiB). The adapter bounds its
/// results far below this; the limit stops a peer from making us buffer
/// without end.
pub const MAX_MESSAGE: usize = 16 << 20;
/// The largest handshake frame (64 KiB): certificate chains fit easily.
pub const MAX_HANDSHAKE: usize = 64 << 10;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// One MCP JSON-RPC message (UTF-8 JSON).
    Message = 0x01,
    /// Hub → client, first on a request stream: the adapter endpoint to
    /// forward to (`unix:PATH` or `tcp:IP:PORT`); the client checks it
    /// against its allow-list.
    Route = 0x02,
    /// Client → hub: the request was not forwarded; the body says why.
    Refused = 0x03,
    /// A control message (JSON, [`crate::enrol::Control`]) on the control
    /// stream, either way: SVID renewal and the goodbye.
    Control = 0x04,
    /// Client → hub on a request stream, right after each `Message`: the
    /// client's signature over the request and that reply
    /// ([`crate::receipt::Receipt`]).
    Receipt = 0x05,
    /// Handshake: the client's hello.
    ClientHello = 0x10,
    /// Handshake: the hub's hello, certificate and signature.
    ServerHello = 0x11,
    /// Handshake: the client's signature.
    ClientFinish = 0x12,
    /// Handshake: the hub's key confirmation.
    ServerFinish = 0x13,
    /// Handshake: a refusal with its reason, sent before closing.
    Alert = 0x14,
}

impl FrameType {
    fn from_byte(b: u8) -> Option<FrameType> {
        Some(match b {
            0x01 => FrameType::Message,
            0x02 => FrameType::Route,
            0x03 => FrameType::Refused,
            0x04 => FrameType::Control,
            0x05 => FrameType::Receipt,
            0x10 => FrameType::ClientHello,
            0x11 => FrameType::ServerHello,
            0x12 => FrameType::ClientFinish,
            0x13 => FrameType::ServerFinish,
            0x14 => FrameType::Alert,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its type.
    pub kind: FrameType,
    /// Its body.
    pub body: Vec<u8>,
}

/// Why a frame stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame type this version does not define.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// A frame longer than the limit of this stream.
    #[error("a {len}-byte frame exceeds the {max}-byte limit")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl From<FrameError> for DecodeError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::UnknownType(_) => DecodeError::Invalid {
                field: "frame type",
                why: "unknown",
            },
            FrameError::TooLarge { len, max } => DecodeError::TooLong {
                field: "frame",
                len,
                max,
            },
        }
    }
}

/// The header of a frame of `kind` with a body of `len` bytes. Fails only if
/// `len` exceeds `max`.
pub fn header(
    kind: FrameType,
    len: usize,
    max: usize,
) -> Result<[u8; FRAME_HEADER_LEN], FrameError> {
    let n = match u32::try_from(len) {
        Ok(n) if len <= max => n,
        _ => return Err(FrameError::TooLarge { len, max }),
    };
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0] = kind as u8;
    h[1..].copy_from_slice(&n.to_be_bytes());
    Ok(h)
}

/// Encodes one frame. Fails only if `body` exceeds `max`.
pub fn encode(kind: FrameType, body: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let h = header(kind, body.len(), max)?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    Ok(out)
}

/// Cuts frames out of a byte stream that arrives in arbitrary pieces.
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            max,
            buf: Vec::new(),
        }
    }

    /// Whether no partial frame is buffered (a clean end of stream).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Adds bytes and returns every frame they complete. After an error the
    /// stream is unusable: the caller closes it.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        let mut start = 0;
        loop {
            let rest = &self.buf[start..];
            let mut r = Reader::new(rest);
            let (Ok(kind), Ok(len)) = (r.u8("frame type"), r.u32("frame length")) else {
                break;
            };
            let kind = FrameType::from_byte(kind).ok_or(FrameError::UnknownType(kind))?;
            let len = len as usize;
            if len > self.max {
                return Err(FrameError::TooLarge { len, max: self.max });
            }
            let Ok(body) = r.take(len, "frame body") else {
                break;
            };
            frames.push(Frame {
                kind,
                body: body.to_vec(),
            });
            start += FRAME_HEADER_LEN + len;
        }
        self.buf.drain(..start);
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let mut stream = encode(FrameType::Route, b"tcp:127.0.0.1:8080", MAX_MESSAGE).unwrap();
        stream.extend(encode(FrameType::Message, br#"{"jsonrpc":"2.0"}"#, MAX_MESSAGE).unwrap());
        stream.extend(encode(FrameType::Message, b"", MAX_MESSAGE).unwrap());
        let whole = FrameDecoder::new(MAX_MESSAGE).push(&stream).unwrap();
        assert_eq!(whole.len(), 3);
        for cut in 0..=stream.len() {
            let mut d = FrameDecoder::new(MAX_MESSAGE);
            let mut got = d.push(&stream[..cut]).unwrap();
            got.extend(d.push(&stream[cut..]).unwrap());
            assert_eq!(got, whole, "cut at {cut}");
            assert!(d.is_empty());
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_alone() {
        let mut d = FrameDecoder::new(1024);
        let header = [0x01, 0x00, 0x00, 0x04, 0x01];
        assert_eq!(
            d.push(&header),
            Err(FrameError::TooLarge {
                len: 1025,
                max: 1024
            })
        );
        assert!(encode(FrameType::Message, &[0; 1025], 1024).is_err());
    }

    #[test]
    fn an_unknown_type_is_refused() {
        let mut d = FrameDecoder::new(1024);
        assert_eq!(
            d.push(&[0x7f, 0, 0, 0, 0]),
            Err(FrameError::UnknownType(0x7f))
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics_and_never_buffers_past_the_limit(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)
        ) {
            let mut d = FrameDecoder::new(256);
            for c in chunks {
                match d.push(&c) {
                    Ok(frames) => {
                        for f in frames { prop_assert!(f.body.len() <= 256); }
                        prop_assert!(d.buf.len() < FRAME_HEADER_LEN + 256 + 300);
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
