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
//! - [`SseDecoder`]: a sans-IO `text/event-stream` parser.
//! - [`AdapterCredential`]: the adapter's local credential, sent as
//!   `Authorization: Bearer …` on every request the link makes (POST, GET
//!   and DELETE), so the adapter knows the caller is its client. Requests
//!   are built here from scratch: the tunnel carries JSON-RPC messages, not
//!   HTTP headers, so nothing the hub sends can become a header, and the
//!   credential never travels towards the hub. A 401 from the adapter is
//!   [`ForwardError::Unauthorized`], saying which file the client needs.
//!
//! Every request uses a fresh HTTP/1 connection: the adapter is local, a
//! connect costs microseconds, and there is no pool whose state could leak
//! between hub sessions or pin a dead connection.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// The largest single message relayed in either direction (one SSE event's
/// data, one JSON body, one request body). Larger ones fail with
/// [`ForwardError::TooLarge`] instead of being buffered.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The adapter's MCP endpoint.
const MCP_PATH: &str = "/mcp";
/// A local connect that takes longer than this means the adapter is wedged.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `close` is best effort and must not hold up a hub session teardown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages buffered between the HTTP reader and the consumer: enough to
/// keep the pipe busy, small enough that a stalled consumer pushes back on
/// the adapter instead of growing memory.
const CHANNEL_CAPACITY: usize = 32;
/// How much of an error body is read: enough for any JSON-RPC error or
/// plain-text explanation, never an unbounded download.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Characters of an error body kept in [`ForwardError::Status`].
const SNIPPET_CHARS: usize = 200;

const HEADER_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const HEADER_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const HEADER_MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const HEADER_MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";
/// The first protocol version whose servers require the SEP-2243 routing
/// headers (`Mcp-Method`, `Mcp-Name`). Versions are dates, so string order
/// is chronological order.
const STANDARD_HEADERS_VERSION: &str = "2026-07-28";
/// Where a request carries its own protocol version (SEP-2575).
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The accepted destination syntax, quoted in every parse error.
const DESTINATION_FORMS: &str = "accepted forms: unix:/absolute/path/to/socket, \
     tcp:IPV4:PORT (e.g. tcp:127.0.0.1:8080) or tcp:[IPV6]:PORT (e.g. tcp:[::1]:8080); \
     DNS names are not accepted";

/// How a `Refused` reason starts when the adapter no longer knows the MCP
/// session it was sent on (the adapter restarted): the request never ran,
/// and the hub should start a new session with `initialize`.
pub const SESSION_LOST: &str = "adapter_session_lost";

/// How a `Refused` reason starts when the adapter refused the client's
/// local credential (HTTP 401): nothing ran, and only the customer's admin
/// can fix it (the client's `--adapter-credential-file`).
pub const ADAPTER_UNAUTHORIZED: &str = "adapter_unauthorized";

