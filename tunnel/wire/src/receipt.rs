//! What the client signs with the key of the SVID its session was
//! established with (sans I/O): response receipts and the goodbye.
//!
//! - **Receipts.** Every reply `Message` the client sends on a request
//!   stream is followed by a `Receipt` frame: its signature over
//!   `"ewii-receipt/1\0" ‖ SHA-256(request) ‖ SHA-256(reply)`. The hub hands
//!   a reply out only with a receipt that verifies with the session's leaf
//!   certificate ([`ReplyCheck`]), and can keep the receipt as proof of what
//!   this deployment answered to what.
//! - **Goodbye.** On an orderly stop an enrolled client asks the hub to
//!   revoke its deployment with a signature over
//!   `"ewii-goodbye/1\0" ‖ SPIFFE ID ‖ "\0" ‖ decimal Unix time`
//!   ([`sign_goodbye`], [`verify_goodbye`]).
//!
//! Signing and verification are the handshake's own
//! ([`crate::handshake`], [`crate::pki`]): the schemes of [`SCHEMES`]. The
//! session key is the handshake's: a renewal does not change it, so every
//! receipt of a session verifies with the leaf the hub verified at the
//! handshake.

use bytes::Bytes;

use crate::codec::{DecodeError, Reader, put_vec16};
use crate::frame::{Frame, FrameType};
use crate::handshake::{self, HandshakeError, MAX_SIGNATURE, SCHEMES};
use crate::pki::{Certificate, Signer};
use crate::refusal::Refused;

/// What a receipt signature covers first.
pub const RECEIPT_CONTEXT: &[u8] = b"ewii-receipt/1\0";
/// What a goodbye signature covers first.
pub const GOODBYE_CONTEXT: &[u8] = b"ewii-goodbye/1\0";
/// Largest difference, in seconds, between a goodbye's time and the hub's
/// clock: an old goodbye is not accepted again much later.
pub const GOODBYE_MAX_SKEW: u64 = 300;

/// Why a reply's receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// A reply message was not followed by its receipt.
    #[error("a reply message without its receipt")]
    Missing,
    /// A receipt with no reply message before it.
    #[error("a receipt without a reply message before it")]
    Orphan,
    /// The receipt frame could not be decoded.
    #[error("malformed receipt: {0}")]
    Malformed(#[from] DecodeError),
    /// The `Refused` frame could not be decoded.
    #[error("malformed refusal: {0}")]
    MalformedRefusal(DecodeError),
    /// The signature does not verify with the session's leaf certificate
    /// (or uses a scheme outside [`SCHEMES`]).
    #[error("the receipt does not verify with the client's SVID: {0}")]
    Signature(HandshakeError),
    /// Signing failed.
    #[error("cannot sign the receipt: {0}")]
    Signing(HandshakeError),
    /// A frame that has no place in a reply.
    #[error("unexpected {0:?} frame in a reply")]
    UnexpectedFrame(FrameType),
}

/// Why a goodbye was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoodbyeError {
    /// The signature is not base64.
    #[error("the goodbye signature is not base64")]
    Malformed,
    /// The signature does not verify with the session's leaf certificate.
    #[error("the goodbye signature does not verify with the client's SVID")]
    BadSignature,
    /// The goodbye's time is too far from the hub's clock.
    #[error(
        "the goodbye was signed at {at}, {}s away from the hub's clock ({now}); at most {GOODBYE_MAX_SKEW}s allowed",
        at.abs_diff(*now)
    )]
    Stale {
        /// The goodbye's time, Unix seconds.
        at: i64,
        /// The hub's time, Unix seconds.
        now: i64,
    },
    /// Signing failed.
    #[error("cannot sign the goodbye: {0}")]
    Signing(HandshakeError),
}

