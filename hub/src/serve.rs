//! `ewii-hub serve`: tunnels and enrolment on one QUIC port, the agents'
//! MCP endpoint, `/healthz` and `/metrics` on HTTP.
//!
//! - **QUIC** (ALPN `ewii/1`): a deployment's tunnel. TLS verifies the
//!   SVID against the trust bundle of the workspace its SPIFFE ID names
//!   ([`StoreTrust`]); the app-layer handshake proves it again end to end.
//!   The hub then opens an MCP session with the deployment's adapter
//!   through the tunnel, lists its tools and registers the deployment.
//!   Renewal requests arrive on the tunnel's control stream; a session
//!   whose newest SVID expires is closed.
//! - **QUIC** (ALPN `ewii-enrol/1`, no client certificate): enrolment. A
//!   single-use token and a CSR in, a 24 h SVID and the workspace bundle
//!   out.
//! - **HTTP** `/mcp`: MCP streamable HTTP for agents, bearer credential on
//!   every request ([`crate::agents`]). `/healthz`, `/metrics`.
//!
//! Bounded before authentication, so no client can hold the hub:
//! - QUIC: at most [`ServeOptions::max_handshakes`] connections in their
//!   handshake at once (more are refused), each closed unless TLS and the
//!   app-layer handshake (or its enrolment) finish within
//!   [`ServeOptions::handshake_timeout`]; until then a peer may open one
//!   stream and have two handshake frames in flight
//!   ([`ewii_tunnel::net::hub_transport`]).
//! - HTTP: request headers within [`ServeOptions::header_read_timeout`],
//!   bodies up to [`ServeOptions::max_body_bytes`], and per agent at most
//!   [`ServeOptions::max_agent_requests`] requests in flight (429 beyond).
//! - An MCP session belongs to the agent whose `initialize` opened it: on
//!   every method, another agent's request naming it gets exactly rmcp's
//!   answer for an unknown session.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ewii_tunnel::enrol::{self, Control, ENROL_ALPN, EnrolRequest, EnrolResponse, Refusal};
use ewii_tunnel::handshake::{Credentials, HubConfig};
use ewii_tunnel::net::{self, EnrolExchange, HubTunnel, KeyMaterial, TlsBinding, close_code};
use ewii_tunnel::svid::{self, SvidVerifier};
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agents::{AgentService, HubState};
use crate::metrics::Metrics;
use crate::registry::{Connected, LiveDeployment, Registry};
use crate::store::{Deployment, RevocationReason, Store, unix};
use crate::trust::StoreTrust;
use crate::upstream::Receipts;
use crate::{Error, TokenError, bundle, ca};

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// UDP address for tunnels and enrolment.
    pub quic: SocketAddr,
    /// TCP address for agents (`/mcp`), `/healthz` and `/metrics`.
    pub http: SocketAddr,
    /// The names clients dial (DNS names or IP literals); the hub's TLS
    /// certificate carries them all.
    pub names: Vec<String>,
    /// An operator-supplied TLS certificate chain and key (PEM files)
    /// instead of one issued by the hub CA.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Lifetime of issued SVIDs.
    pub svid_ttl: Duration,
    /// The longest a routed tool call may take.
    pub call_timeout: Duration,
    /// `Host` values accepted on `/mcp` beyond loopback names (`*`: any).
    pub allowed_hosts: Vec<String>,
    /// Whether a TLS-terminating relay sits in front of the QUIC port.
    pub binding: TlsBinding,
    /// How often the trust bundles are reloaded from the store (replicas
    /// see each other's imports and new workspaces).
    pub trust_refresh: Duration,
    /// How often the store's revocation revision is polled: a revocation
    /// made by the CLI or another replica closes live tunnels and refuses
    /// handshakes within about this long.
    pub revocation_poll: Duration,
    /// Record statements with their literals replaced by `?`, and no
    /// bound parameters, in the audit trail.
    pub audit_redact: bool,
    /// Where the audit trail is exported (each follows the trail with its
    /// own cursor; a slow one never holds up calls).
    pub audit_export: Vec<crate::export::SinkConfig>,
    /// An extra CA (PEM file) trusted for webhook receivers.
    pub webhook_ca: Option<PathBuf>,
    /// Most QUIC connections in their handshake at once (TLS, then the
    /// app-layer handshake or the enrolment exchange); attempts beyond it
    /// are refused with `CONNECTION_REFUSED` until some finish.
    pub max_handshakes: usize,
    /// The longest a QUIC connection may take from its first packet to a
    /// completed app-layer handshake (or a completed enrolment) before it
    /// is closed.
    pub handshake_timeout: Duration,
    /// The longest an HTTP client may take to send a request's headers
    /// (also how long an idle keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// The largest HTTP request body accepted (413 beyond it).
    pub max_body_bytes: usize,
    /// Most HTTP requests one agent may have in flight at once, streams
    /// included (429 beyond it).
    pub max_agent_requests: usize,
    /// Most MCP sessions whose owner the hub remembers; when full, the
    /// bindings of closed sessions are dropped, then the oldest session is
    /// closed.
    pub max_sessions: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            quic: SocketAddr::from(([0, 0, 0, 0], 4433)),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            names: vec!["localhost".into(), "127.0.0.1".into()],
            tls: None,
            svid_ttl: ca::SVID_TTL,
            call_timeout: Duration::from_secs(120),
            allowed_hosts: Vec::new(),
            binding: TlsBinding::Strict,
            trust_refresh: Duration::from_secs(10),
            revocation_poll: Duration::from_millis(25),
            audit_redact: false,
            audit_export: Vec::new(),
            webhook_ca: None,
            max_handshakes: 256,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 4 << 20,
            max_agent_requests: 32,
            max_sessions: 10_000,
        }
    }
}

