//! What a suite sets up on a store and a running hub before it judges
//! anything: a workspace with an agent, an agent with a policy, a
//! deployment connected through a real client to a test adapter, and the
//! [`EnrolmentSite`] every enrolment test starts from.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ewii_client::client::{Client, ClientError};
use ewii_hub::Store;
use ewii_hub::gateway::registry::LiveDeployment;
use ewii_hub::gateway::serve::RunningHub;
use ewii_quic::KeyMaterial;
use tokio_util::sync::CancellationToken;

use crate::adapter::TestAdapter;
use crate::client::{ClientHome, TestClient, start_client, start_enrolled};
use crate::db::Backend;
use crate::hub::{metric, next_connection, start_hub, wait_registered};
use crate::svid::{issue_svid, record_svid};

/// How long the enrolment tokens made here stay valid.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Creates workspace `workspace` with deployment `deployment` and an agent
/// `bot`; the agent's credential.
pub async fn workspace_with_agent(store: &Store, workspace: &str, deployment: &str) -> String {
    store
        .create_workspace(workspace, None, SystemTime::now())
        .await
        .unwrap_or_else(|e| panic!("create workspace {workspace}: {e}"));
    store
        .create_deployment(workspace, deployment, TOKEN_TTL, SystemTime::now())
        .await
        .unwrap_or_else(|e| panic!("create deployment {deployment}: {e}"));
    agent_credential(store, workspace, "bot", None).await
}

/// Creates agent `name` of `workspace` with `policy` (TOML); its
/// credential.
pub async fn agent_credential(
    store: &Store,
    workspace: &str,
    name: &str,
    policy: Option<&str>,
) -> String {
    let (_, credential) = store
        .create_agent_with_policy(workspace, name, policy, SystemTime::now())
        .await
        .unwrap_or_else(|e| panic!("create agent {name}: {e}"));
    credential.expose().to_owned()
}

/// A deployment connected to a hub.
pub struct Deployed {
    /// The adapter its client serves.
    pub adapter: TestAdapter,
    /// The SVID its client presents.
    pub keys: KeyMaterial,
    /// Its client.
    pub client: TestClient,
    /// The hub's registry entry for its tunnel.
    pub live: Arc<LiveDeployment>,
}

/// Creates deployment `deployment` of `workspace` (which exists), issues
/// and records its SVID as enrolment does, and runs its client serving
/// `adapter` until `hub` has it registered.
pub async fn deploy(
    store: &Store,
    hub: &RunningHub,
    workspace: &str,
    deployment: &str,
    adapter: TestAdapter,
) -> Deployed {
    store
        .create_deployment(workspace, deployment, TOKEN_TTL, SystemTime::now())
        .await
        .unwrap_or_else(|e| panic!("create deployment {deployment}: {e}"));
    let keys = issue_svid(store, workspace, deployment).await;
    record_svid(store, workspace, deployment, &keys).await;
    let client = start_client(hub, keys.clone(), &adapter);
    let live = wait_registered(hub, workspace, deployment).await;
    Deployed {
        adapter,
        keys,
        client,
        live,
    }
}

/// Where an enrolment test starts: the real hub on a fresh SQLite store
/// holding workspace `acme` and its deployment `eu` (SPIFFE ID
/// [`EnrolmentSite::DEPLOYMENT`]), issuing SVIDs that live `ttl`; the shop
/// adapter; a [`ClientHome`]; and the token that cancels the client.
pub struct EnrolmentSite {
    /// The hub.
    pub hub: RunningHub,
    /// Its store.
    pub backend: Backend,
    /// The adapter the client serves.
    pub adapter: TestAdapter,
    /// The client's state and log.
    pub home: ClientHome,
    /// Stops the client.
    pub cancel: CancellationToken,
}

impl EnrolmentSite {
    /// The deployment's SPIFFE ID.
    pub const DEPLOYMENT: &str = "spiffe://ewii.local/ws/acme/dep/eu";

    /// Starts it, the hub issuing SVIDs that live `ttl`.
    pub async fn start(ttl: Duration) -> EnrolmentSite {
        let backend = Backend::sqlite().await;
        let store = &backend.store;
        store
            .create_workspace("acme", None, SystemTime::now())
            .await
            .expect("create workspace acme");
        store
            .create_deployment("acme", "eu", TOKEN_TTL, SystemTime::now())
            .await
            .expect("create deployment eu");
        let hub = start_hub(store, |o| o.svid_ttl = ttl).await;
        EnrolmentSite {
            hub,
            backend,
            adapter: TestAdapter::sqlite("shop").await,
            home: ClientHome::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// A new enrolment token for `eu`, as `ewii-hub deployment token` makes.
    pub async fn token(&self) -> String {
        let token = self
            .backend
            .store
            .issue_enrolment_token("acme", "eu", TOKEN_TTL, SystemTime::now())
            .await
            .expect("issue an enrolment token");
        token.token.expose().to_owned()
    }

    /// `Client::start` in the home: the client enrolled (with `token`, if
    /// it has no identity yet), not yet running.
    pub async fn enrol(&self, token: Option<&str>) -> Result<Client, ClientError> {
        start_enrolled(
            &self.hub,
            &self.adapter,
            &self.home.state,
            &self.home.log,
            token,
            &self.cancel,
        )
        .await
    }

    /// The serials the hub issued at enrolment, oldest first.
    pub async fn enrolled(&self) -> Vec<String> {
        self.backend.issued_svids("enrolment").await
    }

    /// The serials the hub issued at renewal, oldest first.
    pub async fn renewed(&self) -> Vec<String> {
        self.backend.issued_svids("renewal").await
    }

    /// Every enrolment request the hub answered, issued or refused.
    pub fn enrol_requests(&self) -> f64 {
        metric(&self.hub, "ewii_hub_svids_issued_total{kind=\"enrolment\"}")
            + metric(&self.hub, "ewii_hub_enrolments_refused_total")
    }

    /// Whether `eu` is revoked at the hub.
    pub async fn revoked(&self) -> bool {
        let state = self
            .backend
            .store
            .revocation_state()
            .await
            .expect("the revocation state");
        state.spiffe_ids.contains(Self::DEPLOYMENT)
    }

    /// `eu`'s tunnel once the hub has it registered on another connection
    /// than `after`.
    pub async fn next_tunnel(&self, after: Option<u64>) -> Arc<LiveDeployment> {
        next_connection(&self.hub, "acme", "eu", after).await
    }

    /// The workspace's trust bundle, PEM, as enrolment hands it out.
    pub async fn bundle_pem(&self) -> String {
        let bundle = self
            .backend
            .store
            .trust_bundle("acme")
            .await
            .expect("the trust bundle of acme");
        ewii_hub::state::bundle::to_pem(&bundle.all())
    }
}
