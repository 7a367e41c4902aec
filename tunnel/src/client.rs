//! The client runtime behind `ewii-client run`: keep one outbound tunnel to
//! the hub up, and forward each request the hub sends to an allow-listed
//! MCP adapter endpoint, and nothing else.
//!
//! - Dials out only: the QUIC endpoint binds an ephemeral port and never
//!   accepts connections.
//! - Reconnects after any loss with exponential backoff and jitter, so a
//!   hub restart does not meet every client at the same instant.
//! - Every forward, refusal, tunnel up and tunnel down goes to the JSON-lines
//!   connection log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

use crate::connlog::{ConnectionLog, ConnectionRecord};
use crate::forward::{AdapterLink, AllowList, Destination};
use crate::handshake::{ClientConfig, HubCertVerifier, HubTrustError};
use crate::net::{self, ClientTunnel, IncomingRequest, KeyMaterial, NetError};

/// Everything `ewii-client run` needs.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The hub's address, `HOST:PORT` (resolved again on each attempt).
    pub hub: String,
    /// The name the hub must prove (defaults to the host of `hub`).
    pub hub_name: String,
    /// The hub CA: the hub's app-layer identity must chain to it.
    pub hub_ca: Vec<CertificateDer<'static>>,
    /// What the TLS layer trusts, when a TLS-terminating relay sits in
    /// front of the hub; by default the hub CA.
    pub tls_ca: Option<Vec<CertificateDer<'static>>>,
    /// The SVID and its key.
    pub keys: KeyMaterial,
    /// Where requests may be forwarded.
    pub allow: AllowList,
    /// Where the connection log goes.
    pub log: Option<Arc<ConnectionLog>>,
}

