//! The real hub in-process: [`start_hub`] runs
//! `ewii_hub::gateway::serve::start` on a store, on loopback ephemeral
//! ports, with the test's tweaks to its options. Around it: waiting for a
//! deployment's tunnel to be registered (or registered again), one tunnel
//! attempt with given key material as the hub judges it, and the hub's
//! metrics as numbers.
//!
//! The hub's side of each tunnel is the real hub's; a test that must send
//! what a hub sends (or what a compromised hub could) writes on the live
//! tunnel the registry holds ([`LiveDeployment::tunnel`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ewii_hub::Store;
use ewii_hub::gateway::registry::LiveDeployment;
use ewii_hub::gateway::serve::{RunningHub, ServeOptions};
use ewii_quic::{ClientQuicConfig, ClientTunnel, Dialer, HubCertVerifier, KeyMaterial, NetError};
use ewii_wire::handshake::ClientConfig as TunnelConfig;

use crate::agent::{STEP, install_crypto_provider};

/// The names a test hub's certificate carries; clients dial the first.
pub const HUB_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// How often the waits here look again.
const POLL: Duration = Duration::from_millis(5);

/// Starts the real hub on `store`, on 127.0.0.1 ephemeral QUIC and HTTP
/// ports, naming itself [`HUB_NAMES`], reloading trust bundles every
/// 500 ms; `tweak` changes the options first.
pub async fn start_hub(store: &Store, tweak: impl FnOnce(&mut ServeOptions)) -> RunningHub {
    install_crypto_provider();
    let mut options = ServeOptions {
        quic: "127.0.0.1:0".parse().expect("a socket address"),
        http: "127.0.0.1:0".parse().expect("a socket address"),
        names: HUB_NAMES.map(String::from).to_vec(),
        trust_refresh: Duration::from_millis(500),
        ..ServeOptions::default()
    };
    tweak(&mut options);
    ewii_hub::gateway::serve::start(store.clone(), options)
        .await
        .unwrap_or_else(|e| panic!("start the hub: {e}"))
}

/// Waits until `hub` has deployment `deployment` of `workspace` connected;
/// its registry entry.
pub async fn wait_registered(
    hub: &RunningHub,
    workspace: &str,
    deployment: &str,
) -> Arc<LiveDeployment> {
    next_connection(hub, workspace, deployment, None).await
}

/// Waits until `hub` has `deployment` of `workspace` connected on another
/// connection than `after` (a reconnect, when `after` is the last one).
pub async fn next_connection(
    hub: &RunningHub,
    workspace: &str,
    deployment: &str,
    after: Option<u64>,
) -> Arc<LiveDeployment> {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(live) = hub.state.registry.find(workspace, deployment)
            && Some(live.connection) != after
        {
            return live;
        }
        assert!(
            Instant::now() < deadline,
            "{workspace}/{deployment} never registered (again)"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// One tunnel attempt to `hub` with `keys`, claiming `identity` in the app
/// layer: the hub's verdict.
pub async fn try_tunnel(
    hub: &RunningHub,
    keys: &KeyMaterial,
    identity: &str,
) -> Result<ClientTunnel, NetError> {
    install_crypto_provider();
    let verifier = Arc::new(
        HubCertVerifier::new(&hub.hub_ca, HUB_NAMES[0]).expect("a verifier for the hub CA"),
    );
    let quic = ClientQuicConfig::tunnel(keys, &verifier).expect("a tunnel QUIC config");
    let dialer = Dialer::bind_to("127.0.0.1:0".parse().expect("a socket address"))
        .expect("bind a loopback QUIC endpoint");
    let config = TunnelConfig {
        credentials: keys.credentials().expect("usable key material"),
        identity: identity.into(),
        hub_name: HUB_NAMES[0].into(),
        hub_verifier: verifier,
    };
    tokio::time::timeout(STEP, dialer.connect(&quic, hub.quic_addr, config))
        .await
        .expect("tunnel attempt timed out")
}

/// The sum of the hub's metric series whose name and labels start with
/// `series` (e.g. `ewii_hub_enrolments_refused_total` for every reason,
/// or `ewii_hub_svids_issued_total{kind="renewal"}` for one).
pub fn metric(hub: &RunningHub, series: &str) -> f64 {
    hub.state
        .metrics
        .render()
        .lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(series))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}
