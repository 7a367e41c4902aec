//! The client runtime behind `ewii-client run`: keep one outbound tunnel to
//! the hub up, and forward each request the hub sends to an allow-listed
//! MCP adapter endpoint, and nothing else.
//!
//! - Dials out only: the QUIC endpoint binds an ephemeral port and never
//!   accepts connections.
//! - Reconnects after any loss with exponential backoff and jitter, so a
//!   hub restart does not meet every client at the same instant.
//! - An enrolled client ([`IdentitySource::Enrolled`]) enrols once with a
//!   single-use token ([`Client::start`]), then renews its SVID over the
//!   live tunnel about half-way through each SVID's life. A renewed SVID
//!   is used from the next connection on; the live tunnel and its
//!   in-flight requests carry on undisturbed.
//! - Stopping an enrolled client can revoke it ([`Client::revoke_on_stop`]):
//!   a signed goodbye to the hub, then `svid.pem` and `svid.key` deleted.
//!   A crash or a lost link changes nothing: the saved SVID reconnects.
//! - When the hub says the SVID is revoked (it closes the tunnel as
//!   revoked, or refuses the SVID in TLS with `certificate_revoked`), the
//!   client stops retrying, moves an enrolled
//!   SVID and key aside, and [`Client::run`] ends with
//!   [`ClientError::Revoked`].
//! - Every forward, refusal, tunnel up and tunnel down, enrolment,
//!   renewal, goodbye and revocation goes to the JSON-lines connection log.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use ewii_quic::{
    ClientQuicConfig, ClientTunnel, Dialer, HubCertVerifier, HubTrustError, KeyMaterial, NetError,
};
use ewii_wire::handshake::ClientConfig;
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

use crate::connlog::{ConnectionLog, ConnectionRecord};
use crate::forward::{AdapterCredential, AllowList};
use crate::identity::{
    CurrentIdentity, IdentityError, IdentitySource, IdentityStore, SvidInfo, random_unit,
};

mod enrolment;
mod renewal;
mod serving;

/// How long the hub may take to answer a renewal.
pub const RENEW_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping client waits for the hub to acknowledge its goodbye.
pub const GOODBYE_TIMEOUT: Duration = Duration::from_secs(3);

/// The refusal reason after which renewing is pointless (the hub did not
/// issue this SVID).
const NOT_RENEWABLE: &str = "not_renewable";

/// Everything `ewii-client run` needs, with an SVID from PEM files (see
/// [`ClientSettings`] and [`Client::start`] for an enrolled client).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The hub's address, `HOST:PORT` (resolved again on each attempt), or
    /// the addresses of several replicas of one hub separated by commas:
    /// the client dials one and moves to the next when it fails
    /// ([`hub_addresses`]).
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
    /// The adapter's local credential, presented on every request to it.
    pub adapter_credential: Option<AdapterCredential>,
    /// Where the connection log goes.
    pub log: Option<Arc<ConnectionLog>>,
}

impl ClientOptions {
    /// The settings, and the SVID as a static identity source.
    pub fn into_parts(self) -> (ClientSettings, IdentitySource) {
        (
            ClientSettings {
                hub: self.hub,
                hub_name: self.hub_name,
                hub_ca: self.hub_ca,
                tls_ca: self.tls_ca,
                allow: self.allow,
                adapter_credential: self.adapter_credential,
                log: self.log,
            },
            IdentitySource::Static(self.keys),
        )
    }
}