/// SHA-256 of a message, as receipts cover it.
pub fn digest(message: &[u8]) -> [u8; 32] {
    handshake::sha256(&[message])
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The client's signature over one request and one reply to it.
///
/// On the wire (the body of a `Receipt` frame) only `scheme u16 |
/// signature vec16` travel: each side computes the digests from the bytes
/// it holds, so a receipt can only verify for the very request and reply
/// it was made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// SHA-256 of the request message bytes.
    pub request_digest: [u8; 32],
    /// SHA-256 of the reply message bytes.
    pub response_digest: [u8; 32],
    /// The TLS 1.3 signature scheme (one of [`SCHEMES`]).
    pub scheme: u16,
    /// The signature over [`Receipt::signed_bytes`].
    pub signature: Vec<u8>,
}

impl Receipt {
    /// Signs the reply `response` to the request whose digest is
    /// `request_digest` with `signer` (the session's SVID key).
    pub fn sign(
        signer: &dyn Signer,
        request_digest: [u8; 32],
        response: &[u8],
    ) -> Result<Receipt, ReceiptError> {
        let response_digest = digest(response);
        let signature = handshake::sign(
            signer,
            RECEIPT_CONTEXT,
            &[request_digest, response_digest].concat(),
        )
        .map_err(ReceiptError::Signing)?;
        Ok(Receipt {
            request_digest,
            response_digest,
            scheme: signer.scheme().code(),
            signature,
        })
    }

    /// What the signature covers: `"ewii-receipt/1\0" ‖ request digest ‖
    /// response digest`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        [
            RECEIPT_CONTEXT,
            &self.request_digest[..],
            &self.response_digest[..],
        ]
        .concat()
    }

    /// The body of the `Receipt` frame: `scheme u16 | signature vec16`.
    pub fn encode(&self) -> Result<Vec<u8>, ReceiptError> {
        let mut out = self.scheme.to_be_bytes().to_vec();
        put_vec16(&mut out, "receipt signature", &self.signature)?;
        Ok(out)
    }

    /// Decodes a `Receipt` frame body for the request and reply with these
    /// digests. Nothing is verified yet ([`Receipt::verify`]).
    pub fn decode(
        body: &[u8],
        request_digest: [u8; 32],
        response_digest: [u8; 32],
    ) -> Result<Receipt, ReceiptError> {
        let mut r = Reader::new(body);
        let scheme = r.u16("receipt scheme")?;
        let signature = r.vec16("receipt signature", MAX_SIGNATURE)?.to_vec();
        r.finish()?;
        Ok(Receipt {
            request_digest,
            response_digest,
            scheme,
            signature,
        })
    }

    /// Verifies the signature with the public key of `leaf` (the session
    /// peer's leaf certificate, `peer().chain[0]`).
    pub fn verify(&self, leaf: &Certificate) -> Result<(), ReceiptError> {
        handshake::verify_signature(
            leaf,
            self.scheme,
            RECEIPT_CONTEXT,
            &[self.request_digest, self.response_digest].concat(),
            &self.signature,
        )
        .map_err(ReceiptError::Signature)
    }

    /// The signature, base64 (standard alphabet, padded), for audit records.
    pub fn signature_b64(&self) -> String {
        base64(&self.signature)
    }

    /// The request digest, lowercase hex.
    pub fn request_digest_hex(&self) -> String {
        hex(&self.request_digest)
    }

    /// The response digest, lowercase hex.
    pub fn response_digest_hex(&self) -> String {
        hex(&self.response_digest)
    }
}

/// One answer on a request stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A JSON-RPC message from the adapter, with the client's receipt for
    /// it (already verified against the session's leaf).
    Message {
        /// The message.
        message: Bytes,
        /// The client's signature over the request and this message.
        receipt: Receipt,
    },
    /// The client refused to forward the request, and said why.
    Refused(Refused),
}

/// The hub's check of the replies on one request stream: every `Message`
/// must be followed at once by a `Receipt` that verifies with the
/// session's leaf; only then is the message handed out.
#[derive(Debug)]
pub struct ReplyCheck {
    leaf: Certificate,
    request_digest: [u8; 32],
    pending: Option<Vec<u8>>,
}

