//! The hub's names: the SPIFFE ID layout, trust domains and durations.
//!
//! Workspace, deployment and agent names follow the deployment-name rule
//! of the catalog contract ([`validate_deployment_name`],
//! `^[a-z][a-z0-9-]{0,31}$`, the one place the naming rules live): they
//! appear in SPIFFE IDs, tool namespaces and URLs, so they are kept to the
//! characters that are safe in all of them. A deployment's SPIFFE ID is
//! `spiffe://<trust-domain>/ws/<workspace>/dep/<deployment>`.

use std::time::Duration;

use ewii_tools_schema::{MAX_DEPLOYMENT_NAME_LEN, validate_deployment_name};
use ewii_wire::svid::SpiffeId;

use crate::Error;

/// Longest workspace, deployment or agent name.
pub const MAX_NAME_LEN: usize = MAX_DEPLOYMENT_NAME_LEN;

/// The trust domain of a workspace created without `--trust-domain`.
pub const DEFAULT_TRUST_DOMAIN: &str = "ewii.local";

/// Whether `name` follows `^[a-z][a-z0-9-]{0,31}$`.
pub fn is_valid_name(name: &str) -> bool {
    validate_deployment_name(name).is_ok()
}

/// Checks a name; `kind` ("workspace", "deployment", "agent") goes into the
/// error message.
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), Error> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            kind,
            name: name.to_owned(),
        })
    }
}

/// Checks a trust domain name (SPIFFE-ID §2.1), using the tunnel's SPIFFE
/// ID parser so that the two never disagree.
pub fn validate_trust_domain(domain: &str) -> Result<(), Error> {
    let invalid = |why: String| Error::InvalidTrustDomain {
        domain: domain.to_owned(),
        why,
    };
    if domain.is_empty() || domain.contains('/') {
        return Err(invalid(
            "it must be a bare name, without scheme or path".into(),
        ));
    }
    SpiffeId::parse(&format!("spiffe://{domain}"))
        .map(|_| ())
        .map_err(|e| invalid(e.to_string()))
}

/// The SPIFFE ID of a deployment:
/// `spiffe://<trust-domain>/ws/<workspace>/dep/<deployment>`.
pub fn deployment_spiffe_id(
    trust_domain: &str,
    workspace: &str,
    deployment: &str,
) -> Result<SpiffeId, Error> {
    validate_trust_domain(trust_domain)?;
    validate_name("workspace", workspace)?;
    validate_name("deployment", deployment)?;
    SpiffeId::parse(&format!(
        "spiffe://{trust_domain}/ws/{workspace}/dep/{deployment}"
    ))
    .map_err(|e| Error::Corrupt(format!("built an invalid SPIFFE ID: {e}")))
}

/// The workspace a SPIFFE ID belongs to: the `<workspace>` of a path
/// `/ws/<workspace>/…`, if it is a valid name.
pub fn workspace_of(id: &SpiffeId) -> Option<&str> {
    let mut segments = id.path().strip_prefix('/')?.split('/');
    match (segments.next(), segments.next()) {
        (Some("ws"), Some(ws)) if is_valid_name(ws) => Some(ws),
        _ => None,
    }
}

/// Reads a duration such as `90s`, `30m`, `24h` or `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let invalid = || Error::InvalidDuration(text.to_owned());
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let secs_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let secs = n.checked_mul(secs_per).ok_or_else(invalid)?;
    if secs == 0 {
        return Err(invalid());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "acme", "acme-prod-2", &"a".repeat(32)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Acme",
            "1acme",
            "-acme",
            "ac_me",
            "ac.me",
            "acmé",
            "ac me",
            &"a".repeat(33),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn spiffe_ids() {
        let id = deployment_spiffe_id("ewii.local", "acme", "shop").unwrap();
        assert_eq!(id.to_string(), "spiffe://ewii.local/ws/acme/dep/shop");
        assert_eq!(workspace_of(&id), Some("acme"));
        let other = SpiffeId::parse("spiffe://ewii.local/ns/acme").unwrap();
        assert_eq!(workspace_of(&other), None);
        assert!(deployment_spiffe_id("Bad", "acme", "shop").is_err());
        assert!(validate_trust_domain("spiffe://x").is_err());
        assert!(validate_trust_domain("example.org").is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        for bad in ["", "h", "24", "0h", "-1h", "1w", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
