//! Enrolment and renewal over real QUIC on loopback: a minimal test hub
//! built from the library pieces the real hub uses (the enrolment ALPN next
//! to the tunnel's, single-use tokens, an rcgen workspace CA signing the
//! client's CSRs, renewal on the control stream), the client library or the
//! real `ewii-client` binary, and a real MCP adapter in-process.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../quic/tests/common/mod.rs"]
mod common;
#[path = "forward_support/mod.rs"]
mod forward_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::hub::keys;
use common::pki::{Leaf, TestCa, install_crypto_provider, set_validity};
use ewii_client::client::{Client, ClientError, ClientSettings};
use ewii_client::connlog::ConnectionLog;
use ewii_client::forward::{AllowList, Destination};
use ewii_client::identity::{IdentitySource, IdentityStore};
use ewii_quic::{
    Accepted, Closed, HubListener, HubTunnel, InMemoryTrust, ListenerConfig, SvidVerifier,
    TrustBundle,
};
use ewii_wire::enrol::{Control, EnrolRequest, EnrolResponse, Issued, Refusal};
use forward_support::{
    CREDENTIAL, TestAdapter, call_through, client_credential, exchange, initialize, initialized,
    request,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

const HUB_NAME: &str = "localhost";
const WORKSPACE: &str = "spiffe://example.org/ws/acme";
const DEPLOYMENT: &str = "spiffe://example.org/ws/acme/dep/eu";
const STEP: Duration = Duration::from_secs(15);
const TOKEN_ENV: &str = "EWII_ENROLLMENT_TOKEN";

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).unwrap();
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    SerialNumber::from_slice(&bytes)
}

