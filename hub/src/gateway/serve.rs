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
//!   every request ([`crate::gateway::agents`]). `/healthz`, `/metrics`.
//!   Over HTTPS with [`ServeOptions::http_tls`] ([`crate::gateway::tls`]).
//!
//! Bounded before authentication, so no client can hold the hub:
//! - QUIC: at most [`ServeOptions::max_handshakes`] connections in their
//!   handshake at once (more are refused), each closed unless TLS and the
//!   app-layer handshake (or its enrolment) finish within
//!   [`ServeOptions::handshake_timeout`]; until then a peer may open one
//!   stream and have two handshake frames in flight
//!   ([`ewii_quic::config::hub_transport`]). The QUIC port is
//!   [`ewii_quic::HubListener`]: it enforces these bounds and hands the hub
//!   enrolments and authenticated tunnels.
//! - HTTP: request headers within [`ServeOptions::header_read_timeout`],
//!   bodies up to [`ServeOptions::max_body_bytes`], and per agent at most
//!   [`ServeOptions::max_agent_requests`] requests in flight (429 beyond).
//! - An MCP session belongs to the agent whose `initialize` opened it: on
//!   every method, another agent's request naming it gets exactly rmcp's
//!   answer for an unknown session.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use ewii_quic::{Accepted, HubListener, KeyMaterial, ListenerConfig, SvidVerifier, TlsBinding};
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::gateway::agents::HubState;
use crate::gateway::metrics::Metrics;
use crate::gateway::registry::Registry;
use crate::state::ca;
use crate::state::duty;
use crate::state::notify::{self, Notifications, Topic};
use crate::state::store::Store;
use crate::state::trust::StoreTrust;

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
    /// Serve the HTTP endpoint over TLS with this certificate chain and key
    /// (PEM files, reloaded on change: [`crate::gateway::tls`]).
    pub http_tls: Option<(PathBuf, PathBuf)>,
    /// Serve the HTTP endpoint over TLS with a certificate the hub CA issues
    /// for [`ServeOptions::names`] (agents trust `ewii-hub hub-ca`), when
    /// [`ServeOptions::http_tls`] is not given.
    pub http_tls_hub_ca: bool,
    /// Whether a TLS-terminating relay sits in front of the QUIC port.
    pub binding: TlsBinding,
    /// How often the trust bundles are reloaded from the store (replicas
    /// see each other's imports and new workspaces).
    pub trust_refresh: Duration,
    /// How often the store's revocation revision is polled: a revocation
    /// made by the CLI or another replica closes live tunnels and refuses
    /// handshakes within about this long. On PostgreSQL the replicas are
    /// notified at once ([`crate::state::notify`]) and this is the pace
    /// only while the notification connection is down.
    pub revocation_poll: Duration,
    /// The poll's pace while PostgreSQL notifications arrive (the fallback
    /// for a notification lost with a connection that died silently).
    pub revocation_poll_notified: Duration,
    /// Record statements with their literals replaced by `?`, and no
    /// bound parameters, in the audit trail.
    pub audit_redact: bool,
    /// Where the audit trail is exported (each follows the trail with its
    /// own cursor; a slow one never holds up calls).
    pub audit_export: Vec<crate::audit::export::SinkConfig>,
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
    /// The OAuth resource server ([`crate::gateway::oauth`]).
    pub oauth: crate::gateway::oauth::OAuthOptions,
    /// The replica channel and the registry of live tunnels
    /// ([`crate::replica`]).
    pub replica: crate::replica::ReplicaOptions,
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
            http_tls: None,
            http_tls_hub_ca: false,
            binding: TlsBinding::Strict,
            trust_refresh: Duration::from_secs(10),
            revocation_poll: Duration::from_millis(25),
            revocation_poll_notified: Duration::from_millis(500),
            audit_redact: false,
            audit_export: Vec::new(),
            webhook_ca: None,
            max_handshakes: 256,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 4 << 20,
            max_agent_requests: 32,
            max_sessions: 10_000,
            oauth: Default::default(),
            replica: Default::default(),
        }
    }
}

