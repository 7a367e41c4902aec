//! The agents' MCP endpoint: the union of the tools of a workspace's
//! connected deployments, namespaced by deployment, and calls routed over
//! each deployment's tunnel.
//!
//! - Every HTTP request carries the agent's bearer credential; the
//!   middleware in [`crate::serve`] resolves it to an [`Agent`] and puts it
//!   in the request's extensions, where rmcp hands it to this handler. An
//!   MCP session stays bound to the agent that opened it: another agent's
//!   credential with that session id is refused.
//! - Tool names are `<deployment>_<tool>` (`eu_shop_query`). Deployment
//!   names never contain `_`, so the first `_` splits them unambiguously.
//!   Names longer than 64 characters are left out (and logged).
//! - An agent sees and calls only its own workspace's deployments: a name
//!   from another workspace is an unknown tool, exactly like a name that
//!   exists nowhere.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData, Extensions,
    Implementation, InitializeRequestParams, InitializeResult, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{
    NotificationContext, Peer, RequestContext, RoleServer, ServiceError, SubscriptionContext,
};
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::registry::{LiveDeployment, Registry};
use crate::store::{Agent, Store};

pub use ewii_driver_core::TOOLS_PAGE_SIZE;
/// The longest tool name clients accept (`^[a-zA-Z0-9_-]{1,64}$`).
pub const MAX_TOOL_NAME: usize = 64;

/// What every agent session shares.
pub struct HubState {
    /// The store (agents, deployments).
    pub store: Store,
    /// Live deployments.
    pub registry: Arc<Registry>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The longest a routed call may take before the agent gets an error.
    pub call_timeout: Duration,
    /// Agent sessions to notify, with their workspace.
    peers: Mutex<Vec<(String, Peer<RoleServer>)>>,
}

impl std::fmt::Debug for HubState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubState").finish_non_exhaustive()
    }
}

impl HubState {
    /// Shared state; starts the task that tells agent sessions of a
    /// workspace when its tools change.
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        call_timeout: Duration,
    ) -> Arc<HubState> {
        let state = Arc::new(HubState {
            store,
            registry,
            metrics,
            call_timeout,
            peers: Mutex::new(Vec::new()),
        });
        let mut changes = state.registry.subscribe();
        let weak = Arc::downgrade(&state);
        tokio::spawn(async move {
            loop {
                let workspace = match changes.recv().await {
                    Ok(w) => Some(w),
                    // Missed some: tell everyone.
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(state) = weak.upgrade() else { return };
                state.notify(workspace.as_deref()).await;
            }
        });
        state
    }

    async fn notify(&self, workspace: Option<&str>) {
        let peers: Vec<Peer<RoleServer>> = {
            let mut p = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
            p.retain(|(_, peer)| !peer.is_transport_closed());
            p.iter()
                .filter(|(w, _)| workspace.is_none_or(|ws| ws == w))
                .map(|(_, peer)| peer.clone())
                .collect()
        };
        for peer in peers {
            if let Err(e) = peer.notify_tool_list_changed().await {
                tracing::debug!(error = %e, "could not notify an agent session");
            }
        }
    }

    fn register_peer(&self, workspace: String, peer: Peer<RoleServer>) {
        let mut p = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        p.retain(|(_, peer)| !peer.is_transport_closed());
        p.push((workspace, peer));
    }

    /// The tools an agent of `workspace` sees.
    pub fn tools_for(&self, workspace: &str) -> Vec<Tool> {
        let mut out = Vec::new();
        for d in self.registry.in_workspace(workspace) {
            for t in d.tools() {
                match namespaced(&d, t) {
                    Some(t) => out.push(t),
                    None => tracing::warn!(
                        deployment = %d.name,
                        "a tool name is over {MAX_TOOL_NAME} characters with the deployment \
                         prefix and is left out; use shorter deployment or database names"
                    ),
                }
            }
        }
        out
    }
}

/// The agent's view of a deployment's tool.
fn namespaced(d: &LiveDeployment, mut tool: Tool) -> Option<Tool> {
    let name = format!("{}_{}", d.name, tool.name);
    if name.len() > MAX_TOOL_NAME {
        return None;
    }
    tool.name = Cow::Owned(name);
    tool.title = tool.title.map(|t| format!("{}: {t}", d.name));
    tool.description = Some(Cow::Owned(format!(
        "[deployment {}] {}",
        d.name,
        tool.description.as_deref().unwrap_or("")
    )));
    if let Some(a) = tool.annotations.as_mut() {
        a.title = a.title.take().map(|t| format!("{}: {t}", d.name));
    }
    Some(tool)
}

/// The authenticated agent of a request (put there by the bearer
/// middleware).
fn agent_of(extensions: &Extensions) -> Option<Agent> {
    extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Agent>())
        .cloned()
}

/// One agent MCP session.
#[derive(Clone)]
pub struct AgentService {
    hub: Arc<HubState>,
    /// The agent that opened the session.
    bound: Arc<OnceLock<String>>,
}

impl AgentService {
    /// A session handler over the shared state.
    pub fn new(hub: Arc<HubState>) -> AgentService {
        AgentService {
            hub,
            bound: Arc::new(OnceLock::new()),
        }
    }

