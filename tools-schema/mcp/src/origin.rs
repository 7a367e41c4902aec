//! Browser origins (RFC 6454), compared exactly: scheme, host and port.
//!
//! Never `localhost:*`: another local web app on another port must not be
//! able to drive an MCP endpoint from a browser.

use std::fmt;
use std::str::FromStr;

/// An allowed-origin entry that is not `http(s)://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid allowed origin '{origin}': {why}. Write it as the browser sends it, \
     scheme://host:port, e.g. http://localhost:6274 (wildcards are not accepted)"
)]
pub struct InvalidOrigin {
    /// The entry as given.
    pub origin: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// A web origin (RFC 6454): scheme, host and port, all three compared.
/// The port is explicit even when the browser omits a scheme's default.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExactOrigin {
    scheme: String,
    host: String,
    port: u16,
}

impl ExactOrigin {
    /// Parses an `Origin` value or an allowed-origin entry.
    pub fn parse(value: &str) -> Result<ExactOrigin, InvalidOrigin> {
        let invalid = |why| InvalidOrigin {
            origin: value.to_owned(),
            why,
        };
        let trimmed = value.trim();
        if trimmed.contains('*') {
            return Err(invalid("wildcards would match other local web apps"));
        }
        let uri = http::Uri::try_from(trimmed).map_err(|_| invalid("not a URL"))?;
        let scheme = uri
            .scheme_str()
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| invalid("the scheme is missing"))?;
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(invalid("only http and https origins exist for browsers")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("the host is missing"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("an origin has no user name"));
        }
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
        if !path.is_empty() && path != "/" {
            return Err(invalid("an origin has no path or query"));
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err(invalid("the host is missing"));
        }
        Ok(ExactOrigin {
            scheme,
            host,
            port: authority.port_u16().unwrap_or(default_port),
        })
    }
}

impl FromStr for ExactOrigin {
    type Err = InvalidOrigin;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExactOrigin::parse(s)
    }
}

impl fmt::Display for ExactOrigin {
    /// Always with the port, which is how rmcp's origin check treats an
    /// entry as exact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn origins_are_exact_with_default_ports() {
        let o = |s: &str| ExactOrigin::parse(s).expect(s);
        assert_eq!(
            o("http://localhost:6274").to_string(),
            "http://localhost:6274"
        );
        assert_eq!(
            o("HTTP://LocalHost:6274/").to_string(),
            "http://localhost:6274"
        );
        assert_eq!(o("http://example.com"), o("http://example.com:80"));
        assert_eq!(o("https://example.com"), o("https://example.com:443"));
        assert_eq!(o("http://[::1]:8080").to_string(), "http://[::1]:8080");
        assert_ne!(o("http://localhost:6274"), o("http://localhost:6275"));
        assert_ne!(o("http://localhost:6274"), o("https://localhost:6274"));
        assert_ne!(o("http://localhost:6274"), o("http://127.0.0.1:6274"));
        for bad in [
            "http://localhost:*",
            "*",
            "localhost:6274",
            "ftp://example.com",
            "http://user@example.com",
            "http://example.com/path",
            "http://example.com?q",
            "null",
            "",
        ] {
            assert!(ExactOrigin::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
