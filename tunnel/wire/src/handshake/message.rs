//! The handshake messages on the wire (docs/protocol.md, "Handshake"):
//! decoding that never panics and refuses anything malformed, over a limit
//! or with trailing bytes, and the encoding of chains and alerts.

use crate::codec::{DecodeError, Reader, put_vec16};
use crate::frame::{self, FrameType, MAX_HANDSHAKE};
use crate::pki::Certificate;

use super::{HandshakeError, MAX_CERT, MAX_CHAIN, MAX_IDENTITY, MAX_SIGNATURE, PROTOCOL_VERSION};

/// The Alert frame: a reason code and a sentence.
pub fn alert(code: &str, detail: &str) -> Vec<u8> {
    let mut body = Vec::new();
    let code = truncate(code, 64);
    let detail = truncate(detail, 1024);
    // Both fit a vec16 by construction.
    let _ = put_vec16(&mut body, "alert code", code.as_bytes());
    let _ = put_vec16(&mut body, "alert detail", detail.as_bytes());
    frame::encode(FrameType::Alert, &body, MAX_HANDSHAKE).unwrap_or_default()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(super) fn put_chain(out: &mut Vec<u8>, chain: &[Certificate]) -> Result<(), HandshakeError> {
    if chain.is_empty() || chain.len() > MAX_CHAIN {
        return Err(HandshakeError::Decode(DecodeError::Invalid {
            field: "certificate chain",
            why: "must hold 1 to 4 certificates",
        }));
    }
    out.push(chain.len() as u8);
    for c in chain {
        if c.len() > MAX_CERT {
            return Err(HandshakeError::Decode(DecodeError::TooLong {
                field: "certificate",
                len: c.len(),
                max: MAX_CERT,
            }));
        }
        put_vec16(out, "certificate", c)?;
    }
    Ok(())
}

fn read_chain(r: &mut Reader<'_>) -> Result<Vec<Certificate>, HandshakeError> {
    let n = usize::from(r.u8("certificate count")?);
    if n == 0 || n > MAX_CHAIN {
        return Err(DecodeError::Invalid {
            field: "certificate count",
            why: "must be 1 to 4",
        }
        .into());
    }
    (0..n)
        .map(|_| Ok(Certificate::from_der(r.vec16("certificate", MAX_CERT)?)))
        .collect()
}

fn read_hello_start(r: &mut Reader<'_>) -> Result<([u8; 32], [u8; 32]), HandshakeError> {
    let version = r.u16("version")?;
    if version != PROTOCOL_VERSION {
        return Err(HandshakeError::Version(version));
    }
    Ok((r.array("random")?, r.array("key share")?))
}

/// A decoded handshake message (wire formats in docs/protocol.md). Every
/// field is bounded and checked; nothing is verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `version u16 | random [32] | x25519 share [32] | chain`
    ClientHello {
        /// Hello random.
        random: [u8; 32],
        /// X25519 public share.
        share: [u8; 32],
        /// Certificate chain, leaf first.
        chain: Vec<Certificate>,
    },
    /// `version u16 | random [32] | share [32] | hub name vec16 | chain |
    /// scheme u16 | signature vec16`
    ServerHello {
        /// Hello random.
        random: [u8; 32],
        /// X25519 public share.
        share: [u8; 32],
        /// The hub's name.
        name: String,
        /// Certificate chain, leaf first.
        chain: Vec<Certificate>,
        /// Signature scheme.
        scheme: u16,
        /// Bytes of the body covered by the signature (up to the scheme).
        signed_len: usize,
        /// The signature.
        signature: Vec<u8>,
    },
    /// `scheme u16 | signature vec16`
    ClientFinish {
        /// Signature scheme.
        scheme: u16,
        /// The signature.
        signature: Vec<u8>,
    },
    /// `verify data [32]`
    ServerFinish {
        /// HMAC-SHA256 of the transcript under the finished key.
        mac: [u8; 32],
    },
    /// `code vec16 | detail vec16`
    Alert {
        /// Reason code.
        code: String,
        /// Explanation.
        detail: String,
    },
}

/// Decodes one handshake frame. Never panics; refuses anything malformed,
/// over a limit, or with trailing bytes.
pub fn decode(frame: &frame::Frame) -> Result<Message, HandshakeError> {
    let mut r = Reader::new(&frame.body);
    let m = match frame.kind {
        FrameType::ClientHello => {
            let (random, share) = read_hello_start(&mut r)?;
            Message::ClientHello {
                random,
                share,
                chain: read_chain(&mut r)?,
            }
        }
        FrameType::ServerHello => {
            let (random, share) = read_hello_start(&mut r)?;
            let name = r.vec16("hub name", MAX_IDENTITY)?;
            let name = std::str::from_utf8(name)
                .map_err(|_| DecodeError::Invalid {
                    field: "hub name",
                    why: "not UTF-8",
                })?
                .to_owned();
            let chain = read_chain(&mut r)?;
            let scheme = r.u16("signature scheme")?;
            let signed_len = frame.body.len() - r.remaining();
            let signature = r.vec16("signature", MAX_SIGNATURE)?.to_vec();
            Message::ServerHello {
                random,
                share,
                name,
                chain,
                scheme,
                signed_len,
                signature,
            }
        }
        FrameType::ClientFinish => Message::ClientFinish {
            scheme: r.u16("signature scheme")?,
            signature: r.vec16("signature", MAX_SIGNATURE)?.to_vec(),
        },
        FrameType::ServerFinish => Message::ServerFinish {
            mac: r.array("verify data")?,
        },
        FrameType::Alert => {
            let code = String::from_utf8_lossy(r.vec16("alert code", 64)?).into_owned();
            let detail = String::from_utf8_lossy(r.vec16("alert detail", 1024)?).into_owned();
            Message::Alert { code, detail }
        }
        other => {
            return Err(DecodeError::Invalid {
                field: "handshake frame type",
                why: if matches!(
                    other,
                    FrameType::Message
                        | FrameType::Route
                        | FrameType::Refused
                        | FrameType::Control
                        | FrameType::Receipt
                ) {
                    "a data frame before the handshake completed"
                } else {
                    "unknown"
                },
            }
            .into());
        }
    };
    r.finish()?;
    Ok(m)
}

pub(super) fn unexpected(expected: FrameType, frame: &frame::Frame) -> HandshakeError {
    HandshakeError::Unexpected {
        expected,
        got: frame.kind,
    }
}

/// Decodes `frame`, which must be of type `expected`; an Alert becomes the
/// peer's refusal.
pub(super) fn expect(frame: &frame::Frame, expected: FrameType) -> Result<Message, HandshakeError> {
    match frame.kind {
        k if k == expected => decode(frame),
        FrameType::Alert => match decode(frame)? {
            Message::Alert { code, detail } => Err(HandshakeError::Alert { code, detail }),
            _ => Err(HandshakeError::Unexpected {
                expected,
                got: FrameType::Alert,
            }),
        },
        got => Err(HandshakeError::Unexpected { expected, got }),
    }
}
