//! The hub's QUIC port: one listener hands out enrolments and tunnels, and
//! does all the transport work before either exists.
//!
//! [`HubListener::bind`] builds the hub's TLS and QUIC configuration (the
//! SVID verifier judging client certificates; tunnels and, optionally,
//! enrolment on the same port). For each connection attempt it:
//!
//! - refuses it when [`ListenerConfig::max_handshakes`] connections are
//!   already in their handshake ([`ListenerEvent::TooManyHandshakes`]);
//! - closes it unless TLS and then the app-layer handshake (or the
//!   enrolment exchange, answer included) finish within
//!   [`ListenerConfig::handshake_timeout`]
//!   ([`ListenerEvent::HandshakeDeadline`]);
//! - dispatches on ALPN: `ewii-enrol/1` becomes [`Accepted::Enrol`],
//!   `ewii/1` runs the app-layer handshake under the name the client dialled
//!   (its SNI, or the local address for an IP literal, among
//!   [`ListenerConfig::names`]) and becomes [`Accepted::Tunnel`]; a refused
//!   handshake is [`ListenerEvent::HandshakeFailed`] with its reason.
//!
//! What an unauthenticated peer can make the hub hold is bounded by the
//! handshake permits times the per-connection windows of
//! [`crate::config::hub_transport`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ewii_wire::enrol::{self, ENROL_ALPN, EnrolRequest, EnrolResponse};
use ewii_wire::handshake::{Credentials, HubConfig};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use crate::close::close_code;
use crate::config::{HANDSHAKE_TIMEOUT, hub_config};
use crate::hub_tunnel::{HubTunnel, TlsBinding};
use crate::stream_io::read_handshake_frame;
use crate::{KeyMaterial, NetError, SvidVerifier};

/// Something the listener did that a hub counts (its metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerEvent {
    /// A connection attempt was refused: `max_handshakes` connections were
    /// already in their handshake.
    TooManyHandshakes,
    /// A connection did not complete its handshake (TLS, the app layer, or
    /// its enrolment) in time and was closed.
    HandshakeDeadline,
    /// A connection's TLS handshake failed (the SVID verifier counts and
    /// logs its own refusals by reason: [`SvidVerifier::refusals`]).
    TlsHandshakeFailed,
    /// A tunnel's app-layer handshake was refused; the stable reason code
    /// ([`NetError::reason`]). TLS-layer refusals are the SVID verifier's
    /// to count ([`SvidVerifier::refusals`]).
    HandshakeFailed(&'static str),
}

/// Receives the listener's [`ListenerEvent`]s.
pub trait ListenerEvents: Send + Sync {
    /// One event; called from the listener's tasks, must not block.
    fn record(&self, event: ListenerEvent);
}

/// How a [`HubListener`] runs.
#[derive(Clone)]
pub struct ListenerConfig {
    /// The hub's certificate chain and key: its TLS identity and its
    /// app-layer credentials.
    pub keys: KeyMaterial,
    /// The names clients dial (DNS names or IP literals), the first being
    /// the default; the certificate must carry them all.
    pub names: Vec<String>,
    /// Judges client SVIDs, in TLS and in the app layer.
    pub verifier: Arc<SvidVerifier>,
    /// Whether a TLS-terminating relay sits in front of the port.
    pub binding: TlsBinding,
    /// Whether enrolment connections (ALPN `ewii-enrol/1`) are accepted.
    pub enrolment: bool,
    /// Most connections in their handshake at once.
    pub max_handshakes: usize,
    /// The longest a connection may take from its first packet to a
    /// completed app-layer handshake (or a completed enrolment).
    pub handshake_timeout: Duration,
    /// Where events go, if anywhere.
    pub events: Option<Arc<dyn ListenerEvents>>,
}

impl std::fmt::Debug for ListenerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerConfig")
            .field("names", &self.names)
            .field("binding", &self.binding)
            .field("enrolment", &self.enrolment)
            .field("max_handshakes", &self.max_handshakes)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl ListenerConfig {
    /// Tunnels only, [`TlsBinding::Strict`], 256 handshakes at once, 10 s
    /// to complete one, no events.
    pub fn new(keys: KeyMaterial, names: Vec<String>, verifier: Arc<SvidVerifier>) -> Self {
        ListenerConfig {
            keys,
            names,
            verifier,
            binding: TlsBinding::Strict,
            enrolment: false,
            max_handshakes: 256,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            events: None,
        }
    }
}