/// Errors of the forwarding path.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The adapter answered 401: this client holds no credential, or not
    /// the adapter's current one. The request was not run.
    #[error(
        "{ADAPTER_UNAUTHORIZED}: the MCP adapter at {destination} {}; the request was not run",
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
        "{SESSION_LOST}: the MCP adapter no longer knows this session (it restarted); the request \
         was not run, start a new session with initialize"
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
    fn host_header(&self) -> HeaderValue {
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
    header: HeaderValue,
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

/// What the link remembers of the MCP session. `generation` changes on every
/// reset, so a reply to a request sent before the reset cannot plant the old
/// session's id or version into the new one.
#[derive(Debug, Default)]
struct SessionState {
    id: Option<HeaderValue>,
    protocol_version: Option<HeaderValue>,
    generation: u64,
}

impl SessionState {
    fn forget(&mut self) -> Option<(HeaderValue, Option<HeaderValue>)> {
        self.generation = self.generation.wrapping_add(1);
        let version = self.protocol_version.take();
        self.id.take().map(|id| (id, version))
    }
}

#[derive(Debug)]
struct LinkInner {
    destination: Destination,
    host: HeaderValue,
    credential: Option<AdapterCredential>,
    session: Mutex<SessionState>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl LinkInner {
    fn session(&self) -> MutexGuard<'_, SessionState> {
        // The state is two header values and a counter, consistent after
        // any panic; a poisoned lock must not take the link down with it.
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records the session id a response announced, unless the session was
    /// reset since the request went out.
    fn capture_session_id(&self, headers: &HeaderMap, generation: u64) {
        if let Some(id) = headers.get(HEADER_SESSION_ID) {
            let mut s = self.session();
            if s.generation == generation {
                s.id = Some(id.clone());
            }
        }
    }

    /// Records the negotiated version from an initialize result, so later
    /// requests carry `MCP-Protocol-Version` as the transport requires.
    fn capture_protocol_version(&self, message: &[u8], generation: u64) {
        #[derive(Deserialize)]
        struct Reply {
            result: Option<InitResult>,
        }
        #[derive(Deserialize)]
        struct InitResult {
            #[serde(rename = "protocolVersion")]
            protocol_version: Option<String>,
        }
        let Ok(Reply {
            result:
                Some(InitResult {
                    protocol_version: Some(version),
                }),
        }) = serde_json::from_slice::<Reply>(message)
        else {
            return;
        };
        match HeaderValue::from_str(&version) {
            Ok(v) => {
                let mut s = self.session();
                if s.generation == generation {
                    s.protocol_version = Some(v);
                }
            }
            Err(_) => tracing::warn!(
                version = %version.escape_debug(),
                "the adapter negotiated a protocol version that cannot travel in a header"
            ),
        }
    }
}

/// The client side of MCP streamable HTTP towards one adapter destination.
///
/// It relays raw JSON-RPC messages and keeps only what the transport needs:
/// the `Mcp-Session-Id` the adapter assigned and the protocol version the
/// `initialize` exchange negotiated. Cloning is cheap and clones share the
/// session and the byte counters.
#[derive(Debug, Clone)]
pub struct AdapterLink {
    inner: Arc<LinkInner>,
}

/// Where a response reader delivers: the result channel of [`AdapterLink::send`]
/// or the plain one of [`AdapterLink::listen`], whose errors are only logged.
enum Sink {
    Results(mpsc::Sender<Result<Bytes, ForwardError>>),
    Plain(mpsc::Sender<Bytes>, Destination),
}

impl Sink {
    /// Delivers one item; `false` when the consumer is gone and reading
    /// should stop.
    async fn deliver(&self, item: Result<Bytes, ForwardError>) -> bool {
        match (self, item) {
            (Sink::Results(tx), item) => tx.send(item).await.is_ok(),
            (Sink::Plain(tx, _), Ok(message)) => tx.send(message).await.is_ok(),
            (Sink::Plain(_, destination), Err(e)) => {
                tracing::warn!(%destination, error = %e, "the adapter's server stream failed");
                false
            }
        }
    }

    /// Resolves when the consumer dropped its receiver.
    async fn closed(&self) {
        match self {
            Sink::Results(tx) => tx.closed().await,
            Sink::Plain(tx, _) => tx.closed().await,
        }
    }
}

/// How a 2xx response body carries messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Sse,
    Json,
}

impl AdapterLink {
    /// A link to `destination`, presenting `credential` (the adapter's
    /// local credential) on every request. Nothing is dialled until a
    /// message is sent; check the destination against the [`AllowList`]
    /// first (or build the link with [`AllowList::link`]).
    pub fn new(destination: Destination, credential: Option<AdapterCredential>) -> Self {
        AdapterLink {
            inner: Arc::new(LinkInner {
                host: destination.host_header(),
                credential,
                destination,
                session: Mutex::new(SessionState::default()),
                bytes_in: AtomicU64::new(0),
                bytes_out: AtomicU64::new(0),
            }),
        }
    }

    /// The destination this link relays to.
    pub fn destination(&self) -> &Destination {
        &self.inner.destination
    }

    /// Request body bytes sent to the adapter so far.
    pub fn bytes_out(&self) -> u64 {
        self.inner.bytes_out.load(Ordering::Relaxed)
    }

    /// Response body bytes received from the adapter so far (SSE framing
    /// included).
    pub fn bytes_in(&self) -> u64 {
        self.inner.bytes_in.load(Ordering::Relaxed)
    }

    /// The session id the adapter assigned, if any.
    pub fn session_id(&self) -> Option<String> {
        let s = self.inner.session();
        s.id.as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The protocol version negotiated by the last `initialize`, if any.
    pub fn protocol_version(&self) -> Option<String> {
        let s = self.inner.session();
        s.protocol_version
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Forgets the session id and protocol version without telling the
    /// adapter: the next hub session starts its own MCP session.
    pub fn reset(&self) {
        self.inner.session().forget();
    }

    /// Ends the MCP session at the adapter (`DELETE /mcp`, best effort,
    /// errors ignored) and forgets it.
    pub async fn close(&self) {
        let forgotten = self.inner.session().forget();
        if let Some((id, version)) = forgotten {
            self.delete_session(id, version).await;
        }
    }

    /// POSTs one JSON-RPC message to the adapter and returns the messages it
    /// answers with, in order, as they arrive.
    ///
    /// The receiver ends when the HTTP response ends; it yields nothing for
    /// a notification or a response (202 Accepted). An item is an error
    /// only as the last item (a message over [`MAX_MESSAGE`], a broken
    /// stream). An `initialize` request always starts a new session: any
    /// previous one is closed first, and the request carries no session
    /// headers.
    ///
    /// A non-success status is [`ForwardError::Status`], except when its body
    /// is a JSON-RPC error: then the adapter answered in band (as the
    /// 2026-07-28 transport does for e.g. an unknown method) and that error
    /// is relayed like any other reply, so the hub's client sees it.
    pub async fn send(
        &self,
        message: Bytes,
    ) -> Result<mpsc::Receiver<Result<Bytes, ForwardError>>, ForwardError> {
        if message.len() > MAX_MESSAGE {
            return Err(ForwardError::TooLarge { limit: MAX_MESSAGE });
        }
        let peek = Peek::of(&message);
        let initialize = peek.method.as_deref() == Some("initialize");
        if initialize {
            // Sending `initialize` inside an existing session would hand the
            // running session a second handshake; a new session is wanted.
            self.close().await;
        }
        let (session_id, session_version, generation) = {
            let s = self.inner.session();
            (s.id.clone(), s.protocol_version.clone(), s.generation)
        };

        let mut request = self
            .request(Method::POST)
            .header(CONTENT_TYPE, JSON)
            .header(ACCEPT, "application/json, text/event-stream");
        let session_sent = !initialize && session_id.is_some();
        if !initialize {
            if let Some(id) = session_id {
                request = request.header(HEADER_SESSION_ID, id);
            }
            // A request that names its own version (SEP-2575) is served at
            // that version, and the header must agree with it.
            let version = peek
                .meta_version()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .or(session_version);
            if let Some(version) = version {
                for (name, value) in peek.standard_headers(&version) {
                    request = request.header(name, value);
                }
                request = request.header(HEADER_PROTOCOL_VERSION, version);
            }
        }
        let size = message.len();
        let request = request
            .body(Full::new(message))
            .map_err(|e| ForwardError::Http(e.to_string()))?;
        let response = self.exchange(request).await?;
        self.inner
            .bytes_out
            .fetch_add(size as u64, Ordering::Relaxed);

        let status = response.status();
        if !status.is_success() {
            return match self.error_reply(response).await {
                Ok(relayed) => {
                    let (tx, rx) = mpsc::channel(1);
                    // Capacity 1 and nothing else sent: this cannot fail.
                    let _ = tx.try_send(Ok(relayed));
                    Ok(rx)
                }
                // A bare 404 on a session (an in-band JSON-RPC error is
                // relayed above): the adapter forgot the session.
                Err(ForwardError::Status { status, .. })
                    if status == StatusCode::NOT_FOUND && session_sent =>
                {
                    Err(ForwardError::SessionLost)
                }
                Err(e) => Err(e),
            };
        }
        self.inner
            .capture_session_id(response.headers(), generation);
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(rx);
        }
        let kind = body_kind(response.headers())?;
        if kind == BodyKind::Json && declared_length(response.headers()) > MAX_MESSAGE as u64 {
            return Err(ForwardError::TooLarge { limit: MAX_MESSAGE });
        }
        let capture = initialize.then_some(generation);
        tokio::spawn(pump(
            self.inner.clone(),
            response.into_body(),
            kind,
            Sink::Results(tx),
            capture,
        ));
        Ok(rx)
    }

    /// Opens the stream of server-initiated messages (`GET /mcp`), e.g.
    /// `notifications/tools/list_changed`. Needs a session; the receiver
    /// ends when the adapter ends the stream (or the session), and stream
    /// errors after it opened are logged.
    pub async fn listen(&self) -> Result<mpsc::Receiver<Bytes>, ForwardError> {
        let (id, version) = {
            let s = self.inner.session();
            (s.id.clone(), s.protocol_version.clone())
        };
        let id = id.ok_or(ForwardError::NoSession)?;
        let mut request = self
            .request(Method::GET)
            .header(ACCEPT, EVENT_STREAM)
            .header(HEADER_SESSION_ID, id);
        if let Some(version) = version {
            request = request.header(HEADER_PROTOCOL_VERSION, version);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| ForwardError::Http(e.to_string()))?;
        let response = self.exchange(request).await?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(ForwardError::NoServerStream);
        }
        if !status.is_success() {
            let (status, body) = self.read_error_body(response).await;
            return Err(self.status_error(status, &body));
        }
        let kind = body_kind(response.headers())?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(pump(
            self.inner.clone(),
            response.into_body(),
            kind,
            Sink::Plain(tx, self.inner.destination.clone()),
            None,
        ));
        Ok(rx)
    }

    /// Every request starts here: the only headers are the ones set in
    /// this module, and the credential is set once.
    fn request(&self, method: Method) -> http::request::Builder {
        let builder = Request::builder()
            .method(method)
            .uri(MCP_PATH)
            .header(HOST, self.inner.host.clone());
        match &self.inner.credential {
            Some(c) => builder.header(AUTHORIZATION, c.header.clone()),
            None => builder,
        }
    }

    /// The error for a non-success answer: a 401 is the adapter refusing
    /// this client's credential, said loudly since only an admin can fix it.
    fn status_error(&self, status: StatusCode, body: &[u8]) -> ForwardError {
        if status != StatusCode::UNAUTHORIZED {
            return status_error(status, body);
        }
        let e = ForwardError::Unauthorized {
            destination: self.inner.destination.clone(),
            credential_sent: self.inner.credential.is_some(),
        };
        tracing::warn!(error = %e, "the MCP adapter refused this client");
        e
    }

    async fn delete_session(&self, id: HeaderValue, version: Option<HeaderValue>) {
        let mut request = self.request(Method::DELETE).header(HEADER_SESSION_ID, id);
        if let Some(version) = version {
            request = request.header(HEADER_PROTOCOL_VERSION, version);
        }
        let Ok(request) = request.body(Full::new(Bytes::new())) else {
            return;
        };
        let outcome = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let response = self.exchange(request).await?;
            let (status, _) = self.read_error_body(response).await;
            Ok::<_, ForwardError>(status)
        })
        .await;
        match outcome {
            Ok(Ok(status)) => tracing::debug!(%status, "MCP session closed at the adapter"),
            Ok(Err(e)) => tracing::debug!(error = %e, "closing the MCP session failed"),
            Err(_) => tracing::debug!("closing the MCP session timed out"),
        }
    }

    /// One request on a fresh connection.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, ForwardError> {
        let mut sender = self.connect().await?;
        sender
            .send_request(request)
            .await
            .map_err(|e| ForwardError::Http(e.to_string()))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ForwardError> {
        let destination = &self.inner.destination;
        let unreachable = |cause| ForwardError::Unreachable {
            destination: destination.clone(),
            cause,
        };
        let timed_out = || {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
            )
        };
        match destination {
            Destination::Tcp(addr) => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                        .await
                        .map_err(|_| unreachable(timed_out()))?
                        .map_err(unreachable)?;
                // Small JSON-RPC writes must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                handshake(stream).await
            }
            Destination::Unix(path) => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(path))
                        .await
                        .map_err(|_| unreachable(timed_out()))?
                        .map_err(unreachable)?;
                handshake(stream).await
            }
        }
    }

    /// A non-success response: the in-band JSON-RPC error it carries, or
    /// [`ForwardError::Status`].
    async fn error_reply(&self, response: Response<Incoming>) -> Result<Bytes, ForwardError> {
        let json = content_type_is(response.headers(), JSON);
        let (status, body) = self.read_error_body(response).await;
        if json && status != StatusCode::UNAUTHORIZED && is_jsonrpc_error(&body) {
            return Ok(body);
        }
        Err(self.status_error(status, &body))
    }

    /// Reads at most [`MAX_ERROR_BODY`] bytes of a body; the rest is dropped
    /// with the connection.
    async fn read_error_body(&self, response: Response<Incoming>) -> (StatusCode, Bytes) {
        let status = response.status();
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        while buf.len() < MAX_ERROR_BODY {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.inner.add_in(data.len());
                        let room = MAX_ERROR_BODY - buf.len();
                        buf.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
        (status, buf.freeze())
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, ForwardError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ForwardError::Http(e.to_string()))?;
    // The connection drives the socket; it ends when the response body is
    // read to the end (or dropped) and the sender is gone.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "adapter connection ended with an error");
        }
    });
    Ok(sender)
}