/// Everything the client needs apart from its identity.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The hub's address, `HOST:PORT` (resolved again on each attempt), or
    /// the addresses of several replicas of one hub separated by commas:
    /// the client dials one and moves to the next when it fails
    /// ([`hub_addresses`]).
    pub hub: String,
    /// The name the hub must prove (defaults to the host of `hub`).
    pub hub_name: String,
    /// The hub CA: the hub's app-layer identity must chain to it. The
    /// enrolment connection, which has no app layer, is checked against it
    /// in TLS, whatever `tls_ca` says.
    pub hub_ca: Vec<CertificateDer<'static>>,
    /// What the tunnel's TLS layer trusts, when a TLS-terminating relay
    /// sits in front of the hub; by default the hub CA.
    pub tls_ca: Option<Vec<CertificateDer<'static>>>,
    /// Where requests may be forwarded.
    pub allow: AllowList,
    /// The adapter's local credential (its `local-credential` file),
    /// presented as a bearer on every request to an adapter and never sent
    /// to the hub. `None` only suits an adapter that requires none.
    pub adapter_credential: Option<AdapterCredential>,
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
    /// Configuration of TLS or QUIC failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// No enrolled SVID in the state directory and no enrolment token.
    #[error(
        "this client is not enrolled yet: pass --enrollment-token-file FILE or set \
         EWII_ENROLLMENT_TOKEN (the operator gets one with `ewii-hub deployment create` or \
         `ewii-hub deployment token`)"
    )]
    NotEnrolled,
    /// The hub refused the enrolment token.
    #[error("the hub refused the enrolment token ({reason}): {message}")]
    Refused {
        /// The hub's reason code (`unknown_token`, `token_already_used`,
        /// `token_expired`, `bad_csr`…).
        reason: String,
        /// The hub's explanation, on one line.
        message: String,
    },
    /// The enrolled state or an issued SVID is unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Stopped (`cancel` fired) before enrolment completed.
    #[error("stopped before enrolment completed")]
    Cancelled,
    /// The hub says this client's SVID is revoked: reconnecting with it is
    /// pointless, so the client stopped.
    #[error("the hub revoked the SVID of {spiffe_id} ({how}); {next_step}")]
    Revoked {
        /// The client's SPIFFE ID.
        spiffe_id: String,
        /// How the hub said so.
        how: String,
        /// What to do about it.
        next_step: String,
    },
}

/// How [`Client::run`] ended after `cancel` fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The tunnel was closed and the identity kept (a static SVID, or an
    /// enrolled one without [`Client::revoke_on_stop`]).
    Kept,
    /// The hub acknowledged the goodbye and revoked the deployment;
    /// `svid.pem` and `svid.key` were deleted.
    Revoked,
    /// The hub could not be told (no tunnel, no acknowledgement in time);
    /// `svid.pem` and `svid.key` were deleted anyway, and the operator
    /// should revoke the deployment at the hub.
    HubNotTold {
        /// Why the goodbye did not get through.
        why: String,
    },
}

/// How one tunnel ended.
enum TunnelEnd {
    /// Lost or closed; reconnect.
    Lost(String),
    /// The hub closed it as revoked.
    Revoked(String),
    /// `cancel` fired; the goodbye's outcome if one was said.
    Stopped(Option<Result<(), String>>),
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

/// The identity in use and the QUIC config presenting it.
struct Active {
    identity: CurrentIdentity,
    quic: ClientQuicConfig,
}

/// Text from the network, made one printable line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn new_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(250), Duration::from_secs(30))
}

/// The addresses in a hub setting: one `HOST:PORT`, or several (replicas of
/// one hub sharing its store) separated by commas.
pub fn hub_addresses(hub: &str) -> Vec<&str> {
    hub.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect()
}

async fn resolve(hub: &str) -> Result<SocketAddr, NetError> {
    tokio::net::lookup_host(hub)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| NetError::Protocol(format!("cannot resolve the hub address {hub}")))
}

fn log_to(log: &Option<Arc<ConnectionLog>>, record: ConnectionRecord) {
    if let Some(log) = log {
        log.record(&record);
    }
}

