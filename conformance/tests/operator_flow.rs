//! The operator's flow through the hub's CLI and the state under it:
//! workspaces, deployments and their single-use enrolment tokens, agent
//! credentials, workspace CAs and the SVIDs they issue, trust bundles
//! (exported, and imported from a CA made outside Ewii), and isolation
//! between tenants at the CA. Every test runs against SQLite and against
//! PostgreSQL (when `EWII_TEST_POSTGRES_ADMIN_URL` is set; under `CI` it
//! must be).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use ewii_conformance::db::Backend;
use ewii_conformance::pki::SpireCa;
use ewii_conformance::pki::rcgen::{
    self, BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use ewii_conformance::suite;
use ewii_hub::state::bundle;
use ewii_hub::state::ca::SVID_TTL;
use ewii_hub::state::trust::StoreTrust;
use ewii_hub::{Error, Store, TokenError};
use ewii_quic::{InMemoryTrust, SvidVerifier, TrustBundle};
use ewii_wire::svid::{SpiffeId, SvidError, check_leaf, serial_hex};
use rustls::pki_types::{CertificateDer, UnixTime};
use sqlx::Row as _;

suite!(
    cli_workflow,
    cli_refuses_duplicates_and_bad_names,
    library_refuses_duplicates_and_bad_names,
    token_works_exactly_once,
    expired_and_unknown_tokens,
    concurrent_consumers_one_wins,
    agent_authentication,
    ca_issues_verifiable_svids,
    ca_key_is_sealed_at_rest,
    bundle_round_trip_and_imported_foreign_ca,
    cross_tenant_isolation,
);

fn now() -> SystemTime {
    SystemTime::now()
}

fn unix_now() -> UnixTime {
    UnixTime::now()
}

/// A P-256 key and a CSR for it, asking for things the hub must ignore.
fn new_csr() -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
    params.subject_alt_names.push(SanType::URI(
        "spiffe://ewii.local/ws/other/dep/x".try_into().unwrap(),
    ));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, "admin");
    let csr = params.serialize_request(&key).unwrap();
    (key, csr.der().to_vec())
}

fn verifier_for(prefix: &str, certs: Vec<CertificateDer<'static>>) -> SvidVerifier {
    let trust = InMemoryTrust::new()
        .try_with_bundle(prefix, TrustBundle::from_der(certs).unwrap())
        .unwrap();
    SvidVerifier::new(Arc::new(trust))
}

// ---------------------------------------------------------------------------