/// A running hub.
pub struct RunningHub {
    /// Where the QUIC endpoint listens.
    pub quic_addr: SocketAddr,
    /// Where the HTTP endpoint listens.
    pub http_addr: SocketAddr,
    /// The hub CA (PEM) clients pin with `--hub-ca`.
    pub hub_ca_pem: String,
    /// The same, parsed.
    pub hub_ca: Vec<CertificateDer<'static>>,
    /// Shared state (registry, metrics).
    pub state: Arc<HubState>,
    /// The SVID verifier (its refusal counters).
    pub verifier: Arc<SvidVerifier>,
    cancel: CancellationToken,
    endpoint: quinn::Endpoint,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHub")
            .field("quic_addr", &self.quic_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl RunningHub {
    /// The agents' MCP URL.
    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.http_addr)
    }

    /// Runs until `stop` fires, then shuts down.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) {
        stop.await;
        self.shutdown().await;
    }

    /// Closes every tunnel and both listeners.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.endpoint
            .close(close_code::DONE.into(), b"hub stopping");
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

struct Shared {
    store: Store,
    trust: Arc<StoreTrust>,
    state: Arc<HubState>,
    metrics: Arc<Metrics>,
    credentials: Credentials,
    names: Vec<String>,
    verifier: Arc<SvidVerifier>,
    options: ServeOptions,
    cancel: CancellationToken,
    connections: AtomicU64,
}