/// What the listener hands out.
pub enum Accepted {
    /// An enrolment request, waiting for its answer.
    Enrol(EnrolExchange),
    /// A tunnel whose app-layer handshake succeeded.
    Tunnel(HubTunnel),
}

/// What every connection task shares.
struct Shared {
    credentials: Credentials,
    names: Vec<String>,
    verifier: Arc<SvidVerifier>,
    binding: TlsBinding,
    handshake_timeout: Duration,
    events: Option<Arc<dyn ListenerEvents>>,
}

impl Shared {
    fn record(&self, event: ListenerEvent) {
        if let Some(events) = &self.events {
            events.record(event);
        }
    }

    /// The name this connection dialled: its SNI, or for an IP literal
    /// (no SNI) the address it arrived on; the first name otherwise.
    fn name_for(&self, conn: &quinn::Connection) -> String {
        let sni = conn
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.server_name);
        let candidates = sni
            .into_iter()
            .chain(conn.local_ip().map(|ip| ip.to_string()));
        for c in candidates {
            if self.names.contains(&c) {
                return c;
            }
        }
        self.names[0].clone()
    }

    /// Closes a connection that missed its handshake deadline.
    fn missed_deadline(&self, conn: &quinn::Connection, what: &str) {
        self.record(ListenerEvent::HandshakeDeadline);
        tracing::warn!(
            remote = %conn.remote_address(),
            "{what} not completed within {:?}; connection closed",
            self.handshake_timeout
        );
        conn.close(close_code::HANDSHAKE.into(), b"handshake deadline");
    }
}

/// The hub's QUIC port.
pub struct HubListener {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    accepted: Mutex<mpsc::Receiver<Accepted>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for HubListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubListener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl HubListener {
    /// Listens on UDP `addr` (port 0: any free port) and starts accepting.
    /// Needs a tokio runtime.
    pub fn bind(addr: SocketAddr, config: ListenerConfig) -> Result<HubListener, NetError> {
        if config.names.is_empty() {
            return Err(NetError::Tls(
                "the listener needs at least one name clients dial".into(),
            ));
        }
        let server = hub_config(&config.keys, config.verifier.clone(), config.enrolment)?;
        let endpoint = quinn::Endpoint::server(server, addr).map_err(NetError::Socket)?;
        let local_addr = endpoint.local_addr().map_err(NetError::Socket)?;
        let shared = Arc::new(Shared {
            credentials: config.keys.credentials()?,
            names: config.names,
            verifier: config.verifier,
            binding: config.binding,
            handshake_timeout: config.handshake_timeout,
            events: config.events,
        });
        let (tx, rx) = mpsc::channel(64);
        let handshakes = Arc::new(Semaphore::new(config.max_handshakes));
        let task = tokio::spawn(accept_loop(endpoint.clone(), shared, handshakes, tx));
        Ok(HubListener {
            endpoint,
            local_addr,
            accepted: Mutex::new(rx),
            task,
        })
    }

    /// Where the listener is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next enrolment or tunnel; `None` once the listener is closed.
    pub async fn accept(&self) -> Option<Accepted> {
        self.accepted.lock().await.recv().await
    }

