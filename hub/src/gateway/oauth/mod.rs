//! The hub as an OAuth 2.1 resource server on `/mcp`, beside the static
//! bearer credentials (MCP authorization, RFC 9728, RFC 9068, RFC 7662,
//! RFC 8707).
//!
//! Each workspace may trust one authorization server
//! (`ewii-hub workspace oauth set`). A bearer that is not a static agent
//! credential (`ewii_agent_…`) is taken for an access token:
//!
//! 1. A JWT ([`jwt`]) names its issuer; only workspaces configured with
//!    exactly that issuer are candidates. Its signature is checked against
//!    the issuer's keys ([`jwks`], fetched from its RFC 8414 / OIDC
//!    metadata, cached, refetched on an unknown `kid` at a bounded rate);
//!    then `typ` (`at+jwt`), `exp`/`nbf` with [`OAuthOptions::clock_skew`],
//!    and `aud`, which must contain the workspace's audience (the hub's
//!    resource URI): a token for another resource is refused, never passed
//!    on.
//! 2. Any other token is introspected ([`introspect`]) at each workspace
//!    that configured an introspection endpoint, answers cached at most
//!    until the token's expiry and [`OAuthOptions::introspection_cache`].
//! 3. The workspace's claim (`sub`, `client_id`, …) names the agent: the
//!    enabled agent of that workspace with that `--oauth-subject`. None is
//!    403; the same subject in two candidate workspaces is refused as
//!    ambiguous (give them different audiences).
//! 4. The token's scopes must grant some statement kind
//!    ([`crate::gateway::policy::oauth_scopes`]), else 403
//!    `insufficient_scope`; they narrow the agent's policy on every call
//!    and travel into the audit records with issuer, subject and client.
//!
//! Nothing about the agent is cached: a disabled agent, a removed subject
//! or a removed workspace configuration is refused on its next request.
//! Tokens revoked at the authorization server are refused once their
//! cached introspection answer ends (JWTs: at their `exp`; keep them
//! short-lived). [`metadata`] serves the protected-resource metadata and
//! builds the `WWW-Authenticate` challenges.

pub mod introspect;
pub mod jwks;
pub mod jwt;
pub mod metadata;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::gateway::policy::oauth_scopes;
use crate::state::store::{Agent, OAuthConfig, OAuthGrant, Store};

/// How the resource server behaves; `ewii-hub serve` flags.
#[derive(Clone, Debug)]
pub struct OAuthOptions {
    /// The hub's resource URI (what tokens' `aud` must carry and the
    /// metadata names); `None`: `http://<listen address>/mcp`.
    pub resource: Option<String>,
    /// Tolerated clock difference for `exp` and `nbf`.
    pub clock_skew: Duration,
    /// Keys older than this are fetched again (a removed key stops
    /// verifying within it).
    pub jwks_max_age: Duration,
    /// An unknown `kid` refetches the keys at most this often.
    pub jwks_min_refresh: Duration,
    /// Longest an introspection answer is kept.
    pub introspection_cache: Duration,
    /// An extra CA (PEM file) trusted for the authorization servers.
    pub ca: Option<PathBuf>,
}

impl Default for OAuthOptions {
    fn default() -> Self {
        OAuthOptions {
            resource: None,
            clock_skew: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(300),
            jwks_min_refresh: Duration::from_secs(10),
            introspection_cache: Duration::from_secs(60),
            ca: None,
        }
    }
}

impl OAuthOptions {
    /// [`OAuthOptions::clock_skew`] in whole seconds.
    pub fn clock_skew_secs(&self) -> i64 {
        i64::try_from(self.clock_skew.as_secs()).unwrap_or(i64::MAX)
    }
}

/// Why a bearer was refused; each maps to one HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401 `invalid_token`: unreadable, unsigned, expired, foreign…
    InvalidToken(String),
    /// 403 `insufficient_scope`: valid, but grants nothing here.
    InsufficientScope,
    /// 403: valid, but its subject names no agent.
    NoAgent(String),
    /// 503: the authorization server could not be reached.
    Unavailable(String),
}

/// The resource server's state: its options, HTTP client and caches.
pub struct ResourceServer {
    /// The options, with the resource URI resolved.
    pub options: OAuthOptions,
    /// The hub's resource URI.
    pub resource: String,
    http: reqwest::Client,
    keys: jwks::KeyCache,
    introspection: introspect::IntrospectionCache,
}

impl std::fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceServer")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

fn now_unix() -> i64 {
    crate::state::store::unix(SystemTime::now())
}

