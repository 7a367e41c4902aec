//! TLS on the agents' HTTP endpoint (`ewii-hub serve --http-tls-cert
//! --http-tls-key`), so `/mcp` needs no TLS-terminating proxy in front.
//!
//! - rustls with the ring provider (the tree's one crypto provider), TLS
//!   1.3 and 1.2, HTTP/1.1 by ALPN (the HTTP server speaks only that).
//! - The certificate is reloaded without a restart: on `SIGHUP`, and when
//!   either file's modification time or size changes (checked every
//!   [`RELOAD_POLL`]). A reload that fails to parse, or whose key does not
//!   match its certificate, keeps the certificate being served and logs
//!   why; new connections get the new certificate, open ones keep theirs.
//! - Handshakes run beside the accept loop, each within the header-read
//!   deadline and at most [`MAX_HANDSHAKES`] at once, so a slow or silent
//!   client holds neither the port nor other clients.
//! - A plain-HTTP request to the TLS port is refused: the connection gets a
//!   `400` naming HTTPS and is closed, before any byte of it is parsed as
//!   a request (the bearer in it has crossed the network in the clear
//!   already; the answer says so, so the operator fixes the agent's URL).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// How often the certificate files are checked for changes.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// Most TLS handshakes in progress at once; connections beyond it wait in
/// the kernel's accept queue.
pub const MAX_HANDSHAKES: usize = 256;

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The answer to plain HTTP on the TLS port.
const PLAIN_HTTP_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain\r\nconnection: close\r\ncontent-length: 63\r\n\r\n\
this port speaks HTTPS only: use https:// in the agent's URL.\r\n";

/// The agents' endpoint's TLS: the configuration and its reloadable
/// certificate.
#[derive(Debug, Clone)]
pub struct HttpTls {
    certs: Arc<ReloadingCert>,
    config: Arc<rustls::ServerConfig>,
}

impl HttpTls {
    /// Loads the certificate chain and key (PEM files); fails when either
    /// cannot be read or parsed, or the key does not match the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<HttpTls, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = load_pair(cert, key, &provider)?;
        HttpTls::serving(pair, Some((cert.to_owned(), key.to_owned())), provider)
    }

    /// Serves a certificate chain and key given as PEM text (the hub CA's
    /// own certificate for the hub's names, `--http-tls-hub-ca`): nothing
    /// to reload; a restart issues a new one.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<HttpTls, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let bad = |e: &dyn std::fmt::Display| Error::Serve(format!("--http-tls-hub-ca: {e}"));
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad(&e))?;
        let pair = CertifiedKey::from_der(chain, key, &provider).map_err(|e| bad(&e))?;
        HttpTls::serving(Arc::new(pair), None, provider)
    }

    fn serving(
        pair: Arc<CertifiedKey>,
        files: Option<(PathBuf, PathBuf)>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<HttpTls, Error> {
        let certs = Arc::new(ReloadingCert {
            current: RwLock::new(pair),
            stamp: RwLock::new(files.as_ref().and_then(|(c, k)| stamp(c, k))),
            files,
            provider: provider.clone(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Serve(format!("TLS for --http: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpTls {
            certs,
            config: Arc::new(config),
        })
    }

    /// Reloads the certificate when its files changed (or always, when
    /// `force`). Returns whether a new certificate is being served (never,
    /// for one given as PEM text).
    pub fn reload(&self, force: bool) -> Result<bool, Error> {
        self.certs.reload(force)
    }

    /// The certificate chain being served (leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.certs.current().cert.clone()
    }

    /// `listener` as a TLS listener: accepted connections (`TCP_NODELAY`
    /// on) are handshaken beside the accept loop, each within
    /// `handshake_timeout`, and handed out once they speak TLS. Stops
    /// accepting when `cancel` fires.
    pub fn listener(
        &self,
        listener: TcpListener,
        handshake_timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<TlsListener, Error> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::Serve(e.to_string()))?;
        let (tx, rx) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // EMFILE and the like: back off rather than spin.
                            tracing::debug!(error = %e, "HTTPS accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = cancel.cancelled() => return,
                };
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(handshake_timeout, handshake(acceptor, tcp));
                    match handshake.await {
                        Ok(Some(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(None) => {}
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(slot);
                });
            }
        });
        Ok(TlsListener { rx, local })
    }

    /// Reloads the certificate on `SIGHUP` and when its files change,
    /// until `cancel` (returns at once for one given as PEM text).
    pub async fn reload_on_change(self, cancel: CancellationToken) {
        let Some((cert, _)) = self.certs.files.clone() else {
            return;
        };
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<Option<()>>();
            let force = tokio::select! {
                _ = hup => true,
                _ = tokio::time::sleep(RELOAD_POLL) => false,
                _ = cancel.cancelled() => return,
            };
            match self.reload(force) {
                Ok(true) => tracing::info!(
                    cert = %cert.display(),
                    "reloaded the HTTPS certificate for /mcp"
                ),
                Ok(false) => {}
                Err(e) => tracing::error!(
                    error = %e,
                    "cannot reload the HTTPS certificate; serving the previous one"
                ),
            }
        }
    }
}

/// Reads the first byte: a TLS handshake goes on to rustls, anything else
/// (plain HTTP) is answered with [`PLAIN_HTTP_REFUSAL`] and closed.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    mut tcp: TcpStream,
) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(1) => {
            tracing::debug!("plain HTTP on the HTTPS port: refused");
            let _ = tcp.write_all(PLAIN_HTTP_REFUSAL).await;
            let _ = tcp.shutdown().await;
            return None;
        }
        _ => return None,
    }
    match acceptor.accept(tcp).await {
        Ok(tls) => Some(tls),
        Err(e) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
    }
}

/// Connections that completed their TLS handshake, for
/// `ewii_mcp::serve_http`.
#[derive(Debug)]
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (cancelled): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The files' modification times and sizes, to notice a change.
type Stamp = Option<[(SystemTime, u64); 2]>;

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    Some([one(cert)?, one(key)?])
}

#[derive(Debug)]
struct ReloadingCert {
    /// The certificate chain and key files, when they are files.
    files: Option<(PathBuf, PathBuf)>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: RwLock<Stamp>,
}

impl ReloadingCert {
    fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn reload(&self, force: bool) -> Result<bool, Error> {
        let Some((cert, key)) = &self.files else {
            return Ok(false);
        };
        let now = stamp(cert, key);
        let mut seen = self.stamp.write().unwrap_or_else(|p| p.into_inner());
        if !force && now == *seen {
            return Ok(false);
        }
        // Remember the attempt either way: a broken file is reported once,
        // not every poll; fixing it changes the stamp again.
        *seen = now;
        let fresh = load_pair(cert, key, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, Error> {
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        Error::Serve(format!("--http-tls: {}: {e}", what.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if chain.is_empty() {
        return Err(bad(cert, &"no PEM certificate in it"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    // from_der also checks the key matches the leaf certificate.
    let pair = CertifiedKey::from_der(chain, key_der, provider).map_err(|e| bad(key, &e))?;
    Ok(Arc::new(pair))
}
