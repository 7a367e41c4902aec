//! The HTTP side of an MCP endpoint: `/mcp` as rmcp's streamable HTTP
//! service with Host and Origin validation, the body limit in front of
//! everything, and the one HTTP/1.1 serving loop.
//!
//! The layers of `/mcp`, outermost first ([`HttpEdge::router`]):
//! 1. a declared body over the limit is refused with 413 before anything
//!    else, authentication included (a chunked one is cut by rmcp at the
//!    same limit);
//! 2. the server's own gate (the adapter's local credential, the hub's
//!    agent bearer);
//! 3. one JSON-RPC id in flight per session ([`crate::in_flight`]): a
//!    request reusing the id of one still running is answered with an
//!    error at once;
//! 4. rmcp's service: `Host` validation against DNS rebinding, `Origin`
//!    validation where configured, then MCP.
//!
//! [`serve_http`] bounds each connection before any of that: request
//! headers within a deadline, HTTP/1.1 only (HTTP/2 has no header-read
//! deadline, and MCP clients speak HTTP/1.1).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::in_flight::{InFlight, refuse_duplicate_ids};
use crate::origin::ExactOrigin;
use crate::server::{ToolBackend, ToolServer};

/// The loopback names every endpoint answers to.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Which `Host` values an endpoint answers (DNS-rebinding protection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// `localhost`, `127.0.0.1`, `::1` and these names.
    LoopbackAnd(Vec<String>),
    /// Any `Host`: only behind a proxy that checks it.
    Any,
}

/// What rmcp's streamable HTTP service of an endpoint checks.
#[derive(Debug, Clone)]
pub struct HttpEdge {
    /// Accepted `Host` values.
    pub hosts: AllowedHosts,
    /// Browser origins accepted, each exactly; an empty list refuses every
    /// `Origin`. `None` leaves `Origin` unchecked (for callers that must
    /// authenticate with a bearer no browser sends on its own). Requests
    /// without `Origin` are not affected either way.
    pub origins: Option<Vec<ExactOrigin>>,
    /// The largest request body accepted (413 beyond it).
    pub max_body_bytes: usize,
    /// Who the 413 answer names ("the adapter", "the hub").
    pub server: &'static str,
}

impl HttpEdge {
    /// rmcp's configuration for this edge; its sessions end when `cancel`
    /// fires.
    pub fn config(&self, cancel: &CancellationToken) -> StreamableHttpServerConfig {
        let mut config = StreamableHttpServerConfig::default()
            // A chunked body is cut at the same limit a declared one is
            // refused at.
            .with_max_request_body_bytes(self.max_body_bytes)
            .with_cancellation_token(cancel.child_token());
        config = match &self.hosts {
            AllowedHosts::Any => config.disable_allowed_hosts(),
            AllowedHosts::LoopbackAnd(extra) => config.with_allowed_hosts(
                LOOPBACK_HOSTS
                    .iter()
                    .map(ToString::to_string)
                    .chain(extra.iter().cloned()),
            ),
        };
        if let Some(origins) = &self.origins {
            // Each with its port, which rmcp then matches exactly.
            config = config
                .with_allowed_origins(origins.iter().map(ToString::to_string))
                .enforce_origin_validation();
        }
        config
    }

    /// `/mcp` served by sessions of [`ToolServer`] over `backend`, with
    /// `gate` (the server's authentication, as layers on the router it is
    /// given) between the body limit and rmcp.
    pub fn router<B: ToolBackend>(
        &self,
        backend: Arc<B>,
        sessions: Arc<LocalSessionManager>,
        cancel: &CancellationToken,
        gate: impl FnOnce(axum::Router) -> axum::Router,
    ) -> axum::Router {
        let service: StreamableHttpService<ToolServer<B>, LocalSessionManager> =
            StreamableHttpService::new(
                move || Ok(ToolServer::new(backend.clone())),
                sessions,
                self.config(cancel),
            );
        let limit = BodyLimit {
            max: self.max_body_bytes,
            server: self.server,
        };
        let in_flight = InFlight::new(self.max_body_bytes);
        let mcp = axum::Router::new().nest_service("/mcp", service).layer(
            axum::middleware::from_fn_with_state(in_flight, refuse_duplicate_ids),
        );
        gate(mcp).layer(axum::middleware::from_fn_with_state(limit, body_limit))
    }
}

#[derive(Debug, Clone, Copy)]
struct BodyLimit {
    max: usize,
    server: &'static str,
}

/// Refuses a declared body over the limit with 413 before it is read.
async fn body_limit(State(limit): State<BodyLimit>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.max as u64) {
        return (
            http::StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({
                "error": format!(
                    "the request body exceeds {}'s limit of {} bytes: send smaller messages",
                    limit.server, limit.max
                )
            })),
        )
            .into_response();
    }
    next.run(req).await
}

/// `listener` with Nagle's algorithm off on every accepted connection
/// (`TCP_NODELAY`). MCP answers are small writes; with Nagle on, a
/// keep-alive client that delays its ACKs waits about 40 ms for each
/// answer.
pub fn without_nagle(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    })
}