async fn cli_workflow(b: &Backend) {
    let ws = b.cli_json(&["workspace", "create", "acme", "--json"]);
    assert_eq!(ws["name"], "acme");
    assert_eq!(ws["trust_domain"], "ewii.local");
    let other = b.cli_json(&[
        "workspace",
        "create",
        "globex",
        "--trust-domain",
        "globex.example",
        "--json",
    ]);
    assert_eq!(other["trust_domain"], "globex.example");

    let list = b.cli_json(&["workspace", "list", "--json"]);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].clone())
        .collect();
    assert_eq!(names, ["acme", "globex"]);

    let dep = b.cli_json(&[
        "deployment",
        "create",
        "--workspace",
        "acme",
        "shop",
        "--token-ttl",
        "2h",
        "--json",
    ]);
    assert_eq!(dep["spiffe_id"], "spiffe://ewii.local/ws/acme/dep/shop");
    let token = dep["enrolment_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43, "32 bytes base64url");
    let expires = dep["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z'), "{expires}");

    let deps = b.cli_json(&["deployment", "list", "--workspace", "acme", "--json"]);
    assert_eq!(deps.as_array().unwrap().len(), 1);
    assert_eq!(deps[0]["name"], "shop");
    assert!(
        !deps.to_string().contains(&token),
        "the token is listed again"
    );

    let agent = b.cli_json(&["agent", "create", "--workspace", "acme", "bot", "--json"]);
    let credential = agent["credential"].as_str().unwrap().to_owned();
    assert!(credential.starts_with("ewii_agent_"), "{credential}");
    let agents = b.cli_json(&["agent", "list", "--workspace", "acme", "--json"]);
    assert_eq!(agents[0]["name"], "bot");
    assert!(!agents.to_string().contains(&credential));

    // What the CLI printed works through the library.
    let d = b
        .store
        .consume_enrolment_token(&token, now())
        .await
        .unwrap();
    assert_eq!(d.name, "shop");
    assert_eq!(d.workspace, "acme");
    let a = b
        .store
        .authenticate_agent(&credential)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.workspace.as_str(), a.name.as_str()), ("acme", "bot"));

    // A fresh token for the same deployment.
    let again = b.cli_json(&[
        "deployment",
        "token",
        "--workspace",
        "acme",
        "shop",
        "--json",
    ]);
    let token2 = again["enrolment_token"].as_str().unwrap();
    assert_ne!(token2, token);
    b.store
        .consume_enrolment_token(token2, now())
        .await
        .unwrap();

    // Bundle: JWKS and PEM, then import acme's bundle into globex.
    let jwks = b.cli_json(&["workspace", "bundle", "acme", "--json"]);
    assert_eq!(jwks["spiffe_sequence"], 1);
    let key = &jwks["keys"][0];
    assert_eq!(key["use"], "x509-svid");
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key["x"].as_str().unwrap())
        .unwrap();
    assert_eq!(x.len(), 32);
    let pem_out = b.cli(&["workspace", "bundle", "acme", "--pem"]);
    assert!(pem_out.status.success());
    let pem = String::from_utf8(pem_out.stdout).unwrap();
    let from_pem = TrustBundle::from_pem(&pem).unwrap();
    let x5c = base64::engine::general_purpose::STANDARD
        .decode(key["x5c"][0].as_str().unwrap())
        .unwrap();
    assert_eq!(from_pem.certificates()[0].as_ref(), &x5c[..]);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");
    std::fs::write(&file, jwks.to_string()).unwrap();
    let imported = b.cli_json(&[
        "workspace",
        "import-bundle",
        "globex",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(imported["imported_certificates"], 1);
    assert_eq!(imported["bundle_sequence"], 2);
    let globex = b.store.trust_bundle("globex").await.unwrap();
    assert_eq!(globex.imported[0].as_ref(), &x5c[..]);

    // Human forms work too.
    let human = b.cli(&["deployment", "list", "--workspace", "acme"]);
    assert!(human.status.success());
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("spiffe://ewii.local/ws/acme/dep/shop")
    );
}

async fn cli_refuses_duplicates_and_bad_names(b: &Backend) {
    b.cli_json(&["workspace", "create", "acme", "--json"]);
    let before = b.cli_json(&["workspace", "list", "--json"]);

    let err = b.cli_err(&["workspace", "create", "acme"]);
    assert!(err.contains("already exists"), "{err}");
    for bad in [
        "Acme",
        "1acme",
        "ac_me",
        "a-very-long-workspace-name-over-32",
    ] {
        let err = b.cli_err(&["workspace", "create", bad]);
        assert!(err.contains("invalid workspace name"), "{err}");
    }
    let err = b.cli_err(&["workspace", "create", "ok", "--trust-domain", "Bad.Domain"]);
    assert!(err.contains("invalid trust domain"), "{err}");
    assert_eq!(b.cli_json(&["workspace", "list", "--json"]), before);

    b.cli_json(&[
        "deployment",
        "create",
        "--workspace",
        "acme",
        "shop",
        "--json",
    ]);
    let err = b.cli_err(&["deployment", "create", "--workspace", "acme", "shop"]);
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains("ewii-hub deployment token"), "{err}");
    let err = b.cli_err(&["deployment", "create", "--workspace", "acme", "Shop!"]);
    assert!(err.contains("invalid deployment name"), "{err}");
    let err = b.cli_err(&["deployment", "create", "--workspace", "nope", "shop"]);
    assert!(err.contains("no workspace named"), "{err}");
    let err = b.cli_err(&[
        "deployment",
        "create",
        "--workspace",
        "acme",
        "x",
        "--token-ttl",
        "soon",
    ]);
    assert!(err.contains("invalid duration"), "{err}");
    let deps = b.cli_json(&["deployment", "list", "--workspace", "acme", "--json"]);
    assert_eq!(deps.as_array().unwrap().len(), 1);

    b.cli_json(&["agent", "create", "--workspace", "acme", "bot", "--json"]);
    let err = b.cli_err(&["agent", "create", "--workspace", "acme", "bot"]);
    assert!(err.contains("already exists"), "{err}");
    let agents = b.cli_json(&["agent", "list", "--workspace", "acme", "--json"]);
    assert_eq!(agents.as_array().unwrap().len(), 1);
}

