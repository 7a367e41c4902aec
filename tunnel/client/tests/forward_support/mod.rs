//! Helpers for the forwarding tests: a real `ewii-adapter` served in-process
//! on TCP and a unix socket, a scripted fake adapter for what the real one
//! never does, and JSON-RPC conveniences.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ewii_adapter::local_credential::LocalCredential;
use ewii_adapter::serve::{HttpOptions, bind_unix, serve_tcp, serve_unix};
use ewii_adapter::server::Adapter;
use ewii_client::forward::{AdapterCredential, AdapterLink, Destination, ForwardError};
use ewii_driver_core::{DatabaseConfig, Limits, SecretString};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

// Linking the driver is what registers it (`inventory`); name it so the
// registration cannot be dropped from this test binary.
use ewii_driver_sqlite as _;

/// How long any single exchange with the adapter may take in a test.
pub const STEP: Duration = Duration::from_secs(10);

/// The local credential every [`TestAdapter::start`] adapter requires (a
/// test about a different one starts its adapter with
/// [`TestAdapter::start_with`]).
pub const CREDENTIAL: &str = "ewii_local_TestCredentialOfEveryTunnelTestAdapter00000";

/// [`CREDENTIAL`] as the adapter holds it.
pub fn adapter_credential() -> LocalCredential {
    LocalCredential::parse(CREDENTIAL, Path::new("CREDENTIAL")).unwrap()
}

/// [`CREDENTIAL`] as a client holds it.
pub fn client_credential() -> AdapterCredential {
    AdapterCredential::new(CREDENTIAL).unwrap()
}

/// A link presenting [`CREDENTIAL`].
pub fn link(destination: Destination) -> AdapterLink {
    AdapterLink::new(destination, Some(client_credential()))
}

/// Writes [`CREDENTIAL`] to `dir/local-credential` (mode 0600) for an
/// `ewii-client` binary's --adapter-credential-file.
pub fn credential_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("local-credential");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, format!("{CREDENTIAL}\n").as_bytes()).unwrap();
    path
}

/// A real adapter, in-process, on TCP and on a unix socket at once.
pub struct TestAdapter {
    pub adapter: Arc<Adapter>,
    pub dir: tempfile::TempDir,
    pub tcp: Destination,
    pub unix: Destination,
    cancel: CancellationToken,
}

impl TestAdapter {
    /// Serves one SQLite database named `shop` to callers presenting
    /// [`CREDENTIAL`].
    pub async fn start() -> TestAdapter {
        TestAdapter::start_with(Some(adapter_credential())).await
    }

    /// Like [`TestAdapter::start`], requiring `credential` instead (`None`:
    /// serving no HTTP caller).
    pub async fn start_with(credential: Option<LocalCredential>) -> TestAdapter {
        let options = HttpOptions {
            credential,
            ..HttpOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let shop = dir.path().join("shop.db");
        make_shop_db(&shop).await;
        let (adapter, change) = Adapter::new(vec![sqlite_config("shop", &shop)]).await;
        assert!(change.failed.is_empty(), "{:?}", change.failed);
        let cancel = CancellationToken::new();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = Destination::Tcp(listener.local_addr().unwrap());
        tokio::spawn({
            let (adapter, cancel, options) = (adapter.clone(), cancel.clone(), options.clone());
            async move {
                serve_tcp(adapter, listener, &options, cancel)
                    .await
                    .unwrap()
            }
        });

        let socket = dir.path().join("adapter.sock");
        let listener = bind_unix(&socket).unwrap();
        let unix = Destination::Unix(socket.clone());
        tokio::spawn({
            let (adapter, cancel) = (adapter.clone(), cancel.clone());
            async move {
                serve_unix(adapter, listener, &socket, &options, cancel)
                    .await
                    .unwrap()
            }
        });

        TestAdapter {
            adapter,
            dir,
            tcp,
            unix,
            cancel,
        }
    }

    /// Attaches a second database, `sales`, next to `shop`.
    pub async fn attach_sales(&self) {
        let sales = self.dir.path().join("sales.db");
        make_shop_db(&sales).await;
        let change = self
            .adapter
            .apply(vec![
                sqlite_config("shop", &self.dir.path().join("shop.db")),
                sqlite_config("sales", &sales),
            ])
            .await;
        assert!(change.tools_changed(), "{change:?}");
    }
}

impl Drop for TestAdapter {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub fn sqlite_config(name: &str, path: &Path) -> DatabaseConfig {
    DatabaseConfig {
        name: name.into(),
        driver: "sqlite".into(),
        url: SecretString::new(format!("sqlite://{}", path.display())),
        read_only: true,
        limits: Limits::default(),
    }
}

pub async fn make_shop_db(path: &Path) {
    ewii_driver_sqlite::testdata::customers_db(path)
        .await
        .unwrap();
}

pub fn initialize(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "ewii-hub-test", "version": "1"}}})
}