    /// Closes every connection and the port, and waits (up to 2 s) for the
    /// closes to reach the peers.
    pub async fn close(&self, reason: &str) {
        self.task.abort();
        self.endpoint
            .close(close_code::DONE.into(), reason.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

impl Drop for HubListener {
    fn drop(&mut self) {
        self.task.abort();
        self.endpoint
            .close(close_code::DONE.into(), b"hub stopping");
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    handshakes: Arc<Semaphore>,
    tx: mpsc::Sender<Accepted>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            shared.record(ListenerEvent::TooManyHandshakes);
            tracing::debug!(remote = %incoming.remote_address(), "too many handshakes in progress; connection refused");
            incoming.refuse();
            continue;
        };
        tokio::spawn(connection(incoming, permit, shared.clone(), tx.clone()));
    }
}

/// One connection: TLS, then enrolment or the app-layer handshake, all
/// within the handshake deadline, holding `permit` until the peer is
/// authenticated (or its enrolment is answered).
async fn connection(
    incoming: quinn::Incoming,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Accepted>,
) {
    let remote = incoming.remote_address();
    let deadline = Instant::now() + shared.handshake_timeout;
    let conn = match tokio::time::timeout_at(deadline, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            // The SVID verifier counted and logged its refusals.
            shared.record(ListenerEvent::TlsHandshakeFailed);
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            // Dropping the handshake closes the connection.
            shared.record(ListenerEvent::HandshakeDeadline);
            tracing::debug!(%remote, "TLS handshake not completed in time");
            return;
        }
    };
    if alpn_of(&conn).as_deref() == Some(ENROL_ALPN) {
        match tokio::time::timeout_at(deadline, EnrolExchange::read(conn.clone())).await {
            Ok(Ok((request, send))) => {
                let exchange = EnrolExchange {
                    conn,
                    send,
                    request,
                    deadline,
                    shared,
                    _permit: permit,
                };
                let _ = tx.send(Accepted::Enrol(exchange)).await;
            }
            Ok(Err(e)) => tracing::warn!(%remote, error = %e, "enrolment request unreadable"),
            Err(_) => shared.missed_deadline(&conn, "enrolment"),
        }
        return;
    }
    let config = HubConfig {
        credentials: shared.credentials.clone(),
        name: shared.name_for(&conn),
        client_verifier: shared.verifier.clone(),
    };
    let established = tokio::time::timeout_at(
        deadline,
        HubTunnel::establish(conn.clone(), &config, shared.binding),
    )
    .await;
    drop(permit);
    match established {
        Ok(Ok(tunnel)) => {
            let _ = tx.send(Accepted::Tunnel(tunnel)).await;
        }
        Ok(Err(e)) => {
            shared.record(ListenerEvent::HandshakeFailed(e.reason()));
            tracing::warn!(%remote, reason = e.reason(), error = %e, "tunnel refused");
        }
        Err(_) => shared.missed_deadline(&conn, "the app-layer handshake"),
    }
}

/// The ALPN protocol a connection settled on.
fn alpn_of(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// The hub's side of an enrolment connection: the client's request, and
/// where the answer goes. It holds its connection's handshake permit and
/// deadline until answered.
pub struct EnrolExchange {
    conn: quinn::Connection,
    send: quinn::SendStream,
    request: EnrolRequest,
    deadline: Instant,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for EnrolExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolExchange")
            .field("remote", &self.conn.remote_address())
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl EnrolExchange {
    /// Reads the client's one request (within [`HANDSHAKE_TIMEOUT`]).
    async fn read(conn: quinn::Connection) -> Result<(EnrolRequest, quinn::SendStream), NetError> {
        let read = async {
            let (send, mut recv) = conn.accept_bi().await?;
            let frame = read_handshake_frame(&mut recv).await?;
            Ok::<_, NetError>((enrol::decode::<EnrolRequest>(&frame.body)?, send))
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, read).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                conn.close(close_code::PROTOCOL.into(), e.reason().as_bytes());
                Err(e)
            }
            Err(_) => {
                conn.close(close_code::HANDSHAKE.into(), b"timeout");
                Err(NetError::Timeout("enrolment request"))
            }
        }
    }

    /// The client's request.
    pub fn request(&self) -> &EnrolRequest {
        &self.request
    }

    /// Where the client's packets come from.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Runs `work` (the hub deciding its answer) within the connection's
    /// handshake deadline; past it the connection is closed and counted
    /// ([`ListenerEvent::HandshakeDeadline`]) and this fails with
    /// [`NetError::Timeout`].
    pub async fn within_deadline<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, NetError> {
        tokio::time::timeout_at(self.deadline, work)
            .await
            .map_err(|_| {
                self.shared.missed_deadline(&self.conn, "enrolment");
                NetError::Timeout("enrolment")
            })
    }

    /// Sends the answer and lets the client close the connection, all
    /// within the handshake deadline.
    pub async fn answer(mut self, response: &EnrolResponse) -> Result<(), NetError> {
        let frame = enrol::encode_frame(response)?;
        let deadline = self.deadline;
        let send = async {
            self.send.write_all(&frame).await?;
            let _ = self.send.finish();
            // The client closes once it has read the answer.
            let _ = self.conn.closed().await;
            Ok::<_, NetError>(())
        };
        match tokio::time::timeout_at(deadline, send).await {
            Ok(sent) => sent,
            Err(_) => {
                self.shared.missed_deadline(&self.conn, "enrolment");
                Err(NetError::Timeout("enrolment answer"))
            }
        }
    }
}
