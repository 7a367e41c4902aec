//! The Ewii tunnel's QUIC binding: thin glue that moves the bytes of
//! `ewii-wire`'s state machines over quinn. It is the only crate of the tree
//! that depends on quinn; the hub and the client runtime see enrolments,
//! tunnels, requests and closes, never a quinn connection.
//!
//! - [`config`]: the one place that builds the rustls and quinn configs
//!   (TLS 1.3 only, ALPN `ewii/1` and `ewii-enrol/1`, no 0-RTT, the ring
//!   provider, keep-alive and idle timeout, the pre-authentication bounds
//!   of the hub's side).
//! - [`keys`]: certificate chains and keys from PEM ([`KeyMaterial`]),
//!   rustls keys as the handshake's signer, the clock and randomness the
//!   handshake is handed.
//! - [`verifier`]: the hub's SVID verifier ([`SvidVerifier`]): the trust
//!   bundle of the workspace the SPIFFE ID names, webpki path validation,
//!   revocation; for rustls' TLS layer and the app-layer handshake alike.
//! - [`hub_name`]: the client's verifier of the hub ([`HubCertVerifier`]),
//!   likewise for both layers.
//! - [`listener`]: the hub's QUIC port ([`HubListener`]): handshake cap and
//!   deadline, ALPN dispatch, the hub's name from SNI, handing out
//!   [`Accepted::Enrol`] and [`Accepted::Tunnel`].
//! - [`hub_tunnel`]: the hub's end of a tunnel ([`HubTunnel`]).
//! - [`client_tunnel`]: the client's [`Dialer`], its end of a tunnel
//!   ([`ClientTunnel`]) and the requests the hub opens on it.
//! - [`close`]: close codes and what a close means ([`Closed`],
//!   revocation).
//! - [`error`]: [`NetError`] and its reason codes.
//! - `stream_io` (private): reading clear handshake frames, the control
//!   stream's reader and sender, deadlines and alerts.
//!
//! Nothing here decides anything about security that the sans-IO core does
//! not already decide; this crate reads, writes, and closes.
#![forbid(unsafe_code)]

pub mod client_tunnel;
pub mod close;
pub mod config;
pub mod error;
pub mod hub_name;
pub mod hub_tunnel;
pub mod keys;
pub mod listener;
mod stream_io;
pub mod verifier;

pub use client_tunnel::{ClientTunnel, Dialer, IncomingRequest};
pub use close::{Closed, close_code};
pub use config::{ALPN, ClientQuicConfig, ENROL_ALPN};
pub use error::NetError;
pub use hub_name::{HubCertVerifier, HubTrustError};
pub use hub_tunnel::{HubTunnel, TlsBinding};
pub use keys::{KeyMaterial, certificates_from_pem, read_certificates};
pub use listener::{
    Accepted, EnrolExchange, HubListener, ListenerConfig, ListenerEvent, ListenerEvents,
};
pub use verifier::{InMemoryTrust, SvidVerifier, TrustBundle, TrustSource, VerifiedSvid};

/// quinn itself, for tests and tools that must speak raw QUIC to a hub
/// (floods of unauthenticated connections, handshakes that never finish).
/// The hub and the client runtime never use it.
pub use quinn;
