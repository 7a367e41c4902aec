//! Stand-ins for what the real parts never do, named as such so no suite
//! mistakes them for the hub or the adapter:
//!
//! - [`ScriptedAdapter`]: an HTTP server on TCP that answers connection
//!   `i` with the raw bytes `replies[i]` and records each request, for the
//!   adapter behaviour the real `ewii-adapter` never shows (oversized
//!   replies, `405` on `GET`, an in-band error on a `404`) and for the
//!   exact headers a client sends;
//! - [`StandInListener`]: `ewii-quic`'s hub listener with a certificate
//!   and a trust of the test's choosing, handing each tunnel to the test:
//!   for a party that is not the hub posing as one, and for answers the
//!   real hub never gives (a renewal refused as `not_renewable`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ewii_client::forward::Destination;
use ewii_quic::{Accepted, HubListener, HubTunnel, InMemoryTrust, ListenerConfig, SvidVerifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::agent::STEP;
use crate::pki::{Leaf, key_material};

/// One request as a [`ScriptedAdapter`] saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The request line and headers, as sent.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl SeenRequest {
    /// The request line.
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

/// A scripted stand-in for an adapter (see the module doc).
pub struct ScriptedAdapter {
    /// Where it listens.
    pub destination: Destination,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl ScriptedAdapter {
    /// Listens on a loopback port; answers the `i`-th connection with
    /// `replies[i]` (written, then the connection closed).
    pub async fn start(replies: Vec<Vec<u8>>) -> ScriptedAdapter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let destination = Destination::Tcp(listener.local_addr().expect("a bound address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for reply in replies {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let request = read_request(&mut s).await;
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(request);
                // The client may hang up early (that is what some tests
                // check); a failed write is expected then.
                let _ = s.write_all(&reply).await;
                let _ = s.shutdown().await;
            }
        });
        ScriptedAdapter { destination, seen }
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Reads one HTTP/1.1 request (head, and a body of its `Content-Length`).
pub async fn read_request(s: &mut tokio::net::TcpStream) -> SeenRequest {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.expect("read a request head");
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
        .map(|v| v.parse().expect("a numeric Content-Length"))
        .unwrap_or(0);
    while request.body.len() < length {
        let n = s.read(&mut chunk).await.expect("read a request body");
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

/// A stand-in on the hub's QUIC port (see the module doc); closed on drop.
pub struct StandInListener {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The listener.
    pub listener: Arc<HubListener>,
    tunnels: mpsc::Receiver<Arc<HubTunnel>>,
}

impl StandInListener {
    /// Listens on a loopback port presenting `cert` (for `names`), and
    /// verifying SVIDs with `trust`.
    pub fn start(cert: &Leaf, names: &[&str], trust: Arc<InMemoryTrust>) -> StandInListener {
        crate::agent::install_crypto_provider();
        let verifier = Arc::new(SvidVerifier::new(trust));
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        let config = ListenerConfig::new(key_material(cert), names, verifier);
        let listener = Arc::new(
            HubListener::bind("127.0.0.1:0".parse().expect("a socket address"), config)
                .expect("bind a loopback QUIC port"),
        );
        let addr = listener.local_addr();
        let (tx, tunnels) = mpsc::channel(16);
        let accepting = listener.clone();
        tokio::spawn(async move {
            while let Some(accepted) = accepting.accept().await {
                if let Accepted::Tunnel(t) = accepted
                    && tx.send(Arc::new(t)).await.is_err()
                {
                    return;
                }
            }
        });
        StandInListener {
            addr,
            listener,
            tunnels,
        }
    }

    /// The next tunnel established with it.
    pub async fn next_tunnel(&mut self) -> Arc<HubTunnel> {
        tokio::time::timeout(STEP, self.tunnels.recv())
            .await
            .expect("a tunnel reaches the stand-in in time")
            .expect("the accept loop is running")
    }
}
