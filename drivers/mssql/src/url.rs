//! The SQL Server URL: `mssql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?…]`.
//!
//! Query parameters (anything else is refused, so a typo such as
//! `encrypt=ture` cannot silently weaken the connection):
//!
//! - `encrypt=strict` (the default): TDS 8.0 strict encryption, TLS 1.3
//!   before the first TDS byte, the server certificate verified against the
//!   system's roots (or `ca`) and the host name (or `server_name`);
//! - `encrypt=false`: plaintext TDS, login and data readable on the
//!   network. An explicit opt-out only, for a server older than SQL Server
//!   2022 on a network the operator trusts; `test-database` and every
//!   connection warn;
//! - `ca=/path/ca.pem`: trust only these PEM certificates;
//! - `server_name=NAME`: the name the certificate must carry, when HOST is
//!   an address.
//!
//! `sqlserver://` is accepted as a synonym of `mssql://`.

use std::path::PathBuf;

use ewii_driver_core::{DriverError, SecretString};

/// The default SQL Server port.
const DEFAULT_PORT: u16 = 1433;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// TDS 8.0 strict: TLS first, verified.
    Strict,
    /// Plaintext TDS (explicit `encrypt=false`).
    Plaintext,
}

/// Everything the driver needs to reach one database.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The database; `None` keeps the login's default database.
    pub database: Option<String>,
    /// Login name (SQL Server authentication).
    pub user: String,
    /// Login password.
    pub password: SecretString,
    /// Strict TLS or explicit plaintext.
    pub encryption: Encryption,
    /// PEM file of the certificates to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The name the server certificate must carry (default: `host`).
    pub server_name: Option<String>,
}

impl Target {
    /// The TLS name the certificate is checked against.
    pub fn tls_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or(&self.host)
    }
}

/// An example URL, for help and errors.
pub const EXAMPLE_URL: &str = "mssql://ewii_reader@db.internal:1433/shop";

fn bad(msg: impl std::fmt::Display) -> DriverError {
    DriverError::BadUrl(format!("{msg}; expected e.g. {EXAMPLE_URL}"))
}

/// Parses a SQL Server URL (see the module documentation).
pub fn parse(url: &str) -> Result<Target, DriverError> {
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "mssql" | "sqlserver") {
        return Err(bad("a SQL Server URL starts with mssql://"));
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("the URL names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let user = decode(parsed.username());
    if user.is_empty() {
        return Err(bad(
            "the URL names no login (SQL Server authentication needs USER@HOST)",
        ));
    }
    let password = SecretString::new(parsed.password().map(decode).unwrap_or_default());
    let database = parsed
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .filter(|d| !d.is_empty())
        .map(decode);
    let mut target = Target {
        host,
        port: parsed.port().unwrap_or(DEFAULT_PORT),
        database,
        user,
        password,
        encryption: Encryption::Strict,
        ca_file: None,
        server_name: None,
    };
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "encrypt" => {
                target.encryption = match value.to_ascii_lowercase().as_str() {
                    "strict" => Encryption::Strict,
                    "false" | "no" | "off" | "disable" => Encryption::Plaintext,
                    other => {
                        return Err(bad(format!(
                            "encrypt={other} is not supported: use encrypt=strict (TDS 8.0, \
                             the default; SQL Server 2022 and later, Azure SQL) or, on a \
                             trusted network only, encrypt=false (plaintext)"
                        )));
                    }
                }
            }
            "ca" => target.ca_file = Some(PathBuf::from(value.as_ref())),
            "server_name" => target.server_name = Some(value.into_owned()),
            other => {
                return Err(bad(format!(
                    "unknown parameter `{other}` (known: encrypt, ca, server_name)"
                )));
            }
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let t = parse(
            "mssql://ewii%40reader:p%40ss%3Aw@db.internal:14330/shop?ca=/etc/ca.pem&server_name=sql.corp",
        )
        .expect("parses");
        assert_eq!(t.host, "db.internal");
        assert_eq!(t.port, 14330);
        assert_eq!(t.database.as_deref(), Some("shop"));
        assert_eq!(t.user, "ewii@reader");
        assert_eq!(t.password.expose(), "p@ss:w");
        assert_eq!(t.encryption, Encryption::Strict);
        assert_eq!(t.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(t.tls_name(), "sql.corp");
    }

    #[test]
    fn defaults_are_strict_tls_on_1433() {
        let t = parse("sqlserver://reader@10.0.0.5").expect("parses");
        assert_eq!(
            (t.port, t.encryption, t.database.as_deref(), t.tls_name()),
            (1433, Encryption::Strict, None, "10.0.0.5")
        );
        assert_eq!(t.password.expose(), "");
    }

    #[test]
    fn plaintext_only_when_asked() {
        let t = parse("mssql://r@h/d?encrypt=false").expect("parses");
        assert_eq!(t.encryption, Encryption::Plaintext);
        let t = parse("mssql://r@h/d?encrypt=STRICT").expect("parses");
        assert_eq!(t.encryption, Encryption::Strict);
    }

    #[test]
    fn mistakes_are_refused() {
        for (url, word) in [
            ("postgres://r@h/d", "mssql://"),
            ("mssql://h/d", "login"),
            ("mssql://r@h/d?encrypt=ture", "encrypt=ture"),
            ("mssql://r@h/d?encrypt=true", "encrypt=true"),
            (
                "mssql://r@h/d?trustservercertificate=true",
                "unknown parameter",
            ),
            ("not a url", "not a URL"),
        ] {
            let err = parse(url).expect_err(url).to_string();
            assert!(err.contains(word), "{url}: {err}");
            assert!(!err.contains("p@ss"), "{err}");
        }
    }
}
