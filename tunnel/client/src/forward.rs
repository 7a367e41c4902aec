//! The client's last hop: relaying MCP JSON-RPC messages from the tunnel to
//! a local MCP adapter over MCP streamable HTTP.
//!
//! - [`Destination`]: where an adapter listens (`unix:/abs/path` or
//!   `tcp:IP:PORT`), parsed strictly so that the allow-list means exactly
//!   what it says.
//! - [`AllowList`]: the destinations the customer's admin lets the hub reach;
//!   checked before anything is dialled.
//! - [`AdapterLink`]: the client side of streamable HTTP for one
//!   destination. It relays raw JSON-RPC messages and follows only the
//!   transport rules (session id, protocol-version and SEP-2243 headers, SSE
//!   or JSON replies); it never rewrites a message.
//! - `headers`: the MCP transport headers a request carries beyond the
//!   session's (SEP-2575 protocol version, SEP-2243 routing headers).
//! - [`AdapterCredential`]: the adapter's local credential, sent as
//!   `Authorization: Bearer …` on every request the link makes (POST, GET
//!   and DELETE), so the adapter knows the caller is its client. Requests
//!   are built here from scratch: the tunnel carries JSON-RPC messages, not
//!   HTTP headers, so nothing the hub sends can become a header, and the
//!   credential never travels towards the hub. A 401 from the adapter is
//!   [`ForwardError::Unauthorized`], saying which file the client needs.
//!
//! Requests reuse keep-alive HTTP/1.1 connections to the adapter (with
//! `TCP_NODELAY`), at most 32 idle and each for at most 2 s, well within the
//! adapter's idle deadline: a connect per request cost more than the
//! query. A connection holds no MCP state (the session id travels in each
//! request's headers), and one found closed before a request was written
//! gives the request back for a new connection; a written request is never
//! sent twice.
//!
//! Every [`ForwardError`] the hub may see maps to a typed refusal code
//! ([`ForwardError::refused`]): the hub matches on the code, never on the
//! text.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ewii_wire::refusal::{RefusalCode, Refused};
use http::{HeaderValue, StatusCode};
use zeroize::Zeroizing;

mod headers;
mod link;

pub use link::AdapterLink;

/// The largest single message relayed in either direction (one SSE event's
/// data, one JSON body, one request body). Larger ones fail with
/// [`ForwardError::TooLarge`] instead of being buffered.
pub const MAX_MESSAGE: usize = ewii_wire::frame::MAX_MESSAGE;

/// The accepted destination syntax, quoted in every parse error.
const DESTINATION_FORMS: &str = "accepted forms: unix:/absolute/path/to/socket, \
     tcp:IPV4:PORT (e.g. tcp:127.0.0.1:8080) or tcp:[IPV6]:PORT (e.g. tcp:[::1]:8080); \
     DNS names are not accepted";

