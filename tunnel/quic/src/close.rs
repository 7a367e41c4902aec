//! How tunnels close, and what a close means.
//!
//! - [`close_code`]: the QUIC application error codes of the protocol.
//! - [`revoked_by_peer`]: whether the hub said this client's SVID is
//!   revoked (close code [`close_code::REVOKED`], or the TLS alert
//!   `certificate_revoked`).
//! - [`Closed`]: why a tunnel is closed, for callers that must not see
//!   quinn's types.

use std::fmt;

/// QUIC application error codes used when closing.
pub mod close_code {
    /// Orderly shutdown.
    pub const DONE: u32 = 0;
    /// The app-layer handshake failed.
    pub const HANDSHAKE: u32 = 1;
    /// A record or stream was refused (tampering, replay).
    pub const PROTOCOL: u32 = 2;
    /// The TLS identity and the app-layer identity differ.
    pub const IDENTITY: u32 = 3;
    /// This deployment's SVID is revoked (after a goodbye, or by the
    /// operator): the client must not reconnect with it.
    pub const REVOKED: u32 = 4;
}

/// Text from the peer, made one short printable line for a log.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

/// The QUIC error code of a CONNECTION_CLOSE carrying the TLS alert
/// `certificate_revoked` (44): `0x100 + 44 = 0x12c` (RFC 9001 §4.8).
pub fn certificate_revoked_code() -> quinn::TransportErrorCode {
    quinn::TransportErrorCode::crypto(u8::from(rustls::AlertDescription::CertificateRevoked))
}

/// Whether `reason` (why a connection closed) is the hub saying this
/// client's SVID is revoked, and if so how, for the log. Only a close the
/// peer sent counts:
/// - an application close with [`close_code::REVOKED`];
/// - a transport close with the crypto error [`certificate_revoked_code`]:
///   the hub's TLS client-certificate verifier returned
///   `CertificateError::Revoked`, rustls turned it into the
///   `certificate_revoked` alert and quinn into that QUIC error code. quinn
///   surfaces it as `ConnectionError::ConnectionClosed` on a connection
///   whose handshake had completed on the client's side (TLS 1.3 verifies
///   the client certificate after the client's last flight).
///
/// [`crate::Dialer::connect`] applies this only once the QUIC handshake has
/// completed: a close in an Initial packet is not authenticated (anyone on
/// the path can forge one), and a revoked SVID is never refused that early.
pub fn revoked_by_peer(reason: &quinn::ConnectionError) -> Option<String> {
    match reason {
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(close_code::REVOKED) =>
        {
            Some(format!(
                "the hub closed the tunnel as revoked ({})",
                printable(&close.reason)
            ))
        }
        quinn::ConnectionError::ConnectionClosed(close)
            if close.error_code == certificate_revoked_code() =>
        {
            Some("the hub refused the SVID in TLS with the certificate_revoked alert".into())
        }
        _ => None,
    }
}

/// Why a tunnel is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// This end closed it.
    Locally,
    /// The peer closed it as revoked ([`close_code::REVOKED`]), or refused
    /// the SVID in TLS with `certificate_revoked`; how, for the log.
    Revoked(String),
    /// The link went silent past the idle timeout (keep-alives lost).
    TimedOut,
    /// The peer closed it in an orderly way ([`close_code::DONE`]), saying
    /// why.
    Done(String),
    /// The peer closed it for another reason, or the transport failed; a
    /// sentence for the log.
    Other(String),
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::Locally => f.write_str("closed"),
            Closed::Revoked(how) => f.write_str(how),
            Closed::TimedOut => f.write_str("timed out"),
            Closed::Done(why) => write!(f, "closed by the peer: {why}"),
            Closed::Other(why) => f.write_str(why),
        }
    }
}

impl Closed {
    /// What quinn's close reason means here.
    pub(crate) fn of(reason: &quinn::ConnectionError) -> Closed {
        if let Some(how) = revoked_by_peer(reason) {
            return Closed::Revoked(how);
        }
        match reason {
            quinn::ConnectionError::LocallyClosed => Closed::Locally,
            quinn::ConnectionError::TimedOut => Closed::TimedOut,
            quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code == quinn::VarInt::from_u32(close_code::DONE) =>
            {
                Closed::Done(printable(&close.reason))
            }
            other => Closed::Other(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn transport_close(code: quinn::TransportErrorCode) -> quinn::ConnectionError {
        quinn::ConnectionError::ConnectionClosed(quinn::ConnectionClose {
            error_code: code,
            frame_type: None,
            reason: Bytes::from_static(b"peer refused"),
        })
    }

    fn application_close(code: u32) -> quinn::ConnectionError {
        quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u32(code),
            reason: Bytes::from_static(b"revoked by the operator\n"),
        })
    }

    #[test]
    fn only_the_peers_revoked_close_and_certificate_revoked_alert_mean_revoked() {
        // certificate_revoked (44) travels as QUIC crypto error 0x100 + 44.
        assert_eq!(u64::from(certificate_revoked_code()), 0x12c);
        let tls = revoked_by_peer(&transport_close(certificate_revoked_code()));
        assert!(tls.is_some_and(|how| how.contains("certificate_revoked")));
        let app = revoked_by_peer(&application_close(close_code::REVOKED));
        assert_eq!(
            app.as_deref(),
            Some("the hub closed the tunnel as revoked (revoked by the operator)")
        );

        // Every other TLS alert and close code is an ordinary failure.
        for alert in [
            rustls::AlertDescription::CertificateUnknown,
            rustls::AlertDescription::CertificateExpired,
            rustls::AlertDescription::UnknownCA,
            rustls::AlertDescription::BadCertificate,
        ] {
            let e = transport_close(quinn::TransportErrorCode::crypto(u8::from(alert)));
            assert_eq!(revoked_by_peer(&e), None, "{alert:?}");
        }
        for code in [
            close_code::DONE,
            close_code::HANDSHAKE,
            close_code::PROTOCOL,
            close_code::IDENTITY,
            9,
        ] {
            assert_eq!(revoked_by_peer(&application_close(code)), None, "{code}");
        }
        for e in [
            quinn::ConnectionError::TimedOut,
            quinn::ConnectionError::LocallyClosed,
            quinn::ConnectionError::Reset,
        ] {
            assert_eq!(revoked_by_peer(&e), None, "{e}");
        }
    }

    #[test]
    fn closes_are_named_for_their_meaning() {
        assert_eq!(
            Closed::of(&application_close(close_code::REVOKED)),
            Closed::Revoked(
                "the hub closed the tunnel as revoked (revoked by the operator)".into()
            )
        );
        assert_eq!(
            Closed::of(&quinn::ConnectionError::TimedOut),
            Closed::TimedOut
        );
        assert_eq!(
            Closed::of(&quinn::ConnectionError::LocallyClosed),
            Closed::Locally
        );
        assert!(matches!(
            Closed::of(&application_close(close_code::IDENTITY)),
            Closed::Other(_)
        ));
        assert_eq!(
            Closed::of(&application_close(close_code::DONE)),
            Closed::Done("revoked by the operator".into()),
            "only the code says revoked, never the text"
        );
        assert_eq!(Closed::TimedOut.to_string(), "timed out");
    }
}
