//! The Ewii tunnel's protocol core, sans I/O.
//!
//! Like `quinn-proto` and `rustls`, this crate is plain state machines over
//! bytes: no sockets, no tokio, no clock or randomness it is not handed. A
//! test can therefore replay, reorder, tamper with and truncate records
//! without a network, and a fuzzer can feed the decoders garbage.
//!
//! - [`replay::ReplayWindow`]: the RFC 6479-style sliding window that
//!   rejects replayed and too-old records *before* decryption and advances
//!   only after a record's tag verifies.
//! - [`record`]: the app-layer record protection: ChaCha20-Poly1305 with one
//!   key per direction, the sequence number in the nonce and the AAD,
//!   records bound to their session and direction, key epochs for rekeying,
//!   rejects counted and a burst of them closing the session.
//!
//! The wire format and the key schedule are specified in `docs/protocol.md`.
#![forbid(unsafe_code)]

pub mod record;
pub mod replay;
