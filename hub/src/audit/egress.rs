//! Everything the audit plane sends out of the hub goes through here: the
//! revocation webhooks and the SIEM exporters (HTTPS, syslog over TLS)
//! share one HTTP client, one URL rule, one way to trust an extra CA and
//! one retry schedule.
//!
//! - [`http_client`]: rustls with the system roots plus an optional CA
//!   file, a timeout on every request, and no redirects (a redirect could
//!   carry a signed body or a bearer token elsewhere).
//! - [`check_url`]: `https://`, or `http://` to a loopback address only; no
//!   `user:password@` (it would end up in logs and in the store).
//! - [`tls_client_config`]: the rustls client config for a raw TLS stream
//!   (syslog over TLS): the platform verifier plus the same CA file.
//! - [`backoff`]: exponential retry delays, spread at random so that many
//!   senders failing together do not retry together.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ring::rand::{self, SecureRandom as _};
use rustls::pki_types::CertificateDer;

/// A destination or TLS setup the hub refuses to send to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// A URL that is not allowed as a destination.
    #[error("refused URL: {0}")]
    InsecureUrl(String),
    /// A CA file that cannot be used.
    #[error("cannot use CA file {}: {reason}; give a PEM file with one or more CERTIFICATE blocks", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}; this is a bug or a broken TLS setup, report it")]
    Client(#[source] reqwest::Error),
    /// The TLS client config could not be built.
    #[error("cannot set up TLS: {0}; check the CA file and the system's CA certificates")]
    Tls(String),
}

/// The HTTP client for webhooks and the HTTPS audit exporter: rustls with
/// the system's roots plus the certificates of `extra_ca` (a PEM file),
/// `timeout` for each whole request, no redirects.
///
/// The hub installs the ring provider at start; if none is installed yet
/// this installs it, rather than letting reqwest panic.
pub fn http_client(
    timeout: Duration,
    extra_ca: Option<&Path>,
) -> Result<reqwest::Client, EgressError> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ewii-hub/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = extra_ca {
        let mut certs = Vec::new();
        for der in read_ca_file(path)? {
            certs.push(
                reqwest::Certificate::from_der(&der).map_err(|e| EgressError::CaFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?,
            );
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(EgressError::Client)
}

/// The rustls client config for a TLS stream to a receiver (syslog over
/// TLS): full path and name validation by the platform verifier, with the
/// certificates of `extra_ca` trusted too.
pub fn tls_client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, EgressError> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let extra = match extra_ca {
        Some(path) => read_ca_file(path)?,
        None => Vec::new(),
    };
    let tls_error = |e: rustls::Error| EgressError::Tls(e.to_string());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(tls_error)?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        // Not dangerous: the platform verifier does full path and name
        // validation; this is just how a custom verifier is installed.
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Checks that `url` may be a destination: `https://`, or `http://` to a
/// loopback address only (tests, a local relay); no `user:password@`,
/// which would end up in logs and in the database.
pub fn check_url(url: &str) -> Result<(), EgressError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        EgressError::InsecureUrl(format!("not a URL ({e}); use https://host[:port]/path"))
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(EgressError::InsecureUrl(
            "credentials in the URL (user:password@) would be logged and stored; remove them \
             and use the token setting instead"
                .into(),
        ));
    }
    let host = parsed.host_str().unwrap_or_default();
    match parsed.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(EgressError::InsecureUrl(format!(
            "http:// to {host:?} would send records and signatures in clear text; use https:// \
             (http:// is allowed only to a loopback address)"
        ))),
        scheme => Err(EgressError::InsecureUrl(format!(
            "scheme {scheme:?} is not supported; use https://host[:port]/path"
        ))),
    }
}

/// Whether `host` (as in a URL, IPv6 in brackets) is `localhost` or a
/// loopback address.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The certificates of a PEM CA file; at least one.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, EgressError> {
    ewii_quic::read_certificates(path).map_err(|e| EgressError::CaFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The wait after the `attempt`-th failure in a row (1-based): `base`
/// doubled each time up to `cap`, then ±20 % at random (never above `cap`
/// by more than the spread).
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(31);
    jitter(base.saturating_mul(1u32 << exp).min(cap), 0.2)
}

/// Scales `delay` by a random factor in `[1 - spread, 1 + spread]`. If the
/// random generator fails the delay is returned as is: jitter only spreads
/// load, it protects nothing.
fn jitter(delay: Duration, spread: f64) -> Duration {
    let mut bytes = [0u8; 4];
    if rand::SystemRandom::new().fill(&mut bytes).is_err() {
        return delay;
    }
    let unit = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
    delay.mul_f64(1.0 - spread + 2.0 * spread * unit)
}

/// Receivers for the audit plane's tests: a throwaway CA and an HTTPS
/// listener presenting a certificate it signed.
#[cfg(test)]
pub(crate) mod test_support {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsAcceptor;

    /// Installs the process's crypto provider (ring), once.
    pub(crate) fn install_provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    /// A throwaway CA and a server certificate for `localhost` and
    /// 127.0.0.1 signed by it.
    pub(crate) struct TestPki {
        /// The CA certificate, PEM.
        pub ca_pem: String,
        /// A rustls server config presenting the server certificate.
        pub server: Arc<rustls::ServerConfig>,
    }

    pub(crate) fn test_pki() -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ewii test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key)
        .unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            server: Arc::new(server),
        }
    }

    /// An axum listener that serves HTTPS with `server`.
    pub(crate) struct TlsListener {
        pub tcp: TcpListener,
        pub acceptor: TlsAcceptor,
    }

    impl axum::serve::Listener for TlsListener {
        type Io = tokio_rustls::server::TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            loop {
                if let Ok((tcp, addr)) = self.tcp.accept().await
                    && let Ok(tls) = self.acceptor.accept(tcp).await
                {
                    return (tls, addr);
                }
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            self.tcp.local_addr()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_or_loopback() {
        check_url("https://hooks.example.com/ewii").unwrap();
        check_url("http://127.0.0.1:8080/hook").unwrap();
        check_url("http://[::1]/hook").unwrap();
        check_url("http://localhost/hook").unwrap();
        for bad in [
            "http://hooks.example.com/ewii",
            "https://user:pw@hooks.example.com/",
            "ftp://x/",
            "not a url",
        ] {
            assert!(
                matches!(check_url(bad), Err(EgressError::InsecureUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        for attempt in 1..=12u32 {
            let expected = (2f64.powi(attempt as i32 - 1)).min(60.0);
            let d = backoff(attempt, base, cap).as_secs_f64();
            assert!(
                d >= expected * 0.8 - 1e-9 && d <= expected * 1.2 + 1e-9,
                "attempt {attempt}: {d} s, expected {expected} s ± 20 %"
            );
        }
    }
}
