//! What the adapter hands a driver: the database's settings and secrets.

use std::time::Duration;

use ewii_tools_schema::SecretString;
use serde::{Deserialize, Serialize};

/// Bounds on one tool call. A result that hits a bound is cut short with an
/// explicit truncation notice, never silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Most rows one call returns.
    pub max_rows: u32,
    /// Most bytes of row data (as JSON) one call returns.
    pub max_bytes: u64,
    /// Longest a statement may run before it is cancelled on the server.
    #[serde(with = "duration_ms", rename = "timeout_ms")]
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: 200,
            max_bytes: 256 * 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// One attached database, as a driver receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// The database's name in the catalog (prefix of its tool names).
    pub name: String,
    /// The driver name (`sqlite`, `postgres`, …).
    pub driver: String,
    /// Connection URL; may contain a password.
    pub url: SecretString,
    /// Read-only (the default): the engine refuses writes, not only Ewii.
    pub read_only: bool,
    /// Per-call bounds.
    pub limits: Limits,
}

/// A URL safe to print: the password in the user-info part and any
/// `password=`/`pwd=`/`secret`/`token` query parameter are masked.
pub fn mask_url(url: &str) -> String {
    let mut out = url.to_owned();
    // user-info: scheme://user:password@host
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let pw_start = rest_start + colon + 1;
                let pw_end = rest_start + at;
                out.replace_range(pw_start..pw_end, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", masked.join("&"));
    }
    out
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "pwd",
        "pass",
        "secret",
        "token",
        "key",
        "sslpassword",
    ]
    .iter()
    .any(|s| k.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_in_urls() {
        assert_eq!(
            mask_url("postgres://app:s3cr%40t@db:5432/shop?sslmode=require"),
            "postgres://app:***@db:5432/shop?sslmode=require"
        );
        assert_eq!(
            mask_url("mysql://root@localhost/x?password=hunter2&ssl=true"),
            "mysql://root@localhost/x?password=***&ssl=true"
        );
        assert_eq!(
            mask_url("sqlite:///var/db/shop.db"),
            "sqlite:///var/db/shop.db"
        );
        assert_eq!(mask_url("postgres://u:p@h/d"), "postgres://u:***@h/d");
    }
}
