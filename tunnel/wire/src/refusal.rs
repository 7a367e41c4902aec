//! Why a client did not forward a request: the body of a `Refused` frame.
//!
//! ```text
//! Refused body = code u16 | message (UTF-8, the rest of the body, ≤ 4 KiB)
//! ```
//!
//! The hub decides what to do from the [`RefusalCode`] alone (start a new
//! MCP session after [`RefusalCode::AdapterSessionLost`], tell the agent
//! the deployment refused the call otherwise); the message is for people
//! and logs, and no code path matches on it. A code this build does not
//! know decodes as [`RefusalCode::Unknown`], so a newer client's refusal is
//! still a refusal.

use std::fmt;

use crate::codec::{DecodeError, Reader};

/// Longest message a `Refused` frame carries; longer ones are cut (at a
/// character boundary) when encoded.
pub const MAX_REFUSAL_MESSAGE: usize = 4096;

/// What kind of refusal: the part of a `Refused` frame the hub matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    /// The request cannot be forwarded as sent: its route is not a
    /// destination (`unix:/abs/path` or `tcp:IP:PORT`).
    BadRequest,
    /// The route names a destination outside the client's allow-list.
    DestinationNotAllowed,
    /// Nothing accepted the connection to the adapter.
    AdapterUnreachable,
    /// The adapter refused the client's local credential (HTTP 401):
    /// nothing ran, and only the customer's admin can fix it.
    AdapterUnauthorized,
    /// The adapter no longer knows the MCP session the request was sent on
    /// (it restarted): the request did not run, and the hub starts a new
    /// session with `initialize`.
    AdapterSessionLost,
    /// The adapter answered with an HTTP error status.
    AdapterError,
    /// The HTTP exchange with the adapter broke or was not MCP streamable
    /// HTTP.
    AdapterExchangeFailed,
    /// A message over the size limit.
    TooLarge,
    /// Anything else on the client's side.
    Internal,
    /// A code this build does not define (sent by a newer peer).
    Unknown(u16),
}

impl RefusalCode {
    /// Every code this build defines, for tables and tests.
    pub const DEFINED: &'static [RefusalCode] = &[
        RefusalCode::BadRequest,
        RefusalCode::DestinationNotAllowed,
        RefusalCode::AdapterUnreachable,
        RefusalCode::AdapterUnauthorized,
        RefusalCode::AdapterSessionLost,
        RefusalCode::AdapterError,
        RefusalCode::AdapterExchangeFailed,
        RefusalCode::TooLarge,
        RefusalCode::Internal,
    ];

    /// The code on the wire.
    pub const fn to_u16(self) -> u16 {
        match self {
            RefusalCode::BadRequest => 1,
            RefusalCode::DestinationNotAllowed => 2,
            RefusalCode::AdapterUnreachable => 3,
            RefusalCode::AdapterUnauthorized => 4,
            RefusalCode::AdapterSessionLost => 5,
            RefusalCode::AdapterError => 6,
            RefusalCode::AdapterExchangeFailed => 7,
            RefusalCode::TooLarge => 8,
            RefusalCode::Internal => 9,
            RefusalCode::Unknown(code) => code,
        }
    }

    /// The code for a wire value.
    pub fn from_u16(code: u16) -> RefusalCode {
        RefusalCode::DEFINED
            .iter()
            .copied()
            .find(|c| c.to_u16() == code)
            .unwrap_or(RefusalCode::Unknown(code))
    }

    /// A stable name for logs and metrics (`adapter_session_lost`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::BadRequest => "bad_request",
            RefusalCode::DestinationNotAllowed => "destination_not_allowed",
            RefusalCode::AdapterUnreachable => "adapter_unreachable",
            RefusalCode::AdapterUnauthorized => "adapter_unauthorized",
            RefusalCode::AdapterSessionLost => "adapter_session_lost",
            RefusalCode::AdapterError => "adapter_error",
            RefusalCode::AdapterExchangeFailed => "adapter_exchange_failed",
            RefusalCode::TooLarge => "too_large",
            RefusalCode::Internal => "internal",
            RefusalCode::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalCode::Unknown(code) => write!(f, "unknown_{code}"),
            known => f.write_str(known.as_str()),
        }
    }
}