/// The workspace CA, holding its key so that it can sign CSRs.
struct WorkspaceCa {
    cert: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl WorkspaceCa {
    fn new() -> WorkspaceCa {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "workspace acme");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        set_validity(
            &mut params,
            now - Duration::from_secs(86_400),
            now + Duration::from_secs(365 * 86_400),
        );
        params.serial_number = Some(random_serial());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        WorkspaceCa {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn bundle(&self) -> TrustBundle {
        TrustBundle::from_der(vec![self.cert.clone()]).unwrap()
    }

    /// Issues an X509-SVID for `spiffe_id` to the CSR's key, valid from now
    /// for `ttl`: one URI SAN, cA=false, keyUsage digitalSignature, EKU
    /// clientAuth and serverAuth.
    fn sign(&self, csr_der: &[u8], spiffe_id: &str, ttl: Duration) -> Result<Issued, String> {
        let der = rustls::pki_types::CertificateSigningRequestDer::from(csr_der.to_vec());
        let mut csr = CertificateSigningRequestParams::from_der(&der).map_err(|e| e.to_string())?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        set_validity(&mut params, now, now + ttl);
        csr.params = params;
        let cert = csr.signed_by(&self.issuer).map_err(|e| e.to_string())?;
        let leaf = ewii_wire::svid::check_leaf(cert.der()).map_err(|e| e.to_string())?;
        Ok(Issued {
            spiffe_id: spiffe_id.to_owned(),
            svid_pem: cert.pem(),
            bundle_pem: self.cert_pem.clone(),
            serial: leaf.serial,
            expires_at: leaf.not_after,
        })
    }
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// What the test hub remembers.
struct HubState {
    ca: WorkspaceCa,
    ttl: Duration,
    /// token → (SPIFFE ID, used)
    tokens: Mutex<HashMap<String, (String, bool)>>,
    /// Every enrolment request, accepted or not.
    enrol_requests: AtomicUsize,
    /// Serials issued at enrolment.
    enrolled: Mutex<Vec<String>>,
    /// Renewal requests seen.
    renew_requests: AtomicUsize,
    /// Serials issued at renewal, in order.
    renewed: Mutex<Vec<String>>,
    /// Refusals to answer renewals with, in order, before issuing again.
    renew_refusals: Mutex<Vec<&'static str>>,
    /// Close a tunnel once the SVID in force for it has expired, as the
    /// real hub does.
    enforce_expiry: bool,
    /// Tunnels closed because their SVID expired.
    expiry_closes: AtomicUsize,
    /// Goodbyes received: the SPIFFE ID, and whether they verified.
    goodbyes: Mutex<Vec<(String, Result<(), String>)>>,
}

impl HubState {
    fn enrol(&self, request: &EnrolRequest) -> EnrolResponse {
        self.enrol_requests.fetch_add(1, Ordering::SeqCst);
        let refuse = |reason: &str, message: &str| {
            EnrolResponse::Refused(Refusal {
                reason: reason.into(),
                message: message.into(),
            })
        };
        let id = {
            let mut tokens = self.tokens.lock().unwrap();
            match tokens.get_mut(request.token.as_str()) {
                None => {
                    return refuse(
                        "token_unknown",
                        "this enrolment token is not known; ask the operator for \
                         `ewii-hub deployment token --workspace acme eu`",
                    );
                }
                Some((_, true)) => {
                    return refuse(
                        "token_used",
                        "this enrolment token was already used; ask the operator for \
                         `ewii-hub deployment token --workspace acme eu`",
                    );
                }
                Some((id, used)) => {
                    *used = true;
                    id.clone()
                }
            }
        };
        match self.ca.sign(&b64(&request.csr), &id, self.ttl) {
            Ok(issued) => {
                self.enrolled.lock().unwrap().push(issued.serial.clone());
                EnrolResponse::Issued(issued)
            }
            Err(e) => refuse("bad_csr", &e),
        }
    }
}

/// The accepting side: enrolment connections and tunnels on one port.
struct EnrolHub {
    addr: SocketAddr,
    listener: Arc<HubListener>,
    state: Arc<HubState>,
    tunnels: mpsc::Receiver<Arc<HubTunnel>>,
}

struct Pki {
    hub_ca: TestCa,
    hub: Leaf,
}

impl Pki {
    fn new() -> Pki {
        install_crypto_provider();
        let hub_ca = TestCa::new("hub ca");
        let hub = hub_ca.server(HUB_NAME);
        Pki { hub_ca, hub }
    }

    fn hub_ca_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("hub-ca.pem");
        std::fs::write(&path, &self.hub_ca.cert_pem).unwrap();
        path
    }

    fn start_hub(&self, ttl: Duration, enforce_expiry: bool) -> EnrolHub {
        let ca = WorkspaceCa::new();
        let trust = InMemoryTrust::new().with_bundle(WORKSPACE, ca.bundle());
        let verifier = Arc::new(SvidVerifier::new(Arc::new(trust)));
        let mut config = ListenerConfig::new(keys(&self.hub), vec![HUB_NAME.into()], verifier);
        config.enrolment = true;
        let listener = Arc::new(HubListener::bind("127.0.0.1:0".parse().unwrap(), config).unwrap());
        let addr = listener.local_addr();
        let state = Arc::new(HubState {
            ca,
            ttl,
            tokens: Mutex::default(),
            enrol_requests: AtomicUsize::new(0),
            enrolled: Mutex::default(),
            renew_requests: AtomicUsize::new(0),
            renewed: Mutex::default(),
            renew_refusals: Mutex::default(),
            enforce_expiry,
            expiry_closes: AtomicUsize::new(0),
            goodbyes: Mutex::default(),
        });
        let (tx, tunnels) = mpsc::channel(16);
        let (accepting, st) = (listener.clone(), state.clone());
        tokio::spawn(async move {
            while let Some(accepted) = accepting.accept().await {
                let (tx, state) = (tx.clone(), st.clone());
                tokio::spawn(async move {
                    match accepted {
                        Accepted::Enrol(exchange) => {
                            let answer = state.enrol(exchange.request());
                            let _ = exchange.answer(&answer).await;
                        }
                        Accepted::Tunnel(tunnel) => {
                            let tunnel = Arc::new(tunnel);
                            tokio::spawn(serve_controls(tunnel.clone(), state.clone()));
                            let _ = tx.send(tunnel).await;
                        }
                    }
                });
            }
        });
        EnrolHub {
            addr,
            listener,
            state,
            tunnels,
        }
    }
}

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix as u64)
}

/// The serial of the SVID a tunnel's client presented.
fn peer_serial(tunnel: &HubTunnel) -> String {
    ewii_wire::svid::serial_hex(&tunnel.peer().chain[0]).unwrap()
}

