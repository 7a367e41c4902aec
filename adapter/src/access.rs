//! Who the adapter's HTTP endpoint serves: its client, which holds the
//! local credential ([`crate::local_credential`]), and no browser page
//! except from an origin the admin listed exactly.
//!
//! [`gate`] is an axum middleware in front of the MCP service. Before any
//! MCP message is read, in this order:
//!
//! 1. A request with an `Origin` header (a browser) must come from one of
//!    the allowed origins, compared exactly on scheme, host and port
//!    ([`ExactOrigin`], from [`ewii_mcp::origin`]): never `localhost:*`, so another local web app on
//!    another port cannot drive the adapter. None is allowed by default.
//!    Otherwise 403. Requests without `Origin` (non-browser clients) pass
//!    on to step 2.
//! 2. The request must carry `Authorization: Bearer <local credential>`,
//!    exactly once. Otherwise 401 with a JSON error saying where the
//!    credential lives and how the client gets it: no MCP session is
//!    created and no tool runs.
//!
//! The same credential is required on a unix socket: the socket's mode
//! 0600 already limits it to the adapter's user (and root), and the bearer
//! keeps other processes of that user, which in containers is often every
//! process, out too. Host validation (DNS rebinding) stays with rmcp's
//! service behind the gate, which is also given the same exact origins.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

pub use ewii_mcp::{ExactOrigin, InvalidOrigin};

use crate::local_credential::{CredentialCheck, LocalCredential};

/// What [`gate`] admits.
#[derive(Debug)]
pub struct AccessGate {
    origins: Vec<ExactOrigin>,
    /// `None` refuses every caller: an adapter started without a credential
    /// serves no one over HTTP rather than everyone.
    check: Option<CredentialCheck>,
}

impl AccessGate {
    /// A gate for `credential` and the exactly allowed `origins`.
    pub fn new(credential: Option<&LocalCredential>, origins: Vec<ExactOrigin>) -> AccessGate {
        let check = credential.and_then(|c| match c.check() {
            Ok(check) => Some(check),
            Err(e) => {
                tracing::error!(error = %e, "cannot check the local credential: refusing every caller");
                None
            }
        });
        if check.is_none() {
            tracing::warn!(
                "the HTTP endpoint has no local credential: every request is refused with 401"
            );
        }
        AccessGate { origins, check }
    }

    fn origin_allowed(&self, value: &HeaderValue) -> bool {
        value
            .to_str()
            .ok()
            .and_then(|v| ExactOrigin::parse(v).ok())
            .is_some_and(|o| self.origins.contains(&o))
    }

    fn credential(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(Refusal::NoCredential);
        };
        let token = value
            .as_bytes()
            .split_at_checked(7)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token.trim_ascii())
            .filter(|token| !token.is_empty())
            .ok_or(Refusal::NoCredential)?;
        match &self.check {
            Some(check) if check.accepts(token) => Ok(()),
            Some(_) => Err(Refusal::WrongCredential),
            None => Err(Refusal::NotConfigured),
        }
    }
}

/// Why a caller was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Origin,
    NoCredential,
    WrongCredential,
    NotConfigured,
}

/// How the client gets the credential, in every 401.
const HOW_TO_AUTHENTICATE: &str = "This MCP adapter serves only its Ewii client, which sends \
     `Authorization: Bearer <local credential>`. The credential is the file `local-credential` \
     in the adapter home (`ewii-adapter local-credential` prints its path); give it to \
     ewii-client with --adapter-credential-file FILE (or EWII_ADAPTER_CREDENTIAL_FILE). Nothing \
     was run.";

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Refusal::Origin => (
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "This browser origin is not allowed. The adapter accepts a browser origin only \
                 when it is listed exactly (scheme, host and port) with --allowed-origin or \
                 adapter.toml [serve] allowed_origins. Nothing was run."
                    .to_owned(),
            ),
            Refusal::NoCredential => (
                StatusCode::UNAUTHORIZED,
                "local_credential_required",
                format!("No local credential was presented. {HOW_TO_AUTHENTICATE}"),
            ),
            Refusal::WrongCredential => (
                StatusCode::UNAUTHORIZED,
                "local_credential_wrong",
                format!(
                    "The presented local credential is not this adapter's (was it rotated? \
                     restart the client with the current file). {HOW_TO_AUTHENTICATE}"
                ),
            ),
            Refusal::NotConfigured => (
                StatusCode::UNAUTHORIZED,
                "local_credential_not_configured",
                "This adapter was started without a local credential and serves no HTTP \
                 caller; start it with `ewii-adapter serve`, which creates one. Nothing was run."
                    .to_owned(),
            ),
        };
        let body = json!({"error": {"code": code, "message": message}}).to_string();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ewii-adapter\""),
            );
        }
        response
    }
}

/// The middleware: admits a request only from an allowed origin (or none)
/// with the local credential; see the module docs.
pub async fn gate(State(gate): State<Arc<AccessGate>>, request: Request, next: Next) -> Response {
    let refusal = match request.headers().get(ORIGIN) {
        Some(origin) if !gate.origin_allowed(origin) => Err(Refusal::Origin),
        _ => gate.credential(request.headers()),
    };
    match refusal {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            // The origin is the caller's text: logged escaped, never the
            // presented credential.
            tracing::warn!(
                reason = ?refusal,
                origin = ?request.headers().get(ORIGIN),
                method = %request.method(),
                "refused an HTTP caller of the adapter"
            );
            refusal.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_must_be_there_once_and_right() {
        let credential = LocalCredential::generate().expect("generate");
        let gate = AccessGate::new(Some(&credential), Vec::new());
        let headers = |values: &[String]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(AUTHORIZATION, HeaderValue::from_str(v).expect("header"));
            }
            h
        };
        let good = format!("Bearer {}", credential.expose());
        assert_eq!(
            gate.credential(&headers(std::slice::from_ref(&good))),
            Ok(())
        );
        assert_eq!(
            gate.credential(&headers(&[format!("bearer {}", credential.expose())])),
            Ok(())
        );
        assert_eq!(gate.credential(&headers(&[])), Err(Refusal::NoCredential));
        assert_eq!(
            gate.credential(&headers(&[credential.expose().to_owned()])),
            Err(Refusal::NoCredential),
            "a bare value is not a bearer"
        );
        assert_eq!(
            gate.credential(&headers(&[good.clone(), good.clone()])),
            Err(Refusal::NoCredential),
            "two Authorization headers"
        );
        assert_eq!(
            gate.credential(&headers(&[format!("Basic {}", credential.expose())])),
            Err(Refusal::NoCredential)
        );
        assert_eq!(
            gate.credential(&headers(&["Bearer ewii_local_wrong".into()])),
            Err(Refusal::WrongCredential)
        );
        let closed = AccessGate::new(None, Vec::new());
        assert_eq!(
            closed.credential(&headers(&[good])),
            Err(Refusal::NotConfigured)
        );
    }
}