async fn library_refuses_duplicates_and_bad_names(b: &Backend) {
    let s = &b.store;
    s.create_workspace("acme", None, now()).await.unwrap();
    assert!(matches!(
        s.create_workspace("acme", Some("other.example"), now())
            .await,
        Err(Error::WorkspaceExists(_))
    ));
    assert!(matches!(
        s.create_workspace("Bad", None, now()).await,
        Err(Error::InvalidName {
            kind: "workspace",
            ..
        })
    ));
    assert_eq!(s.list_workspaces().await.unwrap().len(), 1);

    s.create_deployment("acme", "shop", Duration::from_secs(60), now())
        .await
        .unwrap();
    assert!(matches!(
        s.create_deployment("acme", "shop", Duration::from_secs(60), now())
            .await,
        Err(Error::DeploymentExists { .. })
    ));
    // The same deployment name in another workspace is fine.
    s.create_workspace("globex", None, now()).await.unwrap();
    let (d, _) = s
        .create_deployment("globex", "shop", Duration::from_secs(60), now())
        .await
        .unwrap();
    assert_eq!(
        d.spiffe_id.to_string(),
        "spiffe://ewii.local/ws/globex/dep/shop"
    );

    s.create_agent("acme", "bot", now()).await.unwrap();
    assert!(matches!(
        s.create_agent("acme", "bot", now()).await,
        Err(Error::AgentExists { .. })
    ));
    assert!(matches!(
        s.create_agent("acme", "", now()).await,
        Err(Error::InvalidName { kind: "agent", .. })
    ));
    assert_eq!(s.list_agents("acme").await.unwrap().len(), 1);
    assert_eq!(s.list_deployments("acme").await.unwrap().len(), 1);
}

async fn token_works_exactly_once(b: &Backend) {
    let s = &b.store;
    s.create_workspace("acme", None, now()).await.unwrap();
    let (dep, token) = s
        .create_deployment("acme", "shop", Duration::from_secs(3600), now())
        .await
        .unwrap();
    let got = s
        .consume_enrolment_token(token.token.expose(), now())
        .await
        .unwrap();
    assert_eq!(got, dep);
    let err = s
        .consume_enrolment_token(token.token.expose(), now())
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::AlreadyUsed { .. }), "{err}");
    assert_eq!(err.reason(), "token_already_used");
    let msg = err.to_string();
    assert!(
        msg.contains("already been used")
            && msg.contains("ewii-hub deployment token --workspace acme shop"),
        "{msg}"
    );

    // Only the hash is stored.
    let pool = sqlx::AnyPool::connect(&b.url).await.unwrap();
    let rows = sqlx::query("SELECT token_hash FROM enrolment_tokens")
        .fetch_all(&pool)
        .await
        .unwrap();
    let hash: String = rows[0].try_get("token_hash").unwrap();
    assert_eq!(
        hash,
        ewii_hub::state::tokens::secret_hash(token.token.expose())
    );
    assert_ne!(hash, token.token.expose());
    pool.close().await;
}

async fn expired_and_unknown_tokens(b: &Backend) {
    let s = &b.store;
    s.create_workspace("acme", None, now()).await.unwrap();
    let t0 = now();
    let (_, token) = s
        .create_deployment("acme", "shop", Duration::from_secs(60), t0)
        .await
        .unwrap();
    // At the expiry instant the token is already refused.
    let err = s
        .consume_enrolment_token(token.token.expose(), t0 + Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    // Refusing it did not spend it: still expired, not "used".
    let err = s
        .consume_enrolment_token(token.token.expose(), t0 + Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::Expired { .. }), "{err}");

    let err = s
        .consume_enrolment_token("not-a-token-at-all", now())
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::Unknown), "{err}");
    assert!(
        err.to_string().contains("ask the operator for a new one"),
        "{err}"
    );
}

async fn concurrent_consumers_one_wins(b: &Backend) {
    let s = &b.store;
    s.create_workspace("acme", None, now()).await.unwrap();
    for round in 0..3 {
        let (_, token) = s
            .create_deployment(
                "acme",
                &format!("shop{round}"),
                Duration::from_secs(600),
                now(),
            )
            .await
            .unwrap();
        let token = token.token.expose().to_owned();
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store: Store = s.clone();
                let token = token.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .consume_enrolment_token(&token, SystemTime::now())
                        .await
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(d) => {
                    assert_eq!(d.name, format!("shop{round}"));
                    wins += 1;
                }
                Err(TokenError::AlreadyUsed { .. }) => {}
                Err(other) => panic!("unexpected refusal: {other}"),
            }
        }
        assert_eq!(wins, 1, "round {round}: exactly one consumer must win");
    }
}

