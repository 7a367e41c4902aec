//! The replica channel's mutual TLS: peers with certificates from the
//! replicas' CA talk; a server or a client with a certificate from another
//! CA, a client with none, and a server that is not the replica dialled
//! are refused, and nothing reaches the other side.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ewii_hub::gateway::metrics::Metrics;
use ewii_hub::gateway::registry::Registry;
use ewii_hub::gateway::upstream::UpstreamError;
use ewii_hub::replica::ReplicaError;
use ewii_hub::replica::channel::Channel;
use ewii_hub::replica::tls::{ChannelTls, REPLICA_ALPN};
use ewii_hub::replica::wire::ForwardedCall;
use ewii_hub::state::ca::{REPLICA_SERVER_NAME, ReplicaCa};
use ewii_quic::{InMemoryTrust, SvidVerifier};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn registry() -> Arc<Registry> {
    let verifier = Arc::new(SvidVerifier::new(Arc::new(InMemoryTrust::new())));
    Arc::new(Registry::new(Arc::new(Metrics::new(verifier))))
}

struct Served {
    addr: String,
    notices: Arc<Notify>,
    cancel: CancellationToken,
    _channel: Arc<Channel>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Replica `id` serving with `tls` on a loopback port.
fn serve(tls: ChannelTls) -> Served {
    install_provider();
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let channel = Arc::new(Channel::bind(Some(listen), tls).unwrap());
    let addr = channel.local_addr().unwrap().to_string();
    let notices = Arc::new(Notify::new());
    let cancel = CancellationToken::new();
    tokio::spawn(
        channel
            .clone()
            .serve(registry(), notices.clone(), cancel.clone()),
    );
    Served {
        addr,
        notices,
        cancel,
        _channel: channel,
    }
}

fn dialer(tls: ChannelTls) -> Channel {
    install_provider();
    Channel::bind(None, tls).unwrap()
}

fn forwarded() -> ForwardedCall {
    ForwardedCall {
        workspace: "acme".into(),
        deployment: "eu".into(),
        spiffe_id: "spiffe://ewii.local/ws/acme/dep/eu".into(),
        connection: 0,
        tool: "shop_query".into(),
        arguments: None,
        meta: Default::default(),
    }
}

/// Whether a change notice reached the server within a moment.
async fn noticed(s: &Served) -> bool {
    tokio::time::timeout(Duration::from_millis(300), s.notices.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn peers_from_the_replica_ca_talk() {
    let ca = ReplicaCa::generate(SystemTime::now()).unwrap();
    let b = serve(ChannelTls::issue(&ca, "b").unwrap());
    let a = dialer(ChannelTls::issue(&ca, "a").unwrap());
    a.changed("b", &b.addr, vec!["acme".into()]).await.unwrap();
    assert!(noticed(&b).await, "the change notice did not arrive");
    // A call for a tunnel b does not hold is not sent anywhere.
    match a.call("b", &b.addr, forwarded()).await {
        Err(UpstreamError::Unreachable(why)) => assert!(why.contains("no longer holds"), "{why}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_with_a_certificate_from_another_ca_is_refused() {
    let ca = ReplicaCa::generate(SystemTime::now()).unwrap();
    let b = serve(ChannelTls::issue(&ca, "b").unwrap());
    // It trusts the real CA (public), so only the server's check stands
    // in its way; its own certificate, for the id of a real replica,
    // comes from another CA.
    let other = ReplicaCa::generate(SystemTime::now()).unwrap();
    let forged = other.issue_replica_cert("a", SystemTime::now()).unwrap();
    let a = dialer(ChannelTls::new(ca.certificate(), &forged).unwrap());
    assert!(a.changed("b", &b.addr, vec!["acme".into()]).await.is_err());
    assert!(!noticed(&b).await, "a forged peer's notice was taken");
    assert!(a.call("b", &b.addr, forwarded()).await.is_err());
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    install_provider();
    let ca = ReplicaCa::generate(SystemTime::now()).unwrap();
    let b = serve(ChannelTls::issue(&ca, "b").unwrap());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.certificate().clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![REPLICA_ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let attempt = async {
        let c = endpoint
            .connect_with(
                quinn::ClientConfig::new(Arc::new(quic)),
                b.addr.parse().unwrap(),
                REPLICA_SERVER_NAME,
            )
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = c.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(br#"{"changed":{"workspaces":["acme"]}}"#)
            .await
            .map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        recv.read_to_end(1 << 16).await.map_err(|e| e.to_string())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap();
    assert!(
        outcome.is_err(),
        "a peer without a certificate got {outcome:?}"
    );
    assert!(!noticed(&b).await, "an anonymous peer's notice was taken");
}

#[tokio::test]
async fn a_server_with_a_certificate_from_another_ca_is_refused() {
    let ca = ReplicaCa::generate(SystemTime::now()).unwrap();
    let other = ReplicaCa::generate(SystemTime::now()).unwrap();
    // The impostor trusts the real CA for its clients, so it would take
    // the call; its own certificate is from another CA.
    let impostor = other.issue_replica_cert("b", SystemTime::now()).unwrap();
    let b = serve(ChannelTls::new(ca.certificate(), &impostor).unwrap());
    let a = dialer(ChannelTls::issue(&ca, "a").unwrap());
    match a.changed("b", &b.addr, vec!["acme".into()]).await {
        Err(ReplicaError::Connect { .. }) => {}
        other => panic!("expected a refused connection, got {other:?}"),
    }
    assert!(!noticed(&b).await, "the impostor got the notice");
    match a.call("b", &b.addr, forwarded()).await {
        Err(UpstreamError::Unreachable(_)) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_replica_checks_it_reached_the_replica_it_dialled() {
    let ca = ReplicaCa::generate(SystemTime::now()).unwrap();
    let c = serve(ChannelTls::issue(&ca, "c").unwrap());
    let a = dialer(ChannelTls::issue(&ca, "a").unwrap());
    match a.changed("b", &c.addr, vec!["acme".into()]).await {
        Err(ReplicaError::WrongPeer {
            expected, found, ..
        }) => assert_eq!((expected.as_str(), found.as_str()), ("b", "c")),
        other => panic!("expected WrongPeer, got {other:?}"),
    }
    assert!(!noticed(&c).await, "the wrong replica got the notice");
}