    /// The request's agent; the session is bound to the first one seen.
    fn agent(&self, extensions: &Extensions) -> Result<Agent, ErrorData> {
        let agent = agent_of(extensions).ok_or_else(|| {
            ErrorData::invalid_request("no authenticated agent on this request", None)
        })?;
        let owner = self.bound.get_or_init(|| agent.id.clone());
        if *owner != agent.id {
            return Err(ErrorData::invalid_request(
                "this MCP session belongs to another agent credential; start a new session",
                None,
            ));
        }
        Ok(agent)
    }
}

fn offline(deployment: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "deployment '{deployment}' is offline: its ewii-client is not connected to the hub. \
         It reconnects by itself; retry in a while, or ask the customer to check the client. \
         Call tools/list to see the deployments online now."
    ))])
}

impl ServerHandler for AgentService {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(
            Implementation::new("ewii-hub", env!("CARGO_PKG_VERSION")).with_title("Ewii hub"),
        )
        .with_instructions(
            "Tools are named <deployment>_<database>_<tool>: one deployment per customer site, \
             one database per attached database. Start with <deployment>_<database>_list_tables \
             and _describe_table, then run one statement per _query call with bound params. \
             Results are bounded: follow truncated.next_offset to page. The list changes as \
             deployments connect and disconnect (notifications/tools/list_changed).",
        )
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        self.agent(&context.extensions)?;
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if let Ok(agent) = self.agent(&context.extensions) {
            self.hub.register_peer(agent.workspace, context.peer);
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let agent = self.agent(&context.extensions)?;
        let tools = self.hub.tools_for(&agent.workspace);
        let (range, next_cursor) = ewii_driver_core::tools_page(
            tools.len(),
            request.as_ref().and_then(|r| r.cursor.as_deref()),
        )
        .map_err(|m| ErrorData::invalid_params(m, None))?;
        Ok(ListToolsResult {
            tools: tools[range].to_vec(),
            next_cursor,
            ..Default::default()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let agent = self.agent(&context.extensions)?;
        let started = Instant::now();
        let unknown = || {
            ErrorData::invalid_params(
                format!(
                    "unknown tool '{}': call tools/list for the tools of this workspace's \
                     connected deployments",
                    request.name
                ),
                None,
            )
        };
        let Some((deployment, tool)) = request.name.split_once('_') else {
            self.hub.metrics.call("unknown_tool", started.elapsed());
            return Err(unknown());
        };
        let Some(live) = self.hub.registry.find(&agent.workspace, deployment) else {
            // Known in this workspace but not connected: say so. Anything
            // else (including another workspace's deployments) is unknown.
            let known = self
                .hub
                .store
                .list_deployments(&agent.workspace)
                .await
                .map(|ds| ds.iter().any(|d| d.name == deployment))
                .unwrap_or(false);
            if known {
                self.hub.metrics.call("offline", started.elapsed());
                return Ok(offline(deployment).into());
            }
            self.hub.metrics.call("unknown_tool", started.elapsed());
            return Err(unknown());
        };
        if !live.tools().iter().any(|t| t.name == tool) {
            self.hub.metrics.call("unknown_tool", started.elapsed());
            return Err(unknown());
        }
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = request.arguments.clone();
        let upstream = live.upstream();
        let call = upstream.call_tool_once(params);
        let outcome = tokio::select! {
            r = call => r,
            _ = context.ct.cancelled() => {
                self.hub.metrics.call("cancelled", started.elapsed());
                return Err(ErrorData::internal_error("the call was cancelled", None));
            }
            _ = tokio::time::sleep(self.hub.call_timeout) => {
                self.hub.metrics.call("failed", started.elapsed());
                return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "deployment '{deployment}' did not answer within {} s; the statement may \
                     still be running there",
                    self.hub.call_timeout.as_secs()
                ))]).into());
            }
        };
        match outcome {
            Ok(response) => {
                let is_error =
                    matches!(&response, CallToolResponse::Complete(r) if r.is_error == Some(true));
                self.hub.metrics.call(
                    if is_error { "tool_error" } else { "ok" },
                    started.elapsed(),
                );
                tracing::info!(
                    agent = %agent.name, workspace = %agent.workspace, deployment = %deployment,
                    tool = %tool, ms = started.elapsed().as_millis() as u64, is_error, "tool call"
                );
                Ok(response)
            }
            Err(ServiceError::McpError(e)) => {
                self.hub.metrics.call("tool_error", started.elapsed());
                Err(e)
            }
            Err(e) => {
                self.hub.metrics.call("offline", started.elapsed());
                tracing::warn!(deployment = %deployment, error = %e, "routed call failed");
                Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "deployment '{deployment}' went offline during the call ({e}); the statement \
                     may or may not have run there. Retry once it is back in tools/list."
                ))])
                .into())
            }
        }
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let agent = self.agent(&context.request_context().extensions)?;
        let mut changes = self.hub.registry.subscribe();
        loop {
            tokio::select! {
                _ = context.cancelled() => return Ok(()),
                r = changes.recv() => match r {
                    Ok(w) if w != agent.workspace => {}
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if context.sink().notify_tool_list_changed().await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [rmcp::model::ProtocolVersion]> {
        Cow::Borrowed(rmcp::model::ProtocolVersion::KNOWN_VERSIONS)
    }
}
