//! [`AdapterLink`]: the client side of MCP streamable HTTP towards one
//! adapter destination. It relays raw JSON-RPC messages and keeps only what
//! the transport needs: the session id and the negotiated protocol
//! version. Requests go on pooled HTTP/1.1 keep-alive connections (a
//! connection carries no MCP state: the session is in each request's
//! headers). Responses are read as SSE ([`ewii_wire::sse::SseDecoder`]) or
//! JSON, every message bounded by [`MAX_MESSAGE`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ewii_wire::sse::SseDecoder;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::headers::Peek;
use super::{AdapterCredential, Destination, ForwardError, MAX_MESSAGE};

/// Keep-alive connections kept for reuse, at most.
const MAX_IDLE: usize = 32;
/// How long an idle connection is reused: well under the adapter's
/// header-read deadline (10 s by default), after which it closes idle
/// connections.
const IDLE_FOR: Duration = Duration::from_secs(2);

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

pub(super) const HEADER_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
pub(super) const HEADER_PROTOCOL_VERSION: HeaderName =
    HeaderName::from_static("mcp-protocol-version");
const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

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

struct LinkInner {
    destination: Destination,
    host: HeaderValue,
    credential: Option<AdapterCredential>,
    session: Mutex<SessionState>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Keep-alive connections ready for a request, newest last.
    idle: Mutex<Vec<(Instant, SendRequest<Full<Bytes>>)>>,
}

impl std::fmt::Debug for LinkInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkInner")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl LinkInner {
    fn session(&self) -> MutexGuard<'_, SessionState> {
        // The state is two header values and a counter, consistent after
        // any panic; a poisoned lock must not take the link down with it.
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pooled connection that is ready for a request, if any. Connections
    /// idle for longer than [`IDLE_FOR`] are dropped: the adapter closes
    /// idle keep-alive connections after its header-read deadline, and a
    /// request must not race that close.
    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((since, sender)) = idle.pop() {
            if since.elapsed() < IDLE_FOR && sender.is_ready() && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Returns a connection to the pool (beyond [`MAX_IDLE`] it is closed).
    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|(since, s)| since.elapsed() < IDLE_FOR && !s.is_closed());
        if idle.len() < MAX_IDLE {
            idle.push((Instant::now(), sender));
        }
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
    /// message is sent; check the destination against the [`super::AllowList`]
    /// first (or build the link with [`super::AllowList::link`]).
    pub fn new(destination: Destination, credential: Option<AdapterCredential>) -> Self {
        AdapterLink {
            inner: Arc::new(LinkInner {
                host: destination.host_header(),
                credential,
                destination,
                session: Mutex::new(SessionState::default()),
                bytes_in: AtomicU64::new(0),
                bytes_out: AtomicU64::new(0),
                idle: Mutex::new(Vec::new()),
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

    /// One request, on a pooled keep-alive connection when one is ready,
    /// else on a new one. A pooled connection that turns out closed before
    /// the request was written hands the request back, and it goes on the
    /// next connection; once written, a request is never sent twice.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, ForwardError> {
        let mut request = request;
        while let Some(mut sender) = self.inner.take_idle() {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.reuse_when_ready(sender);
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(ForwardError::Http(e.into_error().to_string())),
                },
            }
        }
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ForwardError::Http(e.to_string()))?;
        self.reuse_when_ready(sender);
        Ok(response)
    }

    /// Pools `sender` once its response has been read to the end (an SSE
    /// stream may take a while); a connection whose response was cut off
    /// is closed by hyper and never pooled.
    fn reuse_when_ready(&self, mut sender: SendRequest<Full<Bytes>>) {
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            if sender.ready().await.is_ok()
                && let Some(inner) = inner.upgrade()
            {
                inner.put_idle(sender);
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;

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