/// Errors of the forwarding path.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The adapter answered 401: this client holds no credential, or not
    /// the adapter's current one. The request was not run.
    #[error(
        "the MCP adapter at {destination} {}; the request was not run",
        if *.credential_sent {
            "refused this client's local credential (HTTP 401): the file given with \
             --adapter-credential-file (EWII_ADAPTER_CREDENTIAL_FILE) does not hold the adapter's \
             current credential (rotated? `ewii-adapter local-credential` prints the file to use; \
             restart the client with it)"
        } else {
            "requires its local credential (HTTP 401) and this client has none: start ewii-client \
             with --adapter-credential-file FILE (or EWII_ADAPTER_CREDENTIAL_FILE), FILE being the \
             adapter's local-credential (`ewii-adapter local-credential` prints its path)"
        }
    )]
    Unauthorized {
        /// The adapter that refused.
        destination: Destination,
        /// Whether a credential was sent (then it is the wrong one).
        credential_sent: bool,
    },
    /// The configured adapter credential cannot be used.
    #[error("{0}")]
    InvalidCredential(String),
    /// The adapter answered 404 to a request on an MCP session: it no
    /// longer knows the session.
    #[error(
        "the MCP adapter no longer knows this session (it restarted); the request was not run, \
         start a new session with initialize"
    )]
    SessionLost,
    /// A destination string that is not `unix:/abs/path` or `tcp:IP:PORT`.
    #[error("invalid destination {0}; {DESTINATION_FORMS}")]
    InvalidDestination(String),
    /// An allow-list with no entry would refuse everything; that is a
    /// configuration mistake, not a policy.
    #[error(
        "the adapter allow-list is empty: list at least one destination (unix:/path or \
         tcp:IP:PORT)"
    )]
    EmptyAllowList,
    /// The hub asked for a destination the customer's admin did not allow.
    #[error(
        "destination {destination} is not in this client's allow-list (allowed: {})",
        join(.allowed)
    )]
    NotAllowed {
        /// What the hub asked for.
        destination: Destination,
        /// What the allow-list holds.
        allowed: Vec<Destination>,
    },
    /// Nothing accepted the connection.
    #[error(
        "cannot reach the MCP adapter at {destination}: {cause}. Check that `ewii-adapter serve` \
         is running and listening on that address"
    )]
    Unreachable {
        /// The destination dialled.
        destination: Destination,
        /// The OS error (or the connect timeout).
        cause: std::io::Error,
    },
    /// The adapter answered with a non-success HTTP status.
    #[error("the MCP adapter answered HTTP {status}: {body_snippet}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The start of the response body (about 200 characters).
        body_snippet: String,
    },
    /// A message exceeds [`MAX_MESSAGE`]; the stream it was on is stopped.
    #[error("an MCP message to or from the adapter exceeds the {limit}-byte limit")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The adapter does not offer the server-to-client stream (GET answered
    /// 405); server-initiated messages then only arrive on POST responses.
    #[error("the MCP adapter offers no stream for server-initiated messages (GET /mcp: 405)")]
    NoServerStream,
    /// The server stream belongs to a session, and none was established.
    #[error("no MCP session with the adapter yet: an `initialize` must be forwarded first")]
    NoSession,
    /// The HTTP exchange failed after connecting (protocol error, reset
    /// connection, unexpected content type, ...).
    #[error("HTTP exchange with the MCP adapter failed: {0}")]
    Http(String),
}

impl ForwardError {
    /// The refusal code the hub gets for this error.
    pub fn refusal_code(&self) -> RefusalCode {
        match self {
            ForwardError::Unauthorized { .. } => RefusalCode::AdapterUnauthorized,
            ForwardError::SessionLost => RefusalCode::AdapterSessionLost,
            ForwardError::InvalidDestination(_) => RefusalCode::BadRequest,
            ForwardError::NotAllowed { .. } => RefusalCode::DestinationNotAllowed,
            ForwardError::Unreachable { .. } => RefusalCode::AdapterUnreachable,
            ForwardError::Status { .. } => RefusalCode::AdapterError,
            ForwardError::TooLarge { .. } => RefusalCode::TooLarge,
            ForwardError::Http(_) => RefusalCode::AdapterExchangeFailed,
            ForwardError::InvalidCredential(_)
            | ForwardError::EmptyAllowList
            | ForwardError::NoServerStream
            | ForwardError::NoSession => RefusalCode::Internal,
        }
    }

    /// The `Refused` frame the hub gets for this error: its code and this
    /// error's sentence (which names no secret).
    pub fn refused(&self) -> Refused {
        Refused::new(self.refusal_code(), self.to_string())
    }
}

fn join(destinations: &[Destination]) -> String {
    destinations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where an MCP adapter listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A unix socket, by absolute path.
    Unix(PathBuf),
    /// A TCP address, by IP literal.
    Tcp(SocketAddr),
}

