//! `ewii-bearer-proxy`: a loopback HTTP fixture that adds
//! `Authorization: Bearer <credential>` to every request and forwards it,
//! otherwise unchanged, to a loopback upstream.
//!
//! The official MCP conformance suite (`@modelcontextprotocol/conformance`)
//! cannot send headers, and the hub's `/mcp` answers 401 to anything without
//! an agent's bearer. Rather than weaken the hub for the test, the suite talks
//! to this proxy (`conformance/mcp/run.sh`):
//!
//! ```text
//! ewii-bearer-proxy --listen 127.0.0.1:0 --upstream 127.0.0.1:8443 --credential-file agent.cred
//! ```
//!
//! - `Host`, `Origin`, `Mcp-Session-Id`, `MCP-Protocol-Version`, `Accept`,
//!   `Last-Event-ID`, bodies and status codes pass through as sent, so the hub
//!   judges the suite's own Host/Origin (DNS-rebinding scenarios) and session
//!   headers. Only the hop-by-hop headers of RFC 9110 §7.6.1 (and those the
//!   `Connection` header names) are dropped, and `Authorization` is replaced.
//! - Response bodies stream frame by frame (SSE), never buffered.
//! - Both the listen and the upstream address must be loopback: the proxy holds
//!   a credential, and must never become a way to reach it from elsewhere or to
//!   send it elsewhere.
//! - The credential comes from a file (first line; the file must not be
//!   readable by group or others), so it never appears in `ps`, and it is
//!   never logged.
//!
//! Prints `listening http://<addr>` on stdout once it accepts connections.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The body every answer of the proxy carries: the upstream's, streamed, or
/// the proxy's own short error text.
type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Loopback-only HTTP proxy adding `Authorization: Bearer <credential>`.
#[derive(Parser)]
#[command(name = "ewii-bearer-proxy", version)]
struct Cli {
    /// Loopback address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Loopback address of the upstream HTTP server (e.g. the hub's --http address).
    #[arg(long)]
    upstream: SocketAddr,
    /// File whose first line is the bearer credential (mode 0600 or stricter).
    #[arg(long, value_name = "FILE")]
    credential_file: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    require_loopback(cli.listen, "--listen")?;
    require_loopback(cli.upstream, "--upstream")?;
    let authorization = read_credential(&cli.credential_file)?;
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let local = listener.local_addr().context("listener address")?;
    // The runner waits for this line before starting the suite.
    println!("listening http://{local}");
    tracing::info!(%local, upstream = %cli.upstream, "forwarding with the bearer credential");
    serve(listener, cli.upstream, authorization).await
}

/// Refuses any address that is not loopback (127.0.0.0/8, ::1).
fn require_loopback(addr: SocketAddr, flag: &str) -> Result<()> {
    if !addr.ip().is_loopback() {
        bail!(
            "{flag} {addr} is not a loopback address: this fixture holds a credential and serves loopback only"
        );
    }
    Ok(())
}

/// The `Authorization` value built from the credential file's first line.
fn read_credential(path: &Path) -> Result<HeaderValue> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} is readable by group or others (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let credential = text.lines().next().unwrap_or_default().trim();
    if credential.is_empty() {
        bail!("{} holds no credential", path.display());
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {credential}"))
        .with_context(|| format!("{} holds characters a header cannot carry", path.display()))?;
    // Keeps the value out of Debug output and lets HTTP/2 encoders skip indexing it.
    value.set_sensitive(true);
    Ok(value)
}

/// Accepts connections on `listener` forever, each request forwarded to
/// `upstream` with `authorization`.
async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    authorization: HeaderValue,
) -> Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the others.
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let authorization = authorization.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let authorization = authorization.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        forward(request, upstream, authorization).await,
                    )
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "client connection ended");
            }
        });
    }
}

