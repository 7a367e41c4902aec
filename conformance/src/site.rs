//! What a suite sets up on a store and a running hub before it judges
//! anything: a workspace with an agent, an agent with a policy, a
//! deployment connected through a real client to a test adapter.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ewii_hub::Store;
use ewii_hub::gateway::registry::LiveDeployment;
use ewii_hub::gateway::serve::RunningHub;
use ewii_quic::KeyMaterial;

use crate::adapter::TestAdapter;
use crate::client::{TestClient, start_client};
use crate::hub::wait_registered;
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