/// Errors that stop the client (everything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The SVID cannot be used.
    #[error("the SVID is not usable: {0}")]
    Svid(String),
    /// The hub CA or name is unusable.
    #[error(transparent)]
    HubTrust(#[from] HubTrustError),
    /// Local network setup failed.
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    /// Configuration of TLS or QUIC failed.
    #[error(transparent)]
    Net(#[from] NetError),
}

/// Exponential backoff with jitter: `base × 2^attempt`, capped, then scaled
/// by a random factor in [0.5, 1.0] so that clients cut off together do
/// not come back together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `base` up to `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }

    /// The next delay; `unit` is a uniform random number in [0, 1).
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        exp.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// After a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn random_unit() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    f64::from(u32::from_be_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// The running client.
pub struct Client {
    options: ClientOptions,
    identity: String,
    app_verifier: Arc<HubCertVerifier>,
    quic: quinn::ClientConfig,
}

impl Client {
    /// Checks the SVID, the hub CA and the TLS setup once, up front, so a
    /// configuration mistake fails at start with a clear message.
    pub fn new(options: ClientOptions) -> Result<Client, ClientError> {
        let leaf = options
            .keys
            .chain
            .first()
            .ok_or_else(|| ClientError::Svid("the certificate file is empty".into()))?;
        let identity = crate::svid::check_leaf(leaf)
            .map_err(|e| ClientError::Svid(e.to_string()))?
            .id
            .to_string();
        let app_verifier = Arc::new(HubCertVerifier::new(&options.hub_ca, &options.hub_name)?);
        let tls_verifier = match &options.tls_ca {
            Some(roots) => HubCertVerifier::new(roots, &options.hub_name)?.tls(),
            None => app_verifier.tls(),
        };
        let quic = net::client_config(&options.keys, tls_verifier)?;
        Ok(Client {
            options,
            identity,
            app_verifier,
            quic,
        })
    }

    /// The client's own SPIFFE ID.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn log(&self, record: ConnectionRecord) {
        if let Some(log) = &self.options.log {
            log.record(&record);
        }
    }

    async fn resolve(&self) -> Result<SocketAddr, NetError> {
        tokio::net::lookup_host(&self.options.hub)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                NetError::Protocol(format!(
                    "cannot resolve the hub address {}",
                    self.options.hub
                ))
            })
    }

    async fn connect(&self, endpoint: &quinn::Endpoint) -> Result<ClientTunnel, NetError> {
        let addr = self.resolve().await?;
        let credentials = self.options.keys.credentials()?;
        let config = ClientConfig {
            credentials,
            identity: self.identity.clone(),
            hub_name: self.options.hub_name.clone(),
            hub_verifier: self.app_verifier.clone(),
        };
        ClientTunnel::connect(endpoint, self.quic.clone(), addr, config).await
    }

    /// Keeps the tunnel up until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), ClientError> {
        let this = Arc::new(self);
        // Outbound only: an ephemeral local port, no server config, so the
        // endpoint refuses every incoming connection.
        let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
        let endpoint = quinn::Endpoint::client(bind).map_err(ClientError::Socket)?;
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        while !cancel.is_cancelled() {
            let attempt_at = Instant::now();
            match this.connect(&endpoint).await {
                Ok(tunnel) => {
                    backoff.reset();
                    tracing::info!(hub = %this.options.hub, identity = %this.identity, "tunnel up");
                    let mut up = ConnectionRecord::now(&this.identity, "tunnel_up");
                    up.destination = Some(this.options.hub.clone());
                    this.log(up);
                    let reason = this.clone().serve(tunnel, &cancel).await;
                    tracing::warn!(%reason, "tunnel down");
                    let mut down = ConnectionRecord::now(&this.identity, "tunnel_down");
                    down.destination = Some(this.options.hub.clone());
                    down.duration_ms = attempt_at.elapsed().as_millis() as u64;
                    down.outcome = reason;
                    this.log(down);
                }
                Err(e) => {
                    tracing::warn!(hub = %this.options.hub, reason = e.reason(), error = %e, "cannot connect to the hub");
                    let mut failed = ConnectionRecord::now(&this.identity, "connect_failed");
                    failed.destination = Some(this.options.hub.clone());
                    failed.duration_ms = attempt_at.elapsed().as_millis() as u64;
                    failed.outcome = e.to_string();
                    this.log(failed);
                }
            }
            if cancel.is_cancelled() {
                break;
            }
            let delay = backoff.next_delay(random_unit());
            tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => break,
            }
        }
        endpoint.close(net::close_code::DONE.into(), b"client stopping");
        // Let the close reach the hub.
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        Ok(())
    }

    /// Serves one tunnel until it closes; returns why it ended.
    async fn serve(self: Arc<Self>, tunnel: ClientTunnel, cancel: &CancellationToken) -> String {
        let tunnel = Arc::new(tunnel);
        // A new hub session starts new MCP sessions with the adapters.
        let links: Arc<HashMap<Destination, Arc<AdapterLink>>> = Arc::new(
            self.options
                .allow
                .iter()
                .map(|d| (d.clone(), Arc::new(AdapterLink::new(d.clone()))))
                .collect(),
        );
        let session_cancel = cancel.child_token();
        let listening = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let reason = loop {
            tokio::select! {
                next = tunnel.next_request() => match next {
                    Some(Ok(request)) => {
                        let this = self.clone();
                        let links = links.clone();
                        let tunnel = tunnel.clone();
                        let listening = listening.clone();
                        let session_cancel = session_cancel.clone();
                        tokio::spawn(async move {
                            this.forward(request, &links, &tunnel, &listening, &session_cancel).await;
                        });
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "request stream refused");
                        if matches!(e, NetError::Session(_) | NetError::Stream(_)) {
                            tunnel.connection().close(net::close_code::PROTOCOL.into(), b"stream refused");
                        }
                    }
                    None => {
                        break tunnel
                            .connection()
                            .close_reason()
                            .map(|r| r.to_string())
                            .unwrap_or_else(|| "closed".into());
                    }
                },
                _ = cancel.cancelled() => {
                    tunnel.close("client stopping");
                    break "client stopping".into();
                }
            }
        };
        session_cancel.cancel();
        for link in links.values() {
            link.close().await;
        }
        reason
    }

    /// Forwards one request stream to its adapter and streams the answers
    /// back; refuses anything outside the allow-list before dialling.
    async fn forward(
        &self,
        mut request: IncomingRequest,
        links: &HashMap<Destination, Arc<AdapterLink>>,
        tunnel: &Arc<ClientTunnel>,
        listening: &Arc<std::sync::Mutex<std::collections::HashSet<Destination>>>,
        session_cancel: &CancellationToken,
    ) {
        let started = Instant::now();
        let req = match request.read().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "request stream refused");
                if matches!(e, NetError::Stream(_) | NetError::Session(_)) {
                    tunnel
                        .connection()
                        .close(net::close_code::PROTOCOL.into(), b"stream refused");
                }
                return;
            }
        };
        let mut record = ConnectionRecord::now(&self.identity, "forward");
        record.bytes_out = req.message.len() as u64;
        let destination = match &req.route {
            None => Ok(self.options.allow.default_destination().clone()),
            Some(route) => route.parse::<Destination>(),
        };
        record.destination = Some(
            req.route
                .clone()
                .unwrap_or_else(|| self.options.allow.default_destination().to_string()),
        );
        let link = destination
            .and_then(|d| self.options.allow.check(&d).map(|()| d))
            .map(|d| links.get(&d).cloned());
        let link = match link {
            Ok(Some(link)) => link,
            Ok(None) | Err(_) => {
                let why = match link {
                    Err(e) => e.to_string(),
                    _ => "destination not in the allow-list".into(),
                };
                tracing::warn!(route = ?req.route, reason = %why, "request refused");
                record.event = "refused";
                record.outcome = why.clone();
                let _ = request.refuse(&why).await;
                let _ = request.finish().await;
                record.duration_ms = started.elapsed().as_millis() as u64;
                self.log(record);
                return;
            }
        };
        let outcome = match link.send(req.message.clone()).await {
            Ok(mut answers) => {
                let mut outcome = Ok(());
                while let Some(answer) = answers.recv().await {
                    match answer {
                        Ok(message) => {
                            record.bytes_in += message.len() as u64;
                            if let Err(e) = request.reply(&message).await {
                                outcome = Err(e.to_string());
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = request.refuse(&e.to_string()).await;
                            outcome = Err(e.to_string());
                            break;
                        }
                    }
                }
                outcome
            }
            Err(e) => {
                let _ = request.refuse(&e.to_string()).await;
                Err(e.to_string())
            }
        };
        let _ = request.finish().await;
        record.duration_ms = started.elapsed().as_millis() as u64;
        if let Err(e) = outcome {
            record.outcome = e;
        }
        self.log(record);
        self.ensure_listening(&link, tunnel, listening, session_cancel);
    }

    /// Once the adapter session exists, relay its server-initiated messages
    /// (e.g. `tools/list_changed`) to the hub on the control stream.
    fn ensure_listening(
        &self,
        link: &Arc<AdapterLink>,
        tunnel: &Arc<ClientTunnel>,
        listening: &Arc<std::sync::Mutex<std::collections::HashSet<Destination>>>,
        session_cancel: &CancellationToken,
    ) {
        if link.session_id().is_none() {
            return;
        }
        {
            let mut set = listening.lock().unwrap_or_else(|p| p.into_inner());
            if !set.insert(link.destination().clone()) {
                return;
            }
        }
        let link = link.clone();
        let tunnel = tunnel.clone();
        let listening = listening.clone();
        let cancel = session_cancel.clone();
        tokio::spawn(async move {
            match link.listen().await {
                Ok(mut rx) => loop {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some(message) => {
                                let message: Bytes = message;
                                if tunnel.notify(&message).await.is_err() {
                                    break;
                                }
                            }
                            None => break,
                        },
                        _ = cancel.cancelled() => break,
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "no server-initiated stream from the adapter")
                }
            }
            listening
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(link.destination());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_is_capped_and_jittered() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let top: Vec<Duration> = (0..8).map(|_| b.next_delay(0.999_999)).collect();
        assert!(top.windows(2).all(|w| w[1] >= w[0]), "{top:?}");
        assert!(top[1] > top[0] && top[2] > top[1]);
        assert!(top.iter().all(|d| *d <= Duration::from_secs(2)), "{top:?}");
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(
            b.next_delay(0.0),
            Duration::from_millis(50),
            "jitter floor is half"
        );
        b.reset();
        assert!(b.next_delay(0.5) <= Duration::from_millis(100));
    }
}