/// Starts serving; returns once both listeners are bound.
pub async fn start(store: Store, options: ServeOptions) -> Result<RunningHub, Error> {
    if options.names.is_empty() {
        return Err(Error::Serve(
            "give the hub at least one --name (the DNS name or IP clients dial)".into(),
        ));
    }
    let now = SystemTime::now();
    let hub_ca = store.hub_ca(now).await?;
    let keys = match &options.tls {
        Some((cert, key)) => KeyMaterial::from_pem_files(cert, key)
            .map_err(|e| Error::Serve(format!("--tls-cert/--tls-key: {e}")))?,
        None => {
            let server = hub_ca.issue_server_cert(&options.names, now)?;
            KeyMaterial::from_pem(&server.chain_pem, &server.key_pem)
                .map_err(|e| Error::Serve(format!("the hub's own certificate: {e}")))?
        }
    };
    let credentials = keys
        .credentials()
        .map_err(|e| Error::Serve(format!("the hub's key: {e}")))?;
    let trust = Arc::new(StoreTrust::load(store.clone()).await?);
    let verifier = Arc::new(SvidVerifier::new(trust.clone()));
    let metrics = Arc::new(Metrics::new(verifier.clone()));
    let registry = Arc::new(Registry::new(metrics.clone()));
    let state = HubState::new(
        store.clone(),
        registry,
        metrics.clone(),
        options.call_timeout,
        options.audit_redact,
    );

    let server = net::hub_config_with_enrolment(&keys, verifier.clone())
        .map_err(|e| Error::Serve(e.to_string()))?;
    let endpoint = quinn::Endpoint::server(server, options.quic).map_err(|e| {
        Error::Serve(format!(
            "cannot listen on UDP {}: {e} (is another hub running? choose another with --quic)",
            options.quic
        ))
    })?;
    let quic_addr = endpoint
        .local_addr()
        .map_err(|e| Error::Serve(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(options.http)
        .await
        .map_err(|e| {
            Error::Serve(format!(
                "cannot listen on TCP {}: {e} (choose another with --http)",
                options.http
            ))
        })?;
    let http_addr = listener
        .local_addr()
        .map_err(|e| Error::Serve(e.to_string()))?;
    if !http_addr.ip().is_loopback() {
        tracing::warn!(
            %http_addr,
            "the agents' endpoint is plain HTTP: put a TLS-terminating proxy in front of it so \
             bearer credentials never cross a network in the clear"
        );
    }

    let cancel = CancellationToken::new();
    let shared = Arc::new(Shared {
        store: store.clone(),
        trust: trust.clone(),
        state: state.clone(),
        metrics,
        credentials,
        names: options.names.clone(),
        verifier: verifier.clone(),
        options: options.clone(),
        cancel: cancel.clone(),
        connections: AtomicU64::new(0),
    });

    let mut tasks = Vec::new();
    // Tunnels and enrolment. Each connection holds a permit until it is
    // authenticated (or its enrolment is done): what unauthenticated peers
    // can make the hub hold is bounded by the permits times the per-
    // connection windows of `net::hub_transport`.
    tasks.push(tokio::spawn({
        let endpoint = endpoint.clone();
        let shared = shared.clone();
        let handshakes = Arc::new(tokio::sync::Semaphore::new(options.max_handshakes));
        async move {
            while let Some(incoming) = endpoint.accept().await {
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    shared.metrics.limit_hit("quic_handshakes");
                    tracing::debug!(remote = %incoming.remote_address(), "too many handshakes in progress; connection refused");
                    incoming.refuse();
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move { shared.incoming(incoming, permit).await });
            }
        }
    }));
    // Trust bundles: new workspaces and imports, also from other replicas.
    tasks.push(tokio::spawn({
        let trust = trust.clone();
        let cancel = cancel.clone();
        let every = options.trust_refresh;
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = cancel.cancelled() => return,
                }
                if let Err(e) = trust.refresh().await {
                    tracing::warn!(error = %e, "cannot reload trust bundles; keeping the old ones");
                }
            }
        }
    }));
    // Revocations: from the CLI, other replicas, goodbyes.
    tasks.push(tokio::spawn({
        let trust = trust.clone();
        let registry = state.registry.clone();
        let cancel = cancel.clone();
        let every = options.revocation_poll;
        async move {
            let mut failing = false;
            // The revision this task last enforced: other paths (the trust
            // refresh, a goodbye, an enrolment) reload the cache too.
            let mut enforced = trust.revocation_revision();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = cancel.cancelled() => return,
                }
                match trust.refresh_revocations().await {
                    Ok(_) => {
                        if failing {
                            tracing::info!("revocation state readable again");
                            failing = false;
                        }
                        let now = trust.revocation_revision();
                        if now != enforced {
                            close_revoked(&registry, &trust);
                            enforced = now;
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::error!(error = %e, "cannot read the revocation state; enforcing the last one known");
                            failing = true;
                        }
                    }
                }
            }
        }
    }));
    // Revocation webhooks.
    let webhooks =
        crate::webhook::http_client(Duration::from_secs(10), options.webhook_ca.as_deref())
            .map_err(|e| Error::Serve(format!("webhook HTTP client: {e}")))?;
    tasks.push(tokio::spawn(deliver_webhooks(
        store.clone(),
        webhooks,
        cancel.clone(),
    )));
    // Audit exporters.
    for sink in &options.audit_export {
        tracing::info!(exporter = %sink.name(), "exporting the audit trail");
        tasks.push(tokio::spawn(crate::export::run(
            sink.clone(),
            Arc::new(crate::audit::StoreSource(store.clone())),
            state.audit.appended.clone(),
            cancel.clone(),
        )));
    }
    // Agents, health, metrics.
    let app = router(state.clone(), &options, cancel.clone());
    tasks.push(tokio::spawn(serve_http(
        listener,
        app,
        options.header_read_timeout,
        cancel.clone(),
    )));
    tracing::info!(%quic_addr, %http_addr, names = ?options.names, "hub serving");
    Ok(RunningHub {
        quic_addr,
        http_addr,
        hub_ca_pem: hub_ca.certificate_pem().to_owned(),
        hub_ca: vec![hub_ca.certificate().clone()],
        state,
        verifier,
        cancel,
        endpoint,
        tasks,
    })
}

/// Delivers queued webhook events until `cancel`: each due delivery is
/// leased, POSTed, and recorded as delivered or rescheduled with backoff.
async fn deliver_webhooks(store: Store, client: reqwest::Client, cancel: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = cancel.cancelled() => return,
        }
        let due = match store.due_deliveries(SystemTime::now(), 60, 20).await {
            Ok(d) => {
                failing = false;
                d
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read webhook deliveries");
                    failing = true;
                }
                continue;
            }
        };
        for d in due {
            let now = SystemTime::now();
            let delivery = crate::webhook::Delivery {
                id: &d.id,
                event: &d.event,
                url: &d.url,
                secret: &d.secret,
                body: d.body.as_bytes(),
            };
            let result = crate::webhook::deliver(&client, &delivery, unix(now)).await;
            let recorded = match result {
                Ok(status) => {
                    tracing::info!(delivery = %d.id, url = %d.url, status, "webhook delivered");
                    store.delivery_succeeded(&d.id, status, now).await
                }
                Err(e) => {
                    let attempt = u32::try_from(d.attempts + 1).unwrap_or(u32::MAX);
                    let wait = crate::webhook::backoff(attempt);
                    let next = unix(now)
                        .saturating_add(i64::try_from(wait.as_secs().max(1)).unwrap_or(i64::MAX));
                    tracing::warn!(delivery = %d.id, url = %d.url, error = %e, retry_in_s = wait.as_secs(), "webhook delivery failed");
                    store
                        .delivery_failed(&d.id, e.status(), &e.to_string(), next)
                        .await
                }
            };
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "cannot record a webhook delivery");
            }
        }
    }
}