async fn agent_authentication(b: &Backend) {
    let s = &b.store;
    s.create_workspace("acme", None, now()).await.unwrap();
    s.create_workspace("globex", None, now()).await.unwrap();
    let (agent, credential) = s.create_agent("acme", "bot", now()).await.unwrap();
    let (_, other) = s.create_agent("globex", "bot", now()).await.unwrap();

    let got = s.authenticate_agent(credential.expose()).await.unwrap();
    assert_eq!(got, Some(agent));
    let got = s.authenticate_agent(other.expose()).await.unwrap().unwrap();
    assert_eq!(got.workspace, "globex");

    let mut wrong = credential.expose().to_owned();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(s.authenticate_agent(&wrong).await.unwrap(), None);
    assert_eq!(s.authenticate_agent("").await.unwrap(), None);
    assert_eq!(s.authenticate_agent("ewii_agent_").await.unwrap(), None);
    // The stored hash is not a credential.
    let pool = sqlx::AnyPool::connect(&b.url).await.unwrap();
    let hashes: Vec<String> = sqlx::query("SELECT credential_hash FROM agents")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("credential_hash").unwrap())
        .collect();
    pool.close().await;
    for h in &hashes {
        assert!(!h.contains(credential.expose()));
        assert_eq!(s.authenticate_agent(h).await.unwrap(), None);
    }
}

async fn ca_issues_verifiable_svids(b: &Backend) {
    let s = &b.store;
    s.create_workspace("acme", None, now()).await.unwrap();
    let (dep, _) = s
        .create_deployment("acme", "shop", Duration::from_secs(60), now())
        .await
        .unwrap();
    let ca = s.workspace_ca("acme").await.unwrap();
    let (key, csr) = new_csr();
    let svid = ca
        .issue_svid(&csr, &dep.spiffe_id, SVID_TTL, now())
        .unwrap();

    // The X509-SVID profile, whatever the CSR asked for.
    let leaf = check_leaf(&svid).unwrap();
    assert_eq!(leaf.id, dep.spiffe_id);
    let (_, cert) = x509_parser::parse_x509_certificate(svid.as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(san.value.general_names.len(), 1, "exactly one SAN");
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && eku.server_auth);
    let validity = cert.validity();
    let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
    assert_eq!(lifetime, 24 * 3600 + 60, "24 h plus the 1 min backdate");
    assert!(cert.raw_serial().len() >= 16);
    // The subject's key is the CSR's.
    let (_, parsed_csr) =
        <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<
            x509_parser::error::X509Error,
        >>::from_der(&csr)
        .unwrap();
    assert_eq!(
        cert.public_key().raw,
        parsed_csr.certification_request_info.subject_pki.raw
    );

    // It verifies against the workspace bundle, and through StoreTrust.
    let bundle = s.trust_bundle("acme").await.unwrap();
    let verifier = verifier_for("spiffe://ewii.local/ws/acme", bundle.all());
    let ok = verifier.verify(&svid, &[], unix_now()).unwrap();
    assert_eq!(ok.id, dep.spiffe_id);
    assert_eq!(ok.serial, serial_hex(&svid).unwrap());
    let trust = StoreTrust::load(s.clone()).await.unwrap();
    let verifier = SvidVerifier::new(Arc::new(trust));
    verifier.verify(&svid, &[], unix_now()).unwrap();

    // Two SVIDs never share a serial.
    let (_k2, csr2) = new_csr();
    let svid2 = ca
        .issue_svid(&csr2, &dep.spiffe_id, SVID_TTL, now())
        .unwrap();
    assert_ne!(serial_hex(&svid).unwrap(), serial_hex(&svid2).unwrap());

    // A tampered CSR (signature, or the key it carries) is refused.
    let mut bad_sig = csr.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;
    assert!(matches!(
        ca.issue_svid(&bad_sig, &dep.spiffe_id, SVID_TTL, now()),
        Err(Error::Csr(_))
    ));
    let (other_key, _) = new_csr();
    let spki_pos = csr
        .windows(65)
        .position(|w| w == key.public_key_raw())
        .unwrap();
    let mut swapped = csr.clone();
    swapped[spki_pos..spki_pos + 65].copy_from_slice(other_key.public_key_raw());
    assert!(matches!(
        ca.issue_svid(&swapped, &dep.spiffe_id, SVID_TTL, now()),
        Err(Error::Csr(_))
    ));
    assert!(matches!(
        ca.issue_svid(b"garbage", &dep.spiffe_id, SVID_TTL, now()),
        Err(Error::Csr(_))
    ));

    // An expired SVID (short TTL, verified later) is refused.
    let past = now() - Duration::from_secs(7200);
    let old = ca
        .issue_svid(&csr, &dep.spiffe_id, Duration::from_secs(60), past)
        .unwrap();
    assert_eq!(
        verifier.verify(&old, &[], unix_now()).unwrap_err(),
        SvidError::Expired
    );
}