/// The hub command that revokes the deployment named by `spiffe_id`
/// (`spiffe://TD/ws/W/dep/D`).
fn revoke_command(spiffe_id: &str) -> String {
    let path = ewii_wire::svid::SpiffeId::parse(spiffe_id)
        .map(|id| id.path().to_owned())
        .unwrap_or_default();
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["", "ws", workspace, "dep", deployment] => {
            format!("ewii-hub revoke --workspace {workspace} --deployment {deployment}")
        }
        _ => format!("ewii-hub revoke --workspace W --deployment D (for {spiffe_id})"),
    }
}

/// How long a tunnel must have stayed up for the reconnect backoff to
/// start again from its base delay.
pub const STABLE_TUNNEL: Duration = Duration::from_secs(10);

/// The running client.
pub struct Client {
    settings: ClientSettings,
    /// The SPIFFE ID: renewal keeps it, so it never changes.
    identity: String,
    app_verifier: Arc<HubCertVerifier>,
    /// Judges the hub's TLS certificate: the hub CA, or `tls_ca`.
    tls_verifier: HubCertVerifier,
    /// The identity the next connection presents; renewal swaps it.
    current: RwLock<Arc<Active>>,
    /// Where an enrolled identity is kept; `None` for a static one.
    store: Option<IdentityStore>,
    /// Cleared when the hub says the SVID cannot be renewed.
    renewable: AtomicBool,
    /// Say goodbye and forget an enrolled identity on stop.
    revoke_on_stop: bool,
    /// Which of the hub's addresses is dialled next (modulo their number).
    hub_index: AtomicUsize,
}

impl Client {
    /// A client with a static SVID. Checks the SVID, the hub CA and the TLS
    /// setup once, up front, so a configuration mistake fails at start with
    /// a clear message.
    pub fn new(options: ClientOptions) -> Result<Client, ClientError> {
        let (settings, source) = options.into_parts();
        let IdentitySource::Static(keys) = source else {
            return Err(ClientError::Svid("no SVID".into()));
        };
        let identity = CurrentIdentity::from_keys(keys).map_err(|e| match e {
            IdentityError::Svid(why) => ClientError::Svid(why),
            other => ClientError::Identity(other),
        })?;
        Self::build(settings, identity, None)
    }

