//! SVIDs issued straight from a workspace's CA in the store: what
//! enrolment hands a client, without the token, for suites about what
//! happens once a client has one; and the workspace's trust as a verifier
//! outside the hub holds it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ewii_hub::Store;
use ewii_hub::state::store::Deployment;
use ewii_quic::{InMemoryTrust, KeyMaterial, TrustBundle};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::pki::rcgen::{self, CertificateParams, KeyPair};
use crate::pki::{Leaf, key_material};

/// How long an SVID issued here lives.
pub const TTL: Duration = Duration::from_secs(3600);

/// An SVID for deployment `deployment` of `workspace`, issued by the
/// workspace CA to a fresh P-256 key (the store does not record it; see
/// [`record_svid`]).
pub async fn issue(store: &Store, workspace: &str, deployment: &str) -> Leaf {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a P-256 key");
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .expect("a CSR");
    let dep = find_deployment(store, workspace, deployment).await;
    let cert = store
        .workspace_ca(workspace)
        .await
        .unwrap_or_else(|e| panic!("the CA of {workspace}: {e}"))
        .issue_svid(csr.der(), &dep.spiffe_id, TTL, SystemTime::now())
        .unwrap_or_else(|e| panic!("issue an SVID for {deployment}: {e}"));
    Leaf {
        serial: ewii_wire::svid::serial_hex(&cert).expect("an issued SVID has a serial"),
        cert_pem: ewii_hub::state::bundle::to_pem(std::slice::from_ref(&cert)),
        chain: vec![cert],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        key_pem: key.serialize_pem(),
    }
}

/// [`issue`], as the key material a client presents.
pub async fn issue_svid(store: &Store, workspace: &str, deployment: &str) -> KeyMaterial {
    key_material(&issue(store, workspace, deployment).await)
}

/// Records `keys`' SVID as issued to `deployment` at enrolment, as the hub
/// does before it hands one out (so a deployment revoke covers it).
pub async fn record_svid(store: &Store, workspace: &str, deployment: &str, keys: &KeyMaterial) {
    let dep = find_deployment(store, workspace, deployment).await;
    let serial = ewii_wire::svid::serial_hex(&keys.chain[0]).expect("an SVID has a serial");
    store
        .record_svid(&dep.id, &serial, "enrolment", 0, i64::MAX / 2)
        .await
        .unwrap_or_else(|e| panic!("record the SVID of {deployment}: {e}"));
}

/// Deployment `deployment` of `workspace`, as the store has it.
pub async fn find_deployment(store: &Store, workspace: &str, deployment: &str) -> Deployment {
    store
        .list_deployments(workspace)
        .await
        .unwrap_or_else(|e| panic!("list the deployments of {workspace}: {e}"))
        .into_iter()
        .find(|d| d.name == deployment)
        .unwrap_or_else(|| panic!("no deployment {deployment} in {workspace}"))
}

/// A trust source holding `workspace`'s bundle for its SPIFFE IDs only, as
/// something other than the hub (a relay, a stand-in) verifies its SVIDs.
pub async fn workspace_trust(store: &Store, workspace: &str) -> Arc<InMemoryTrust> {
    let ws = store
        .workspace(workspace)
        .await
        .unwrap_or_else(|e| panic!("workspace {workspace}: {e}"));
    let bundle = store
        .trust_bundle(workspace)
        .await
        .unwrap_or_else(|e| panic!("the trust bundle of {workspace}: {e}"));
    let bundle = TrustBundle::from_der(bundle.all()).expect("a workspace bundle is a trust bundle");
    let prefix = format!("spiffe://{}/ws/{workspace}", ws.trust_domain);
    Arc::new(InMemoryTrust::new().with_bundle(&prefix, bundle))
}
