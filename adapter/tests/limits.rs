//! The adapter's HTTP endpoint is bounded before any MCP message is read:
//! half-sent requests are closed after the header timeout, a body over the
//! limit gets 413, and normal requests are served meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ewii_adapter::local_credential::LocalCredential;
use ewii_adapter::serve::{HttpLimits, HttpOptions, serve_tcp};
use ewii_adapter::server::Adapter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The adapter's local credential in these tests.
const CREDENTIAL: &str = "ewii_local_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// An adapter with no databases on loopback, with `limits`; callers present
/// [`CREDENTIAL`].
async fn adapter(limits: HttpLimits) -> (SocketAddr, CancellationToken) {
    let (adapter, _) = Adapter::new(Vec::new()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let credential = LocalCredential::parse(CREDENTIAL, std::path::Path::new("test")).unwrap();
    let opts = HttpOptions {
        credential: Some(credential),
        limits,
        ..HttpOptions::default()
    };
    tokio::spawn({
        let cancel = cancel.clone();
        async move { serve_tcp(adapter, listener, &opts, cancel).await.unwrap() }
    });
    (addr, cancel)
}

/// POSTs `body` to `/mcp` (declared length); status and body.
async fn post(addr: SocketAddr, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\nAuthorization: Bearer {CREDENTIAL}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"limits-test","version":"0"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_sent_requests_are_closed_after_the_header_timeout() {
    let (addr, cancel) = adapter(HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    })
    .await;
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        conns.push(s);
    }
    let started = Instant::now();
    let waits = conns.into_iter().map(|mut s| async move {
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::from(started + Duration::from_secs(10));
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    let closed = futures::future::join_all(waits).await;
    let open = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        open, 0,
        "{open} of 200 half-sent requests still open after 10 s"
    );
    let slowest = closed.iter().flatten().max().unwrap();
    println!("200 half-sent requests to the adapter: all closed, the last after {slowest:?}");
    assert!(*slowest < Duration::from_secs(6), "{slowest:?}");
    // Still serving.
    let (status, body) = post(addr, INITIALIZE).await;
    assert_eq!(status, 200, "{body}");
    cancel.cancel();
}

#[tokio::test]
async fn body_over_the_limit_gets_413() {
    let limit = 64 << 10;
    let (addr, cancel) = adapter(HttpLimits {
        max_body_bytes: limit,
        ..HttpLimits::default()
    })
    .await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"pad":"{}"}}}}"#,
        "x".repeat(limit)
    );
    let (status, body) = post(addr, &big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains(&limit.to_string()), "{body}");
    // Under the limit: served.
    let (status, body) = post(addr, INITIALIZE).await;
    assert_eq!(status, 200, "{body}");
    cancel.cancel();
}