/// One request: headers rewritten, sent on a fresh upstream connection, the
/// response streamed back. Upstream failures become 502.
async fn forward(
    request: Request<Incoming>,
    upstream: SocketAddr,
    authorization: HeaderValue,
) -> Response<ProxyBody> {
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    match send_upstream(request, &path, upstream, authorization).await {
        Ok(mut response) => {
            tracing::info!(%method, %path, status = response.status().as_u16(), "forwarded");
            drop_hop_by_hop(response.headers_mut());
            response.map(BodyExt::boxed)
        }
        Err(e) => {
            tracing::warn!(%method, %path, error = %format!("{e:#}"), "upstream failed");
            let body = Full::new(Bytes::from(format!(
                "ewii-bearer-proxy: upstream {upstream}: {e:#}\n"
            )))
            .map_err(|never| match never {})
            .boxed();
            let mut response = Response::new(body);
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

async fn send_upstream(
    request: Request<Incoming>,
    path: &str,
    upstream: SocketAddr,
    authorization: HeaderValue,
) -> Result<Response<Incoming>> {
    let (mut parts, body) = request.into_parts();
    drop_hop_by_hop(&mut parts.headers);
    parts.headers.insert(header::AUTHORIZATION, authorization);
    // Origin-form request target; the Host header stays the client's own.
    parts.uri = path.parse().context("request target")?;
    parts.version = hyper::Version::HTTP_11;
    let stream = TcpStream::connect(upstream).await.context("connect")?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    // Drives the connection until the response body has been read to its end.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    sender
        .send_request(Request::from_parts(parts, body))
        .await
        .context("request")
}

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1): those named by
/// `Connection`, and the fixed set. hyper frames each hop itself.
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::time::Duration;
    use tokio::sync::{mpsc, oneshot};

    #[test]
    fn only_loopback_addresses_are_accepted() {
        for ok in ["127.0.0.1:0", "127.1.2.3:80", "[::1]:8080"] {
            require_loopback(ok.parse().unwrap(), "--listen").unwrap();
        }
        for refused in ["0.0.0.0:0", "[::]:0", "192.0.2.1:80", "10.0.0.1:443"] {
            let error = require_loopback(refused.parse().unwrap(), "--listen").unwrap_err();
            assert!(
                error.to_string().contains("not a loopback"),
                "{refused}: {error}"
            );
        }
    }

    #[test]
    fn the_credential_file_must_be_private_and_non_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ewii-bearer-proxy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credential");
        std::fs::write(&file, "ewii_agent_secret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read_credential(&file).unwrap_err();
        assert!(
            error.to_string().contains("readable by group or others"),
            "{error}"
        );

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let value = read_credential(&file).unwrap();
        assert_eq!(value, "Bearer ewii_agent_secret");
        assert!(value.is_sensitive());
        assert!(
            !format!("{value:?}").contains("secret"),
            "the credential shows in Debug"
        );

        std::fs::write(&file, "  \n").unwrap();
        assert!(
            read_credential(&file)
                .unwrap_err()
                .to_string()
                .contains("no credential")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What the fake upstream saw of one request.
    struct Seen {
        path: String,
        headers: HeaderMap,
    }

    /// An upstream that reports each request's path and headers, answers
    /// `/sse` with an event stream whose second event waits for `release`,
    /// and everything else with a session header and a small body.
    async fn fake_upstream(
        seen: mpsc::UnboundedSender<Seen>,
        release: oneshot::Receiver<()>,
    ) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let release = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release)));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (seen, release) = (seen.clone(), release.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let (seen, release) = (seen.clone(), release.clone());
                        async move {
                            let path = request.uri().to_string();
                            seen.send(Seen {
                                path: path.clone(),
                                headers: request.headers().clone(),
                            })
                            .unwrap();
                            let response = if path == "/sse" {
                                let (tx, rx) = mpsc::channel::<
                                    Result<hyper::body::Frame<Bytes>, hyper::Error>,
                                >(4);
                                let release = release.lock().await.take();
                                tokio::spawn(async move {
                                    let first = hyper::body::Frame::data(Bytes::from(
                                        "id: 1\ndata: one\n\n",
                                    ));
                                    tx.send(Ok(first)).await.unwrap();
                                    if let Some(release) = release {
                                        let _ = release.await;
                                    }
                                    let second = hyper::body::Frame::data(Bytes::from(
                                        "id: 2\ndata: two\n\n",
                                    ));
                                    let _ = tx.send(Ok(second)).await;
                                });
                                let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
                                Response::builder()
                                    .header("content-type", "text/event-stream")
                                    .body(body.boxed())
                                    .unwrap()
                            } else {
                                Response::builder()
                                    .header("mcp-session-id", "session-7")
                                    .header("connection", "keep-alive, x-upstream-hop")
                                    .header("x-upstream-hop", "1")
                                    .body(
                                        Full::new(Bytes::from("ok"))
                                            .map_err(|never| match never {})
                                            .boxed(),
                                    )
                                    .unwrap()
                            };
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    /// A `Stream` over an mpsc receiver.
    fn tokio_stream_from<T>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// Starts the proxy on a free loopback port in front of `upstream`.
    async fn start_proxy(upstream: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut authorization = HeaderValue::from_static("Bearer ewii_agent_secret");
        authorization.set_sensitive(true);
        tokio::spawn(serve(listener, upstream, authorization));
        addr
    }

    async fn client(proxy: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        let stream = TcpStream::connect(proxy).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        sender
    }

    #[tokio::test]
    async fn adds_the_bearer_and_forwards_everything_else_unchanged() {
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        let (_release, release_rx) = oneshot::channel();
        let proxy = start_proxy(fake_upstream(seen_tx, release_rx).await).await;

        let request = Request::post("/mcp?x=1")
            .header("host", "evil.example.com")
            .header("origin", "http://evil.example.com")
            .header("authorization", "Bearer caller-supplied")
            .header("mcp-session-id", "session-7")
            .header("mcp-protocol-version", "2025-11-25")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "dropped")
            .header("proxy-authorization", "Basic dropped")
            .body(Full::new(Bytes::from("{}")))
            .unwrap();
        let response = client(proxy).await.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["mcp-session-id"], "session-7");
        assert!(
            response.headers().get("x-upstream-hop").is_none(),
            "a hop-by-hop response header passed"
        );
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "ok"
        );

        let seen = seen_rx.recv().await.unwrap();
        assert_eq!(seen.path, "/mcp?x=1");
        let h = &seen.headers;
        assert_eq!(
            h["authorization"], "Bearer ewii_agent_secret",
            "the caller's own Authorization passed"
        );
        assert_eq!(h.get_all("authorization").iter().count(), 1);
        assert_eq!(
            h["host"], "evil.example.com",
            "Host must reach the upstream as the client sent it"
        );
        assert_eq!(h["origin"], "http://evil.example.com");
        assert_eq!(h["mcp-session-id"], "session-7");
        assert_eq!(h["mcp-protocol-version"], "2025-11-25");
        for hop in ["x-hop", "proxy-authorization", "connection"] {
            assert!(h.get(hop).is_none(), "{hop} reached the upstream");
        }
    }

    #[tokio::test]
    async fn event_streams_are_relayed_as_they_come() {
        let (seen_tx, _seen_rx) = mpsc::unbounded_channel();
        let (release, release_rx) = oneshot::channel();
        let proxy = start_proxy(fake_upstream(seen_tx, release_rx).await).await;

        let request = Request::get("/sse")
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client(proxy).await.send_request(request).await.unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.into_body();
        // The upstream holds its second event until the first arrived here: a
        // buffering proxy would hang on this read.
        let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(first.into_data().unwrap(), "id: 1\ndata: one\n\n");
        release.send(()).unwrap();
        let rest = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest.to_bytes(), "id: 2\ndata: two\n\n");
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_502() {
        // A port that was free a moment ago: nothing listens there.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = start_proxy(closed).await;
        let request = Request::get("/mcp")
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client(proxy).await.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            !String::from_utf8_lossy(&text).contains("secret"),
            "the 502 shows the credential"
        );
    }
}
