//! The Ewii tunnel: the wire between a customer's client and the hub, and
//! the `ewii-client` runtime.
//!
//! The protocol core is sans I/O, like `quinn-proto` and `rustls`: plain
//! state machines over bytes, no sockets, no tokio, no clock or randomness
//! it is not handed. Tests replay, reorder, tamper with and truncate without
//! a network, and fuzzers feed the decoders garbage.
//!
//! - [`handshake`]: the app-layer handshake inside TLS (X25519, transcript
//!   signed by each side's certificate key, HKDF key schedule binding both
//!   identities and the transcript).
//! - [`session`]: per-stream keys and stream numbers under one handshake.
//! - [`frame`]: typed, length-limited frames.
//! - [`record`]: ChaCha20-Poly1305 records, sequence numbers in nonce and
//!   AAD, key epochs, rejects counted.
//! - [`replay::ReplayWindow`]: the RFC 6479 window, checked before
//!   decryption and advanced only after the tag verifies.
//! - [`enrol`]: enrolment (token + CSR → SVID), renewal and goodbye
//!   messages.
//! - [`receipt`]: what the client signs with its session's SVID key:
//!   a receipt for every reply, and the goodbye that revokes it on stop.
//! - [`identity`]: the client's SVID source, its enrolled state on disk,
//!   fresh keys and CSRs, and the checks an issued SVID must pass.
//! - [`svid`]: the SPIFFE X509-SVID rules and the hub's verifier, which maps
//!   a SPIFFE ID to its workspace's trust bundle and checks revocation.
//! - [`codec`]: bounded reads for every decoder.
//!
//! The I/O side only moves bytes: [`net`] (quinn + rustls), [`client`] (the
//! runtime: enrolment, renewal, reconnect, allow-list), [`forward`] (MCP
//! streamable HTTP to the adapter), [`connlog`] (the client's JSON-lines
//! connection log).
//!
//! The wire format, key schedule and vectors are in `docs/protocol.md`.
#![forbid(unsafe_code)]

pub mod client;
pub mod codec;
pub mod connlog;
pub mod enrol;
pub mod forward;
pub mod frame;
pub mod handshake;
pub mod identity;
pub mod net;
pub mod receipt;
pub mod record;
pub mod replay;
pub mod session;
pub mod svid;