fn status_error(status: StatusCode, body: &[u8]) -> ForwardError {
    ForwardError::Status {
        status,
        body_snippet: snippet(body),
    }
}

/// The start of a body for an error message, on one line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text
        .chars()
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(SNIPPET_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn content_type_is(headers: &HeaderMap, essence: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case(essence))
        })
}

/// The `Content-Length`, or 0 when absent (the reader still enforces the
/// limit while streaming).
fn declared_length(headers: &HeaderMap) -> u64 {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ForwardError> {
    if content_type_is(headers, EVENT_STREAM) {
        Ok(BodyKind::Sse)
    } else if content_type_is(headers, JSON) || !headers.contains_key(CONTENT_TYPE) {
        // No content type: only an empty body makes sense, and the JSON
        // path relays nothing for an empty body.
        Ok(BodyKind::Json)
    } else {
        let ct = headers
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        Err(ForwardError::Http(format!(
            "unexpected Content-Type '{ct}' (expected {JSON} or {EVENT_STREAM})"
        )))
    }
}

fn is_jsonrpc_error(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct ErrorReply {
        jsonrpc: String,
        error: serde_json::Value,
    }
    serde_json::from_slice::<ErrorReply>(body)
        .is_ok_and(|r| r.jsonrpc == "2.0" && r.error.is_object())
}

/// Reads a 2xx body and delivers its messages. `capture` is the session
/// generation of an `initialize` whose result sets the protocol version.
async fn pump(
    link: Arc<LinkInner>,
    mut body: Incoming,
    kind: BodyKind,
    sink: Sink,
    capture: Option<u64>,
) {
    let too_large = || Err(ForwardError::TooLarge { limit: MAX_MESSAGE });
    let mut sse = SseDecoder::with_limit(MAX_MESSAGE);
    let mut json = BytesMut::new();
    loop {
        // A consumer that walks away must free the connection even while
        // the adapter sends nothing (a quiet server stream only carries
        // keep-alive comments), so its departure is watched, not only
        // noticed at the next delivery.
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = sink.closed() => return,
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => {
                sink.deliver(Err(ForwardError::Http(format!(
                    "the response stream broke: {e}"
                ))))
                .await;
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers carry no messages.
                Err(_) => continue,
            },
        };
        link.add_in(data.len());
        match kind {
            BodyKind::Json => {
                if json.len() + data.len() > MAX_MESSAGE {
                    sink.deliver(too_large()).await;
                    return;
                }
                json.extend_from_slice(&data);
            }
            BodyKind::Sse => {
                for event in sse.push(&data) {
                    // MCP sends every message as a default (`message`)
                    // event; priming events (SEP-1699) and keep-alives carry
                    // no data.
                    let is_message = matches!(event.event.as_deref(), None | Some("message"));
                    if !is_message || event.data.trim().is_empty() {
                        continue;
                    }
                    let message = Bytes::from(event.data);
                    if let Some(generation) = capture {
                        link.capture_protocol_version(&message, generation);
                    }
                    if !sink.deliver(Ok(message)).await {
                        return;
                    }
                }
                if sse.overflowed() {
                    sink.deliver(too_large()).await;
                    return;
                }
            }
        }
    }
    if kind == BodyKind::Json && !json.iter().all(u8::is_ascii_whitespace) {
        let message = json.freeze();
        if let Some(generation) = capture {
            link.capture_protocol_version(&message, generation);
        }
        sink.deliver(Ok(message)).await;
    }
}