/// Serves `app` over HTTP/1.1 on `listener` until `cancel`, then lets open
/// connections finish. A client must send a request's headers within
/// `header_read_timeout` (an idle keep-alive connection also closes after
/// it), so half-sent requests cannot pile up.
pub async fn serve_http<L>(
    mut listener: L,
    app: axum::Router,
    header_read_timeout: Duration,
    cancel: CancellationToken,
) where
    L: axum::serve::Listener,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    // Every connection task holds a receiver; closed() means all ended.
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    loop {
        let (io, _remote) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = cancel.cancelled() => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let (builder, cancel, open) = (builder.clone(), cancel.clone(), open_rx.clone());
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "HTTP connection ended");
                    }
                }
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(open);
        });
    }
    drop(open_rx);
    open_tx.closed().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn edge(hosts: AllowedHosts, origins: Option<Vec<ExactOrigin>>) -> HttpEdge {
        HttpEdge {
            hosts,
            origins,
            max_body_bytes: 1024,
            server: "the test",
        }
    }

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        use axum::serve::Listener as _;
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = without_nagle(tcp);
        let client = tokio::net::TcpStream::connect(addr);
        let ((server_side, _), _client) = tokio::join!(listener.accept(), client);
        assert!(
            server_side.nodelay().unwrap(),
            "TCP_NODELAY is off on an accepted connection"
        );
    }

    #[test]
    fn hosts_are_loopback_plus_the_listed_unless_any() {
        let cancel = CancellationToken::new();
        let c = edge(AllowedHosts::LoopbackAnd(vec!["adapter".into()]), None).config(&cancel);
        assert_eq!(
            c.allowed_hosts,
            ["localhost", "127.0.0.1", "::1", "adapter"]
        );
        assert_eq!(c.max_request_body_bytes, 1024);
        let any = edge(AllowedHosts::Any, None).config(&cancel);
        assert!(any.allowed_hosts.is_empty());
        // Cancelling the server ends rmcp's sessions, not the reverse.
        assert!(!c.cancellation_token.is_cancelled());
        cancel.cancel();
        assert!(c.cancellation_token.is_cancelled());
    }

    #[test]
    fn origins_are_passed_on_with_their_port() {
        let cancel = CancellationToken::new();
        let origin = ExactOrigin::parse("http://localhost:6274").unwrap();
        let c = edge(AllowedHosts::LoopbackAnd(Vec::new()), Some(vec![origin])).config(&cancel);
        assert_eq!(c.allowed_origins, ["http://localhost:6274"]);
    }

    /// A backend with no tools and one caller: enough to serve `/mcp`.
    struct NoTools(crate::ListChanged);

    struct Anyone;

    impl crate::SessionCaller for Anyone {
        fn owner(&self) -> &str {
            ""
        }
        fn group(&self) -> &str {
            ""
        }
    }

    impl ToolBackend for NoTools {
        type Caller = Anyone;

        fn implementation(&self) -> rmcp::model::Implementation {
            rmcp::model::Implementation::new("test", "0")
        }
        fn instructions(&self) -> &'static str {
            "none"
        }
        fn list_changed(&self) -> &crate::ListChanged {
            &self.0
        }
        fn caller(&self, _: &rmcp::model::Extensions) -> Result<Anyone, rmcp::model::ErrorData> {
            Ok(Anyone)
        }
        async fn tools(&self, _: &Anyone) -> Vec<rmcp::model::Tool> {
            Vec::new()
        }
        async fn call_tool(
            &self,
            _: Anyone,
            _: rmcp::model::CallToolRequestParams,
            _: rmcp::service::RequestContext<rmcp::service::RoleServer>,
        ) -> Result<rmcp::model::CallToolResponse, rmcp::model::ErrorData> {
            Err(rmcp::model::ErrorData::internal_error("no tools", None))
        }
    }

    const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;

    #[tokio::test]
    async fn the_body_limit_comes_before_the_gate_and_host_validation_after() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tower::ServiceExt as _;
        let gated = Arc::new(AtomicUsize::new(0));
        let seen = gated.clone();
        let app = edge(AllowedHosts::LoopbackAnd(Vec::new()), None).router(
            Arc::new(NoTools(crate::ListChanged::new())),
            Default::default(),
            &CancellationToken::new(),
            |r| {
                r.layer(axum::middleware::from_fn(
                    move |req: Request, next: Next| {
                        seen.fetch_add(1, Ordering::SeqCst);
                        next.run(req)
                    },
                ))
            },
        );
        let post = |host: &str, body: String| {
            Request::post("/mcp")
                .header(http::header::HOST, host)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json, text/event-stream")
                .header(http::header::CONTENT_LENGTH, body.len())
                .body(axum::body::Body::from(body))
                .unwrap()
        };
        let over = app
            .clone()
            .oneshot(post("127.0.0.1", "x".repeat(1025)))
            .await
            .unwrap();
        assert_eq!(over.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            gated.load(Ordering::SeqCst),
            0,
            "the gate saw a refused body"
        );
        let body = axum::body::to_bytes(over.into_body(), 1 << 10)
            .await
            .unwrap();
        let why: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            why["error"],
            "the request body exceeds the test's limit of 1024 bytes: send smaller messages"
        );

        let ok = app
            .clone()
            .oneshot(post("127.0.0.1", INITIALIZE.into()))
            .await
            .unwrap();
        assert_eq!(ok.status(), http::StatusCode::OK);
        assert_eq!(gated.load(Ordering::SeqCst), 1);

        // A DNS name rebound to loopback: refused by rmcp behind the gate.
        let rebound = app
            .oneshot(post("attacker.example", INITIALIZE.into()))
            .await
            .unwrap();
        assert_eq!(rebound.status(), http::StatusCode::FORBIDDEN);
    }
}