/// Closes every live tunnel whose deployment or SVID is revoked.
fn close_revoked(registry: &Registry, trust: &StoreTrust) {
    for d in registry.snapshot() {
        if trust.revoked(&d.spiffe_id, &d.session_serial)
            || trust.revoked(&d.spiffe_id, &d.serial())
        {
            tracing::warn!(
                workspace = %d.workspace, deployment = %d.name, serial = %d.session_serial,
                "revoked: closing the deployment's tunnel"
            );
            d.tunnel
                .connection()
                .close(close_code::REVOKED.into(), b"revoked");
        }
    }
}

/// The HTTP side: `/mcp` behind bearer authentication, `/healthz`,
/// `/metrics`.
pub fn router(
    state: Arc<HubState>,
    options: &ServeOptions,
    cancel: CancellationToken,
) -> axum::Router {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(cancel)
        .with_max_request_body_bytes(options.max_body_bytes);
    if options.allowed_hosts.iter().any(|h| h == "*") {
        config = config.disable_allowed_hosts();
    } else {
        let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        hosts.extend(options.allowed_hosts.iter().cloned());
        config = config.with_allowed_hosts(hosts);
    }
    let sessions = Arc::new(LocalSessionManager::default());
    let service: StreamableHttpService<AgentService, LocalSessionManager> =
        StreamableHttpService::new(
            {
                let state = state.clone();
                move || Ok(AgentService::new(state.clone()))
            },
            sessions.clone(),
            config,
        );
    let gate = Arc::new(AgentGate {
        hub: state.clone(),
        owners: SessionOwners::new(sessions, options.max_sessions),
        in_flight: InFlight::new(options.max_agent_requests),
        max_body_bytes: options.max_body_bytes,
    });
    let mcp = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(gate, bearer));
    axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
        .merge(mcp)
}

