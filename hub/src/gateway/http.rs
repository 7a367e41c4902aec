//! The agents' HTTP edge: `/mcp` behind the bearer gate, `/healthz`,
//! `/metrics`, served over HTTP/1.1 with a header-read deadline
//! (`ewii_mcp::serve_http`, from the shared MCP layer).
//!
//! `/mcp` is [`ewii_mcp::HttpEdge`]'s: a declared body over the limit is
//! refused with 413 before anything else, then this module's gate, then
//! rmcp (Host validation, MCP). The gate is the hub's own:
//! - every request carries the agent's bearer credential; the gate
//!   resolves it to an agent (401 otherwise), holds the agent to its
//!   in-flight request limit (429 beyond it), and binds each MCP session
//!   to the agent whose `initialize` opened it: another agent naming it
//!   gets exactly rmcp's unknown-session answer.
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ewii_mcp::{AllowedHosts, HttpEdge};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio_util::sync::CancellationToken;

use crate::gateway::agents::HubState;
use crate::gateway::oauth::ResourceServer;
use crate::gateway::oauth::metadata::{MetadataSource, WELL_KNOWN, protected_resource};
use crate::gateway::serve::ServeOptions;

/// The HTTP side: `/mcp` behind bearer authentication, `/healthz`,
/// `/metrics`.
pub fn router(
    state: Arc<HubState>,
    options: &ServeOptions,
    oauth: Arc<ResourceServer>,
    cancel: CancellationToken,
) -> axum::Router {
    let edge = HttpEdge {
        hosts: if options.allowed_hosts.iter().any(|h| h == "*") {
            AllowedHosts::Any
        } else {
            AllowedHosts::LoopbackAnd(options.allowed_hosts.clone())
        },
        // Agents authenticate with a bearer no browser sends on its own.
        origins: None,
        max_body_bytes: options.max_body_bytes,
        server: "the hub",
    };
    let sessions = Arc::new(LocalSessionManager::default());
    let gate = Arc::new(AgentGate {
        hub: state.clone(),
        owners: SessionOwners::new(sessions.clone(), options.max_sessions),
        in_flight: InFlight::new(options.max_agent_requests),
        oauth: oauth.clone(),
    });
    let mcp = edge.router(state.clone(), sessions, &cancel, |mcp| {
        mcp.layer(axum::middleware::from_fn_with_state(gate, bearer))
    });
    let metadata = axum::Router::new()
        .route(WELL_KNOWN, axum::routing::get(protected_resource))
        .route(
            &format!("{WELL_KNOWN}/mcp"),
            axum::routing::get(protected_resource),
        )
        .with_state(MetadataSource {
            store: state.store.clone(),
            oauth,
        });
    axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
        .merge(metadata)
        .merge(mcp)
}

/// What the bearer middleware needs: the store, the session owners and
/// the per-agent request counts.
struct AgentGate {
    hub: Arc<HubState>,
    owners: SessionOwners,
    in_flight: InFlight,
    oauth: Arc<ResourceServer>,
}

/// The MCP session header (rmcp's `HEADER_SESSION_ID`).
const SESSION_HEADER: &str = "mcp-session-id";

/// Which agent opened each MCP session. rmcp knows a session only by its
/// id, so anyone holding a leaked id could otherwise read its stream
/// (`GET`, with `Last-Event-ID` the victim's in-flight results) or end it
/// (`DELETE`). Bounded: when full, bindings of sessions rmcp has closed
/// (ended, idle-expired) are dropped, then the oldest session is closed.
struct SessionOwners {
    inner: std::sync::Mutex<Owners>,
    cap: usize,
    sessions: Arc<LocalSessionManager>,
}

#[derive(Default)]
struct Owners {
    /// Session id → (agent id, insertion number).
    by_session: std::collections::HashMap<String, (String, u64)>,
    /// Insertion number → session id, oldest first.
    order: std::collections::BTreeMap<u64, String>,
    next: u64,
}

impl Owners {
    fn remove(&mut self, session: &str) {
        if let Some((_, n)) = self.by_session.remove(session) {
            self.order.remove(&n);
        }
    }
}

