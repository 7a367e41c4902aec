//! The registry of live tunnels in the store (SQLite here; the
//! conformance suite runs replicas on PostgreSQL): the newest connection
//! wins, leases expire, a holder whose row was taken cannot take it back
//! while the other's lease runs, and a stale holder's release leaves the
//! new holder's row alone.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, SystemTime};

use ewii_hub::state::master_key::MasterKey;
use ewii_hub::state::store::replicas::TunnelClaim;
use ewii_hub::state::store::{Store, sqlite_url};

const EU: &str = "spiffe://ewii.local/ws/acme/dep/eu";

async fn store(dir: &std::path::Path) -> Store {
    let store = Store::connect(
        &sqlite_url(&dir.join("hub.db")),
        MasterKey::generate().unwrap(),
    )
    .await
    .unwrap();
    store
        .create_workspace("acme", None, SystemTime::now())
        .await
        .unwrap();
    store
        .create_deployment("acme", "eu", Duration::from_secs(60), SystemTime::now())
        .await
        .unwrap();
    store
}

fn claim(connection: u64, catalog: &str) -> TunnelClaim<'_> {
    TunnelClaim {
        spiffe_id: EU,
        connection,
        session_serial: "01",
        catalog,
        tools: "[]",
        connected_at: 0,
    }
}

#[tokio::test]
async fn newest_connection_wins_and_leases_expire() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let now = 1_000_000;
    s.register_replica("r1", Some("127.0.0.1:1"), now)
        .await
        .unwrap();
    s.register_replica("r2", Some("127.0.0.1:2"), now)
        .await
        .unwrap();

    assert!(
        s.claim_tunnel("r1", &claim(7, "a"), now + 15_000)
            .await
            .unwrap()
    );
    let held = s.held_tunnels(now).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        (
            held[0].replica_id.as_str(),
            held[0].connection,
            held[0].deployment.as_str()
        ),
        ("r1", 7, "eu")
    );
    assert_eq!(held[0].peer_address.as_deref(), Some("127.0.0.1:1"));
    assert_eq!(
        s.tunnel_tools(&held[0]).await.unwrap().as_deref(),
        Some("[]")
    );

    // The client reconnects to r2: r2 holds it, whatever r1 thinks.
    assert!(
        s.claim_tunnel("r2", &claim(3, "a"), now + 15_000)
            .await
            .unwrap()
    );
    let mine = s
        .replica_heartbeat("r1", Some("127.0.0.1:1"), now, now + 15_000)
        .await
        .unwrap();
    assert!(mine.is_empty(), "{mine:?}");
    // r1 cannot take it back while r2's lease runs …
    assert!(
        !s.reclaim_tunnel("r1", &claim(7, "a"), now, now + 15_000)
            .await
            .unwrap()
    );
    // … its catalog update touches nothing, its release leaves r2's row.
    assert!(!s.update_tunnel_catalog("r1", &claim(7, "b")).await.unwrap());
    s.release_tunnel("r1", EU, 7).await.unwrap();
    let held = s.held_tunnels(now).await.unwrap();
    assert_eq!((held[0].replica_id.as_str(), held[0].connection), ("r2", 3));

    // r2 dies: past its lease nobody routes to it, and r1 may re-claim.
    let later = now + 15_001;
    assert!(s.held_tunnels(later).await.unwrap().is_empty());
    assert!(
        s.reclaim_tunnel("r1", &claim(7, "a"), later, later + 15_000)
            .await
            .unwrap()
    );
    let held = s.held_tunnels(later).await.unwrap();
    assert_eq!((held[0].replica_id.as_str(), held[0].connection), ("r1", 7));

    // Its heartbeat renews it; retiring drops rows and replica.
    let mine = s
        .replica_heartbeat("r1", Some("127.0.0.1:1"), later, later + 15_000)
        .await
        .unwrap();
    assert!(mine.contains(&(EU.to_string(), 7)));
    assert_eq!(
        s.live_replicas(later).await.unwrap().len(),
        1,
        "r2 is not live"
    );
    s.retire_replica("r1").await.unwrap();
    assert!(s.held_tunnels(later).await.unwrap().is_empty());
    assert!(
        s.live_replicas(0)
            .await
            .unwrap()
            .iter()
            .all(|r| r.id != "r1")
    );
}

#[tokio::test]
async fn the_replica_ca_is_one_per_store_and_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let a = s.replica_ca(SystemTime::now()).await.unwrap();
    let b = s.replica_ca(SystemTime::now()).await.unwrap();
    assert_eq!(a.certificate(), b.certificate());
    let hub = s.hub_ca(SystemTime::now()).await.unwrap();
    assert_ne!(
        hub.certificate(),
        a.certificate(),
        "the replica CA is its own"
    );
}