/// A refused request: the code and a sentence saying what happened and
/// what to do. Displays as `code: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What kind of refusal.
    pub code: RefusalCode,
    /// For people and logs only.
    pub message: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl Refused {
    /// A refusal with `code` and `message`.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Refused {
        Refused {
            code,
            message: message.into(),
        }
    }

    /// The frame body; the message is cut to [`MAX_REFUSAL_MESSAGE`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut end = self.message.len().min(MAX_REFUSAL_MESSAGE);
        while !self.message.is_char_boundary(end) {
            end -= 1;
        }
        let mut out = Vec::with_capacity(2 + end);
        out.extend_from_slice(&self.code.to_u16().to_be_bytes());
        out.extend_from_slice(&self.message.as_bytes()[..end]);
        out
    }

    /// Decodes a frame body. The message is taken as UTF-8 with invalid
    /// bytes replaced: it is only ever shown.
    pub fn decode(body: &[u8]) -> Result<Refused, DecodeError> {
        let mut r = Reader::new(body);
        let code = RefusalCode::from_u16(r.u16("refusal code")?);
        let len = r.remaining();
        if len > MAX_REFUSAL_MESSAGE {
            return Err(DecodeError::TooLong {
                field: "refusal message",
                len,
                max: MAX_REFUSAL_MESSAGE,
            });
        }
        let message = String::from_utf8_lossy(r.take(len, "refusal message")?).into_owned();
        Ok(Refused { code, message })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_code_round_trips_and_has_its_own_number_and_name() {
        let mut numbers = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for &code in RefusalCode::DEFINED {
            let r = Refused::new(code, "why");
            assert_eq!(Refused::decode(&r.encode()).unwrap(), r);
            assert!(numbers.insert(code.to_u16()), "{code:?}");
            assert!(names.insert(code.as_str()), "{code:?}");
        }
        assert_eq!(
            RefusalCode::AdapterSessionLost.as_str(),
            "adapter_session_lost"
        );
        assert_eq!(
            Refused::new(RefusalCode::AdapterUnauthorized, "HTTP 401").to_string(),
            "adapter_unauthorized: HTTP 401"
        );
    }

    #[test]
    fn the_wire_form_is_code_then_message() {
        let r = Refused::new(RefusalCode::AdapterSessionLost, "gone");
        assert_eq!(r.encode(), [0, 5, b'g', b'o', b'n', b'e']);
        assert_eq!(
            Refused::decode(&[0, 99, b'x']).unwrap(),
            Refused::new(RefusalCode::Unknown(99), "x")
        );
        assert_eq!(RefusalCode::Unknown(99).to_string(), "unknown_99");
    }

    #[test]
    fn short_long_and_odd_bodies() {
        assert!(Refused::decode(&[]).is_err());
        assert!(Refused::decode(&[0]).is_err());
        assert_eq!(
            Refused::decode(&[0, 1]).unwrap(),
            Refused::new(RefusalCode::BadRequest, "")
        );
        let mut long = vec![0, 9];
        long.extend(vec![b'x'; MAX_REFUSAL_MESSAGE + 1]);
        assert!(matches!(
            Refused::decode(&long),
            Err(DecodeError::TooLong { .. })
        ));
        // Encoding cuts at a character boundary, so it always decodes.
        let r = Refused::new(RefusalCode::Internal, "é".repeat(MAX_REFUSAL_MESSAGE));
        let body = r.encode();
        assert!(body.len() <= 2 + MAX_REFUSAL_MESSAGE);
        let back = Refused::decode(&body).unwrap();
        assert!(back.message.chars().all(|c| c == 'é'));
        assert_eq!(
            Refused::decode(&[0, 3, 0xff]).unwrap().message,
            "\u{fffd}",
            "invalid UTF-8 is shown, not trusted"
        );
    }
}