async fn ca_key_is_sealed_at_rest(b: &Backend) {
    let s = &b.store;
    s.create_workspace("acme", None, now()).await.unwrap();
    let ca = s.workspace_ca("acme").await.unwrap();
    let pkcs8 = ca.key_pkcs8();

    let pool = sqlx::AnyPool::connect(&b.url).await.unwrap();
    let row = sqlx::query("SELECT key_sealed, cert_pem FROM workspace_cas")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let sealed: String = row.try_get("key_sealed").unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&sealed)
        .unwrap();
    assert!(
        !raw.windows(pkcs8.len()).any(|w| w == &pkcs8[..]),
        "PKCS#8 plaintext in the database"
    );
    // Not even the 32-byte private scalar's surroundings: the key's
    // 36-byte PKCS#8 prefix must not appear either.
    assert!(!raw.windows(36).any(|w| w == &pkcs8[..36]));
    let pkcs8_b64 = base64::engine::general_purpose::STANDARD.encode(&pkcs8[..]);
    assert!(!sealed.contains(&pkcs8_b64[..40]));
    let cert_pem: String = row.try_get("cert_pem").unwrap();
    assert!(!cert_pem.contains("PRIVATE KEY"));

    // Another master key cannot open it.
    let wrong = Store::connect(
        &b.url,
        ewii_hub::state::master_key::MasterKey::generate().unwrap(),
    )
    .await
    .unwrap();
    assert!(matches!(
        wrong.workspace_ca("acme").await,
        Err(Error::SealedKey(_))
    ));
    wrong.close().await;
}

async fn bundle_round_trip_and_imported_foreign_ca(b: &Backend) {
    let s = &b.store;
    s.create_workspace("acme", None, now()).await.unwrap();
    let own = s.trust_bundle("acme").await.unwrap().own;

    // Export → import forms: JWKS and PEM give back the same certificates.
    let jwks = bundle::to_jwks(&own, 7).unwrap();
    assert_eq!(jwks["spiffe_sequence"], 7);
    assert_eq!(bundle::parse_bundle(&jwks.to_string()).unwrap(), own);
    assert_eq!(bundle::parse_bundle(&bundle::to_pem(&own)).unwrap(), own);
    // A leaf is not a CA to import.
    let foreign = SpireCa::new("SPIRE root");
    let leaf_pem = bundle::to_pem(&foreign.svid("spiffe://ewii.local/ws/acme/dep/x").chain);
    let err = bundle::parse_bundle(&leaf_pem).unwrap_err();
    assert!(err.to_string().contains("not a CA certificate"), "{err}");
    assert!(bundle::parse_bundle("hello").is_err());
    assert!(bundle::parse_bundle(r#"{"keys":[]}"#).is_err());

    // An SVID from a CA made outside Ewii (P-256, URI SAN only).
    let id = "spiffe://ewii.local/ws/acme/dep/legacy";
    let svid = foreign.svid(id).chain.remove(0);
    let unrelated = SpireCa::new("someone else").svid(id).chain.remove(0);
    let trust = Arc::new(StoreTrust::load(s.clone()).await.unwrap());
    let verifier = SvidVerifier::new(trust.clone());
    assert_eq!(
        verifier.verify(&svid, &[], unix_now()).unwrap_err(),
        SvidError::UntrustedIssuer,
        "trusted before import"
    );

    // Import it in its JWKS form (what a SPIRE bundle endpoint serves),
    // with a jwt-svid key that is skipped.
    let mut doc = bundle::to_jwks(std::slice::from_ref(&foreign.cert), 3).unwrap();
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"use": "jwt-svid", "kty": "EC", "kid": "k1"}));
    let certs = bundle::parse_bundle(&doc.to_string()).unwrap();
    assert_eq!(certs, vec![foreign.cert.clone()]);
    let ws = s.import_bundle("acme", &certs, now()).await.unwrap();
    assert_eq!(ws.bundle_sequence, 2);
    // Also accepted as PEM.
    assert_eq!(bundle::parse_bundle(&foreign.cert_pem).unwrap(), certs);

    trust.refresh().await.unwrap();
    let ok = verifier.verify(&svid, &[], unix_now()).unwrap();
    assert_eq!(ok.id.to_string(), id);
    assert_eq!(
        verifier.verify(&unrelated, &[], unix_now()).unwrap_err(),
        SvidError::UntrustedIssuer
    );
    // The hub's own SVIDs still verify beside the imported CA.
    let (dep, _) = s
        .create_deployment("acme", "shop", Duration::from_secs(60), now())
        .await
        .unwrap();
    let (_k, req) = new_csr();
    let own_svid = s
        .workspace_ca("acme")
        .await
        .unwrap()
        .issue_svid(&req, &dep.spiffe_id, SVID_TTL, now())
        .unwrap();
    verifier.verify(&own_svid, &[], unix_now()).unwrap();
}