/// The few fields of an outgoing message the transport rules need. Parsing
/// it never blocks forwarding: a message that does not fit is relayed as
/// is, with no method-dependent headers.
#[derive(Debug, Default, Deserialize)]
struct Peek {
    method: Option<String>,
    params: Option<PeekParams>,
}

#[derive(Debug, Default, Deserialize)]
struct PeekParams {
    name: Option<serde_json::Value>,
    uri: Option<serde_json::Value>,
    #[serde(rename = "taskId")]
    task_id: Option<serde_json::Value>,
    #[serde(rename = "_meta")]
    meta: Option<serde_json::Value>,
}

impl Peek {
    fn of(message: &[u8]) -> Peek {
        serde_json::from_slice(message).unwrap_or_default()
    }

    /// The SEP-2575 per-request protocol version, if the message names one.
    fn meta_version(&self) -> Option<&str> {
        self.params
            .as_ref()?
            .meta
            .as_ref()?
            .get(META_PROTOCOL_VERSION)?
            .as_str()
    }

    /// SEP-2243 routing headers, required from protocol 2026-07-28 on:
    /// `Mcp-Method` for every request and notification, `Mcp-Name` for the
    /// methods that target a named tool, prompt, resource or task.
    /// (`Mcp-Param-*` headers need the tool's input schema, which the
    /// forwarder does not see; the adapter's tools declare none.)
    fn standard_headers(&self, version: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        let applies = version
            .to_str()
            .is_ok_and(|v| v >= STANDARD_HEADERS_VERSION);
        let Some(method) = self.method.as_deref().filter(|_| applies) else {
            return out;
        };
        if let Ok(value) = HeaderValue::from_str(method) {
            out.push((HEADER_MCP_METHOD, value));
        }
        let params = self.params.as_ref();
        let name = match method {
            "tools/call" | "prompts/get" => params.and_then(|p| p.name.as_ref()),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                params.and_then(|p| p.uri.as_ref())
            }
            "tasks/get" | "tasks/update" | "tasks/cancel" => {
                params.and_then(|p| p.task_id.as_ref())
            }
            _ => None,
        };
        if let Some(name) = name.and_then(serde_json::Value::as_str)
            && let Ok(value) = HeaderValue::from_str(&encode_header_value(name))
        {
            out.push((HEADER_MCP_NAME, value));
        }
        out
    }
}

