//! Everything that can go wrong on the wire, with a stable reason code
//! for logs and metrics ([`NetError::reason`]).

use ewii_wire::enrol::EnrolError;
use ewii_wire::handshake::HandshakeError;
use ewii_wire::session::{SessionError, StreamError};
use ewii_wire::stream::ServeError;

/// What can go wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A certificate or key file is unusable.
    #[error("{0}")]
    Credentials(String),
    /// No UDP socket could be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    /// Building the TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// Dialling failed before any packet was exchanged.
    #[error("cannot dial the hub: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC connection failed or closed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A stream write failed.
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
    /// A stream read failed.
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadError),
    /// The app-layer handshake failed.
    #[error("app-layer handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A stream's bytes were refused.
    #[error("stream refused: {0}")]
    Stream(#[from] StreamError),
    /// A stream number was refused.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// A step took too long.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The peer broke the stream protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// An enrolment or control message was malformed.
    #[error(transparent)]
    Enrol(#[from] EnrolError),
    /// A reply's receipt is missing, malformed, or does not verify with the
    /// session's leaf certificate: the reply is not handed out.
    #[error("reply refused: {0}")]
    Receipt(String),
    /// A goodbye does not verify with the session's leaf certificate, or
    /// its time is too far from ours.
    #[error("goodbye refused: {0}")]
    Goodbye(String),
    /// The hub says this client's SVID is revoked (see
    /// [`crate::close::revoked_by_peer`]).
    #[error("the hub revoked this client's SVID: {0}")]
    Revoked(String),
    /// The system random source failed.
    #[error("no randomness available")]
    Randomness,
    /// The TLS client identity is not the app-layer identity.
    #[error("TLS identity {tls} does not match app-layer identity {app}")]
    IdentityMismatch {
        /// The SPIFFE ID in the TLS client certificate.
        tls: String,
        /// The SPIFFE ID proven in the app-layer handshake.
        app: String,
    },
}

impl NetError {
    /// A stable reason code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            NetError::Handshake(h) => h.reason(),
            NetError::Connection(quinn::ConnectionError::TimedOut) => "timed_out",
            NetError::Connection(_) => "connection",
            NetError::IdentityMismatch { .. } => "identity_mismatch",
            NetError::Receipt(_) => "bad_receipt",
            NetError::Goodbye(_) => "bad_goodbye",
            NetError::Revoked(_) => "revoked",
            NetError::Stream(_)
            | NetError::Session(_)
            | NetError::Protocol(_)
            | NetError::Enrol(_) => "protocol",
            NetError::Timeout(_) => "timeout",
            NetError::Randomness => "randomness",
            _ => "other",
        }
    }
}

impl From<ServeError> for NetError {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::Stream(e) => NetError::Stream(e),
            ServeError::Session(e) => NetError::Session(e),
            ServeError::Receipt(e) => NetError::Receipt(e.to_string()),
            e @ (ServeError::UnexpectedFrame(_) | ServeError::NoMessage | ServeError::NotRead) => {
                NetError::Protocol(e.to_string())
            }
        }
    }
}