/// Serves `app` over HTTP/1.1 on `listener` until `cancel`, then lets open
/// connections finish. Every connection must send a request's headers
/// within `header_read_timeout` (and an idle keep-alive connection closes
/// after it), so half-sent requests cannot pile up. HTTP/2 is not offered:
/// agents use HTTP/1.1, and it has no header-read deadline.
pub(crate) async fn serve_http<L>(
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

/// What the bearer middleware needs: the store, the session owners and
/// the per-agent request counts.
struct AgentGate {
    hub: Arc<HubState>,
    owners: SessionOwners,
    in_flight: InFlight,
    max_body_bytes: usize,
}

/// The MCP session header (rmcp's `HEADER_SESSION_ID`).
const SESSION_HEADER: &str = "mcp-session-id";

/// Which agent opened each MCP session. rmcp knows a session only by its
/// id, so anyone holding a leaked id could otherwise read its stream
/// (`GET`, with `Last-Event-ID` the victim's in-flight results) or end it
/// (`DELETE`). Bounded: when full, bindings of sessions rmcp has closed
/// (ended, idle-expired) are dropped, then the oldest session is closed.
struct SessionOwners {
    inner: std::sync::Mutex<Owners>,
    cap: usize,
    sessions: Arc<LocalSessionManager>,
}

#[derive(Default)]
struct Owners {
    /// Session id → (agent id, insertion number).
    by_session: std::collections::HashMap<String, (String, u64)>,
    /// Insertion number → session id, oldest first.
    order: std::collections::BTreeMap<u64, String>,
    next: u64,
}

impl Owners {
    fn remove(&mut self, session: &str) {
        if let Some((_, n)) = self.by_session.remove(session) {
            self.order.remove(&n);
        }
    }
}

impl SessionOwners {
    fn new(sessions: Arc<LocalSessionManager>, cap: usize) -> SessionOwners {
        SessionOwners {
            inner: std::sync::Mutex::new(Owners::default()),
            cap: cap.max(1),
            sessions,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `session` was opened by `agent`.
    fn owned_by(&self, session: &str, agent: &str) -> bool {
        self.lock()
            .by_session
            .get(session)
            .is_some_and(|(owner, _)| owner == agent)
    }

    /// Records that `agent` opened `session`.
    async fn bind(&self, session: String, agent: String) {
        if self.lock().by_session.len() >= self.cap {
            let live: std::collections::HashSet<String> = self
                .sessions
                .sessions
                .read()
                .await
                .keys()
                .map(|id| id.to_string())
                .collect();
            let oldest = {
                let mut owners = self.lock();
                owners.by_session.retain(|id, _| live.contains(id));
                let kept: std::collections::HashSet<u64> =
                    owners.by_session.values().map(|(_, n)| *n).collect();
                owners.order.retain(|n, _| kept.contains(n));
                if owners.by_session.len() >= self.cap {
                    owners.order.first_key_value().map(|(_, id)| id.clone())
                } else {
                    None
                }
            };
            if let Some(oldest) = oldest {
                use rmcp::transport::streamable_http_server::session::SessionManager as _;
                tracing::info!("too many MCP sessions; closing the oldest");
                self.lock().remove(&oldest);
                if let Err(e) = self.sessions.close_session(&oldest.as_str().into()).await {
                    tracing::warn!(error = %e, "cannot close the oldest MCP session");
                }
            }
        }
        let mut owners = self.lock();
        let n = owners.next;
        owners.next += 1;
        owners.remove(&session);
        owners.order.insert(n, session.clone());
        owners.by_session.insert(session, (agent, n));
    }

    fn unbind(&self, session: &str) {
        self.lock().remove(session);
    }
}

/// Requests in flight per agent, bounded so one client cannot hold the
/// hub's request handling (a response's permit is released when its body
/// ends, so streams count too).
struct InFlight {
    max: usize,
    per_agent: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl InFlight {
    fn new(max: usize) -> InFlight {
        InFlight {
            max: max.max(1),
            per_agent: Default::default(),
        }
    }

    /// A permit for one more request of `agent`, or `None` at the limit.
    fn start(&self, agent: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = self
            .per_agent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(agent.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.max)))
            .clone();
        semaphore.try_acquire_owned().ok()
    }
}

/// A response body that holds its request's [`InFlight`] permit until it
/// ends or is dropped.
struct Permitted {
    body: axum::body::Body,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for Permitted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What rmcp answers for a session id it does not know, byte for byte:
/// a session of another agent gets exactly this, so nothing tells it the
/// session exists.
fn session_not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response()
}

/// Resolves `Authorization: Bearer …` to an agent, or answers 401; then
/// holds the agent to its request limit and to its own MCP sessions.
async fn bearer(State(gate): State<Arc<AgentGate>>, mut req: Request, next: Next) -> Response {
    let error = |status: StatusCode, why: &str| {
        (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
    };
    let unauthorized = |why: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, why);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"ewii-hub\""),
        );
        r
    };
    // A declared body over the limit is refused before anything else (a
    // chunked one is cut by rmcp at the same limit).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > gate.max_body_bytes as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the request body exceeds the hub's limit of {} bytes: send smaller messages",
                gate.max_body_bytes
            ),
        );
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return unauthorized(
            "send the agent's credential as `Authorization: Bearer ewii_agent_…` (the operator \
             creates one with `ewii-hub agent create --workspace W NAME`)",
        );
    };
    let agent = match gate.hub.store.authenticate_agent(token).await {
        Ok(Some(agent)) => agent,
        Ok(None) => {
            return unauthorized(
                "unknown agent credential: check it was copied whole, or ask the operator for a \
                 new one (`ewii-hub agent create`)",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check an agent credential");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub's store is unavailable",
            );
        }
    };
    let Some(permit) = gate.in_flight.start(&agent.id) else {
        gate.hub.metrics.limit_hit("agent_requests");
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "this agent already has {} requests in flight at the hub (the most allowed): \
                 wait for some to finish or close idle streams, then retry",
                gate.in_flight.max
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    };
    // A session belongs to the agent that opened it, on every method; an
    // unreadable id is no session of this agent either.
    let session = match req.headers().get(SESSION_HEADER) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(id) if gate.owners.owned_by(id, &agent.id) => Some(id.to_owned()),
            _ => return session_not_found(),
        },
    };
    let deleting = req.method() == http::Method::DELETE;
    let agent_id = agent.id.clone();
    req.extensions_mut().insert(agent);
    let response = next.run(req).await;
    match session {
        None => {
            // An initialize that opened a session: it is this agent's.
            if let Some(id) = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                gate.owners.bind(id.to_owned(), agent_id).await;
            }
        }
        Some(id) if deleting && response.status().is_success() => gate.owners.unbind(&id),
        Some(_) => {}
    }
    response.map(|body| {
        axum::body::Body::new(Permitted {
            body,
            _permit: permit,
        })
    })
}

