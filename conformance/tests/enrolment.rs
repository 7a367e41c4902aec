//! Enrolment and renewal over real QUIC on loopback, against the real hub
//! in-process (`ewii_hub::gateway::serve`): a single-use token and a CSR in
//! on the enrolment ALPN, an SVID from the workspace CA and its bundle
//! out; renewal on the live tunnel's control stream; the signed goodbye of
//! a stopping client. The client is its library or the real `ewii-client`
//! binary, serving the test adapter.
//!
//! The hub is real throughout, except in one test: the real hub never
//! refuses a renewal as `not_renewable`, so the client's answer to that
//! refusal is judged against a [`StandInListener`] after a real enrolment.
//! The first two tests run on SQLite and PostgreSQL hub stores; the rest
//! on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ewii_client::client::{Client, ClientError, ClientSettings, Stopped};
use ewii_client::connlog::ConnectionLog;
use ewii_client::identity::IdentityStore;
use ewii_conformance::adapter::{CREDENTIAL, TestAdapter, client_credential};
use ewii_conformance::agent::{STEP, agent, call, http_get, text_of, wait_for_tools};
use ewii_conformance::client::{
    client_binary, connection_log, enrol_client, enrolled, events, start_enrolled,
};
use ewii_conformance::db::Backend;
use ewii_conformance::hub::{HUB_NAMES, start_hub};
use ewii_conformance::pki::TestCa;
use ewii_conformance::process::{Launch, RunningProcess, Stream};
use ewii_conformance::raw_mcp::{call_through, open_adapter_session, request};
use ewii_conformance::sample::count_query;
use ewii_conformance::site::EnrolmentSite;
use ewii_conformance::stand_in::StandInListener;
use ewii_conformance::suite;
use ewii_conformance::svid::workspace_trust;
use ewii_quic::{Closed, HubTunnel};
use ewii_wire::enrol::{Control, Refusal};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Value, json};

suite!(
    enrolment_token_works_exactly_once_with_clear_refusals,
    svids_rotate_under_load_without_a_failed_call,
);

const DEPLOYMENT: &str = EnrolmentSite::DEPLOYMENT;
const TOKEN_ENV: &str = "EWII_ENROLLMENT_TOKEN";

fn now() -> SystemTime {
    SystemTime::now()
}

/// The serial of the SVID a tunnel's client presented.
fn peer_serial(tunnel: &HubTunnel) -> String {
    ewii_wire::svid::serial_hex(&tunnel.peer().chain[0]).unwrap()
}

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix as u64)
}

// -- the client ----------------------------------------------------------------

async fn tools_list(tunnel: &HubTunnel, id: u64) {
    let tools = call_through(tunnel, &request(id, "tools/list", json!({}))).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
}

