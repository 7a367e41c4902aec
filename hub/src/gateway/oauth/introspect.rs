//! Opaque access tokens, through the authorization server's token
//! introspection endpoint (RFC 7662), with the answers cached.
//!
//! An active answer is kept until the token's own `exp`, and at most
//! [`OAuthOptions::introspection_cache`](super::OAuthOptions): a token
//! revoked at the authorization server is refused within that bound. An
//! inactive answer is kept for the same bound (a revoked token does not
//! come back). Tokens are cached by their SHA-256, never in the clear.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::jwt::{audience_contains, check_times};
use super::{OAuthOptions, Refusal};
use crate::state::store::OAuthConfig;

/// What an introspection said about a token, for one workspace.
#[derive(Clone, Debug)]
pub struct Introspected {
    /// The claims of an active token (RFC 7662 §2.2), `None` if inactive.
    pub claims: Option<serde_json::Map<String, Value>>,
}

/// (workspace, SHA-256 of the token).
type CacheKey = (String, [u8; 32]);

/// The cache of introspection answers, each with when it ends.
#[derive(Default)]
pub struct IntrospectionCache {
    entries: std::sync::Mutex<HashMap<CacheKey, (Introspected, Instant)>>,
}

/// Most answers kept; beyond it, expired ones are dropped, then all.
const MAX_ENTRIES: usize = 10_000;

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `application/x-www-form-urlencoded` encoding of one value: unreserved
/// characters as they are, everything else percent-encoded.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl IntrospectionCache {
    fn get(&self, key: &CacheKey) -> Option<Introspected> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(i, _)| i.clone())
    }

    fn put(&self, key: CacheKey, value: Introspected, keep: Duration) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            let now = Instant::now();
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now() + keep));
    }

    /// Introspects `token` at `config`'s endpoint (or answers from the
    /// cache): the active token's claims, checked against the workspace's
    /// issuer and audience and the clock.
    pub async fn introspect(
        &self,
        http: &reqwest::Client,
        config: &OAuthConfig,
        token: &str,
        options: &OAuthOptions,
        now: i64,
    ) -> Result<serde_json::Map<String, Value>, Refusal> {
        let Some(endpoint) = config.settings.introspection.as_ref() else {
            return Err(Refusal::InvalidToken(
                "not a JWT and no introspection configured".into(),
            ));
        };
        let key = (config.workspace.clone(), digest(token));
        let answer = match self.get(&key) {
            Some(a) => a,
            None => {
                crate::audit::egress::check_url(&endpoint.url)
                    .map_err(|e| Refusal::Unavailable(e.to_string()))?;
                let response = http
                    .post(&endpoint.url)
                    .basic_auth(&endpoint.client_id, Some(endpoint.client_secret.expose()))
                    .header("accept", "application/json")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!(
                        "token={}&token_type_hint=access_token",
                        form_encode(token)
                    ))
                    .send()
                    .await
                    .map_err(|e| {
                        Refusal::Unavailable(format!("token introspection failed: {e}"))
                    })?;
                if !response.status().is_success() {
                    return Err(Refusal::Unavailable(format!(
                        "token introspection answered {}",
                        response.status()
                    )));
                }
                let body: serde_json::Map<String, Value> = response
                    .json()
                    .await
                    .map_err(|e| Refusal::Unavailable(format!("token introspection: {e}")))?;
                let active = body.get("active").and_then(Value::as_bool) == Some(true);
                let exp = body.get("exp").and_then(Value::as_i64);
                let keep = match exp {
                    Some(exp) if active => {
                        Duration::from_secs(u64::try_from(exp.saturating_sub(now)).unwrap_or(0))
                            .min(options.introspection_cache)
                    }
                    _ => options.introspection_cache,
                };
                let answer = Introspected {
                    claims: active.then_some(body),
                };
                self.put(key, answer.clone(), keep);
                answer
            }
        };
        let claims = answer
            .claims
            .ok_or_else(|| Refusal::InvalidToken("the token is not active".into()))?;
        if claims
            .get("iss")
            .and_then(Value::as_str)
            .is_some_and(|iss| iss != config.settings.issuer)
        {
            return Err(Refusal::InvalidToken(
                "the token is from another issuer".into(),
            ));
        }
        if !audience_contains(&claims, &config.settings.audience) {
            return Err(Refusal::InvalidToken(
                "the token is not for this resource (aud)".into(),
            ));
        }
        check_times(&claims, now, options.clock_skew_secs())?;
        Ok(claims)
    }
}