async fn healthz(State(state): State<Arc<HubState>>) -> Response {
    let connected = state.registry.len();
    match state.store.ping().await {
        Ok(()) => axum::Json(serde_json::json!({
            "status": "ok",
            "connected_deployments": connected,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "status": "store_unavailable",
                "error": e.to_string(),
                "connected_deployments": connected,
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<HubState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// An MCP client session with a deployment's adapter over its tunnel, and
/// the adapter's tools.
async fn upstream_session(
    tunnel: &Arc<HubTunnel>,
    changed: &mpsc::Sender<()>,
    lost: &mpsc::Sender<()>,
    receipts: &Arc<Receipts>,
) -> Result<
    (
        rmcp::service::RunningService<rmcp::RoleClient, crate::upstream::UpstreamHandler>,
        Vec<rmcp::model::Tool>,
    ),
    String,
> {
    let handler = crate::upstream::UpstreamHandler::new(changed.clone());
    let client = tokio::time::timeout(
        Duration::from_secs(15),
        handler.serve(crate::upstream::transport(
            tunnel.clone(),
            lost.clone(),
            receipts.clone(),
        )),
    )
    .await
    .map_err(|_| "the deployment's adapter did not answer initialize within 15 s".to_string())?
    .map_err(|e| format!("the deployment's adapter refused initialize: {e}"))?;
    let tools = tokio::time::timeout(Duration::from_secs(15), client.list_all_tools())
        .await
        .map_err(|_| "the deployment's adapter did not answer tools/list".to_string())?
        .map_err(|e| format!("tools/list failed: {e}"))?;
    Ok((client, tools))
}

/// The notAfter of a certificate, Unix seconds.
fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(cert).ok()?;
    Some(c.validity().not_after.timestamp())
}

fn refusal(reason: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason: reason.into(),
        message: message.into(),
    }
}

impl Shared {
    /// One QUIC connection: TLS, then enrolment or the app-layer
    /// handshake, all within `handshake_timeout`, holding `permit` until
    /// the peer is authenticated (or its enrolment is answered).
    async fn incoming(
        self: Arc<Self>,
        incoming: quinn::Incoming,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let remote = incoming.remote_address();
        let deadline = tokio::time::Instant::now() + self.options.handshake_timeout;
        let conn = match tokio::time::timeout_at(deadline, incoming).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                // The SVID verifier counted and logged its refusals.
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                // Dropping the handshake closes the connection.
                self.metrics.limit_hit("handshake_deadline");
                tracing::debug!(%remote, "TLS handshake not completed in time");
                return;
            }
        };
        let timed_out = |what: &str| {
            self.metrics.limit_hit("handshake_deadline");
            tracing::warn!(%remote, "{what} not completed within {:?}; connection closed", self.options.handshake_timeout);
            conn.close(close_code::HANDSHAKE.into(), b"handshake deadline");
        };
        if net::alpn_of(&conn).as_deref() == Some(ENROL_ALPN) {
            if tokio::time::timeout_at(deadline, self.enrol(conn.clone()))
                .await
                .is_err()
            {
                timed_out("enrolment");
            }
            return;
        }
        let established = tokio::time::timeout_at(deadline, self.establish(conn.clone())).await;
        drop(permit);
        match established {
            Ok(Some(tunnel)) => self.tunnel(tunnel).await,
            Ok(None) => {}
            Err(_) => timed_out("the app-layer handshake"),
        }
    }

    /// The name this connection dialled: its SNI, or for an IP literal
    /// (no SNI) the address it arrived on.
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

    async fn issue(
        &self,
        deployment: &Deployment,
        csr: &[u8],
        kind: &str,
    ) -> Result<enrol::Issued, Refusal> {
        let internal = |e: Error| {
            tracing::error!(error = %e, "SVID issuance failed");
            refusal(
                "internal",
                "the hub could not issue the SVID; try again later",
            )
        };
        let now = SystemTime::now();
        let ca = self
            .store
            .workspace_ca(&deployment.workspace)
            .await
            .map_err(internal)?;
        let cert = match ca.issue_svid(csr, &deployment.spiffe_id, self.options.svid_ttl, now) {
            Ok(c) => c,
            Err(Error::Csr(why)) => return Err(refusal("bad_csr", why)),
            Err(e) => return Err(internal(e)),
        };
        let bundle = self
            .store
            .trust_bundle(&deployment.workspace)
            .await
            .map_err(internal)?;
        let serial = svid::serial_hex(&cert).map_err(|e| internal(Error::Issue(e.to_string())))?;
        let expires_at = not_after(&cert).unwrap_or_else(|| unix(now));
        // Recorded before it is handed out, so a deployment revoke always
        // covers it.
        self.store
            .record_svid(&deployment.id, &serial, kind, unix(now), expires_at)
            .await
            .map_err(internal)?;
        let svid_pem = bundle::to_pem(std::slice::from_ref(&cert));
        Ok(enrol::Issued {
            spiffe_id: deployment.spiffe_id.to_string(),
            svid_pem,
            bundle_pem: bundle::to_pem(&bundle.all()),
            serial,
            expires_at,
        })
    }

    async fn enrol(&self, conn: quinn::Connection) {
        let remote = conn.remote_address();
        let (request, exchange) = match EnrolExchange::read(conn).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%remote, error = %e, "enrolment request unreadable");
                return;
            }
        };
        let answer = self.enrolment_answer(&request).await;
        match &answer {
            EnrolResponse::Issued(i) => {
                self.metrics.issued("enrolment");
                tracing::info!(%remote, spiffe_id = %i.spiffe_id, serial = %i.serial, "enrolled");
                // A new workspace's clients connect next: know its bundle.
                if let Err(e) = self.trust.refresh().await {
                    tracing::warn!(error = %e, "cannot reload trust bundles");
                }
            }
            EnrolResponse::Refused(r) => {
                self.metrics.enrolment_refused(&r.reason);
                tracing::warn!(%remote, reason = %r.reason, "enrolment refused");
            }
        }
        if let Err(e) = exchange.answer(&answer).await {
            tracing::warn!(%remote, error = %e, "could not send the enrolment answer");
        }
    }

    async fn enrolment_answer(&self, request: &EnrolRequest) -> EnrolResponse {
        let csr = match base64::engine::general_purpose::STANDARD.decode(&request.csr) {
            Ok(c) => c,
            Err(_) => return EnrolResponse::Refused(refusal("bad_csr", "the CSR is not base64")),
        };
        // Refuse a bad CSR before the token is spent.
        if let Err(e) = ca::check_csr(&csr) {
            return EnrolResponse::Refused(refusal("bad_csr", e.to_string()));
        }
        let deployment = match self
            .store
            .consume_enrolment_token(&request.token, SystemTime::now())
            .await
        {
            Ok(d) => d,
            Err(TokenError::Store(e)) => {
                tracing::error!(error = %e, "cannot check an enrolment token");
                return EnrolResponse::Refused(refusal(
                    "internal",
                    "the hub could not check the token; try again later",
                ));
            }
            Err(e) => return EnrolResponse::Refused(refusal(e.reason(), e.to_string())),
        };
        match self.issue(&deployment, &csr, "enrolment").await {
            Ok(issued) => EnrolResponse::Issued(issued),
            Err(r) => EnrolResponse::Refused(r),
        }
    }

    /// The app-layer handshake on a tunnel connection; `None` when refused
    /// (counted and logged).
    async fn establish(&self, conn: quinn::Connection) -> Option<Arc<HubTunnel>> {
        let remote = conn.remote_address();
        let config = HubConfig {
            credentials: self.credentials.clone(),
            name: self.name_for(&conn),
            client_verifier: self.verifier.clone(),
        };
        match HubTunnel::establish(conn, &config, self.options.binding).await {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                self.metrics.app_handshake_failure(e.reason());
                tracing::warn!(%remote, reason = e.reason(), error = %e, "tunnel refused");
                None
            }
        }
    }

    async fn tunnel(&self, tunnel: Arc<HubTunnel>) {
        let remote = tunnel.connection().remote_address();
        let spiffe_id = tunnel.peer().identity.clone();
        let deployment = match self.store.deployment_by_spiffe_id(&spiffe_id).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                tracing::warn!(%remote, %spiffe_id, "no deployment has this SPIFFE ID; create it with `ewii-hub deployment create`");
                self.metrics.app_handshake_failure("unknown_deployment");
                tunnel
                    .connection()
                    .close(close_code::IDENTITY.into(), b"unknown deployment");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "store unavailable; refusing the tunnel");
                tunnel.close("hub store unavailable");
                return;
            }
        };
        if let Err(why) = self.serve_tunnel(tunnel.clone(), &deployment).await {
            tracing::warn!(
                workspace = %deployment.workspace, deployment = %deployment.name, reason = %why,
                "deployment session ended"
            );
            tunnel.close(&why);
        }
    }

    /// Runs one deployment's session: MCP with its adapter, registration,
    /// catalog refreshes, renewals, expiry.
    async fn serve_tunnel(
        &self,
        tunnel: Arc<HubTunnel>,
        deployment: &Deployment,
    ) -> Result<(), String> {
        let leaf = tunnel
            .peer()
            .chain
            .first()
            .cloned()
            .ok_or("no certificate")?;
        let serial = svid::serial_hex(&leaf).map_err(|e| e.to_string())?;
        let expires_at = not_after(&leaf).ok_or("unreadable notAfter")?;

        let (changed_tx, mut changed_rx) = mpsc::channel(4);
        let (lost_tx, mut lost_rx) = mpsc::channel(1);
        let receipts = Arc::new(Receipts::default());
        let (mut client, tools) =
            upstream_session(&tunnel, &changed_tx, &lost_tx, &receipts).await?;

        let connection = self.connections.fetch_add(1, Ordering::SeqCst);
        let live = Arc::new(LiveDeployment::new(Connected {
            workspace: deployment.workspace.clone(),
            name: deployment.name.clone(),
            spiffe_id: deployment.spiffe_id.to_string(),
            serial,
            expires_at,
            connection,
            tunnel: tunnel.clone(),
            upstream: client.peer().clone(),
            tools,
            receipts: receipts.clone(),
        }));
        let registry = self.state.registry.clone();
        if let Some(old) = registry.insert(live.clone()) {
            old.tunnel
                .close("replaced by a newer connection of the same deployment");
        }
        // A revocation that landed between the handshake and now.
        if self.trust.revoked(&live.spiffe_id, &live.session_serial) {
            tunnel
                .connection()
                .close(close_code::REVOKED.into(), b"revoked");
        }
        tracing::info!(
            workspace = %deployment.workspace, deployment = %deployment.name,
            remote = %tunnel.connection().remote_address(), tools = live.tools().len(),
            "deployment connected"
        );
        let ended = loop {
            let left = Duration::from_secs(
                u64::try_from(live.expires_at() - unix(SystemTime::now())).unwrap_or(0),
            );
            tokio::select! {
                _ = tunnel.connection().closed() => break Ok(()),
                _ = self.cancel.cancelled() => break Err("hub stopping".to_string()),
                Some(()) = lost_rx.recv() => {
                    tracing::info!(deployment = %deployment.name, "the adapter restarted; new MCP session");
                    let (fresh, tools) =
                        upstream_session(&tunnel, &changed_tx, &lost_tx, &receipts).await?;
                    live.set_upstream(fresh.peer().clone());
                    client = fresh;
                    if live.set_tools(tools) {
                        registry.changed(&deployment.workspace);
                    }
                }
                Some(()) = changed_rx.recv() => {
                    match client.list_all_tools().await {
                        Ok(tools) => {
                            if live.set_tools(tools) {
                                tracing::info!(deployment = %deployment.name, "catalog changed");
                                registry.changed(&deployment.workspace);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "tools/list after a change failed"),
                    }
                }
                control = tunnel.next_control() => match control {
                    Some(Ok(Control::Renew { id, csr })) => {
                        let answer = self.renew(&live, deployment, id, &csr).await;
                        if let Err(e) = tunnel.send_control(&answer).await {
                            break Err(format!("cannot answer a renewal: {e}"));
                        }
                    }
                    Some(Ok(Control::Goodbye { at, signature })) => {
                        self.goodbye(&tunnel, deployment, at, &signature).await;
                    }
                    Some(Ok(other)) => tracing::warn!(?other, "unexpected control message ignored"),
                    Some(Err(e)) => break Err(format!("malformed control message: {e}")),
                    None => break Ok(()),
                },
                _ = tokio::time::sleep(left) => {
                    if live.expires_at() <= unix(SystemTime::now()) {
                        tunnel.connection().close(close_code::IDENTITY.into(), b"svid expired");
                        break Err("its SVID expired before it was renewed".to_string());
                    }
                }
            }
        };
        registry.remove(&live.spiffe_id, connection);
        tracing::info!(
            workspace = %deployment.workspace, deployment = %deployment.name,
            reason = tunnel.connection().close_reason().map(|r| r.to_string()).unwrap_or_default(),
            "deployment disconnected"
        );
        drop(client);
        ended
    }

    /// A client's signed goodbye: verified against the session's
    /// certificate, then the deployment is revoked (the customer's
    /// one-command revoke), acknowledged, and the tunnel closed.
    async fn goodbye(&self, tunnel: &HubTunnel, deployment: &Deployment, at: i64, signature: &str) {
        if let Err(e) = tunnel.verify_goodbye(at, signature) {
            tracing::warn!(deployment = %deployment.name, error = %e, "goodbye refused");
            return;
        }
        match self
            .store
            .revoke_deployment(
                &deployment.workspace,
                &deployment.name,
                RevocationReason::Goodbye,
                SystemTime::now(),
            )
            .await
        {
            Ok(r) => tracing::info!(
                workspace = %deployment.workspace, deployment = %deployment.name,
                serials = r.serials.len(), webhooks = r.webhooks,
                "revoked on the client's goodbye"
            ),
            Err(e) => {
                // Not acknowledged: the client says the hub was not told.
                tracing::error!(deployment = %deployment.name, error = %e, "cannot revoke on goodbye");
                return;
            }
        }
        if let Err(e) = self.trust.refresh_revocations().await {
            tracing::warn!(error = %e, "cannot reload the revocation state");
        }
        if let Err(e) = tunnel.send_control(&Control::GoodbyeAck {}).await {
            tracing::debug!(error = %e, "goodbye ack not sent");
        }
        // Let the client close first (its close carries the ack's meaning
        // when the ack itself is lost); then close as revoked.
        let _ = tokio::time::timeout(Duration::from_secs(1), tunnel.connection().closed()).await;
        tunnel
            .connection()
            .close(close_code::REVOKED.into(), b"revoked");
    }

    async fn renew(
        &self,
        live: &LiveDeployment,
        deployment: &Deployment,
        id: u64,
        csr: &str,
    ) -> Control {
        let csr = match base64::engine::general_purpose::STANDARD.decode(csr) {
            Ok(c) => c,
            Err(_) => {
                return Control::Refused {
                    id,
                    refusal: refusal("bad_csr", "the CSR is not base64"),
                };
            }
        };
        if self.trust.revoked(&live.spiffe_id, &live.serial()) {
            return Control::Refused {
                id,
                refusal: refusal(
                    "revoked",
                    "this deployment is revoked; it comes back only by enrolling with a new token",
                ),
            };
        }
        match self.issue(deployment, &csr, "renewal").await {
            Ok(issued) => {
                self.metrics.issued("renewal");
                live.renewed(issued.serial.clone(), issued.expires_at);
                tracing::info!(
                    deployment = %deployment.name, serial = %issued.serial, "SVID renewed"
                );
                Control::Issued { id, issued }
            }
            Err(refusal) => Control::Refused { id, refusal },
        }
    }
}