fn saved_serial(state: &std::path::Path) -> String {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(state.join("svid.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    ewii_wire::svid::serial_hex(&chain[0]).unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The real binary aimed at `site`'s hub, with `--state state`, `--allow allow`,
/// the adapter's credential in the environment, and `extra` arguments and
/// `env`ironment.
fn binary(
    site: &EnrolmentSite,
    state: &std::path::Path,
    allow: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Launch {
    let mut launch = client_binary(&site.hub, state)
        .args(["--allow", allow])
        .args(extra)
        .env("EWII_ADAPTER_CREDENTIAL", CREDENTIAL);
    for (k, v) in env {
        launch = launch.env(k, v);
    }
    launch
}

/// Waits for the binary to exit on its own; its exit code, stdout and
/// stderr.
async fn finished(mut process: RunningProcess) -> (Option<i32>, String, String) {
    let status = process
        .wait_for_exit(STEP)
        .await
        .unwrap_or_else(|e| panic!("ewii-client did not exit: {e}"));
    (
        status.code(),
        process.text(Stream::Stdout),
        process.text(Stream::Stderr),
    )
}

// -- the hub suite's enrolment and rotation (SQLite and PostgreSQL) -----------

async fn enrolment_token_works_exactly_once_with_clear_refusals(backend: &Backend) {
    let store = &backend.store;
    store.create_workspace("acme", None, now()).await.unwrap();
    let (_, token) = store
        .create_deployment("acme", "eu", Duration::from_secs(3600), now())
        .await
        .unwrap();
    let (_, short) = store
        .create_deployment("acme", "us", Duration::from_secs(1), now())
        .await
        .unwrap();
    let (_, credential) = store.create_agent("acme", "bot", now()).await.unwrap();
    let hub = start_hub(store, |_| {}).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let dir = tempfile::tempdir().unwrap();

    // A malformed CSR is refused before the token is spent.
    {
        use ewii_quic::{ClientQuicConfig, Dialer, HubCertVerifier};
        use ewii_wire::enrol::{EnrolRequest, EnrolResponse};
        let verifier = HubCertVerifier::new(&hub.hub_ca, HUB_NAMES[0]).unwrap();
        let quic = ClientQuicConfig::enrolment(&verifier).unwrap();
        let dialer = Dialer::bind_to("127.0.0.1:0".parse().unwrap()).unwrap();
        let request = EnrolRequest {
            token: zeroize::Zeroizing::new(token.token.expose().to_owned()),
            csr: "bm90IGEgQ1NS".into(),
        };
        let answer = dialer
            .enrol(&quic, hub.quic_addr, HUB_NAMES[0], &request)
            .await
            .unwrap();
        match answer {
            EnrolResponse::Refused(r) => assert_eq!(r.reason, "bad_csr", "{r:?}"),
            other => panic!("a garbage CSR was accepted: {other:?}"),
        }
    }

    // The token enrols once: the client comes up as the deployment.
    let first = enrol_client(&hub, &adapter, &dir.path().join("a"), token.token.expose())
        .await
        .unwrap();
    let agent = agent(&hub.mcp_url(), credential.expose()).await;
    wait_for_tools(&agent, |n| n.contains(&"eu_shop_query".to_string())).await;

    // Used, expired and unknown tokens are refused, each saying why.
    let used = enrol_client(&hub, &adapter, &dir.path().join("b"), token.token.expose()).await;
    match used {
        Err(ClientError::Refused { reason, message }) => {
            assert_eq!(reason, "token_already_used");
            assert!(message.contains("already been used"), "{message}");
            assert!(message.contains("ewii-hub deployment token"), "{message}");
        }
        other => panic!("a used token was not refused: {:?}", other.err()),
    }
    assert!(!dir.path().join("b").join("svid.pem").exists());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    match enrol_client(&hub, &adapter, &dir.path().join("c"), short.token.expose()).await {
        Err(ClientError::Refused { reason, message }) => {
            assert_eq!(reason, "token_expired");
            assert!(message.contains("expired"), "{message}");
        }
        other => panic!("an expired token was not refused: {:?}", other.err()),
    }
    match enrol_client(&hub, &adapter, &dir.path().join("d"), "not-a-token").await {
        Err(ClientError::Refused { reason, .. }) => assert_eq!(reason, "unknown_token"),
        other => panic!("an unknown token was not refused: {:?}", other.err()),
    }
    // Only the first enrolment exists: one live deployment.
    assert_eq!(hub.state.registry.len(), 1);
    first.stop().await;
    hub.shutdown().await;
}

async fn svids_rotate_under_load_without_a_failed_call(backend: &Backend) {
    let store = &backend.store;
    store.create_workspace("acme", None, now()).await.unwrap();
    let (_, token) = store
        .create_deployment("acme", "eu", Duration::from_secs(3600), now())
        .await
        .unwrap();
    let (_, credential) = store.create_agent("acme", "bot", now()).await.unwrap();
    let hub = start_hub(store, |o| o.svid_ttl = Duration::from_secs(4)).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let dir = tempfile::tempdir().unwrap();
    let client = enrol_client(&hub, &adapter, dir.path(), token.token.expose())
        .await
        .unwrap();
    let agent = agent(&hub.mcp_url(), credential.expose()).await;
    wait_for_tools(&agent, |n| n.contains(&"eu_shop_query".to_string())).await;
    let live = hub.state.registry.find("acme", "eu").unwrap();
    let mut serials = std::collections::BTreeSet::from([live.serial()]);

    // 13 s of calls, three SVID lifetimes: every call must succeed.
    let deadline = Instant::now() + Duration::from_secs(13);
    let mut calls = 0;
    while Instant::now() < deadline {
        let result = call(&agent, "eu_shop_query", count_query()).await;
        assert_ne!(
            result.is_error,
            Some(true),
            "call {calls} failed: {}",
            text_of(&result)
        );
        assert_eq!(result.structured_content.unwrap()["rows"], json!([[10]]));
        calls += 1;
        serials.insert(live.serial());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The same connection carried it all, under several SVIDs.
    let now_live = hub.state.registry.find("acme", "eu").unwrap();
    assert_eq!(
        now_live.connection, live.connection,
        "the tunnel was re-established"
    );
    assert!(
        serials.len() >= 4,
        "only {} SVIDs over 13 s: {serials:?}",
        serials.len()
    );
    let metrics = http_get(hub.http_addr, "/metrics").await.body;
    assert!(
        metrics.contains("ewii_hub_svids_issued_total{kind=\"renewal\"}"),
        "{metrics}"
    );
    println!("{calls} calls, {} SVIDs", serials.len());
    client.stop().await;
    hub.shutdown().await;
}

// -- the client's enrolment, renewal and stop (SQLite) --------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_token_enrols_once_and_the_tunnel_comes_up_with_the_issued_identity() {
    let site = EnrolmentSite::start(Duration::from_secs(3600)).await;
    let first_token = site.token().await;
    let (dir, state, log) = (site.home.dir.path(), &site.home.state, &site.home.log);
    let cancel = site.cancel.clone();

    let client = site.enrol(Some(&first_token)).await.unwrap();
    // The hub issued exactly one SVID, and it is what the client holds and
    // saved: chain, private key (owner-only), bundle.
    let issued = site.enrolled().await;
    assert_eq!(issued.len(), 1);
    assert_eq!(client.identity(), DEPLOYMENT);
    assert_eq!(client.svid().serial, issued[0]);
    assert!(client.renews());
    assert_eq!(saved_serial(state), issued[0]);
    assert_eq!(mode(&state.join("svid.key")), 0o600);
    assert!(
        std::fs::read_to_string(state.join("svid.key"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert_eq!(
        std::fs::read_to_string(state.join("bundle.pem")).unwrap(),
        site.bundle_pem().await
    );
    let leftovers: Vec<_> = files_in(state)
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The tunnel comes up with the issued identity, and forwards.
    let running = tokio::spawn(client.run(cancel.clone()));
    let tunnel = site.next_tunnel(None).await.tunnel.clone();
    assert_eq!(tunnel.peer().identity, DEPLOYMENT);
    assert_eq!(peer_serial(&tunnel), issued[0]);
    open_adapter_session(&tunnel).await;
    tools_list(&tunnel, 2).await;
    let records = connection_log(log);
    let enrolments = events(&records, "enrolled");
    assert_eq!(enrolments.len(), 1, "{records:#?}");
    assert_eq!(enrolments[0]["spiffe_id"], DEPLOYMENT);
    assert_eq!(enrolments[0]["outcome"], issued[0].as_str());

    // A second client with the same token is refused, and says why.
    let other = dir.join("other");
    let other_log = dir.join("other.jsonl");
    let err = start_enrolled(
        &site.hub,
        &site.adapter,
        &other,
        &other_log,
        Some(&first_token),
        &cancel,
    )
    .await
    .map(|_| ())
    .unwrap_err();
    match &err {
        ClientError::Refused { reason, message } => {
            assert_eq!(reason, "token_already_used");
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
        &site.hub,
        &site.adapter,
        &other,
        &other_log,
        Some("tok-never-issued"),
        &cancel,
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { reason, .. } if reason == "unknown_token"),
        "{err:?}"
    );

    // The binary stops at once, with exit code 2, one line naming the
    // reason, and without printing the token.
    let child = binary(
        &site,
        &dir.join("binary"),
        &site.adapter.allow(),
        &[],
        &[(TOKEN_ENV, &first_token)],
    )
    .spawn()
    .unwrap();
    let (code, _, stderr) = finished(child).await;
    assert_eq!(code, Some(2), "{stderr}");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(
        error_lines[0].contains("the hub refused the enrolment token (token_already_used)"),
        "{stderr}"
    );
    assert!(!stderr.contains(&first_token), "{stderr}");
    assert_eq!(
        site.enrolled().await.len(),
        1,
        "only the first request was issued"
    );
    assert_eq!(site.enrol_requests(), 4.0);

    cancel.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_renews_over_the_live_tunnel_without_dropping_it() {
    // 4 s SVIDs, and the hub closes a tunnel whose SVID has expired.
    let site = EnrolmentSite::start(Duration::from_secs(4)).await;
    let token = site.token().await;
    let (state, log, cancel) = (&site.home.state, &site.home.log, &site.cancel);
    let client = site.enrol(Some(&token)).await.unwrap();
    let first = client.svid().serial;
    let running = tokio::spawn(client.run(cancel.clone()));
    let live = site.next_tunnel(None).await;
    let tunnel = live.tunnel.clone();
    let connection = tunnel.stable_id();
    open_adapter_session(&tunnel).await;

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
        site.renewed().await
    );

    // At least two renewals, each a fresh SVID, over the same connection:
    // not closed (as expired or otherwise), not re-established.
    let renewed = site.renewed().await;
    assert!(renewed.len() >= 2, "{renewed:?}");
    let mut distinct = renewed.clone();
    distinct.push(first.clone());
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), renewed.len() + 1, "{renewed:?}");
    assert!(tunnel.close_reason().is_none());
    assert_eq!(tunnel.stable_id(), connection);
    assert_eq!(
        site.next_tunnel(None).await.connection,
        live.connection,
        "the client reconnected"
    );
    let records = connection_log(log);
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
    let saved = saved_serial(state);
    assert!(renewed.contains(&saved), "{saved} not in {renewed:?}");
    assert_eq!(mode(&state.join("svid.key")), 0o600);

    // The next connection presents a renewed SVID (the first one has long
    // expired).
    tunnel.close("test: reconnect");
    let again = site.next_tunnel(Some(live.connection)).await;
    let serial = peer_serial(&again.tunnel);
    assert!(
        site.renewed().await.contains(&serial) && serial != first,
        "{serial}"
    );
    open_adapter_session(&again.tunnel).await;
    tools_list(&again.tunnel, 2).await;
    cancel.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_renewals_are_retried_and_not_renewable_stops_renewing() {
    let site = EnrolmentSite::start(Duration::from_secs(8)).await;
    let token = site.token().await;
    let (state, log, cancel) = (&site.home.state, &site.home.log, &site.cancel);
    // A real enrolment: an 8 s SVID from the hub, saved in `state`.
    site.enrol(Some(&token)).await.unwrap();
    let enrolled_at = Instant::now();

    // The real hub never refuses a renewal as `not_renewable` (it issues,
    // or refuses as `revoked`, `bad_csr` or `internal`): the renewals go to
    // a stand-in that trusts the workspace's bundle and refuses the first
    // as `internal`, the second as `not_renewable`.
    let stand_in_ca = TestCa::new("stand-in hub ca");
    let trust = workspace_trust(&site.backend.store, "acme").await;
    let mut stand_in =
        StandInListener::start(&stand_in_ca.server(HUB_NAMES[1]), &[HUB_NAMES[1]], trust);
    let settings = ClientSettings {
        hub: stand_in.addr.to_string(),
        hub_name: HUB_NAMES[1].into(),
        hub_ca: stand_in_ca.certificates(),
        tls_ca: None,
        allow: site.adapter.allow_list(),
        adapter_credential: Some(client_credential()),
        log: Some(Arc::new(ConnectionLog::open(log).unwrap())),
    };
    let client = Client::start(settings, enrolled(state, None), cancel)
        .await
        .unwrap();
    let running = tokio::spawn(client.run(cancel.clone()));
    let tunnel = stand_in.next_tunnel().await;
    let requests = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let requests = requests.clone();
        async move {
            let mut refusals = vec!["internal", "not_renewable"].into_iter();
            while let Some(Ok(control)) = tunnel.next_control().await {
                let Control::Renew { id, .. } = control else {
                    continue;
                };
                requests.fetch_add(1, Ordering::SeqCst);
                let reason = refusals.next().unwrap_or("internal");
                let refusal = Refusal {
                    reason: reason.into(),
                    message: format!("refused for the test ({reason})"),
                };
                if tunnel
                    .send_control(&Control::Refused { id, refusal })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });

    // Due at 3.6–4.4 s; `internal` is retried a second later; after
    // `not_renewable` nothing more is asked.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(enrolled_at.elapsed())).await;
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    assert!(site.renewed().await.is_empty());
    let records = connection_log(log);
    let failed: Vec<&str> = events(&records, "renew_failed")
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 2, "{records:#?}");
    assert!(failed[0].starts_with("internal:"), "{failed:?}");
    assert!(failed[1].starts_with("not_renewable:"), "{failed:?}");
    assert_eq!(saved_serial(state), site.enrolled().await[0]);
    cancel.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_client_reuses_its_saved_svid_without_a_token() {
    let site = EnrolmentSite::start(Duration::from_secs(3600)).await;
    let (dir, state) = (site.home.dir.path(), site.home.state.clone());
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{}\n", site.token().await)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let token_arg = ["--enrollment-token-file", token_file.to_str().unwrap()];
    let allow = site.adapter.allow();

    // First run: the binary enrols with the token file.
    let mut first = binary(&site, &state, &allow, &token_arg, &[])
        .spawn()
        .unwrap();
    let live = site.next_tunnel(None).await;
    let serial = peer_serial(&live.tunnel);
    assert_eq!(site.enrolled().await, vec![serial.clone()]);
    open_adapter_session(&live.tunnel).await;
    // A crash, not a stop: nothing said to the hub.
    first.kill();
    assert_eq!(mode(&state.join("svid.key")), 0o600);

    // --check reports the saved identity without contacting the hub.
    let before = site.enrol_requests();
    let check = binary(&site, &state, &allow, &["--check", "--json"], &[])
        .spawn()
        .unwrap();
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
    let mut second = binary(&site, &state, &allow, &[], &[]).spawn().unwrap();
    let live = site.next_tunnel(Some(live.connection)).await;
    assert_eq!(live.tunnel.peer().identity, DEPLOYMENT);
    assert_eq!(peer_serial(&live.tunnel), serial);
    open_adapter_session(&live.tunnel).await;
    tools_list(&live.tunnel, 2).await;
    second.kill();

    // Restarted with the (used) token still configured: the token is not
    // sent, the client is already enrolled.
    let mut third = binary(&site, &state, &allow, &token_arg, &[])
        .spawn()
        .unwrap();
    let live = site.next_tunnel(Some(live.connection)).await;
    assert_eq!(peer_serial(&live.tunnel), serial);
    third.kill();
    assert_eq!(site.enrol_requests(), before);

    // The library does the same.
    let client = site.enrol(None).await.unwrap();
    assert_eq!(client.svid().serial, serial);
    assert_eq!(site.enrol_requests(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_saved_svid_is_replaced_by_enrolling_with_a_new_token() {
    let site = EnrolmentSite::start(Duration::from_secs(2)).await;
    let (tok_a, tok_b) = (site.token().await, site.token().await);
    let state = &site.home.state;
    let first = site.enrol(Some(&tok_a)).await.unwrap().svid();
    tokio::time::sleep(
        at(first.not_after)
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            + Duration::from_millis(1100),
    )
    .await;
    assert!(
        IdentityStore::new(state)
            .load()
            .unwrap()
            .unwrap()
            .is_expired(SystemTime::now())
    );

    // Without a token the expired SVID is all there is (the client keeps
    // trying and says why).
    let stale = site.enrol(None).await.unwrap();
    assert_eq!(stale.svid().serial, first.serial);

    // With a new token it enrols again.
    let fresh = site.enrol(Some(&tok_b)).await.unwrap();
    assert_ne!(fresh.svid().serial, first.serial);
    assert_eq!(site.enrolled().await.len(), 2);
    assert_eq!(saved_serial(state), fresh.svid().serial);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_state_or_token_the_client_says_how_to_enrol() {
    let site = EnrolmentSite::start(Duration::from_secs(3600)).await;
    let allow = "tcp:127.0.0.1:9";
    let (dir, state) = (site.home.dir.path(), site.home.state.clone());

    for extra in [&[][..], &["--check"][..]] {
        let child = binary(&site, &state, allow, extra, &[]).spawn().unwrap();
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
    assert_eq!(site.enrol_requests(), 0.0);

    // --check with a token: not enrolled yet, the token will be used.
    let child = binary(
        &site,
        &state,
        allow,
        &["--check", "--json"],
        &[(TOKEN_ENV, "tok-check")],
    )
    .spawn()
    .unwrap();
    let (code, stdout, stderr) = finished(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["enrolled"], false);
    assert_eq!(report["identity"], Value::Null);
    assert!(!stdout.contains("tok-check") && !stderr.contains("tok-check"));
    assert_eq!(site.enrol_requests(), 0.0);

    // One identity source at a time.
    let svid = TestCa::new("elsewhere").svid(DEPLOYMENT);
    let (cert, key) = svid.write_pem(dir, "svid");
    let token = dir.join("token");
    std::fs::write(&token, "tok").unwrap();
    let child = binary(
        &site,
        &state,
        allow,
        &[
            "--svid",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--enrollment-token-file",
            token.to_str().unwrap(),
        ],
        &[],
    )
    .spawn()
    .unwrap();
    let (code, _, stderr) = finished(child).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let child = binary(
        &site,
        &state,
        allow,
        &[
            "--svid",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--check",
        ],
        &[(TOKEN_ENV, "tok")],
    )
    .spawn()
    .unwrap();
    let (code, _, stderr) = finished(child).await;
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("one identity source"), "{stderr}");
    site.hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_revokes_an_enrolled_client_at_the_hub_unless_told_to_keep_it() {
    let site = EnrolmentSite::start(Duration::from_secs(3600)).await;
    let allow = site.adapter.allow();
    let dir = site.home.dir.path();

    // Stopped for good: a signed goodbye the hub verifies (and revokes the
    // deployment on), then svid.pem and svid.key deleted (the bundle
    // stays), exit code 0.
    let bye = site.token().await;
    let state = dir.join("bye/state");
    let mut child = binary(&site, &state, &allow, &[], &[(TOKEN_ENV, &bye)])
        .spawn()
        .unwrap();
    let live = site.next_tunnel(None).await;
    open_adapter_session(&live.tunnel).await;
    child.terminate();
    let (code, _, stderr) = finished(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("deployment revoked at the hub on stop")
            && stderr.contains("ewii-hub deployment token"),
        "{stderr}"
    );
    assert!(site.revoked().await, "the goodbye did not revoke");
    // Closed: by the client as revoked right after the hub's ack, or first
    // by the hub itself, whose revocation poll closes the now revoked
    // deployment's tunnel (quinn then reports the hub's side as closed
    // locally) — whichever comes first.
    let closed = tokio::time::timeout(STEP, live.tunnel.closed())
        .await
        .unwrap();
    assert!(
        matches!(closed, Closed::Revoked(_) | Closed::Locally),
        "{closed}"
    );
    let files = files_in(&state);
    assert!(files.contains(&"bundle.pem".to_owned()), "{files:?}");
    assert!(!files.contains(&"svid.pem".to_owned()), "{files:?}");
    assert!(!files.contains(&"svid.key".to_owned()), "{files:?}");
    let records = connection_log(&state.join("connections.jsonl"));
    let goodbye = events(&records, "goodbye");
    assert_eq!(goodbye.len(), 1, "{records:#?}");
    assert_eq!(goodbye[0]["outcome"], "ok");
    // Starting again needs a new token.
    let again = binary(&site, &state, &allow, &[], &[]).spawn().unwrap();
    let (code, _, stderr) = finished(again).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not enrolled yet"), "{stderr}");

    // With --keep-enrollment-on-stop a stop closes the tunnel as before and
    // keeps everything. (The token is issued after the goodbye's revoke:
    // one from before it would be refused.)
    let keep = site.token().await;
    let state = dir.join("keep/state");
    let mut child = binary(
        &site,
        &state,
        &allow,
        &["--keep-enrollment-on-stop"],
        &[(TOKEN_ENV, &keep)],
    )
    .spawn()
    .unwrap();
    let live = site.next_tunnel(Some(live.connection)).await;
    open_adapter_session(&live.tunnel).await;
    let serial = peer_serial(&live.tunnel);
    child.terminate();
    let (code, _, stderr) = finished(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("revoked"), "{stderr}");
    assert!(!site.revoked().await, "no new goodbye");
    let closed = tokio::time::timeout(STEP, live.tunnel.closed())
        .await
        .unwrap();
    assert!(matches!(&closed, Closed::Done(_)), "{closed}");
    assert_eq!(saved_serial(&state), serial);
    assert!(state.join("svid.key").exists());

    // The environment variable does the same.
    let mut child = binary(
        &site,
        &state,
        &allow,
        &[],
        &[("EWII_KEEP_ENROLLMENT_ON_STOP", "true")],
    )
    .spawn()
    .unwrap();
    let live = site.next_tunnel(Some(live.connection)).await;
    assert_eq!(peer_serial(&live.tunnel), serial);
    child.terminate();
    let (code, _, stderr) = finished(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(saved_serial(&state), serial);
    assert!(!site.revoked().await, "no new goodbye");

    // The hub revoking the running client (close code 4): exit code 3, the
    // SVID and key moved aside, the next step named.
    let child = binary(&site, &state, &allow, &[], &[]).spawn().unwrap();
    let live = site.next_tunnel(Some(live.connection)).await;
    live.tunnel.close_revoked();
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
    assert!(
        site.hub
            .state
            .registry
            .find("acme", "eu")
            .is_none_or(|l| l.connection == live.connection),
        "the client reconnected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_without_a_tunnel_still_forgets_the_identity_and_says_the_hub_was_not_told() {
    let site = EnrolmentSite::start(Duration::from_secs(3600)).await;
    let token = site.token().await;
    let client = site.enrol(Some(&token)).await.unwrap().revoke_on_stop(true);
    // The hub goes away before the client ever connects.
    let EnrolmentSite {
        hub,
        backend,
        home,
        cancel,
        ..
    } = site;
    let (state, log) = (&home.state, &home.log);
    hub.shutdown().await;
    let running = tokio::spawn(client.run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    let stopped = tokio::time::timeout(STEP, running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&stopped, Stopped::HubNotTold { .. }),
        "{stopped:?}"
    );
    assert!(!state.join("svid.pem").exists());
    assert!(!state.join("svid.key").exists());
    assert!(state.join("bundle.pem").exists());
    let records = connection_log(log);
    let goodbye = events(&records, "goodbye");
    assert_eq!(goodbye.len(), 1, "{records:#?}");
    assert_ne!(goodbye[0]["outcome"], "ok");
    backend.finish().await;
}