    /// A client with its identity from `source`. For an enrolled identity:
    /// - a usable SVID in the state directory is used (a token, if given,
    ///   is ignored: the client is already enrolled);
    /// - otherwise (never enrolled, or the SVID expired) the client enrols
    ///   with the token: it generates a key, sends the token and a CSR, and
    ///   checks and saves what the hub issues. A hub that cannot be reached
    ///   is retried with backoff until `cancel` fires; a refused token is
    ///   [`ClientError::Refused`];
    /// - without a token and without state, [`ClientError::NotEnrolled`].
    ///
    /// An expired SVID without a token is used anyway (the hub refuses it;
    /// the client keeps trying and says why).
    pub async fn start(
        settings: ClientSettings,
        source: IdentitySource,
        cancel: &CancellationToken,
    ) -> Result<Client, ClientError> {
        let (state, token) = match source {
            IdentitySource::Static(keys) => {
                let identity = CurrentIdentity::from_keys(keys)?;
                return Self::build(settings, identity, None);
            }
            IdentitySource::Enrolled { state, token } => (state, token),
        };
        let store = IdentityStore::new(state);
        let saved = match store.load() {
            Ok(saved) => saved,
            Err(e) if token.is_some() => {
                tracing::warn!(error = %e, "the saved identity is unusable; enrolling again with the token");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let now = SystemTime::now();
        let identity = match (saved, token) {
            (Some(saved), None) => {
                if saved.is_expired(now) {
                    tracing::error!(
                        spiffe_id = saved.spiffe_id(),
                        "the saved SVID expired at {}: the hub will refuse it; this client needs \
                         a new enrolment token (ask the operator for `ewii-hub deployment token`, \
                         then pass --enrollment-token-file FILE or set EWII_ENROLLMENT_TOKEN)",
                        saved.svid().expires_at_rfc3339()
                    );
                }
                saved
            }
            (Some(saved), Some(_)) if !saved.is_expired(now) => {
                tracing::info!(
                    spiffe_id = saved.spiffe_id(),
                    serial = %saved.svid().serial,
                    "already enrolled as {}; the enrolment token is not needed and was not used",
                    saved.spiffe_id()
                );
                saved
            }
            (saved, Some(token)) => {
                if let Some(saved) = saved {
                    tracing::info!(
                        spiffe_id = saved.spiffe_id(),
                        "the saved SVID expired at {}; enrolling again with the token",
                        saved.svid().expires_at_rfc3339()
                    );
                }
                Self::enrol(&settings, &store, &token, cancel).await?
            }
            (None, None) => return Err(ClientError::NotEnrolled),
        };
        Self::build(settings, identity, Some(store))
    }

    fn build(
        settings: ClientSettings,
        identity: CurrentIdentity,
        store: Option<IdentityStore>,
    ) -> Result<Client, ClientError> {
        let app_verifier = Arc::new(HubCertVerifier::new(&settings.hub_ca, &settings.hub_name)?);
        let tls_verifier = match &settings.tls_ca {
            Some(roots) => HubCertVerifier::new(roots, &settings.hub_name)?,
            None => (*app_verifier).clone(),
        };
        let quic = ClientQuicConfig::tunnel(identity.keys(), &tls_verifier)?;
        Ok(Client {
            identity: identity.spiffe_id().to_owned(),
            settings,
            app_verifier,
            tls_verifier,
            current: RwLock::new(Arc::new(Active { identity, quic })),
            store,
            renewable: AtomicBool::new(true),
            revoke_on_stop: false,
            hub_index: AtomicUsize::new(0),
        })
    }

    /// Whether stopping (`cancel`) revokes an enrolled identity: the client
    /// says a signed goodbye over the live tunnel (the hub revokes the
    /// deployment), then deletes `svid.pem` and `svid.key` (even when the
    /// hub could not be told), so starting again needs a new enrolment
    /// token. Off by default; ignored for a static SVID.
    pub fn revoke_on_stop(mut self, revoke: bool) -> Client {
        self.revoke_on_stop = revoke;
        self
    }

    /// Whether a stop says goodbye (an enrolled identity, revoke on stop).
    fn says_goodbye(&self) -> bool {
        self.revoke_on_stop && self.store.is_some()
    }

    /// The client's own SPIFFE ID.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The SVID the next connection presents.
    pub fn svid(&self) -> SvidInfo {
        self.active().identity.svid().clone()
    }

    /// Whether this client renews its SVID (an enrolled identity the hub
    /// has not refused to renew).
    pub fn renews(&self) -> bool {
        self.store.is_some() && self.renewable.load(Ordering::SeqCst)
    }

    fn active(&self) -> Arc<Active> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn log(&self, record: ConnectionRecord) {
        log_to(&self.settings.log, record);
    }

    /// The hub address dialled next.
    fn hub(&self) -> String {
        let addrs = hub_addresses(&self.settings.hub);
        match addrs.len() {
            0 => self.settings.hub.clone(),
            n => addrs[self.hub_index.load(Ordering::SeqCst) % n].to_owned(),
        }
    }

    /// After a failed dial or a lost tunnel: the next address of the hub
    /// (another replica), if it has several.
    fn next_hub(&self) {
        self.hub_index.fetch_add(1, Ordering::SeqCst);
    }

    async fn connect(&self, dialer: &Dialer, hub: &str) -> Result<ClientTunnel, NetError> {
        let addr = resolve(hub).await?;
        let active = self.active();
        let credentials = active.identity.keys().credentials()?;
        let config = ClientConfig {
            credentials,
            identity: self.identity.clone(),
            hub_name: self.settings.hub_name.clone(),
            hub_verifier: self.app_verifier.clone(),
        };
        dialer.connect(&active.quic, addr, config).await
    }

    /// Says why a connection failed when the SVID has expired.
    fn explain_expiry(&self) {
        let active = self.active();
        if !active.identity.is_expired(SystemTime::now()) {
            return;
        }
        let expired = active.identity.svid().expires_at_rfc3339();
        if self.store.is_some() {
            tracing::error!(
                spiffe_id = %self.identity,
                "the SVID expired at {expired}, so the hub refuses it: this client needs a new \
                 enrolment token (ask the operator for `ewii-hub deployment token`), then restart \
                 it with --enrollment-token-file FILE or EWII_ENROLLMENT_TOKEN; retrying meanwhile"
            );
        } else {
            tracing::error!(
                spiffe_id = %self.identity,
                "the SVID given with --svid expired at {expired}, so the hub refuses it: replace \
                 it (or enrol with a token); retrying meanwhile"
            );
        }
    }

    /// Keeps the tunnel up until `cancel` fires (then says how it stopped),
    /// or until the hub says the SVID is revoked
    /// ([`ClientError::Revoked`]). Every other failure is retried.
    pub async fn run(self, cancel: CancellationToken) -> Result<Stopped, ClientError> {
        let this = Arc::new(self);
        // Outbound only: the dialer refuses every incoming connection.
        let dialer = Dialer::bind()?;
        let mut backoff = new_backoff();
        // Ok(goodbye outcome, if one was said) on stop, Err(how) on revocation.
        let ended: Result<Option<Result<(), String>>, String> = loop {
            if cancel.is_cancelled() {
                break Ok(None);
            }
            let attempt_at = Instant::now();
            let hub = this.hub();
            match this.connect(&dialer, &hub).await {
                Ok(tunnel) => {
                    tracing::info!(%hub, identity = %this.identity, "tunnel up");
                    let mut up = ConnectionRecord::now(&this.identity, "tunnel_up");
                    up.destination = Some(hub.clone());
                    this.log(up);
                    let end = this.clone().serve(tunnel, &cancel).await;
                    let reason = match &end {
                        TunnelEnd::Lost(reason) | TunnelEnd::Revoked(reason) => reason.clone(),
                        TunnelEnd::Stopped(Some(Ok(()))) => "client stopping: goodbye".into(),
                        TunnelEnd::Stopped(_) => "client stopping".into(),
                    };
                    tracing::warn!(%reason, "tunnel down");
                    let mut down = ConnectionRecord::now(&this.identity, "tunnel_down");
                    down.destination = Some(hub.clone());
                    down.duration_ms = attempt_at.elapsed().as_millis() as u64;
                    down.outcome = reason;
                    this.log(down);
                    match end {
                        // The replica may be gone: try the next one.
                        TunnelEnd::Lost(_) => this.next_hub(),
                        TunnelEnd::Revoked(how) => break Err(how),
                        TunnelEnd::Stopped(goodbye) => break Ok(goodbye),
                    }
                    // Only a tunnel that stayed up resets the backoff: a hub
                    // that accepts and then drops the link at once (e.g. its
                    // adapter session fails) must not be redialled in a loop.
                    if attempt_at.elapsed() >= STABLE_TUNNEL {
                        backoff.reset();
                    }
                }
                Err(NetError::Revoked(how)) => {
                    let mut failed = ConnectionRecord::now(&this.identity, "connect_failed");
                    failed.destination = Some(hub.clone());
                    failed.duration_ms = attempt_at.elapsed().as_millis() as u64;
                    failed.outcome = how.clone();
                    this.log(failed);
                    break Err(how);
                }
                Err(e) => {
                    tracing::warn!(%hub, reason = e.reason(), error = %e, "cannot connect to the hub");
                    let mut failed = ConnectionRecord::now(&this.identity, "connect_failed");
                    failed.destination = Some(hub.clone());
                    failed.duration_ms = attempt_at.elapsed().as_millis() as u64;
                    failed.outcome = e.to_string();
                    this.log(failed);
                    this.explain_expiry();
                    this.next_hub();
                }
            }
            if cancel.is_cancelled() {
                break Ok(None);
            }
            let delay = backoff.next_delay(random_unit());
            tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => break Ok(None),
            }
        };
        // Let the close reach the hub.
        dialer.close("client stopping").await;
        match ended {
            Ok(goodbye) => this.stopped(goodbye),
            Err(how) => Err(this.revoked(how)),
        }
    }

    /// After a stop: with [`Client::revoke_on_stop`], forgets the enrolled
    /// identity and says whether the hub knows.
    fn stopped(&self, goodbye: Option<Result<(), String>>) -> Result<Stopped, ClientError> {
        let Some(store) = self.store.as_ref().filter(|_| self.says_goodbye()) else {
            return Ok(Stopped::Kept);
        };
        let goodbye =
            goodbye.unwrap_or_else(|| Err("no tunnel to the hub was up to say goodbye".into()));
        let mut record = ConnectionRecord::now(&self.identity, "goodbye");
        record.destination = Some(self.settings.hub.clone());
        if let Err(why) = &goodbye {
            record.outcome = why.clone();
        }
        self.log(record);
        store.forget()?;
        match goodbye {
            Ok(()) => {
                tracing::info!(
                    spiffe_id = %self.identity,
                    state = %store.dir().display(),
                    "deployment revoked at the hub on stop; starting again needs a new enrolment \
                     token (ewii-hub deployment token)"
                );
                Ok(Stopped::Revoked)
            }
            Err(why) => {
                tracing::warn!(
                    spiffe_id = %self.identity,
                    state = %store.dir().display(),
                    reason = %why,
                    "the hub was not told that this deployment stopped ({why}); its SVID and key \
                     were deleted here anyway, so starting again needs a new enrolment token \
                     (ewii-hub deployment token); the operator should revoke it at the hub: {}",
                    revoke_command(&self.identity)
                );
                Ok(Stopped::HubNotTold { why })
            }
        }
    }

    /// After the hub said the SVID is revoked: moves an enrolled SVID and
    /// key aside, logs the next step, and builds the error.
    fn revoked(&self, how: String) -> ClientError {
        let mut record = ConnectionRecord::now(&self.identity, "revoked");
        record.destination = Some(self.settings.hub.clone());
        record.outcome = how.clone();
        self.log(record);
        let next_step = match &self.store {
            Some(store) => {
                let moved = match store.set_aside() {
                    Ok(Some(path)) => format!("it was moved aside to {}", path.display()),
                    Ok(None) => "it is no longer in the state directory".to_owned(),
                    Err(e) => format!("moving it aside failed ({e})"),
                };
                format!(
                    "{moved}; this client needs a new enrolment token: ask the operator for \
                     `ewii-hub deployment token`, then start it with --enrollment-token-file \
                     FILE or EWII_ENROLLMENT_TOKEN"
                )
            }
            None => "replace --svid/--key with a newly issued SVID".to_owned(),
        };
        tracing::error!(spiffe_id = %self.identity, %how, "the hub revoked this client's SVID; stopping: {next_step}");
        ClientError::Revoked {
            spiffe_id: self.identity.clone(),
            how,
            next_step,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_setting_lists_one_or_several_replicas() {
        assert_eq!(
            hub_addresses("hub.example.com:443"),
            ["hub.example.com:443"]
        );
        assert_eq!(
            hub_addresses("10.0.0.1:4433, 10.0.0.2:4433,,[::1]:4433 "),
            ["10.0.0.1:4433", "10.0.0.2:4433", "[::1]:4433"]
        );
        assert!(hub_addresses(" , ").is_empty());
    }

    #[test]
    fn the_revoke_command_names_workspace_and_deployment() {
        assert_eq!(
            revoke_command("spiffe://example.org/ws/acme/dep/eu"),
            "ewii-hub revoke --workspace acme --deployment eu"
        );
        assert!(revoke_command("spiffe://example.org/other").contains("(for spiffe://"));
    }

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
