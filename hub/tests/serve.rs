//! `ewii-hub serve` end to end: agent → hub → QUIC tunnel → client →
//! adapter → database, on SQLite and PostgreSQL hub stores alike.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;
mod support;

use std::time::Duration;

use ewii_hub::Store;
use ewii_hub::serve::RunningHub;
use ewii_tunnel::client::{Client, ClientOptions};
use ewii_tunnel::forward::{AllowList, Destination};
use ewii_tunnel::net::KeyMaterial;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use serve_support::*;
use support::Backend;
use tokio_util::sync::CancellationToken;

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::Backend::sqlite().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(backend) = super::Backend::postgres().await else { return };
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

suite!(agent_lists_and_calls_through_the_hub,);

/// A deployment's SVID issued straight from its workspace CA (what
/// enrolment does, without the token).
async fn issue_svid(store: &Store, workspace: &str, deployment: &str) -> KeyMaterial {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let dep = store
        .list_deployments(workspace)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.name == deployment)
        .unwrap();
    let cert = store
        .workspace_ca(workspace)
        .await
        .unwrap()
        .issue_svid(csr.der(), &dep.spiffe_id, Duration::from_secs(3600), now())
        .unwrap();
    KeyMaterial {
        chain: vec![cert],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// A running client; stops when dropped.
struct TestClient {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TestClient {
    async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(STEP, self.task).await;
    }
}

fn start_client(hub: &RunningHub, keys: KeyMaterial, adapter: &TestAdapter) -> TestClient {
    let allow = AllowList::new(vec![adapter.allow().parse::<Destination>().unwrap()]).unwrap();
    let client = Client::new(ClientOptions {
        hub: hub.quic_addr.to_string(),
        hub_name: "127.0.0.1".into(),
        hub_ca: hub_ca(hub),
        tls_ca: None,
        keys,
        allow,
        log: None,
    })
    .unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let _ = client.run(cancel).await;
        }
    });
    TestClient { cancel, task }
}

async fn agent_lists_and_calls_through_the_hub(backend: &Backend) {
    let store = &backend.store;
    store.create_workspace("acme", None, now()).await.unwrap();
    store
        .create_deployment("acme", "eu", Duration::from_secs(3600), now())
        .await
        .unwrap();
    let (_, credential) = store.create_agent("acme", "bot", now()).await.unwrap();
    let hub = start_hub(store, |_| {}).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let client = start_client(&hub, issue_svid(store, "acme", "eu").await, &adapter);

    let agent = agent(&hub, credential.expose()).await;
    let names = wait_for_tools(&agent, |n| !n.is_empty()).await;
    assert!(names.contains(&"eu_shop_query".to_string()), "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("eu_shop_")), "{names:?}");

    let result = call(&agent, "eu_shop_query", count_query()).await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    let data = result.structured_content.unwrap();
    assert_eq!(data["rows"], json!([[10]]));

    client.stop().await;
    // The deployment went away: its tools go too, and a call by name says
    // it is offline rather than hanging.
    wait_for_tools(&agent, |n| n.is_empty()).await;
    let offline = call(&agent, "eu_shop_query", count_query()).await;
    assert_eq!(offline.is_error, Some(true));
    assert!(
        text_of(&offline).contains("offline"),
        "{}",
        text_of(&offline)
    );
    agent.cancel().await.ok();
    hub.shutdown().await;
}
