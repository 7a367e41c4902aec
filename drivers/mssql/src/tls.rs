//! The connection to the server: TCP, then (unless `encrypt=false`) TLS 1.3
//! with ALPN `tds/8.0` before any TDS byte — TDS 8.0 strict encryption.
//!
//! Why this crate does TLS itself rather than tiberius: tiberius's own
//! `rustls` feature compiles a second crypto provider (aws-lc-rs) into
//! every binary, beside the ring provider the whole tree uses. With tiberius
//! built without a TLS feature and the stream already wrapped here (ring
//! only, one rustls 0.23), tiberius speaks TDS inside our TLS session (its
//! `tds80` feature cannot be used: it requires a TLS feature, and only
//! adds the `encrypt=strict` connection-string option, which this crate
//! replaces; the login is TDS 7.4, as tiberius's own strict mode sends): it
//! is told `EncryptionLevel::NotSupported`, so it never tries TLS of its
//! own, and in TDS 8.0 the server ignores the pre-login encryption flag
//! because encryption is already established. The cost: servers older than
//! SQL Server 2022 (no TDS 8.0) can only be reached with an explicit
//! `encrypt=false`.

use std::sync::Arc;
use std::time::Duration;

use ewii_driver_core::DriverError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::url::{Encryption, Target};

/// The ALPN protocol of TDS 8.0 strict encryption.
pub(crate) const TDS8_ALPN: &[u8] = b"tds/8.0";

/// A byte stream to the server, encrypted or (explicitly) not.
pub(crate) trait ServerStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ServerStream for T {}

/// The TLS client configuration: ring provider, TLS 1.3, ALPN `tds/8.0`,
/// the system's roots or the URL's `ca` file.
pub(crate) fn client_config(target: &Target) -> Result<Arc<ClientConfig>, DriverError> {
    let mut roots = RootCertStore::empty();
    match &target.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                DriverError::BadUrl(format!("cannot read ca={}: {e}", path.display()))
            })?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| DriverError::BadUrl(format!("ca={}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| DriverError::BadUrl(format!("ca={}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err(DriverError::Connect(
            "no trusted CA certificate was found to verify the server; give one with \
             ?ca=/path/ca.pem"
                .into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| DriverError::Other(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![TDS8_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Opens the byte stream to the server.
pub(crate) async fn connect(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
    limit: Duration,
) -> Result<Box<dyn ServerStream>, DriverError> {
    let addr = (target.host.as_str(), target.port);
    let tcp = tokio::time::timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            DriverError::Connect(format!(
                "{}:{} did not answer within {}s",
                target.host,
                target.port,
                limit.as_secs()
            ))
        })?
        .map_err(|e| DriverError::Connect(format!("{}:{}: {e}", target.host, target.port)))?;
    tcp.set_nodelay(true).ok();
    match (target.encryption, tls) {
        (Encryption::Plaintext, _) => {
            tracing::warn!(
                host = %target.host,
                "connecting to SQL Server without encryption (encrypt=false): the login and \
                 every result cross the network in plaintext"
            );
            Ok(Box::new(tcp))
        }
        (Encryption::Strict, Some(config)) => {
            let name = ServerName::try_from(target.tls_name().to_owned()).map_err(|e| {
                DriverError::BadUrl(format!("`{}` is not a TLS name: {e}", target.tls_name()))
            })?;
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
            let stream = tokio::time::timeout(limit, connector.connect(name, tcp))
                .await
                .map_err(|_| DriverError::Connect("the TLS handshake timed out".into()))?
                .map_err(|e| {
                    DriverError::Connect(format!(
                        "TLS (TDS 8.0 strict encryption) failed: {e}. The server must be SQL \
                         Server 2022 or later (or Azure SQL) with a certificate for `{}` \
                         trusted here (see ?ca= and ?server_name=)",
                        target.tls_name()
                    ))
                })?;
            Ok(Box::new(stream))
        }
        (Encryption::Strict, None) => Err(DriverError::Other(
            "internal: strict encryption without a TLS configuration".into(),
        )),
    }
}