async fn cross_tenant_isolation(b: &Backend) {
    let s = &b.store;
    s.create_workspace("alpha", None, now()).await.unwrap();
    s.create_workspace("beta", None, now()).await.unwrap();
    s.create_workspace("gamma", Some("gamma.example"), now())
        .await
        .unwrap();
    let (a_dep, _) = s
        .create_deployment("alpha", "shop", Duration::from_secs(60), now())
        .await
        .unwrap();
    let a_ca = s.workspace_ca("alpha").await.unwrap();
    let (_k, req) = new_csr();
    let a_svid = a_ca
        .issue_svid(&req, &a_dep.spiffe_id, SVID_TTL, now())
        .unwrap();

    // B's bundle never verifies A's SVID, even registered for A's IDs.
    let b_bundle = s.trust_bundle("beta").await.unwrap().all();
    let only_b = verifier_for("spiffe://ewii.local", b_bundle);
    assert_eq!(
        only_b.verify(&a_svid, &[], unix_now()).unwrap_err(),
        SvidError::UntrustedIssuer
    );

    let verifier = SvidVerifier::new(Arc::new(StoreTrust::load(s.clone()).await.unwrap()));
    verifier.verify(&a_svid, &[], unix_now()).unwrap();
    // A's CA signing an ID in B's namespace: B's bundle is consulted, and
    // refuses it.
    let b_id = SpiffeId::parse("spiffe://ewii.local/ws/beta/dep/shop").unwrap();
    let forged = a_ca.issue_svid(&req, &b_id, SVID_TTL, now()).unwrap();
    assert_eq!(
        verifier.verify(&forged, &[], unix_now()).unwrap_err(),
        SvidError::UntrustedIssuer
    );
    // An ID whose trust domain is not its workspace's gets no bundle.
    let wrong_td = SpiffeId::parse("spiffe://ewii.local/ws/gamma/dep/shop").unwrap();
    let g_svid = s
        .workspace_ca("gamma")
        .await
        .unwrap()
        .issue_svid(&req, &wrong_td, SVID_TTL, now())
        .unwrap();
    assert!(matches!(
        verifier.verify(&g_svid, &[], unix_now()).unwrap_err(),
        SvidError::UnknownTrustDomain(_)
    ));
    // Unknown workspaces and IDs outside /ws/… get no bundle either.
    for id in [
        "spiffe://ewii.local/ws/nobody/dep/x",
        "spiffe://ewii.local/ns/alpha/sa/x",
    ] {
        let svid = a_ca
            .issue_svid(&req, &SpiffeId::parse(id).unwrap(), SVID_TTL, now())
            .unwrap();
        assert!(matches!(
            verifier.verify(&svid, &[], unix_now()).unwrap_err(),
            SvidError::UnknownTrustDomain(_)
        ));
    }
}