/// A running hub.
pub struct RunningHub {
    /// Where the QUIC endpoint listens.
    pub quic_addr: SocketAddr,
    /// Where the HTTP endpoint listens.
    pub http_addr: SocketAddr,
    /// Whether that endpoint speaks HTTPS (`--http-tls-cert`).
    pub https: bool,
    /// The hub CA (PEM) clients pin with `--hub-ca`.
    pub hub_ca_pem: String,
    /// The same, parsed.
    pub hub_ca: Vec<CertificateDer<'static>>,
    /// Shared state (registry, metrics).
    pub state: Arc<HubState>,
    /// The SVID verifier (its refusal counters).
    pub verifier: Arc<SvidVerifier>,
    /// This replica's id in the registry of live tunnels.
    pub replica_id: String,
    /// Where its replica channel listens, if it does.
    pub replica_addr: Option<SocketAddr>,
    /// The address its peers dial, if it serves the channel.
    pub replica_peer_address: Option<String>,
    cancel: CancellationToken,
    listener: Arc<HubListener>,
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
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/mcp", self.http_addr)
    }

    /// Runs until `stop` fires, then shuts down.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) {
        stop.await;
        self.shutdown().await;
    }

    /// Closes every tunnel and both listeners.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let closing = self.listener.close("hub stopping");
        let tasks = async {
            for t in self.tasks {
                let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
            }
        };
        // The listener waits (briefly) for its closes to reach the peers
        // while the tasks wind down.
        tokio::join!(closing, tasks);
    }
}

pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) trust: Arc<StoreTrust>,
    pub(crate) state: Arc<HubState>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) options: ServeOptions,
    pub(crate) cancel: CancellationToken,
    pub(crate) connections: AtomicU64,
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
    keys.credentials()
        .map_err(|e| Error::Serve(format!("the hub's key: {e}")))?;
    let http_tls = match &options.http_tls {
        Some((cert, key)) => Some(crate::gateway::tls::HttpTls::load(cert, key)?),
        None if options.http_tls_hub_ca => {
            let server = hub_ca.issue_server_cert(&options.names, now)?;
            Some(crate::gateway::tls::HttpTls::from_pem(
                &server.chain_pem,
                &server.key_pem,
            )?)
        }
        None => None,
    };
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

    let mut quic = ListenerConfig::new(keys, options.names.clone(), verifier.clone());
    quic.binding = options.binding;
    quic.enrolment = true;
    quic.max_handshakes = options.max_handshakes;
    quic.handshake_timeout = options.handshake_timeout;
    quic.events = Some(metrics.clone());
    let quic_listener = Arc::new(HubListener::bind(options.quic, quic).map_err(|e| match e {
        ewii_quic::NetError::Socket(e) => Error::Serve(format!(
            "cannot listen on UDP {}: {e} (is another hub running? choose another with --quic)",
            options.quic
        )),
        e => Error::Serve(e.to_string()),
    })?);
    let quic_addr = quic_listener.local_addr();
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
    if !http_addr.ip().is_loopback() && http_tls.is_none() {
        tracing::warn!(
            %http_addr,
            "the agents' endpoint is plain HTTP: give --http-tls-cert/--http-tls-key (or put a \
             TLS-terminating proxy in front) so bearer credentials never cross a network in the clear"
        );
    }

    let cancel = CancellationToken::new();
    let shared = Arc::new(Shared {
        store: store.clone(),
        trust: trust.clone(),
        state: state.clone(),
        metrics,
        options: options.clone(),
        cancel: cancel.clone(),
        connections: AtomicU64::new(0),
    });

    // The other replicas: the registry of live tunnels, the channel.
    let replica = crate::replica::start(
        store.clone(),
        state.clone(),
        &options.replica,
        cancel.clone(),
    )
    .await?;
    let mut tasks = replica.tasks;
    // Tunnels and enrolment, as the listener hands them out (it bounds
    // what unauthenticated peers can make the hub hold).
    tasks.push(tokio::spawn({
        let quic_listener = quic_listener.clone();
        let shared = shared.clone();
        async move {
            while let Some(accepted) = quic_listener.accept().await {
                let shared = shared.clone();
                match accepted {
                    Accepted::Enrol(exchange) => {
                        tokio::spawn(async move { shared.enrol(exchange).await });
                    }
                    Accepted::Tunnel(tunnel) => {
                        tokio::spawn(async move { shared.tunnel(Arc::new(tunnel)).await });
                    }
                }
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
    // Store notifications from other replicas and the CLI (PostgreSQL).
    let notifications = Notifications::new();
    if let Some(url) = store.postgres_url() {
        tasks.push(tokio::spawn(notify::listen(
            url.to_owned(),
            notifications.clone(),
            cancel.clone(),
        )));
    }
    // Revocations: from the CLI, other replicas, goodbyes.
    tasks.push(tokio::spawn({
        let trust = trust.clone();
        let registry = state.registry.clone();
        let cancel = cancel.clone();
        let notifications = notifications.clone();
        let (fast, notified) = (options.revocation_poll, options.revocation_poll_notified);
        async move {
            let mut failing = false;
            // The revision this task last enforced: other paths (the trust
            // refresh, a goodbye, an enrolment) reload the cache too.
            let mut enforced = trust.revocation_revision();
            loop {
                let every = if notifications.listening() { notified } else { fast };
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = notifications.wait(Topic::Revocation) => {}
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
    // Revocation webhooks and audit exporters: on one replica at a time
    // (the holder of the duty lock on PostgreSQL).
    let webhooks =
        crate::audit::egress::http_client(Duration::from_secs(10), options.webhook_ca.as_deref())
            .map_err(|e| Error::Serve(format!("webhook HTTP client: {e}")))?;
    tasks.push(tokio::spawn({
        let store = store.clone();
        let sinks = options.audit_export.clone();
        let appended = state.audit.appended.clone();
        duty::run_exclusively(
            store.postgres_url().map(str::to_owned),
            duty::EXPORT_DUTY,
            cancel.clone(),
            move |duties| {
                let mut tasks = vec![tokio::spawn(crate::audit::webhook::deliver_queued(
                    store.clone(),
                    webhooks.clone(),
                    duties.clone(),
                ))];
                for sink in &sinks {
                    tracing::info!(exporter = %sink.name(), "exporting the audit trail");
                    tasks.push(tokio::spawn(crate::audit::export::run(
                        sink.clone(),
                        Arc::new(crate::audit::trail::StoreSource(store.clone())),
                        appended.clone(),
                        duties.clone(),
                    )));
                }
                tasks
            },
        )
    }));
    // Agents, health, metrics.
    let https = http_tls.is_some();
    let scheme = if https { "https" } else { "http" };
    let resource =
        (options.oauth.resource.clone()).unwrap_or_else(|| format!("{scheme}://{http_addr}/mcp"));
    let oauth = crate::gateway::oauth::ResourceServer::new(options.oauth.clone(), resource)
        .map_err(|e| Error::Serve(format!("the OAuth resource server: {e}")))?;
    let app =
        crate::gateway::http::router(state.clone(), &options, Arc::new(oauth), cancel.clone());
    if let Some(tls) = http_tls {
        let listener = tls.listener(listener, options.header_read_timeout, cancel.clone())?;
        tasks.push(tokio::spawn(tls.reload_on_change(cancel.clone())));
        tasks.push(tokio::spawn(ewii_mcp::serve_http(
            listener,
            app,
            options.header_read_timeout,
            cancel.clone(),
        )));
    } else {
        tasks.push(tokio::spawn(ewii_mcp::serve_http(
            ewii_mcp::without_nagle(listener),
            app,
            options.header_read_timeout,
            cancel.clone(),
        )));
    }
    tracing::info!(%quic_addr, %http_addr, names = ?options.names, "hub serving");
    Ok(RunningHub {
        quic_addr,
        http_addr,
        https,
        hub_ca_pem: hub_ca.certificate_pem().to_owned(),
        hub_ca: vec![hub_ca.certificate().clone()],
        state,
        verifier,
        replica_id: replica.id,
        replica_addr: replica.listen_addr,
        replica_peer_address: replica.peer_address,
        cancel,
        listener: quic_listener,
        tasks,
    })
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
            d.tunnel.close_revoked();
        }
    }
}