/// SEP-2243 value encoding: a value that cannot travel as a bare header
/// (non-ASCII, control characters, edge whitespace, or one that looks like
/// the sentinel) is sent as `=?base64?<standard base64>?=`.
fn encode_header_value(value: &str) -> String {
    let needs_base64 = value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
        || value.chars().any(|c| !(' '..='~').contains(&c))
        || (value.starts_with("=?base64?") && value.ends_with("?="));
    if needs_base64 {
        format!("=?base64?{}?=", base64(value.as_bytes()))
    } else {
        value.to_owned()
    }
}

/// Standard base64 with padding (RFC 4648 §4); one header value does not
/// justify a dependency.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` type; `None` means the default, `message`.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, if this event set one.
    pub id: Option<String>,
    /// The `retry:` reconnection delay in milliseconds, if set.
    pub retry: Option<u64>,
}

/// A sans-IO `text/event-stream` decoder (WHATWG HTML §9.2.6).
///
/// Feed it bytes as they arrive, split anywhere; it returns each event
/// when its terminating blank line is seen. Lines end with CRLF, LF or CR;
/// `:` lines are comments; a leading UTF-8 BOM is skipped. Unlike a
/// browser it also returns events that carry only `id:`/`retry:` (so a
/// caller can see priming events) and leaves skipping them to the caller.
///
/// Memory is bounded: when one event's data, or one line, exceeds the
/// limit, the decoder stops, drops what it buffered and reports
/// [`SseDecoder::overflowed`].
#[derive(Debug)]
pub struct SseDecoder {
    limit: usize,
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF opening the next chunk is the
    /// second half of that CRLF, not an empty line.
    after_cr: bool,
    /// The first line was seen (a BOM can only open the stream).
    started: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    overflowed: bool,
}

