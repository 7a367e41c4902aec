//! The Oracle URL: `oracle://USER[:PASSWORD]@HOST[:PORT]/SERVICE_NAME[?…]`,
//! turned into an Easy Connect string (`//HOST:PORT/SERVICE_NAME`).
//!
//! Query parameters (anything else is refused):
//! - `protocol=tcps`: TLS to the listener (`tcps://HOST:PORT/SERVICE`; the
//!   Oracle Client's wallet or `ssl_server_dn_match` settings apply);
//! - `connect_string=…`: a full connect descriptor or a `tnsnames.ora`
//!   alias instead of HOST/PORT/SERVICE (then HOST is ignored).

use ewii_driver_core::{DriverError, SecretString};

/// The default listener port.
const DEFAULT_PORT: u16 = 1521;

/// An example URL, for help and errors.
pub const EXAMPLE_URL: &str = "oracle://ewii_reader@db.internal:1521/ORCLPDB1";

/// Everything the driver needs to log in.
#[derive(Debug, Clone)]
pub struct Target {
    /// The database user.
    pub user: String,
    /// Its password.
    pub password: SecretString,
    /// The connect string handed to the Oracle Client.
    pub connect_string: String,
}

fn bad(msg: impl std::fmt::Display) -> DriverError {
    DriverError::BadUrl(format!("{msg}; expected e.g. {EXAMPLE_URL}"))
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Parses an Oracle URL (see the module documentation).
pub fn parse(url: &str) -> Result<Target, DriverError> {
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL ({e})")))?;
    if parsed.scheme() != "oracle" {
        return Err(bad("an Oracle URL starts with oracle://"));
    }
    let user = decode(parsed.username());
    if user.is_empty() {
        return Err(bad("the URL names no database user (USER@HOST)"));
    }
    let password = SecretString::new(parsed.password().map(decode).unwrap_or_default());
    let mut protocol = None;
    let mut descriptor = None;
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "protocol" if value.eq_ignore_ascii_case("tcps") => protocol = Some("tcps://"),
            "protocol" if value.eq_ignore_ascii_case("tcp") => protocol = None,
            "protocol" => return Err(bad(format!("protocol={value}: use tcp or tcps"))),
            "connect_string" => descriptor = Some(value.into_owned()),
            other => {
                return Err(bad(format!(
                    "unknown parameter `{other}` (known: protocol, connect_string)"
                )));
            }
        }
    }
    let connect_string = match descriptor {
        Some(d) => d,
        None => {
            let host = parsed
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| bad("the URL names no host"))?;
            let service = parsed.path().trim_start_matches('/');
            if service.is_empty() {
                return Err(bad("the URL names no service (…/SERVICE_NAME)"));
            }
            format!(
                "{}{host}:{}/{}",
                protocol.unwrap_or("//"),
                parsed.port().unwrap_or(DEFAULT_PORT),
                decode(service)
            )
        }
    };
    Ok(Target {
        user,
        password,
        connect_string,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn easy_connect_from_url() {
        let t = parse("oracle://ewii_reader:s%40cret@db.internal/ORCLPDB1").expect("parses");
        assert_eq!(t.user, "ewii_reader");
        assert_eq!(t.password.expose(), "s@cret");
        assert_eq!(t.connect_string, "//db.internal:1521/ORCLPDB1");
        let t = parse("oracle://r@db:2484/sales.corp?protocol=tcps").expect("parses");
        assert_eq!(t.connect_string, "tcps://db:2484/sales.corp");
        let t = parse("oracle://r@ignored/x?connect_string=SALES_TNS").expect("parses");
        assert_eq!(t.connect_string, "SALES_TNS");
    }

    #[test]
    fn mistakes_are_refused() {
        for (url, word) in [
            ("mssql://r@h/x", "oracle://"),
            ("oracle://db/ORCL", "user"),
            ("oracle://r@db", "service"),
            ("oracle://r@db/x?protocol=udp", "protocol=udp"),
            ("oracle://r@db/x?wallet=1", "unknown parameter"),
        ] {
            let err = parse(url).expect_err(url).to_string();
            assert!(err.contains(word), "{url}: {err}");
        }
    }
}