/// Answers renewals on a tunnel's control stream; with `enforce_expiry`,
/// closes the tunnel when the SVID in force for it expires.
async fn serve_controls(tunnel: Arc<HubTunnel>, state: Arc<HubState>) {
    let mut expires = at(ewii_wire::svid::check_leaf(&tunnel.peer().chain[0])
        .unwrap()
        .not_after);
    loop {
        let watchdog = async {
            if state.enforce_expiry {
                let wait = expires
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                tokio::time::sleep(wait).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let control = tokio::select! {
            c = tunnel.next_control() => c,
            _ = watchdog => {
                state.expiry_closes.fetch_add(1, Ordering::SeqCst);
                tunnel.close_expired();
                return;
            }
        };
        let (id, csr) = match control {
            Some(Ok(Control::Renew { id, csr })) => (id, csr),
            Some(Ok(Control::Goodbye { at, signature })) => {
                // What the real hub does: verify, revoke, ack, close.
                let verified = tunnel
                    .verify_goodbye(at, &signature)
                    .map_err(|e| e.to_string());
                let ok = verified.is_ok();
                state
                    .goodbyes
                    .lock()
                    .unwrap()
                    .push((tunnel.peer().identity.clone(), verified));
                if ok {
                    let _ = tunnel.send_control(&Control::GoodbyeAck {}).await;
                    // Give the client a moment to read the ack and close.
                    let _ = tokio::time::timeout(Duration::from_secs(1), tunnel.closed()).await;
                    if tunnel.close_reason().is_none() {
                        tunnel.close_revoked();
                    }
                    return;
                }
                continue;
            }
            None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        };
        state.renew_requests.fetch_add(1, Ordering::SeqCst);
        let refusal = {
            let mut refusals = state.renew_refusals.lock().unwrap();
            (!refusals.is_empty()).then(|| refusals.remove(0))
        };
        let answer = match refusal {
            Some(reason) => Control::Refused {
                id,
                refusal: Refusal {
                    reason: reason.into(),
                    message: format!("refused for the test ({reason})"),
                },
            },
            None => match state
                .ca
                .sign(&b64(&csr), &tunnel.peer().identity, state.ttl)
            {
                Ok(issued) => {
                    expires = at(issued.expires_at);
                    state.renewed.lock().unwrap().push(issued.serial.clone());
                    Control::Issued { id, issued }
                }
                Err(e) => Control::Refused {
                    id,
                    refusal: Refusal {
                        reason: "bad_csr".into(),
                        message: e,
                    },
                },
            },
        };
        if tunnel.send_control(&answer).await.is_err() {
            return;
        }
    }
}

impl EnrolHub {
    fn add_token(&self, token: &str) {
        self.state
            .tokens
            .lock()
            .unwrap()
            .insert(token.into(), (DEPLOYMENT.into(), false));
    }

    async fn next_tunnel(&mut self) -> Arc<HubTunnel> {
        tokio::time::timeout(STEP, self.tunnels.recv())
            .await
            .expect("a tunnel reaches the hub in time")
            .expect("the accept loop is running")
    }

    fn enrolled(&self) -> Vec<String> {
        self.state.enrolled.lock().unwrap().clone()
    }

    fn renewed(&self) -> Vec<String> {
        self.state.renewed.lock().unwrap().clone()
    }
}

fn settings(hub: SocketAddr, pki: &Pki, allow: &Destination, log: &Path) -> ClientSettings {
    ClientSettings {
        hub: hub.to_string(),
        hub_name: HUB_NAME.into(),
        hub_ca: vec![pki.hub_ca.cert.clone()],
        tls_ca: None,
        allow: AllowList::new(vec![allow.clone()]).unwrap(),
        adapter_credential: Some(client_credential()),
        log: Some(Arc::new(ConnectionLog::open(log).unwrap())),
    }
}

/// A fresh directory holding one client's state and connection log, and
/// the token that stops it.
fn workdir() -> (tempfile::TempDir, PathBuf, PathBuf, CancellationToken) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("connections.jsonl");
    (dir, state, log, CancellationToken::new())
}

/// Starts a client whose identity is enrolled in `state` (with `token`,
/// if any), logging to `log`.
async fn start_enrolled(
    hub: &EnrolHub,
    pki: &Pki,
    adapter: &TestAdapter,
    state: &Path,
    log: &Path,
    token: Option<&str>,
    cancel: &CancellationToken,
) -> Result<Client, ClientError> {
    Client::start(
        settings(hub.addr, pki, &adapter.tcp, log),
        enrolled(state, token),
        cancel,
    )
    .await
}

fn enrolled(state: &Path, token: Option<&str>) -> IdentitySource {
    IdentitySource::Enrolled {
        state: state.to_owned(),
        token: token.map(|t| Zeroizing::new(t.to_owned())),
    }
}

async fn mcp_opening(tunnel: &HubTunnel) {
    let init = call_through(tunnel, &initialize(1)).await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "ewii-adapter",
        "{init}"
    );
    assert!(exchange(tunnel, None, &initialized()).await.is_empty());
}