impl Destination {
    /// The `Host` header the adapter's DNS-rebinding protection accepts:
    /// `localhost` for a socket (which has no host), the IP literal itself
    /// for TCP.
    pub(crate) fn host_header(&self) -> HeaderValue {
        let host = match self {
            Destination::Unix(_) => return HeaderValue::from_static("localhost"),
            // Built by hand: a scope id (`%eth0`) is not valid in a Host
            // header, and the adapter matches on the IP only.
            Destination::Tcp(SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
            Destination::Tcp(SocketAddr::V4(a)) => a.to_string(),
        };
        HeaderValue::from_str(&host).unwrap_or(HeaderValue::from_static("localhost"))
    }
}

impl FromStr for Destination {
    type Err = ForwardError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| ForwardError::InvalidDestination(format!("'{s}': {why}"));
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(invalid("the socket path is missing"));
            }
            // `unix://...` reads like a URL but would silently become a
            // different path; refuse rather than guess.
            if path.starts_with("//") {
                return Err(invalid("write unix:/path, not a URL (unix://...)"));
            }
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(invalid(
                    "the socket path must be absolute: a relative path would depend on the \
                     client's working directory",
                ));
            }
            Ok(Destination::Unix(path))
        } else if let Some(addr) = s.strip_prefix("tcp:") {
            let addr = SocketAddr::from_str(addr).map_err(|_| {
                invalid("expected an IP literal and a port; host names are not resolved")
            })?;
            if addr.port() == 0 {
                return Err(invalid("port 0 cannot be dialled"));
            }
            Ok(Destination::Tcp(addr))
        } else {
            Err(invalid("unknown scheme"))
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Unix(path) => write!(f, "unix:{}", path.display()),
            Destination::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// The adapter's local credential as the client holds it: sent as
/// `Authorization: Bearer <credential>` on every request to the adapter.
/// Its `Debug` hides it, and the header value is marked sensitive.
#[derive(Clone)]
pub struct AdapterCredential {
    pub(crate) header: HeaderValue,
}

impl fmt::Debug for AdapterCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdapterCredential(<redacted>)")
    }
}

impl AdapterCredential {
    /// A credential from its value (surrounding whitespace ignored).
    pub fn new(secret: &str) -> Result<AdapterCredential, ForwardError> {
        let secret = secret.trim();
        // A bearer token (RFC 6750 b64token) is visible ASCII without
        // spaces; anything else is the wrong file, not a credential.
        if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ForwardError::InvalidCredential(
                "the adapter credential is empty or not a bearer token: give the adapter's \
                 local-credential file (`ewii-adapter local-credential` prints its path)"
                    .into(),
            ));
        }
        let mut value = Zeroizing::new(String::with_capacity(7 + secret.len()));
        value.push_str("Bearer ");
        value.push_str(secret);
        let mut header = HeaderValue::from_str(&value)
            .map_err(|_| ForwardError::InvalidCredential("unusable adapter credential".into()))?;
        header.set_sensitive(true);
        Ok(AdapterCredential { header })
    }

    /// Reads the credential from the adapter's `local-credential` file (or
    /// a copy of it, e.g. on a volume shared with the adapter).
    pub fn from_file(path: &Path) -> Result<AdapterCredential, ForwardError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            ForwardError::InvalidCredential(format!(
                "cannot read the adapter credential file {}: {e}. It is the adapter's \
                 local-credential file (`ewii-adapter local-credential` prints its path)",
                path.display()
            ))
        })?);
        AdapterCredential::new(&text).map_err(|_| {
            ForwardError::InvalidCredential(format!(
                "{} does not hold an adapter credential: give the adapter's local-credential \
                 file (`ewii-adapter local-credential` prints its path)",
                path.display()
            ))
        })
    }
}

/// The destinations the hub may reach through this client, in the admin's
/// order, without duplicates. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Destination>,
    default: Destination,
}

impl AllowList {
    /// An allow-list of `destinations`; duplicates are dropped (the first
    /// occurrence keeps its place). Fails when empty.
    pub fn new(destinations: Vec<Destination>) -> Result<AllowList, ForwardError> {
        let mut entries: Vec<Destination> = Vec::with_capacity(destinations.len());
        for d in destinations {
            if !entries.contains(&d) {
                entries.push(d);
            }
        }
        let default = entries
            .first()
            .cloned()
            .ok_or(ForwardError::EmptyAllowList)?;
        Ok(AllowList { entries, default })
    }

    /// `Ok` when `destination` is listed exactly; otherwise
    /// [`ForwardError::NotAllowed`] naming it and the list.
    pub fn check(&self, destination: &Destination) -> Result<(), ForwardError> {
        if self.entries.contains(destination) {
            Ok(())
        } else {
            Err(ForwardError::NotAllowed {
                destination: destination.clone(),
                allowed: self.entries.clone(),
            })
        }
    }

    /// Checks `destination` and only then builds a link to it (presenting
    /// `credential`), so that no code path can dial a destination that was
    /// not checked.
    pub fn link(
        &self,
        destination: Destination,
        credential: Option<AdapterCredential>,
    ) -> Result<AdapterLink, ForwardError> {
        self.check(&destination)?;
        Ok(AdapterLink::new(destination, credential))
    }

    /// The destination used when the hub names none: the first entry.
    pub fn default_destination(&self) -> &Destination {
        &self.default
    }

