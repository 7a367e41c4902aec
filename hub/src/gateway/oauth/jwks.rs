//! Each issuer's metadata (RFC 8414, or OpenID Connect discovery) and
//! signing keys, fetched on first use and cached.
//!
//! The keys are fetched again when they are older than
//! [`OAuthOptions::jwks_max_age`](super::OAuthOptions) (so a key the
//! server removed stops verifying within that bound), and when a token
//! names a `kid` the cache lacks (a key rotation), but at most once per
//! [`OAuthOptions::jwks_min_refresh`](super::OAuthOptions): a flood of
//! tokens with made-up key ids cannot make the hub hammer the server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use tokio::sync::Mutex;

use super::jwt::{Jwk, Jws};
use super::{OAuthOptions, Refusal};

/// What the hub reads of an authorization server's metadata.
#[derive(Clone, Debug, Deserialize)]
pub struct ServerMetadata {
    /// Must equal the configured issuer (RFC 8414 §3.3).
    pub issuer: String,
    /// Where the signing keys are.
    pub jwks_uri: Option<String>,
    /// RFC 7662 endpoint, when the server has one.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<serde_json::Value>,
}

#[derive(Default)]
struct Cached {
    metadata: Option<ServerMetadata>,
    keys: Vec<Jwk>,
    fetched: Option<Instant>,
}

/// The issuers' keys, by issuer.
#[derive(Default)]
pub struct KeyCache {
    issuers: std::sync::Mutex<HashMap<String, Arc<Mutex<Cached>>>>,
}

/// The metadata URLs of `issuer`, in the order tried: RFC 8414 (the
/// well-known segment between host and path), then OpenID Connect
/// discovery (appended to the issuer).
fn metadata_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let mut urls = Vec::new();
    if let Ok(u) = reqwest::Url::parse(issuer) {
        let path = u.path().trim_end_matches('/');
        let origin = u.origin().ascii_serialization();
        urls.push(format!(
            "{origin}/.well-known/oauth-authorization-server{path}"
        ));
    }
    urls.push(format!("{trimmed}/.well-known/openid-configuration"));
    urls
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    crate::audit::egress::check_url(url).map_err(|e| e.to_string())?;
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    response
        .json::<T>()
        .await
        .map_err(|e| format!("{url}: {e}"))
}

/// The issuer's metadata, from the first URL that answers with it.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<ServerMetadata, String> {
    let mut last = String::new();
    for url in metadata_urls(issuer) {
        match get_json::<ServerMetadata>(http, &url).await {
            Ok(m) if m.issuer == issuer => return Ok(m),
            Ok(m) => {
                last = format!("{url} names issuer {:?}, not {issuer:?}", m.issuer);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl KeyCache {
    fn entry(&self, issuer: &str) -> Arc<Mutex<Cached>> {
        self.issuers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(issuer.to_owned())
            .or_default()
            .clone()
    }

    /// The issuer's metadata (fetched once, then kept with the keys).
    pub async fn metadata(
        &self,
        http: &reqwest::Client,
        issuer: &str,
        options: &OAuthOptions,
    ) -> Result<ServerMetadata, Refusal> {
        let entry = self.entry(issuer);
        let mut cached = entry.lock().await;
        if cached.metadata.is_none() {
            refresh(&mut cached, http, issuer, options).await?;
        }
        cached
            .metadata
            .clone()
            .ok_or_else(|| Refusal::Unavailable("no authorization server metadata".into()))
    }

    /// Verifies `jws` with the issuer's key it names (all the issuer's
    /// keys when it names none), fetching the keys as the module says.
    pub async fn verify(
        &self,
        http: &reqwest::Client,
        issuer: &str,
        jws: &Jws,
        options: &OAuthOptions,
    ) -> Result<(), Refusal> {
        let entry = self.entry(issuer);
        let mut cached = entry.lock().await;
        let now = Instant::now();
        let stale = cached
            .fetched
            .is_none_or(|t| now.duration_since(t) >= options.jwks_max_age);
        let kid = jws.header.kid.as_deref();
        let known =
            |c: &Cached| kid.is_none_or(|k| c.keys.iter().any(|j| j.kid.as_deref() == Some(k)));
        let may_refetch = cached
            .fetched
            .is_none_or(|t| now.duration_since(t) >= options.jwks_min_refresh);
        if stale || (!known(&cached) && may_refetch) {
            refresh(&mut cached, http, issuer, options).await?;
        }
        if !known(&cached) {
            return Err(Refusal::InvalidToken(
                "the token's key id is not among the issuer's keys".into(),
            ));
        }
        let verified = cached
            .keys
            .iter()
            .filter(|j| kid.is_none_or(|k| j.kid.as_deref() == Some(k)))
            .any(|j| jws.verify(j));
        if verified {
            Ok(())
        } else {
            Err(Refusal::InvalidToken("bad signature".into()))
        }
    }
}

async fn refresh(
    cached: &mut Cached,
    http: &reqwest::Client,
    issuer: &str,
    _options: &OAuthOptions,
) -> Result<(), Refusal> {
    // Whatever happens, this counts as an attempt: the rate bound holds
    // for failures too.
    cached.fetched = Some(Instant::now());
    let metadata = discover(http, issuer).await.map_err(|e| {
        tracing::warn!(issuer, error = %e, "cannot read the authorization server's metadata");
        Refusal::Unavailable(format!(
            "cannot read the authorization server's metadata: {e}"
        ))
    })?;
    let keys = match metadata.jwks_uri.as_deref() {
        Some(uri) => get_json::<KeySet>(http, uri).await.map_err(|e| {
            tracing::warn!(issuer, error = %e, "cannot fetch the authorization server's keys");
            Refusal::Unavailable(format!("cannot fetch the authorization server's keys: {e}"))
        })?,
        None => KeySet { keys: Vec::new() },
    };
    // A key the hub cannot read is skipped, not fatal: the others still
    // verify.
    cached.keys = keys
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .collect();
    tracing::info!(
        issuer,
        keys = cached.keys.len(),
        "authorization server keys fetched"
    );
    cached.metadata = Some(metadata);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8414_then_oidc_urls() {
        assert_eq!(
            metadata_urls("https://as.example/tenant"),
            vec![
                "https://as.example/.well-known/oauth-authorization-server/tenant",
                "https://as.example/tenant/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata_urls("http://127.0.0.1:9/"),
            vec![
                "http://127.0.0.1:9/.well-known/oauth-authorization-server",
                "http://127.0.0.1:9/.well-known/openid-configuration"
            ]
        );
    }
}
