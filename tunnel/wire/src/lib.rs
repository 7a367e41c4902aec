//! The Ewii wire, sans I/O: everything the client and the hub say to each
//! other through the tunnel, as plain state machines over bytes.
//!
//! Like `quinn-proto` and `rustls`' message layer: no sockets, no tokio, no
//! TLS stack, no file, no clock or randomness it is not handed. Tests replay,
//! reorder, tamper with and truncate without a network, and fuzzers feed the
//! decoders garbage. The QUIC binding (`ewii-quic`) only moves these bytes.
//!
//! - [`handshake`]: the app-layer handshake inside TLS (X25519, transcript
//!   signed by each side's certificate key, HKDF key schedule binding both
//!   identities and the transcript); [`handshake::message`] its wire forms.
//! - [`session`]: per-stream keys and stream numbers under one handshake.
//! - [`stream`]: the request and control streams as state machines: the
//!   hub's request exchange (receipts checked before a reply is handed
//!   out) and the client's served request (reply, receipt, refusal, close).
//! - [`frame`]: typed, length-limited frames.
//! - [`record`]: ChaCha20-Poly1305 records, sequence numbers in nonce and
//!   AAD, key epochs, rejects counted.
//! - [`replay::ReplayWindow`]: the RFC 6479 window, checked before
//!   decryption and advanced only after the tag verifies.
//! - [`receipt`]: what the client signs with its session's SVID key: a
//!   receipt for every reply, and the goodbye that revokes it on stop.
//! - [`refusal`]: the typed refusal codes of a `Refused` frame.
//! - [`enrol`]: enrolment (token + CSR → SVID), renewal and goodbye
//!   messages.
//! - [`svid`]: the SPIFFE X509-SVID rules that are pure functions over DER
//!   (SPIFFE IDs, leaf rules, serial numbers).
//! - [`pki`]: certificates as DER, Unix time, signature schemes, the
//!   [`pki::Signer`] trait and signature verification (ring, x509-parser).
//! - [`sse`]: the `text/event-stream` decoder the client's forwarder reads
//!   adapter responses with.
//! - [`codec`]: bounded reads for every decoder.
//!
//! The wire format, key schedule and vectors are in `docs/protocol.md`.
#![forbid(unsafe_code)]

pub mod codec;
pub mod enrol;
pub mod frame;
pub mod handshake;
pub mod pki;
pub mod receipt;
pub mod record;
pub mod refusal;
pub mod replay;
pub mod session;
pub mod sse;
pub mod stream;
pub mod svid;

#[cfg(test)]
mod testdata;
