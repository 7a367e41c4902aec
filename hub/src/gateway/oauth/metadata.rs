//! RFC 9728 protected-resource metadata, and the `WWW-Authenticate`
//! challenges (RFC 6750 §3) that point MCP clients to it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Refusal, ResourceServer};
use crate::gateway::policy::oauth_scopes::{SCOPE_READ, SCOPES_SUPPORTED};
use crate::state::store::Store;

/// The well-known path of the metadata (RFC 9728 §3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata URL of `resource`: the well-known segment between its
/// origin and its path (RFC 9728 §3.1), so `https://hub/mcp` has
/// `https://hub/.well-known/oauth-protected-resource/mcp`.
pub fn metadata_url(resource: &str) -> String {
    match reqwest::Url::parse(resource) {
        Ok(u) => format!(
            "{}{WELL_KNOWN}{}",
            u.origin().ascii_serialization(),
            u.path().trim_end_matches('/')
        ),
        Err(_) => format!("{}{WELL_KNOWN}", resource.trim_end_matches('/')),
    }
}

/// What the metadata endpoint reads.
#[derive(Clone, Debug)]
pub struct MetadataSource {
    /// The store (the workspaces' OAuth configuration).
    pub store: Store,
    /// The resource server.
    pub oauth: Arc<ResourceServer>,
}

/// `GET /.well-known/oauth-protected-resource[/mcp]`.
pub async fn protected_resource(State(source): State<MetadataSource>) -> Response {
    let rs = &source.oauth;
    let configs = match source.store.oauth_configs().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the OAuth configuration");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    (
        [(header::CACHE_CONTROL, "max-age=60")],
        axum::Json(serde_json::json!({
            "resource": rs.resource,
            "authorization_servers": rs.authorization_servers(&configs),
            "scopes_supported": SCOPES_SUPPORTED,
            "bearer_methods_supported": ["header"],
            "resource_name": "Ewii hub",
        })),
    )
        .into_response()
}

/// A quoted-string value: the refusal texts are the hub's own, but quotes
/// and backslashes are escaped all the same.
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The challenge of a 401/403: the realm, the metadata URL and, for a
/// refused token, the error (RFC 6750 §3.1).
pub fn challenge(rs: &ResourceServer, refusal: Option<&Refusal>) -> HeaderValue {
    let mut v = format!(
        "Bearer realm=\"ewii-hub\", resource_metadata=\"{}\"",
        quoted(&metadata_url(&rs.resource))
    );
    match refusal {
        Some(Refusal::InvalidToken(why)) => v.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{}\"",
            quoted(why)
        )),
        Some(Refusal::InsufficientScope) => v.push_str(&format!(
            ", error=\"insufficient_scope\", scope=\"{SCOPE_READ}\", error_description=\"the \
             token grants none of {}\"",
            SCOPES_SUPPORTED.join(" ")
        )),
        _ => {}
    }
    HeaderValue::from_str(&v)
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"ewii-hub\""))
}

/// The answer to a refused access token.
pub fn refused(rs: &ResourceServer, refusal: &Refusal) -> Response {
    let (status, message) = match refusal {
        Refusal::InvalidToken(why) => (
            StatusCode::UNAUTHORIZED,
            format!("invalid access token: {why}"),
        ),
        Refusal::InsufficientScope => (
            StatusCode::FORBIDDEN,
            format!(
                "the access token grants none of the hub's scopes ({}): ask the authorization \
                 server for {SCOPE_READ} at least",
                SCOPES_SUPPORTED.join(", ")
            ),
        ),
        Refusal::NoAgent(why) => (StatusCode::FORBIDDEN, why.clone()),
        Refusal::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, why.clone()),
    };
    let mut r = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    if status != StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge(rs, Some(refusal)));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_inserts_the_well_known_segment() {
        assert_eq!(
            metadata_url("https://hub.example/mcp"),
            "https://hub.example/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource"
        );
    }
}