impl ResourceServer {
    /// A resource server for `resource` (the hub's `/mcp` URI).
    pub fn new(
        options: OAuthOptions,
        resource: String,
    ) -> Result<ResourceServer, crate::audit::egress::EgressError> {
        let http =
            crate::audit::egress::http_client(Duration::from_secs(10), options.ca.as_deref())?;
        Ok(ResourceServer {
            options,
            resource,
            http,
            keys: jwks::KeyCache::default(),
            introspection: introspect::IntrospectionCache::default(),
        })
    }

    /// The agent `token` signs in as, with what the token granted.
    pub async fn authenticate(&self, store: &Store, token: &str) -> Result<Agent, Refusal> {
        let configs = store
            .oauth_configs()
            .await
            .map_err(|e| Refusal::Unavailable(format!("the hub's store: {e}")))?;
        let now = now_unix();
        let (claims, candidates) = if jwt::looks_like_jwt(token) {
            self.check_jwt(&configs, token, now).await?
        } else {
            self.check_opaque(&configs, token, now).await?
        };
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| candidates.first().map(|c| c.settings.issuer.clone()))
            .unwrap_or_default();
        let scopes = jwt::scopes(&claims);
        let client = claims
            .get("client_id")
            .or_else(|| claims.get("azp"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut found: Vec<(Agent, String)> = Vec::new();
        for config in &candidates {
            let Some(subject) = claims.get(&config.settings.claim).and_then(Value::as_str) else {
                continue;
            };
            match store.oauth_agent(&config.workspace, subject).await {
                Ok(Some(agent)) => found.push((agent, subject.to_owned())),
                Ok(None) => {}
                Err(e) => return Err(Refusal::Unavailable(format!("the hub's store: {e}"))),
            }
        }
        let (mut agent, subject) = match found.len() {
            0 => {
                return Err(Refusal::NoAgent(
                    "the token is valid but names no agent of a workspace that trusts its \
                     issuer: the operator maps it with `ewii-hub agent create --oauth-subject`"
                        .into(),
                ));
            }
            1 => found.remove(0),
            _ => {
                return Err(Refusal::InvalidToken(
                    "the token names agents of several workspaces (same issuer, audience and \
                     subject): the operator must give the workspaces distinct audiences"
                        .into(),
                ));
            }
        };
        if oauth_scopes::granted_statements(&scopes).is_empty() {
            return Err(Refusal::InsufficientScope);
        }
        agent.oauth = Some(OAuthGrant {
            issuer,
            subject,
            client,
            scopes,
            expires_at: claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
        });
        Ok(agent)
    }

    /// A JWT access token: its claims and the workspaces it may sign in to.
    async fn check_jwt(
        &self,
        configs: &[OAuthConfig],
        token: &str,
        now: i64,
    ) -> Result<(serde_json::Map<String, Value>, Vec<OAuthConfig>), Refusal> {
        let jws = jwt::Jws::parse(token)?;
        jws.check_header()?;
        let iss = jws
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::InvalidToken("no iss claim".into()))?;
        let trusting: Vec<&OAuthConfig> = configs
            .iter()
            .filter(|c| c.settings.issuer == iss)
            .collect();
        if trusting.is_empty() {
            return Err(Refusal::InvalidToken(
                "the token's issuer is not trusted by any workspace".into(),
            ));
        }
        // The signature first: nothing else of an unsigned claim set is
        // believed.
        self.keys
            .verify(&self.http, iss, &jws, &self.options)
            .await?;
        jwt::check_times(&jws.claims, now, self.options.clock_skew_secs())?;
        let candidates: Vec<OAuthConfig> = trusting
            .into_iter()
            .filter(|c| jwt::audience_contains(&jws.claims, &c.settings.audience))
            .cloned()
            .collect();
        if candidates.is_empty() {
            return Err(Refusal::InvalidToken(
                "the token is not for this resource (aud)".into(),
            ));
        }
        Ok((jws.claims, candidates))
    }

    /// An opaque token, introspected at each workspace that can.
    async fn check_opaque(
        &self,
        configs: &[OAuthConfig],
        token: &str,
        now: i64,
    ) -> Result<(serde_json::Map<String, Value>, Vec<OAuthConfig>), Refusal> {
        let mut last = Refusal::InvalidToken("unknown credential".into());
        for config in configs
            .iter()
            .filter(|c| c.settings.introspection.is_some())
        {
            match self
                .introspection
                .introspect(&self.http, config, token, &self.options, now)
                .await
            {
                Ok(claims) => return Ok((claims, vec![config.clone()])),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The issuers the hub's resource accepts (workspaces whose audience
    /// is the hub's resource URI), sorted, deduplicated.
    pub fn authorization_servers(&self, configs: &[OAuthConfig]) -> Vec<String> {
        let mut all: Vec<String> = configs
            .iter()
            .filter(|c| c.settings.audience == self.resource)
            .map(|c| c.settings.issuer.clone())
            .collect();
        all.sort();
        all.dedup();
        all
    }
}