impl ReplyCheck {
    /// Checks replies to `request` against `leaf`.
    pub fn new(leaf: Certificate, request: &[u8]) -> ReplyCheck {
        ReplyCheck {
            leaf,
            request_digest: digest(request),
            pending: None,
        }
    }

    /// Takes the next frame of the reply stream: a verified reply, nothing
    /// yet (a message waiting for its receipt), or why the stream is
    /// refused. After an error the stream is unusable.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Reply>, ReceiptError> {
        match (frame.kind, self.pending.take()) {
            (FrameType::Message, None) => {
                self.pending = Some(frame.body);
                Ok(None)
            }
            (FrameType::Receipt, Some(message)) => {
                let receipt = Receipt::decode(&frame.body, self.request_digest, digest(&message))?;
                receipt.verify(&self.leaf)?;
                Ok(Some(Reply::Message {
                    message: Bytes::from(message),
                    receipt,
                }))
            }
            (FrameType::Refused, None) => Ok(Some(Reply::Refused(
                Refused::decode(&frame.body).map_err(ReceiptError::MalformedRefusal)?,
            ))),
            (FrameType::Receipt, None) => Err(ReceiptError::Orphan),
            (FrameType::Message | FrameType::Refused, Some(_)) => Err(ReceiptError::Missing),
            (other, _) => Err(ReceiptError::UnexpectedFrame(other)),
        }
    }

    /// The stream ended: a message still waiting for its receipt is refused.
    pub fn finish(&self) -> Result<(), ReceiptError> {
        match self.pending {
            Some(_) => Err(ReceiptError::Missing),
            None => Ok(()),
        }
    }
}

/// What a goodbye signature covers after [`GOODBYE_CONTEXT`]:
/// `SPIFFE ID ‖ "\0" ‖ at` (decimal).
pub fn goodbye_message(spiffe_id: &str, at: i64) -> Vec<u8> {
    [spiffe_id.as_bytes(), b"\0", at.to_string().as_bytes()].concat()
}

/// The client's goodbye signature (base64) for `spiffe_id` at `at` (Unix
/// seconds), with the session's SVID key. The scheme is the first of
/// [`SCHEMES`] the key supports.
pub fn sign_goodbye(signer: &dyn Signer, spiffe_id: &str, at: i64) -> Result<String, GoodbyeError> {
    let signature = handshake::sign(signer, GOODBYE_CONTEXT, &goodbye_message(spiffe_id, at))
        .map_err(GoodbyeError::Signing)?;
    Ok(base64(&signature))
}

/// Verifies a goodbye from `spiffe_id` signed at `at` with the key of
/// `leaf`, at the hub's time `now` (Unix seconds): the times may differ by
/// at most [`GOODBYE_MAX_SKEW`]. The goodbye carries no scheme: each of
/// [`SCHEMES`] is tried (a key verifies only under the schemes of its
/// type).
pub fn verify_goodbye(
    leaf: &Certificate,
    spiffe_id: &str,
    at: i64,
    signature_b64: &str,
    now: i64,
) -> Result<(), GoodbyeError> {
    use base64::Engine as _;
    if at.abs_diff(now) > GOODBYE_MAX_SKEW {
        return Err(GoodbyeError::Stale { at, now });
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature_b64)
        .map_err(|_| GoodbyeError::Malformed)?;
    if signature.len() > MAX_SIGNATURE {
        return Err(GoodbyeError::Malformed);
    }
    let message = goodbye_message(spiffe_id, at);
    SCHEMES
        .iter()
        .any(|scheme| {
            handshake::verify_signature(leaf, scheme.code(), GOODBYE_CONTEXT, &message, &signature)
                .is_ok()
        })
        .then_some(())
        .ok_or(GoodbyeError::BadSignature)
}

#[cfg(test)]
#[path = "receipt_test.rs"]
mod tests;