pub fn initialized() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}

pub fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// What a relay of one message produced, with the bytes that travelled.
pub struct Relayed {
    pub messages: Vec<Value>,
    pub sent: usize,
    pub received: usize,
}

/// Sends `message` and collects every reply until the response ends.
pub async fn relay(link: &AdapterLink, message: &Value) -> Result<Relayed, ForwardError> {
    let body = Bytes::from(serde_json::to_vec(message).unwrap());
    let sent = body.len();
    let mut rx = tokio::time::timeout(STEP, link.send(body))
        .await
        .expect("the adapter answers in time")?;
    let mut messages = Vec::new();
    let mut received = 0;
    loop {
        match tokio::time::timeout(STEP, rx.recv())
            .await
            .expect("the response ends in time")
        {
            None => break,
            Some(Ok(m)) => {
                received += m.len();
                messages.push(serde_json::from_slice(&m).expect("a JSON message"));
            }
            Some(Err(e)) => return Err(e),
        }
    }
    Ok(Relayed {
        messages,
        sent,
        received,
    })
}

/// The only reply to a request, asserted to answer `id`.
pub async fn call(link: &AdapterLink, message: &Value) -> Value {
    let relayed = relay(link, message).await.unwrap();
    assert_eq!(relayed.messages.len(), 1, "{:?}", relayed.messages);
    let reply = relayed.messages.into_iter().next().unwrap();
    assert_eq!(reply["id"], message["id"], "{reply}");
    reply
}

/// One request as a scripted fake adapter saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub head: String,
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// A fake adapter on TCP that answers connection `i` with `replies[i]` (raw
/// HTTP/1.1 bytes, written then the connection closed) and records each
/// request. For behaviour the real adapter never shows.
pub struct FakeAdapter {
    pub destination: Destination,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl FakeAdapter {
    pub async fn start(replies: Vec<Vec<u8>>) -> FakeAdapter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let destination = Destination::Tcp(listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for reply in replies {
                let (mut s, _) = listener.accept().await.unwrap();
                let request = read_request(&mut s).await;
                log.lock().unwrap().push(request);
                // The client may hang up early (that is what some tests
                // check); a failed write is expected then.
                let _ = s.write_all(&reply).await;
                let _ = s.shutdown().await;
            }
        });
        FakeAdapter { destination, seen }
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

pub async fn read_request(s: &mut tokio::net::TcpStream) -> SeenRequest {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the client closed before sending a request head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut request = SeenRequest {
        head,
        body: buf[head_end..].to_vec(),
    };
    let length: usize = request
        .header("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    while request.body.len() < length {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the client closed mid-body");
        request.body.extend_from_slice(&chunk[..n]);
    }
    request
}

/// A raw HTTP/1.1 response with a body and `Content-Length`.
pub fn http_reply(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A raw HTTP/1.1 response whose body runs until the connection closes.
pub fn http_reply_until_close(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n")
            .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Sends a raw `DELETE /mcp` for `session` to a TCP adapter, as if the
/// adapter had ended the session on its own (restart, idle expiry).
pub async fn delete_session_behind_the_links_back(destination: &Destination, session: &str) {
    let Destination::Tcp(addr) = destination else {
        panic!("TCP only")
    };
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "DELETE /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {CREDENTIAL}\r\nMcp-Session-Id: {session}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(STEP, s.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 2"), "{response}");
}

/// A path under `dir` for sockets nobody listens on.
pub fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// How long the hub side of a test waits for a tunnel's replies.
pub const REPLY_WAIT: Duration = Duration::from_secs(15);

/// Sends one message through `tunnel` (to `route`, if any) and collects
/// the replies.
pub async fn exchange(
    tunnel: &ewii_quic::HubTunnel,
    route: Option<&str>,
    message: &Value,
) -> Vec<ewii_wire::receipt::Reply> {
    let mut rx = tunnel
        .request(route, &serde_json::to_vec(message).unwrap())
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(r) = tokio::time::timeout(REPLY_WAIT, rx.recv())
        .await
        .expect("reply in time")
    {
        out.push(r.unwrap());
    }
    out
}

/// One request through `tunnel`, whose single reply is returned as JSON.
pub async fn call_through(tunnel: &ewii_quic::HubTunnel, message: &Value) -> Value {
    let replies = exchange(tunnel, None, message).await;
    match replies.as_slice() {
        [ewii_wire::receipt::Reply::Message { message: m, .. }] => {
            serde_json::from_slice(m).unwrap()
        }
        other => panic!("expected one message, got {other:?}"),
    }
}