/// Room for a field name and `: ` on top of the data limit, so that a
/// `data:` line carrying exactly `limit` bytes is accepted.
const SSE_LINE_OVERHEAD: usize = 16;

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::new()
    }
}

impl SseDecoder {
    /// A decoder with the [`MAX_MESSAGE`] limit.
    pub fn new() -> Self {
        SseDecoder::with_limit(MAX_MESSAGE)
    }

    /// A decoder refusing events whose data exceeds `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        SseDecoder {
            limit,
            line: Vec::new(),
            after_cr: false,
            started: false,
            data: String::new(),
            has_data: false,
            event: None,
            id: None,
            retry: None,
            overflowed: false,
        }
    }

    /// Whether an event or a line went over the limit; the decoder then
    /// ignores all further input.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Feeds `chunk` and returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.overflowed || rest.is_empty() {
            return events;
        }
        if std::mem::take(&mut self.after_cr) && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        while !rest.is_empty() {
            let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') else {
                self.line.extend_from_slice(rest);
                self.check_line();
                break;
            };
            self.line.extend_from_slice(&rest[..end]);
            if self.check_line() {
                break;
            }
            let cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut events);
            if self.overflowed {
                break;
            }
        }
        events
    }

    /// Marks overflow when the pending line is too long; `true` if so.
    fn check_line(&mut self) -> bool {
        if self.line.len() > self.limit.saturating_add(SSE_LINE_OVERHEAD) {
            self.overflow();
        }
        self.overflowed
    }

    fn overflow(&mut self) {
        self.overflowed = true;
        self.line = Vec::new();
        self.data = String::new();
        self.event = None;
        self.id = None;
    }

    fn process_line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) {
        let mut line = line;
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                let value = String::from_utf8_lossy(value);
                if self.data.len() + value.len() > self.limit {
                    self.overflow();
                    return;
                }
                self.data.push_str(&value);
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            // The spec ignores an id containing NUL.
            b"id" if !value.contains(&0) => {
                self.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Ok(ms) = std::str::from_utf8(value).unwrap_or("").parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let seen =
            self.has_data || self.event.is_some() || self.id.is_some() || self.retry.is_some();
        if !seen {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        self.has_data = false;
        events.push(SseEvent {
            event: self.event.take(),
            data,
            id: self.id.take(),
            retry: self.retry.take(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        chunks.iter().flat_map(|c| d.push(c)).collect()
    }

    fn message(data: &str) -> SseEvent {
        SseEvent {
            data: data.into(),
            ..Default::default()
        }
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBF: keep-alive comment\r\n\
        id: 0\r\nretry: 3000\r\ndata:\r\n\r\n\
        data: {\"jsonrpc\":\"2.0\",\"id\":1}\n\n\
        event: message\rid: 7\rdata: line one\rdata:line two\r\r\
        data: a\r\ndata:  b\n\
        \n\
        event: other\ndata: x\nretry: nope\n\n\
        : comment only\n\n\
        id\ndata\n\n\
        data: trailing, never terminated";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                id: Some("0".into()),
                retry: Some(3000),
                ..Default::default()
            },
            message("{\"jsonrpc\":\"2.0\",\"id\":1}"),
            SseEvent {
                event: Some("message".into()),
                id: Some("7".into()),
                data: "line one\nline two".into(),
                retry: None,
            },
            message("a\n b"),
            SseEvent {
                event: Some("other".into()),
                data: "x".into(),
                ..Default::default()
            },
            SseEvent {
                id: Some(String::new()),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn sse_decodes_fields_line_endings_and_comments() {
        assert_eq!(decode_all(&[STREAM]), expected());
    }

    #[test]
    fn sse_split_at_every_byte_position_gives_the_same_events() {
        let whole = decode_all(&[STREAM]);
        for at in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(at);
            assert_eq!(decode_all(&[a, b]), whole, "split at {at}");
        }
        for (i, j) in [(1, 2), (3, 40), (60, 61), (61, 62), (100, 150)] {
            let parts = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
            assert_eq!(decode_all(&parts), whole, "split at {i} and {j}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(decode_all(&bytes), whole, "byte by byte");
    }

    #[test]
    fn sse_crlf_split_between_cr_and_lf_is_one_line_end() {
        // A CR closing a chunk and an LF opening the next is one CRLF, not
        // CR followed by an empty line (which would dispatch early).
        let events = decode_all(&[b"data: a\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(events, vec![message("a\nb")]);
    }

    #[test]
    fn sse_bom_only_at_stream_start() {
        let events = decode_all(&[b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"]);
        // The second BOM makes the field name unknown: ignored, and the
        // blank line dispatches nothing.
        assert_eq!(events, vec![message("x")]);
    }

    #[test]
    fn sse_overflow_stops_the_decoder() {
        let mut d = SseDecoder::with_limit(8);
        assert_eq!(d.push(b"data: 12345678\n\n"), vec![message("12345678")]);
        assert!(!d.overflowed());
        // Two lines that together exceed the limit.
        let events = d.push(b"data: ok\n\ndata: 1234\ndata: 5678\n\n");
        assert_eq!(events, vec![message("ok")]);
        assert!(d.overflowed());
        assert!(d.push(b"data: small\n\n").is_empty());

        // One endless line, never terminated, is cut off too.
        let mut d = SseDecoder::with_limit(8);
        for _ in 0..10 {
            d.push(b"data: 0123456789");
        }
        assert!(d.overflowed());
    }

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
    fn snippets_are_short_and_single_line() {
        assert_eq!(
            snippet(b"  Not Found: Session not found\n"),
            "Not Found: Session not found"
        );
        let long = "x".repeat(1000);
        let s = snippet(long.as_bytes());
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
        assert!(s.ends_with('…'));
        assert_eq!(snippet(b"a\nb"), "a b");
    }

    #[test]
    fn standard_headers_only_from_2026_07_28() {
        let call = Peek::of(
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"shop_query","arguments":{"sql":"SELECT 1"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(call.meta_version(), Some("2026-07-28"));
        let old = call.standard_headers(&HeaderValue::from_static("2025-06-18"));
        assert!(old.is_empty());
        let new = call.standard_headers(&HeaderValue::from_static("2026-07-28"));
        assert_eq!(
            new,
            vec![
                (HEADER_MCP_METHOD, HeaderValue::from_static("tools/call")),
                (HEADER_MCP_NAME, HeaderValue::from_static("shop_query")),
            ]
        );
        let read = Peek::of(
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"file:///é"}}"#
                .as_bytes(),
        );
        let headers = read.standard_headers(&HeaderValue::from_static("2026-07-28"));
        assert_eq!(
            headers[1].1,
            HeaderValue::from_str(&format!("=?base64?{}?=", base64("file:///é".as_bytes())))
                .unwrap()
        );
        // Not JSON at all: relayed with no method headers.
        assert!(
            Peek::of(b"{not json")
                .standard_headers(&HeaderValue::from_static("2026-07-28"))
                .is_empty()
        );
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
        assert_eq!(encode_header_value("plain"), "plain");
        assert_eq!(encode_header_value(" lead"), "=?base64?IGxlYWQ=?=");
    }

    #[test]
    fn jsonrpc_errors_are_recognised() {
        assert!(is_jsonrpc_error(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#
        ));
        assert!(!is_jsonrpc_error(
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#
        ));
        assert!(!is_jsonrpc_error(b"Not Found: Session not found"));
    }
}