    /// The entries, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Destination> {
        self.entries.iter()
    }
}

impl<'a> IntoIterator for &'a AllowList {
    type Item = &'a Destination;
    type IntoIter = std::slice::Iter<'a, Destination>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_display_round_trip() {
        for s in [
            "unix:/run/ewii/adapter.sock",
            "tcp:127.0.0.1:8080",
            "tcp:[::1]:8080",
            "tcp:10.0.0.5:1",
        ] {
            let d: Destination = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
        assert_eq!(
            "tcp:[::1]:9".parse::<Destination>().unwrap(),
            Destination::Tcp("[::1]:9".parse().unwrap())
        );
    }

    #[test]
    fn destinations_refuse_names_relative_paths_and_other_forms() {
        for s in [
            "",
            "unix:",
            "unix:adapter.sock",
            "unix:./adapter.sock",
            "unix://run/adapter.sock",
            "tcp:localhost:8080",
            "tcp:adapter.internal:8080",
            "tcp:127.0.0.1",
            "tcp:::1:8080",
            "tcp:127.0.0.1:0",
            "tcp:127.0.0.1:99999",
            "http://127.0.0.1:8080/mcp",
            "127.0.0.1:8080",
            "/run/adapter.sock",
        ] {
            let e = s.parse::<Destination>().unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, ForwardError::InvalidDestination(_)), "{s}");
            assert!(
                text.contains("unix:/absolute/path") && text.contains("tcp:[::1]:8080"),
                "{s}: {text}"
            );
        }
        let text = "unix:rel".parse::<Destination>().unwrap_err().to_string();
        assert!(text.contains("absolute"), "{text}");
    }

    #[test]
    fn host_headers_are_what_the_adapter_accepts() {
        let host = |s: &str| s.parse::<Destination>().unwrap().host_header();
        assert_eq!(host("unix:/tmp/a.sock"), "localhost");
        assert_eq!(host("tcp:127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(host("tcp:[::1]:8080"), "[::1]:8080");
    }

    #[test]
    fn allow_list_dedupes_keeps_order_and_refuses_the_rest() {
        let a: Destination = "unix:/run/a.sock".parse().unwrap();
        let b: Destination = "tcp:127.0.0.1:8080".parse().unwrap();
        let list = AllowList::new(vec![a.clone(), b.clone(), a.clone()]).unwrap();
        assert_eq!(
            list.iter().cloned().collect::<Vec<_>>(),
            [a.clone(), b.clone()]
        );
        assert_eq!(list.default_destination(), &a);
        list.check(&a).unwrap();
        list.check(&b).unwrap();
        let other: Destination = "tcp:127.0.0.1:8081".parse().unwrap();
        let e = list.check(&other).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("tcp:127.0.0.1:8081")
                && text.contains("unix:/run/a.sock, tcp:127.0.0.1:8080"),
            "{text}"
        );
        assert!(list.link(other, None).is_err());
        assert!(matches!(
            AllowList::new(Vec::new()),
            Err(ForwardError::EmptyAllowList)
        ));
    }

    #[test]
    fn every_error_the_hub_sees_has_its_code_and_no_prefix_in_the_text() {
        let d: Destination = "tcp:127.0.0.1:8080".parse().unwrap();
        let unauthorized = ForwardError::Unauthorized {
            destination: d.clone(),
            credential_sent: true,
        };
        assert_eq!(
            unauthorized.refusal_code(),
            RefusalCode::AdapterUnauthorized
        );
        assert_eq!(
            ForwardError::SessionLost.refusal_code(),
            RefusalCode::AdapterSessionLost
        );
        let refused = unauthorized.refused();
        assert!(
            refused
                .message
                .starts_with("the MCP adapter at tcp:127.0.0.1:8080")
        );
        assert!(
            refused.to_string().starts_with("adapter_unauthorized: "),
            "{refused}"
        );
        let list = AllowList::new(vec![d]).unwrap();
        let other: Destination = "tcp:127.0.0.1:1".parse().unwrap();
        assert_eq!(
            list.check(&other).unwrap_err().refusal_code(),
            RefusalCode::DestinationNotAllowed
        );
        assert_eq!(
            "tcp:nowhere"
                .parse::<Destination>()
                .unwrap_err()
                .refusal_code(),
            RefusalCode::BadRequest
        );
    }
}