async fn tools_list(tunnel: &HubTunnel, id: u64) {
    let tools = call_through(tunnel, &request(id, "tools/list", json!({}))).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
}

fn log_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events<'a>(records: &'a [Value], event: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event"] == event).collect()
}

fn saved_serial(state: &Path) -> String {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(state.join("svid.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    ewii_wire::svid::serial_hex(&chain[0]).unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The real binary, with `--state` and the given extra arguments and
/// environment; stdout and stderr captured.
fn client_binary(
    pki: &Pki,
    hub: SocketAddr,
    state: &Path,
    allow: &Destination,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let etc = state.parent().unwrap().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ewii-client"));
    cmd.args(["run", "--hub", &format!("{HUB_NAME}:{}", hub.port())])
        .arg("--hub-ca")
        .arg(pki.hub_ca_pem(&etc))
        .arg("--state")
        .arg(state)
        .arg("--allow")
        .arg(allow.to_string())
        .args(extra)
        .env_remove(TOKEN_ENV)
        .env_remove("EWII_ENROLLMENT_TOKEN_FILE")
        .env_remove("EWII_SVID")
        .env_remove("EWII_SVID_KEY")
        .env_remove("EWII_ADAPTER_CREDENTIAL_FILE")
        .env("EWII_ADAPTER_CREDENTIAL", CREDENTIAL)
        .env("EWII_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a child to exit on its own; returns (exit code, stdout, stderr).
async fn finished(child: Child) -> (Option<i32>, String, String) {
    let pid = child.id();
    let output = tokio::time::timeout(
        STEP,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .unwrap_or_else(|_| panic!("ewii-client (pid {pid}) did not exit"))
    .unwrap()
    .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_enrols_once_and_the_tunnel_comes_up_with_the_issued_identity() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let mut hub = pki.start_hub(Duration::from_secs(3600), true);
    hub.add_token("tok-first-9f2c");
    let (dir, state, log, cancel) = workdir();

    let client = start_enrolled(
        &hub,
        &pki,
        &adapter,
        &state,
        &log,
        Some("tok-first-9f2c"),
        &cancel,
    )
    .await
    .unwrap();
    // The hub issued exactly one SVID, and it is what the client holds and
    // saved: chain, private key (owner-only), bundle.
    let issued = hub.enrolled();
    assert_eq!(issued.len(), 1);
    assert_eq!(client.identity(), DEPLOYMENT);
    assert_eq!(client.svid().serial, issued[0]);
    assert!(client.renews());
    assert_eq!(saved_serial(&state), issued[0]);
    assert_eq!(mode(&state.join("svid.key")), 0o600);
    assert!(
        std::fs::read_to_string(state.join("svid.key"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert_eq!(
        std::fs::read_to_string(state.join("bundle.pem")).unwrap(),
        hub.state.ca.cert_pem
    );
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The tunnel comes up with the issued identity, and forwards.
    let running = tokio::spawn(client.run(cancel.clone()));
    let tunnel = hub.next_tunnel().await;
    assert_eq!(tunnel.peer().identity, DEPLOYMENT);
    assert_eq!(peer_serial(&tunnel), issued[0]);
    mcp_opening(&tunnel).await;
    tools_list(&tunnel, 2).await;
    let records = log_records(&log);
    let enrolments = events(&records, "enrolled");
    assert_eq!(enrolments.len(), 1, "{records:#?}");
    assert_eq!(enrolments[0]["spiffe_id"], DEPLOYMENT);
    assert_eq!(enrolments[0]["outcome"], issued[0].as_str());

    // A second client with the same token is refused, and says why.
    let other = dir.path().join("other");
    let err = start_enrolled(
        &hub,
        &pki,
        &adapter,
        &other,
        &dir.path().join("other.jsonl"),
        Some("tok-first-9f2c"),
        &cancel,
    )
    .await
    .map(|_| ())
    .unwrap_err();
    match &err {
        ClientError::Refused { reason, message } => {
            assert_eq!(reason, "token_used");
            assert!(message.contains("ewii-hub deployment token"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        err.to_string().contains("refused the enrolment token"),
        "{err}"
    );
    assert!(!other.join("svid.pem").exists());
    let err = start_enrolled(
        &hub,
        &pki,
        &adapter,
        &other,
        &dir.path().join("other.jsonl"),
        Some("tok-never-issued"),
        &cancel,
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { reason, .. } if reason == "token_unknown"),
        "{err:?}"
    );

    // The binary stops at once, with exit code 2, one line naming the
    // reason, and without printing the token.
    let child = client_binary(
        &pki,
        hub.addr,
        &dir.path().join("binary"),
        &adapter.tcp,
        &[],
        &[(TOKEN_ENV, "tok-first-9f2c")],
    );
    let (code, _, stderr) = finished(child).await;
    assert_eq!(code, Some(2), "{stderr}");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(
        error_lines[0].contains("the hub refused the enrolment token (token_used)"),
        "{stderr}"
    );
    assert!(!stderr.contains("tok-first-9f2c"), "{stderr}");
    assert_eq!(hub.enrolled().len(), 1, "only the first request was issued");
    assert_eq!(hub.state.enrol_requests.load(Ordering::SeqCst), 4);

    cancel.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_renews_over_the_live_tunnel_without_dropping_it() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    // 4 s SVIDs, and the hub closes a tunnel whose SVID has expired.
    let mut hub = pki.start_hub(Duration::from_secs(4), true);
    hub.add_token("tok-renew");
    let (_dir, state, log, cancel) = workdir();
    let client = start_enrolled(
        &hub,
        &pki,
        &adapter,
        &state,
        &log,
        Some("tok-renew"),
        &cancel,
    )
    .await
    .unwrap();
    let first = client.svid().serial;
    let running = tokio::spawn(client.run(cancel.clone()));
    let tunnel = hub.next_tunnel().await;
    let connection = tunnel.stable_id();
    mcp_opening(&tunnel).await;

    // Requests flow the whole time, several in flight at once.
    let started = Instant::now();
    let mut answered = 0u64;
    while started.elapsed() < Duration::from_secs(12) {
        let batch = (0..4).map(|i| tools_list(&tunnel, 10 + answered + i));
        futures::future::join_all(batch).await;
        answered += 4;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "MEASURED {answered} requests answered; renewals: {:?}",
        hub.renewed()
    );

    // At least two renewals, each a fresh SVID, over the same connection.
    let renewed = hub.renewed();
    assert!(renewed.len() >= 2, "{renewed:?}");
    let mut distinct = renewed.clone();
    distinct.push(first.clone());
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), renewed.len() + 1, "{renewed:?}");
    assert!(tunnel.close_reason().is_none());
    assert_eq!(tunnel.stable_id(), connection);
    assert_eq!(hub.state.expiry_closes.load(Ordering::SeqCst), 0);
    assert!(hub.tunnels.try_recv().is_err(), "the client reconnected");
    let records = log_records(&log);
    assert_eq!(events(&records, "tunnel_up").len(), 1, "{records:#?}");
    assert!(events(&records, "tunnel_down").is_empty(), "{records:#?}");
    assert!(events(&records, "renew_failed").is_empty(), "{records:#?}");
    let logged: Vec<&str> = events(&records, "renewed")
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert!(
        logged.len() >= 2 && logged.iter().all(|s| renewed.iter().any(|r| r == s)),
        "{logged:?} vs {renewed:?}"
    );
    // Saved as it went.
    let saved = saved_serial(&state);
    assert!(renewed.contains(&saved), "{saved} not in {renewed:?}");
    assert_eq!(mode(&state.join("svid.key")), 0o600);

    // The next connection presents a renewed SVID (the first one has long
    // expired).
    tunnel.close("test: reconnect");
    let again = hub.next_tunnel().await;
    let serial = peer_serial(&again);
    assert!(
        hub.renewed().contains(&serial) && serial != first,
        "{serial}"
    );
    mcp_opening(&again).await;
    tools_list(&again, 2).await;
    cancel.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_renewals_are_retried_and_not_renewable_stops_renewing() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let mut hub = pki.start_hub(Duration::from_secs(8), false);
    hub.add_token("tok-refuse");
    *hub.state.renew_refusals.lock().unwrap() = vec!["internal", "not_renewable"];
    let (_dir, state, log, cancel) = workdir();
    let client = start_enrolled(
        &hub,
        &pki,
        &adapter,
        &state,
        &log,
        Some("tok-refuse"),
        &cancel,
    )
    .await
    .unwrap();
    let enrolled_at = Instant::now();
    let running = tokio::spawn(client.run(cancel.clone()));
    let _tunnel = hub.next_tunnel().await;

    // Due at 3.6–4.4 s; `internal` is retried a second later; after
    // `not_renewable` nothing more is asked.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(enrolled_at.elapsed())).await;
    assert_eq!(hub.state.renew_requests.load(Ordering::SeqCst), 2);
    assert!(hub.renewed().is_empty());
    let records = log_records(&log);
    let failed: Vec<&str> = events(&records, "renew_failed")
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 2, "{records:#?}");
    assert!(failed[0].starts_with("internal:"), "{failed:?}");
    assert!(failed[1].starts_with("not_renewable:"), "{failed:?}");
    assert_eq!(saved_serial(&state), hub.enrolled()[0]);
    cancel.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_client_reuses_its_saved_svid_without_a_token() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let mut hub = pki.start_hub(Duration::from_secs(3600), true);
    hub.add_token("tok-restart");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tok-restart\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let token_arg = ["--enrollment-token-file", token_file.to_str().unwrap()];

    // First run: the binary enrols with the token file.
    let first = Killed(client_binary(
        &pki,
        hub.addr,
        &state,
        &adapter.tcp,
        &token_arg,
        &[],
    ));
    let tunnel = hub.next_tunnel().await;
    let serial = peer_serial(&tunnel);
    assert_eq!(hub.enrolled(), vec![serial.clone()]);
    mcp_opening(&tunnel).await;
    drop(first);
    drop(tunnel);
    assert_eq!(mode(&state.join("svid.key")), 0o600);

    // --check reports the saved identity without contacting the hub.
    let before = hub.state.enrol_requests.load(Ordering::SeqCst);
    let check = client_binary(
        &pki,
        hub.addr,
        &state,
        &adapter.tcp,
        &["--check", "--json"],
        &[],
    );
    let (code, stdout, stderr) = finished(check).await;
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["identity_source"], "enrolled");
    assert_eq!(report["enrolled"], true);
    assert_eq!(report["identity"], DEPLOYMENT);
    assert_eq!(report["serial"], serial.as_str());
    assert_eq!(report["expired"], false);
    assert!(report["expires_at"].as_str().unwrap().ends_with('Z'));

    // Restarted without a token: the saved SVID, no enrolment.
    let second = Killed(client_binary(
        &pki,
        hub.addr,
        &state,
        &adapter.tcp,
        &[],
        &[],
    ));
    let tunnel = hub.next_tunnel().await;
    assert_eq!(tunnel.peer().identity, DEPLOYMENT);
    assert_eq!(peer_serial(&tunnel), serial);
    mcp_opening(&tunnel).await;
    tools_list(&tunnel, 2).await;
    drop(second);
    drop(tunnel);

    // Restarted with the (used) token still configured: the token is not
    // sent, the client is already enrolled.
    let third = Killed(client_binary(
        &pki,
        hub.addr,
        &state,
        &adapter.tcp,
        &token_arg,
        &[],
    ));
    let tunnel = hub.next_tunnel().await;
    assert_eq!(peer_serial(&tunnel), serial);
    drop(third);
    assert_eq!(hub.state.enrol_requests.load(Ordering::SeqCst), before);

    // The library does the same.
    let cancel = CancellationToken::new();
    let client = start_enrolled(
        &hub,
        &pki,
        &adapter,
        &state,
        &dir.path().join("lib.jsonl"),
        None,
        &cancel,
    )
    .await
    .unwrap();
    assert_eq!(client.svid().serial, serial);
    assert_eq!(hub.state.enrol_requests.load(Ordering::SeqCst), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_saved_svid_is_replaced_by_enrolling_with_a_new_token() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let hub = pki.start_hub(Duration::from_secs(2), true);
    hub.add_token("tok-a");
    hub.add_token("tok-b");
    let (_dir, state, log, cancel) = workdir();
    let first = start_enrolled(&hub, &pki, &adapter, &state, &log, Some("tok-a"), &cancel)
        .await
        .unwrap()
        .svid();
    tokio::time::sleep(
        at(first.not_after)
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            + Duration::from_millis(1100),
    )
    .await;
    assert!(
        IdentityStore::new(&state)
            .load()
            .unwrap()
            .unwrap()
            .is_expired(SystemTime::now())
    );

    // Without a token the expired SVID is all there is (the client keeps
    // trying and says why).
    let stale = start_enrolled(&hub, &pki, &adapter, &state, &log, None, &cancel)
        .await
        .unwrap();
    assert_eq!(stale.svid().serial, first.serial);

    // With a new token it enrols again.
    let fresh = start_enrolled(&hub, &pki, &adapter, &state, &log, Some("tok-b"), &cancel)
        .await
        .unwrap();
    assert_ne!(fresh.svid().serial, first.serial);
    assert_eq!(hub.enrolled().len(), 2);
    assert_eq!(saved_serial(&state), fresh.svid().serial);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_state_or_token_the_client_says_how_to_enrol() {
    let pki = Pki::new();
    let hub = pki.start_hub(Duration::from_secs(3600), true);
    let allow: Destination = "tcp:127.0.0.1:9".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");

    for extra in [&[][..], &["--check"][..]] {
        let child = client_binary(&pki, hub.addr, &state, &allow, extra, &[]);
        let (code, stdout, stderr) = finished(child).await;
        assert_eq!(code, Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("this client is not enrolled yet")
                && stderr.contains("--enrollment-token-file FILE")
                && stderr.contains(TOKEN_ENV)
                && stderr.contains("ewii-hub deployment token"),
            "{stderr}"
        );
        if extra == ["--check"] {
            assert!(stdout.contains("not enrolled yet"), "{stdout}");
        }
    }
    assert_eq!(hub.state.enrol_requests.load(Ordering::SeqCst), 0);

    // --check with a token: not enrolled yet, the token will be used.
    let child = client_binary(
        &pki,
        hub.addr,
        &state,
        &allow,
        &["--check", "--json"],
        &[(TOKEN_ENV, "tok-check")],
    );
    let (code, stdout, stderr) = finished(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["enrolled"], false);
    assert_eq!(report["identity"], Value::Null);
    assert!(!stdout.contains("tok-check") && !stderr.contains("tok-check"));
    assert_eq!(hub.state.enrol_requests.load(Ordering::SeqCst), 0);

    // One identity source at a time.
    let svid = TestCa::new("elsewhere").svid(DEPLOYMENT);
    let (cert, key) = svid.write_pem(dir.path(), "svid");
    let token = dir.path().join("token");
    std::fs::write(&token, "tok").unwrap();
    let child = client_binary(
        &pki,
        hub.addr,
        &state,
        &allow,
        &[
            "--svid",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--enrollment-token-file",
            token.to_str().unwrap(),
        ],
        &[],
    );
    let (code, _, stderr) = finished(child).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let child = client_binary(
        &pki,
        hub.addr,
        &state,
        &allow,
        &[
            "--svid",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--check",
        ],
        &[(TOKEN_ENV, "tok")],
    );
    let (code, _, stderr) = finished(child).await;
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("one identity source"), "{stderr}");
    hub.listener.close("").await;
}

/// Sends SIGTERM to a child.
fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_revokes_an_enrolled_client_at_the_hub_unless_told_to_keep_it() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let mut hub = pki.start_hub(Duration::from_secs(3600), true);
    hub.add_token("tok-bye");
    hub.add_token("tok-keep");
    let dir = tempfile::tempdir().unwrap();

    // Stopped for good: a signed goodbye the hub verifies, then svid.pem
    // and svid.key deleted (the bundle stays), exit code 0.
    let state = dir.path().join("bye/state");
    let child = client_binary(
        &pki,
        hub.addr,
        &state,
        &adapter.tcp,
        &[],
        &[(TOKEN_ENV, "tok-bye")],
    );
    let tunnel = hub.next_tunnel().await;
    mcp_opening(&tunnel).await;
    terminate(&child);
    let (code, _, stderr) = finished(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("deployment revoked at the hub on stop")
            && stderr.contains("ewii-hub deployment token"),
        "{stderr}"
    );
    assert_eq!(
        hub.state.goodbyes.lock().unwrap().clone(),
        vec![(DEPLOYMENT.to_owned(), Ok(()))]
    );
    let closed = tunnel.close_reason().unwrap();
    assert!(matches!(closed, Closed::Revoked(_)), "{closed}");
    let files = files_in(&state);
    assert!(files.contains(&"bundle.pem".to_owned()), "{files:?}");
    assert!(!files.contains(&"svid.pem".to_owned()), "{files:?}");
    assert!(!files.contains(&"svid.key".to_owned()), "{files:?}");
    let records = log_records(&state.join("connections.jsonl"));
    let goodbye = events(&records, "goodbye");
    assert_eq!(goodbye.len(), 1, "{records:#?}");
    assert_eq!(goodbye[0]["outcome"], "ok");
    // Starting again needs a new token.
    let again = client_binary(&pki, hub.addr, &state, &adapter.tcp, &[], &[]);
    let (code, _, stderr) = finished(again).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not enrolled yet"), "{stderr}");

    // With --keep-enrollment-on-stop a stop closes the tunnel as before and
    // keeps everything.
    let state = dir.path().join("keep/state");
    let child = client_binary(
        &pki,
        hub.addr,
        &state,
        &adapter.tcp,
        &["--keep-enrollment-on-stop"],
        &[(TOKEN_ENV, "tok-keep")],
    );
    let tunnel = hub.next_tunnel().await;
    mcp_opening(&tunnel).await;
    let serial = peer_serial(&tunnel);
    terminate(&child);
    let (code, _, stderr) = finished(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("revoked"), "{stderr}");
    assert_eq!(
        hub.state.goodbyes.lock().unwrap().len(),
        1,
        "no new goodbye"
    );
    let closed = tunnel.close_reason().unwrap();
    assert!(matches!(&closed, Closed::Done(_)), "{closed}");
    assert_eq!(saved_serial(&state), serial);
    assert!(state.join("svid.key").exists());

    // The environment variable does the same.
    let child = client_binary(
        &pki,
        hub.addr,
        &state,
        &adapter.tcp,
        &[],
        &[("EWII_KEEP_ENROLLMENT_ON_STOP", "true")],
    );
    let tunnel = hub.next_tunnel().await;
    assert_eq!(peer_serial(&tunnel), serial);
    terminate(&child);
    let (code, _, stderr) = finished(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(saved_serial(&state), serial);
    assert_eq!(
        hub.state.goodbyes.lock().unwrap().len(),
        1,
        "no new goodbye"
    );

    // The hub revoking the running client (close code 4): exit code 3, the
    // SVID and key moved aside, the next step named.
    let child = client_binary(&pki, hub.addr, &state, &adapter.tcp, &[], &[]);
    let tunnel = hub.next_tunnel().await;
    tunnel.close_revoked();
    let (code, _, stderr) = finished(child).await;
    assert_eq!(code, Some(3), "{stderr}");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(
        error_lines[0].contains("the hub revoked the SVID")
            && error_lines[0].contains("svid.pem.revoked")
            && error_lines[0].contains("ewii-hub deployment token"),
        "{stderr}"
    );
    let files = files_in(&state);
    for f in ["svid.pem.revoked", "svid.key.revoked", "bundle.pem"] {
        assert!(files.contains(&f.to_owned()), "{f}: {files:?}");
    }
    assert!(!files.contains(&"svid.pem".to_owned()), "{files:?}");
    assert!(hub.tunnels.try_recv().is_err(), "the client reconnected");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_without_a_tunnel_still_forgets_the_identity_and_says_the_hub_was_not_told() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let hub = pki.start_hub(Duration::from_secs(3600), true);
    hub.add_token("tok-offline");
    let (_dir, state, log, cancel) = workdir();
    let client = start_enrolled(
        &hub,
        &pki,
        &adapter,
        &state,
        &log,
        Some("tok-offline"),
        &cancel,
    )
    .await
    .unwrap()
    .revoke_on_stop(true);
    // The hub goes away before the client ever connects.
    hub.listener.close("").await;
    drop(hub);
    let running = tokio::spawn(client.run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    let stopped = tokio::time::timeout(STEP, running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&stopped, ewii_client::client::Stopped::HubNotTold { .. }),
        "{stopped:?}"
    );
    assert!(!state.join("svid.pem").exists());
    assert!(!state.join("svid.key").exists());
    assert!(state.join("bundle.pem").exists());
    let records = log_records(&log);
    let goodbye = events(&records, "goodbye");
    assert_eq!(goodbye.len(), 1, "{records:#?}");
    assert_ne!(goodbye[0]["outcome"], "ok");
}
