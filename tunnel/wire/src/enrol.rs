//! Enrolment and renewal messages (sans I/O).
//!
//! - **Enrolment** runs on its own QUIC connection with ALPN
//!   [`ENROL_ALPN`] and no client certificate (the client has no identity
//!   yet). The client generates its key locally and sends one
//!   [`EnrolRequest`]: the single-use token and a PKCS#10 CSR. The hub
//!   answers one [`EnrolResponse`]: an X509-SVID for the deployment the
//!   token names, issued to the CSR's key, and the workspace trust bundle —
//!   or a refusal with a reason code. The private key never leaves the
//!   client; TLS 1.3 (the hub's certificate checked against the hub CA)
//!   protects the token in transit.
//! - **Renewal** runs over a live tunnel as [`Control`] frames on the
//!   control stream: `renew` (a CSR for a fresh key) and `issued` or
//!   `refused`. The session and its in-flight requests carry on; the new
//!   SVID is used from the next connection on, and the hub extends the live
//!   session's lifetime to the new SVID's.
//! - **Goodbye** also runs on the control stream: an enrolled client that
//!   is stopped sends a signed `goodbye`, the hub revokes the deployment
//!   and answers `goodbye_ack` (see [`crate::receipt`]).
//!
//! Both messages are JSON in one frame of at most
//! [`crate::frame::MAX_HANDSHAKE`] bytes.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::frame::{self, FrameType, MAX_HANDSHAKE};

/// The ALPN protocol id of an enrolment connection.
pub const ENROL_ALPN: &[u8] = b"ewii-enrol/1";

/// Client → hub on an enrolment connection.
#[derive(Serialize, Deserialize)]
pub struct EnrolRequest {
    /// The single-use enrolment token.
    pub token: Zeroizing<String>,
    /// A PKCS#10 CSR (DER, base64) for the key the client generated.
    pub csr: String,
}

impl std::fmt::Debug for EnrolRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("EnrolRequest")
            .field("csr_len", &self.csr.len())
            .finish_non_exhaustive()
    }
}

/// A freshly issued SVID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// The SPIFFE ID the SVID names.
    pub spiffe_id: String,
    /// The SVID chain, PEM, leaf first.
    pub svid_pem: String,
    /// The workspace trust bundle, PEM.
    pub bundle_pem: String,
    /// The SVID's serial number, lowercase hex.
    pub serial: String,
    /// Its notAfter, Unix seconds.
    pub expires_at: i64,
}

/// A refusal, with a stable reason code and a message for the person who
/// has to act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// A stable code (`token_unknown`, `token_used`, `token_expired`,
    /// `bad_csr`, `not_renewable`, `internal`…).
    pub reason: String,
    /// What happened and what to do next.
    pub message: String,
}

/// Hub → client on an enrolment connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum EnrolResponse {
    /// The SVID and bundle.
    Issued(Issued),
    /// The token or CSR was refused.
    Refused(Refusal),
}

/// A control message on a live tunnel's control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// Client → hub: issue a fresh SVID for this session's identity.
    Renew {
        /// Matches the answer to the request.
        id: u64,
        /// A PKCS#10 CSR (DER, base64) for a freshly generated key.
        csr: String,
    },
    /// Hub → client: the renewed SVID.
    Issued {
        /// The `id` of the `renew`.
        id: u64,
        /// The SVID.
        #[serde(flatten)]
        issued: Issued,
    },
    /// Hub → client: the renewal was refused.
    Refused {
        /// The `id` of the `renew`.
        id: u64,
        /// Why.
        #[serde(flatten)]
        refusal: Refusal,
    },
    /// Client → hub, on an orderly stop of an enrolled client: revoke this
    /// deployment. Signed by the session's SVID key over
    /// `"ewii-goodbye/1\0" ‖ SPIFFE ID ‖ "\0" ‖ at` (decimal); see
    /// [`crate::receipt::sign_goodbye`].
    Goodbye {
        /// When the client said goodbye, Unix seconds (the hub accepts it
        /// within [`crate::receipt::GOODBYE_MAX_SKEW`] of its clock).
        at: i64,
        /// The signature, base64.
        signature: String,
    },
    /// Hub → client: the goodbye verified and the deployment is revoked;
    /// the hub then closes the connection as revoked.
    GoodbyeAck {},
}

/// A message that cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// Not the expected JSON.
    #[error("malformed enrolment message: {0}")]
    Malformed(String),
    /// Over [`MAX_HANDSHAKE`].
    #[error("an enrolment message of {0} bytes exceeds the 64 KiB limit")]
    TooLarge(usize),
}

/// Encodes a message as JSON, refusing anything over [`MAX_HANDSHAKE`].
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, EnrolError> {
    let bytes = serde_json::to_vec(message).map_err(|e| EnrolError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_HANDSHAKE {
        return Err(EnrolError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// An enrolment message as the one clear `Message` frame that carries it on
/// an enrolment connection.
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, EnrolError> {
    let body = encode(message)?;
    frame::encode(FrameType::Message, &body, MAX_HANDSHAKE)
        .map_err(|_| EnrolError::TooLarge(body.len()))
}

/// Decodes a JSON message of at most [`MAX_HANDSHAKE`] bytes.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, EnrolError> {
    if bytes.len() > MAX_HANDSHAKE {
        return Err(EnrolError::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| EnrolError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_and_carry_their_id() {
        let issued = Issued {
            spiffe_id: "spiffe://ewii.local/ws/a/dep/b".into(),
            svid_pem: "pem".into(),
            bundle_pem: "bundle".into(),
            serial: "0a".into(),
            expires_at: 42,
        };
        for m in [
            Control::Renew {
                id: 7,
                csr: "Y3Ny".into(),
            },
            Control::Issued { id: 8, issued },
            Control::Refused {
                id: 9,
                refusal: Refusal {
                    reason: "bad_csr".into(),
                    message: "m".into(),
                },
            },
            Control::Goodbye {
                at: 1_750_000_000,
                signature: "c2ln".into(),
            },
            Control::GoodbyeAck {},
        ] {
            let bytes = encode(&m).unwrap();
            assert_eq!(decode::<Control>(&bytes).unwrap(), m);
        }
        let wire: serde_json::Value = serde_json::from_slice(
            &encode(&Control::Renew {
                id: 1,
                csr: "x".into(),
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(wire["type"], "renew");
        let wire: serde_json::Value =
            serde_json::from_slice(&encode(&Control::GoodbyeAck {}).unwrap()).unwrap();
        assert_eq!(wire, serde_json::json!({"type": "goodbye_ack"}));
        assert_eq!(
            decode::<Control>(br#"{"type":"goodbye","at":-1,"signature":"x"}"#).unwrap(),
            Control::Goodbye {
                at: -1,
                signature: "x".into()
            }
        );
    }

    #[test]
    fn oversized_and_malformed_messages_are_refused() {
        let big = vec![b' '; MAX_HANDSHAKE + 1];
        assert!(matches!(
            decode::<Control>(&big),
            Err(EnrolError::TooLarge(_))
        ));
        assert!(matches!(
            decode::<Control>(br#"{"type":"launch"}"#),
            Err(EnrolError::Malformed(_))
        ));
        let req = EnrolRequest {
            token: Zeroizing::new("secret-token".into()),
            csr: "x".into(),
        };
        assert!(!format!("{req:?}").contains("secret-token"));
    }
}
