//! `ewii-hub serve --http-tls-cert/--http-tls-key`: `/mcp` (and `/healthz`)
//! over HTTPS with TLS 1.3 and 1.2, plain HTTP on the port refused, the
//! certificate reloaded when its files change, a mismatched key refused;
//! `--http-tls-hub-ca`: a certificate from the hub CA.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ewii_hub::gateway::serve::{self, RunningHub, ServeOptions};
use ewii_hub::gateway::tls::HttpTls;
use ewii_hub::state::master_key::MasterKey;
use ewii_hub::state::store::{Store, sqlite_url};
use ewii_test_pki::TestCa;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn hub(
    dir: &std::path::Path,
    http_tls: Option<(&std::path::Path, &std::path::Path)>,
) -> RunningHub {
    let store = Store::connect(
        &sqlite_url(&dir.join("hub.db")),
        MasterKey::generate().unwrap(),
    )
    .await
    .unwrap();
    let options = ServeOptions {
        quic: "127.0.0.1:0".parse().unwrap(),
        http: "127.0.0.1:0".parse().unwrap(),
        names: vec!["127.0.0.1".into()],
        http_tls: http_tls.map(|(c, k)| (c.to_owned(), k.to_owned())),
        http_tls_hub_ca: http_tls.is_none(),
        ..ServeOptions::default()
    };
    serve::start(store, options).await.unwrap()
}

/// `GET /healthz` over TLS trusting `ca` with only `version`: the status
/// line, or the TLS error.
async fn get_healthz(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<String, std::io::Error> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await?;
    let negotiated = tls.get_ref().1.protocol_version();
    assert_eq!(negotiated, Some(version.version));
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await?;
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await?;
    Ok(reply.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn mcp_over_tls_12_and_13_plain_http_refused_certificate_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestCa::new("first CA");
    let (cert, key) = first.server("127.0.0.1").write_pem(dir.path(), "http");
    let hub = hub(dir.path(), Some((&cert, &key))).await;
    let addr = hub.http_addr;
    assert_eq!(hub.mcp_url(), format!("https://{addr}/mcp"));

    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let status = get_healthz(addr, &first.certificates(), version)
            .await
            .unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK", "{version:?}");
    }

    // Plain HTTP to the TLS port: a 400 naming HTTPS, then closed; /mcp is
    // never reached.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut reply = String::new();
    plain.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert!(reply.contains("HTTPS only"), "{reply}");

    // A client trusting another CA is refused.
    let other = TestCa::new("other CA");
    let refused = get_healthz(addr, &other.certificates(), &rustls::version::TLS13).await;
    assert!(refused.is_err(), "{refused:?}");

    // The operator rotates the certificate: new connections get the new one
    // (file change noticed within the poll), without a restart.
    other.server("127.0.0.1").write_pem(dir.path(), "http");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if get_healthz(addr, &other.certificates(), &rustls::version::TLS13)
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        get_healthz(addr, &first.certificates(), &rustls::version::TLS13)
            .await
            .is_err()
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_key_that_does_not_match_is_refused_and_a_broken_reload_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("CA");
    let (cert, key) = ca.server("127.0.0.1").write_pem(dir.path(), "a");
    let (_, other_key) = ca.server("127.0.0.1").write_pem(dir.path(), "b");
    let err = HttpTls::load(&cert, &other_key).unwrap_err().to_string();
    assert!(err.contains("--http-tls"), "{err}");

    let tls = HttpTls::load(&cert, &key).unwrap();
    let served = tls.chain();
    assert!(!tls.reload(false).unwrap(), "unchanged files reloaded");
    // A half-written rotation: the key no longer matches.
    std::fs::copy(&other_key, &key).unwrap();
    assert!(tls.reload(false).is_err());
    assert_eq!(
        tls.chain(),
        served,
        "a broken reload replaced the certificate"
    );
    assert!(
        tls.reload(true).is_err(),
        "SIGHUP reload of a broken pair succeeded"
    );
}

#[tokio::test]
async fn with_http_tls_hub_ca_agents_trust_the_hub_ca() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), None).await;
    assert_eq!(hub.mcp_url(), format!("https://{}/mcp", hub.http_addr));
    let status = get_healthz(hub.http_addr, &hub.hub_ca, &rustls::version::TLS13)
        .await
        .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    let other = TestCa::new("other CA");
    assert!(
        get_healthz(
            hub.http_addr,
            &other.certificates(),
            &rustls::version::TLS12
        )
        .await
        .is_err()
    );
    hub.shutdown().await;
}