impl SessionOwners {
    fn new(sessions: Arc<LocalSessionManager>, cap: usize) -> SessionOwners {
        SessionOwners {
            inner: std::sync::Mutex::new(Owners::default()),
            cap: cap.max(1),
            sessions,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `session` was opened by `agent`.
    fn owned_by(&self, session: &str, agent: &str) -> bool {
        self.lock()
            .by_session
            .get(session)
            .is_some_and(|(owner, _)| owner == agent)
    }

    /// Records that `agent` opened `session`.
    async fn bind(&self, session: String, agent: String) {
        if self.lock().by_session.len() >= self.cap {
            let live: std::collections::HashSet<String> = self
                .sessions
                .sessions
                .read()
                .await
                .keys()
                .map(|id| id.to_string())
                .collect();
            let oldest = {
                let mut owners = self.lock();
                owners.by_session.retain(|id, _| live.contains(id));
                let kept: std::collections::HashSet<u64> =
                    owners.by_session.values().map(|(_, n)| *n).collect();
                owners.order.retain(|n, _| kept.contains(n));
                if owners.by_session.len() >= self.cap {
                    owners.order.first_key_value().map(|(_, id)| id.clone())
                } else {
                    None
                }
            };
            if let Some(oldest) = oldest {
                use rmcp::transport::streamable_http_server::session::SessionManager as _;
                tracing::info!("too many MCP sessions; closing the oldest");
                self.lock().remove(&oldest);
                if let Err(e) = self.sessions.close_session(&oldest.as_str().into()).await {
                    tracing::warn!(error = %e, "cannot close the oldest MCP session");
                }
            }
        }
        let mut owners = self.lock();
        let n = owners.next;
        owners.next += 1;
        owners.remove(&session);
        owners.order.insert(n, session.clone());
        owners.by_session.insert(session, (agent, n));
    }

    fn unbind(&self, session: &str) {
        self.lock().remove(session);
    }
}

/// Requests in flight per agent, bounded so one client cannot hold the
/// hub's request handling (a response's permit is released when its body
/// ends, so streams count too).
struct InFlight {
    max: usize,
    per_agent: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl InFlight {
    fn new(max: usize) -> InFlight {
        InFlight {
            max: max.max(1),
            per_agent: Default::default(),
        }
    }

    /// A permit for one more request of `agent`, or `None` at the limit.
    fn start(&self, agent: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = self
            .per_agent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(agent.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.max)))
            .clone();
        semaphore.try_acquire_owned().ok()
    }
}

/// A response body that holds its request's [`InFlight`] permit until it
/// ends or is dropped.
struct Permitted {
    body: axum::body::Body,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for Permitted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What rmcp answers for a session id it does not know, byte for byte:
/// a session of another agent gets exactly this, so nothing tells it the
/// session exists.
fn session_not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response()
}

/// Resolves `Authorization: Bearer …` to an agent, or answers 401; then
/// holds the agent to its request limit and to its own MCP sessions.
async fn bearer(State(gate): State<Arc<AgentGate>>, mut req: Request, next: Next) -> Response {
    let error = |status: StatusCode, why: &str| {
        (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
    };
    let unauthorized = |why: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, why);
        // Points OAuth clients to the protected-resource metadata.
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            crate::gateway::oauth::metadata::challenge(&gate.oauth, None),
        );
        r
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return unauthorized(
            "send the agent's credential as `Authorization: Bearer ewii_agent_…` (the operator \
             creates one with `ewii-hub agent create --workspace W NAME`), or an OAuth access \
             token for this resource (see the resource_metadata of WWW-Authenticate)",
        );
    };
    // Anything but a static credential is an OAuth access token.
    let agent = if !token.starts_with(crate::state::tokens::AGENT_CREDENTIAL_PREFIX) {
        match gate.oauth.authenticate(&gate.hub.store, token).await {
            Ok(agent) => Ok(Some(agent)),
            Err(refusal) => {
                tracing::info!(?refusal, "access token refused");
                return crate::gateway::oauth::metadata::refused(&gate.oauth, &refusal);
            }
        }
    } else {
        gate.hub.store.authenticate_agent(token).await
    };
    let agent = match agent {
        Ok(Some(agent)) => agent,
        Ok(None) => {
            return unauthorized(
                "unknown agent credential: check it was copied whole, or ask the operator for a \
                 new one (`ewii-hub agent create`)",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check an agent credential");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub's store is unavailable",
            );
        }
    };
    let Some(permit) = gate.in_flight.start(&agent.id) else {
        gate.hub.metrics.limit_hit("agent_requests");
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "this agent already has {} requests in flight at the hub (the most allowed): \
                 wait for some to finish or close idle streams, then retry",
                gate.in_flight.max
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    };
    // A session belongs to the agent that opened it, on every method; an
    // unreadable id is no session of this agent either.
    let session = match req.headers().get(SESSION_HEADER) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(id) if gate.owners.owned_by(id, &agent.id) => Some(id.to_owned()),
            _ => return session_not_found(),
        },
    };
    let deleting = req.method() == http::Method::DELETE;
    let agent_id = agent.id.clone();
    req.extensions_mut().insert(agent);
    let response = next.run(req).await;
    match session {
        None => {
            // An initialize that opened a session: it is this agent's.
            if let Some(id) = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                gate.owners.bind(id.to_owned(), agent_id).await;
            }
        }
        Some(id) if deleting && response.status().is_success() => gate.owners.unbind(&id),
        Some(_) => {}
    }
    response.map(|body| {
        axum::body::Body::new(Permitted {
            body,
            _permit: permit,
        })
    })
}

async fn healthz(State(state): State<Arc<HubState>>) -> Response {
    let connected = state.registry.len();
    match state.store.ping().await {
        Ok(()) => axum::Json(serde_json::json!({
            "status": "ok",
            "connected_deployments": connected,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "status": "store_unavailable",
                "error": e.to_string(),
                "connected_deployments": connected,
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<HubState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
