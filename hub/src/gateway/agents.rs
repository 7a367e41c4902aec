//! The agents' MCP endpoint: the union of the tools of a workspace's
//! connected deployments, namespaced by deployment, and calls routed over
//! each deployment's tunnel.
//!
//! [`HubState`] is the hub's [`ToolBackend`] on the shared MCP layer
//! ([`ewii_mcp`]: sessions, paging, protocol versions, `list_changed` to
//! the sessions and `listen` subscribers of one workspace); this module
//! holds what is the hub's own:
//!
//! - Every HTTP request carries the agent's bearer credential; the
//!   middleware in [`crate::gateway::http`] resolves it to an [`Agent`]
//!   and puts it in the request's extensions, where rmcp hands it to the
//!   backend. An MCP session stays bound to the agent that opened it: the
//!   middleware answers another agent's request on it as for an unknown
//!   session, and the shared server checks again.
//! - Tool names are [`ToolName`]s, `<deployment>_<database>_<tool>`
//!   (`eu_shop_query`). Deployment names never contain `_`, so the first
//!   `_` splits them unambiguously. A deployment's tool whose name with
//!   the prefix is no valid [`ToolName`] (over 64 characters, or not
//!   `<database>_<standard tool>`) is left out of `tools/list` and logged
//!   as a short escaped excerpt; a call whose name breaks
//!   `^[a-zA-Z0-9_-]{1,64}$` is refused before it is routed, and only a
//!   short escaped excerpt of it is kept; any other name that is no
//!   [`ToolName`] is an unknown tool.
//! - Each forwarded call carries the agent's allowed statement
//!   classes (`_meta["ewii/statements"]`), which the adapter enforces in
//!   the engine, and its result is cut to the policy's `max_bytes`.
//! - An agent sees and calls only its own workspace's deployments: a name
//!   from another workspace is an unknown tool, exactly like a name that
//!   exists nowhere.
//! - Each call passes the agent's rate limit and policy ([`crate::gateway::policy`])
//!   before anything crosses a tunnel; a denial is an `isError` result
//!   naming the rule. `tools/list` leaves out what the policy forbids by
//!   name (deployments, databases, tools).
//! - Every call, allowed or denied, is written to the audit trail
//!   ([`crate::audit::trail`]): a call that crosses a tunnel has its intent
//!   written before it is sent (no intent, not sent) and its outcome
//!   before its result is released; any other call has its decision
//!   written before the answer. A result that could not be audited is
//!   withheld.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use ewii_mcp::{ListChanged, SessionCaller, ToolBackend, ToolName, ToolServer};
use ewii_tools_schema::{MAX_TOOL_NAME_LEN, NameError, validate_tool_name};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData, Extensions,
    Implementation, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use tokio::sync::broadcast;

use crate::audit::trail::{AuditLog, AuditRecord};
use crate::gateway::metrics::Metrics;
use crate::gateway::policy::{self, Call, Decision, Policy, RateLimiter, Rule};
use crate::gateway::registry::Registry;
use crate::gateway::upstream::{ProgressSink, Routed, TICKET_META, UpstreamError};
use crate::replica::directory::{Directory, Held};
use crate::state::store::{Agent, Store};

/// One agent MCP session: the shared server over the hub's state.
pub type AgentService = ToolServer<HubState>;

/// What every agent session shares.
pub struct HubState {
    /// The store (agents, deployments).
    pub store: Store,
    /// Live deployments.
    pub registry: Arc<Registry>,
    /// Deployments other replicas hold ([`crate::replica`]).
    pub remote: Arc<Directory>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The longest a routed call may take before the agent gets an error.
    pub call_timeout: Duration,
    /// The audit trail's writer.
    pub audit: Arc<AuditLog>,
    /// Statements are audited with literals replaced by `?`.
    pub audit_redact: bool,
    /// Per-agent rate limits.
    limiter: RateLimiter,
    /// Agent sessions and subscribers to notify, by workspace.
    list_changed: ListChanged,
    /// Agents' compiled policies.
    policies: CompiledPolicies,
}

impl std::fmt::Debug for HubState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubState").finish_non_exhaustive()
    }
}

impl HubState {
    /// Shared state; starts the task that tells agent sessions and
    /// subscribers of a workspace when its tools change.
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        call_timeout: Duration,
        audit_redact: bool,
    ) -> Arc<HubState> {
        let audit = AuditLog::start(store.clone());
        let state = Arc::new(HubState {
            store,
            registry,
            remote: Arc::default(),
            metrics,
            call_timeout,
            audit,
            audit_redact,
            limiter: RateLimiter::new(),
            list_changed: ListChanged::new(),
            policies: CompiledPolicies::default(),
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
                state.list_changed.notify(workspace.as_deref()).await;
            }
        });
        state
    }

    /// Tells `workspace`'s agent sessions and subscribers here that its
    /// tools changed (another replica's tunnels or catalogs did).
    pub async fn tools_changed(&self, workspace: &str) {
        self.list_changed.notify(Some(workspace)).await;
    }

    /// Deployment `name` of `workspace`, connected here or to another
    /// replica (this one's own tunnel first).
    pub fn held(&self, workspace: &str, name: &str) -> Option<Held> {
        self.registry
            .find(workspace, name)
            .map(Held::Local)
            .or_else(|| self.remote.find(workspace, name).map(Held::Remote))
    }

    /// The deployments of `workspace` connected to any replica, by name.
    pub fn held_in_workspace(&self, workspace: &str) -> Vec<Held> {
        let mut out: Vec<Held> = self
            .registry
            .in_workspace(workspace)
            .into_iter()
            .map(Held::Local)
            .collect();
        for d in self.remote.in_workspace(workspace) {
            if !out.iter().any(|h| h.name() == d.held.deployment) {
                out.push(Held::Remote(d));
            }
        }
        out.sort_by(|a, b| a.name().cmp(b.name()));
        out
    }

    /// Takes one call from the agent's `rate_limit`, or says why not. On
    /// PostgreSQL the bucket is in the store, shared by every replica; on
    /// SQLite (one process) it is in memory. A store that cannot be read
    /// refuses the call (fail closed).
    async fn take_call(&self, agent_id: &str, limit: &policy::RateLimit) -> Result<(), String> {
        if self.store.postgres_url().is_none() {
            return self
                .limiter
                .check(agent_id, limit, Instant::now())
                .map_err(|retry| policy::rate_limited(limit, retry));
        }
        match (self.store)
            .take_shared_call(agent_id, limit.calls, limit.per_seconds)
            .await
        {
            Ok(true) => Ok(()),
            // About one call's refill: the store keeps the exact count.
            Ok(false) => Err(policy::rate_limited(
                limit,
                Duration::from_secs(u64::from(limit.per_seconds.max(1))) / limit.calls.max(1),
            )),
            Err(e) => {
                tracing::error!(error = %e, "cannot count the call against the agent's rate limit; refusing it");
                Err(
                    "agent policy rule `rate_limit`: the hub cannot count this call against the \
                     agent's rate limit right now (its store is unavailable); try again shortly"
                        .to_owned(),
                )
            }
        }
    }

    /// The tools an agent of `workspace` with `policy` sees.
    pub fn tools_for(&self, workspace: &str, policy: &Policy) -> Vec<Tool> {
        let mut out = Vec::new();
        for d in self.held_in_workspace(workspace) {
            for t in d.tools() {
                if !policy.may_see(d.name(), &t.name) {
                    continue;
                }
                let excerpt = crate::audit::export::log_excerpt(&t.name, 32);
                match namespaced(d.name(), t) {
                    Ok(t) => out.push(t),
                    Err(e) => tracing::warn!(
                        deployment = %d.name(), tool = %excerpt, reason = broken_rule(&e),
                        "a tool is left out of tools/list: its name with the deployment prefix \
                         breaks the naming rule (if it is over {MAX_TOOL_NAME_LEN} characters, \
                         use shorter deployment or database names)"
                    ),
                }
            }
        }
        out
    }
}

/// Which rule a name broke, without the name: the deployment's adapter
/// chose it, so it is logged only as an escaped excerpt.
fn broken_rule(e: &NameError) -> &'static str {
    match e {
        NameError::Empty => "empty",
        NameError::TooLong { .. } => "too long",
        NameError::BadCharacter { .. } => "a character outside the rule",
        NameError::BadStart(_) => "a bad first character",
        NameError::NoDeployment(_) => "no deployment",
        NameError::UnknownTool { .. } => "not a standard tool",
    }
}

/// The agent's view of a deployment's tool.
fn namespaced(deployment: &str, mut tool: Tool) -> Result<Tool, NameError> {
    let name = ToolName::parse(&tool.name)?.in_deployment(deployment)?;
    tool.name = Cow::Owned(name.to_string());
    tool.title = tool.title.map(|t| format!("{deployment}: {t}"));
    tool.description = Some(Cow::Owned(format!(
        "[deployment {deployment}] {}",
        tool.description.as_deref().unwrap_or("")
    )));
    if let Some(a) = tool.annotations.as_mut() {
        a.title = a.title.take().map(|t| format!("{deployment}: {t}"));
    }
    Ok(tool)
}

impl SessionCaller for Agent {
    /// A session is the agent credential's that opened it.
    fn owner(&self) -> &str {
        &self.id
    }

    /// Tool list changes are per workspace.
    fn group(&self) -> &str {
        &self.workspace
    }
}

/// Agents' policies, compiled once per policy text: a call reuses the
/// compiled policy while the agent's stored text is unchanged, and a
/// changed text (`ewii-hub policy set`) is compiled on its next call.
#[derive(Debug, Default)]
struct CompiledPolicies(std::sync::Mutex<HashMap<String, (Option<String>, CompiledPolicy)>>);

/// A compiled policy, or why the text does not compile.
type CompiledPolicy = Result<Arc<Policy>, String>;

/// Agents whose compiled policy is kept; beyond it the cache starts over
/// (a miss only costs a compile).
const POLICY_CACHE: usize = 10_000;

impl CompiledPolicies {
    /// The agent's policy, narrowed by its OAuth token's scopes when it
    /// signed in with one; an unreadable one is an error (every call
    /// denied).
    fn of(&self, agent: &Agent) -> CompiledPolicy {
        let compiled = self.compiled(agent)?;
        Ok(match &agent.oauth {
            Some(grant) => Arc::new(policy::oauth_scopes::fence(
                (*compiled).clone(),
                &grant.scopes,
            )),
            None => compiled,
        })
    }

    /// The agent's stored policy, compiled.
    fn compiled(&self, agent: &Agent) -> CompiledPolicy {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((text, compiled)) = cache.get(&agent.id)
            && *text == agent.policy
        {
            return compiled.clone();
        }
        let compiled = match agent.policy.as_deref() {
            None => Ok(Arc::new(Policy::unrestricted())),
            Some(text) => Policy::from_toml(text)
                .map(Arc::new)
                .map_err(|e| e.to_string()),
        };
        if cache.len() >= POLICY_CACHE {
            cache.clear();
        }
        cache.insert(agent.id.clone(), (agent.policy.clone(), compiled.clone()));
        compiled
    }
}

fn json_len<T: serde::Serialize>(v: &T) -> u64 {
    serde_json::to_vec(v).map_or(0, |b| b.len() as u64)
}

/// The size of what the agent gets, serialised.
fn result_len(result: &Result<CallToolResponse, ErrorData>) -> u64 {
    match result {
        Ok(CallToolResponse::Complete(r)) => json_len(r),
        Ok(CallToolResponse::InputRequired(r)) => json_len(r),
        Ok(CallToolResponse::Task(r)) => json_len(r),
        Ok(_) => 0,
        Err(e) => json_len(e),
    }
}

fn denied(message: String) -> Result<CallToolResponse, ErrorData> {
    Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into())
}

impl HubState {
    /// Authorises and routes one call, filling in the audit record; the
    /// result and the outcome label.
    async fn route(
        &self,
        agent: &Agent,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
        record: &mut AuditRecord,
    ) -> (Result<CallToolResponse, ErrorData>, &'static str) {
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
        record.decision = "deny".into();
        let policy = match self.policies.of(agent) {
            Ok(p) => p,
            Err(e) => {
                record.rule = Some("policy".into());
                return (
                    denied(format!(
                        "agent policy unreadable ({e}): every call of this agent is denied until \
                         the operator fixes it (`ewii-hub policy set`)"
                    )),
                    "denied",
                );
            }
        };
        if let Some(limit) = &policy.rate_limit
            && let Err(refusal) = self.take_call(&agent.id, limit).await
        {
            record.rule = Some(Rule::RateLimit.as_str().into());
            return (denied(refusal), "denied");
        }
        let Ok(name) = ToolName::parse_namespaced(&request.name) else {
            record.rule = Some("unknown_tool".into());
            return (Err(unknown()), "unknown_tool");
        };
        let deployment = name.deployment().unwrap_or_default();
        // What the deployment's adapter calls the tool.
        let local = name.local().to_string();
        let tool = local.as_str();
        let live = self.held(&agent.workspace, deployment);
        if live.is_none() {
            // Known in this workspace but not connected: say so. Anything
            // else (including another workspace's deployments) is unknown.
            let known = self
                .store
                .list_deployments(&agent.workspace)
                .await
                .map(|ds| ds.iter().any(|d| d.name == deployment))
                .unwrap_or(false);
            if !known {
                record.rule = Some("unknown_tool".into());
                return (Err(unknown()), "unknown_tool");
            }
        }
        record.deployment = Some(deployment.to_owned());
        // The dialect and argument schema come from the live deployment's
        // tool list; an offline deployment's tools are unknown, so its
        // statements classify as `other` (and the call is answered offline).
        let advertised = live
            .as_ref()
            .and_then(|l| l.tools().into_iter().find(|t| t.name == tool));
        let decision = policy.evaluate(&Call {
            deployment,
            tool,
            arguments: request.arguments.as_ref(),
            dialect: advertised
                .as_ref()
                .and_then(crate::gateway::registry::dialect_of),
            accepts_max_bytes: advertised
                .as_ref()
                .is_some_and(crate::gateway::registry::accepts_max_bytes),
        });
        let arguments = match decision {
            Decision::Deny {
                rule,
                message,
                database,
                statement,
                class,
            } => {
                record.database = database;
                record.statement = statement.map(|s| self.audited_statement(&s));
                record.statement_class = class.map(|c| c.as_str().to_owned());
                record.rule = Some(rule.as_str().into());
                return (denied(message), "denied");
            }
            Decision::Allow {
                database,
                statement,
                class,
                arguments,
                ..
            } => {
                record.database = database;
                record.statement = statement.map(|s| self.audited_statement(&s));
                record.statement_class = class.map(|c| c.as_str().to_owned());
                if !self.audit_redact {
                    record.params = request
                        .arguments
                        .as_ref()
                        .and_then(|a| a.get("params"))
                        .cloned();
                }
                arguments.or_else(|| request.arguments.clone())
            }
        };
        record.decision = "allow".into();
        let Some(live) = live else {
            return (Ok(offline(deployment).into()), "offline");
        };
        record.spiffe_id = Some(live.spiffe_id().to_owned());
        record.svid_serial = Some(live.session_serial().to_owned());
        if !live.tools().iter().any(|t| t.name == tool) {
            return (Err(unknown()), "unknown_tool");
        }
        // The call's id is its ticket: the request the client signs a
        // receipt for carries the id its audit records share.
        let mut meta = rmcp::model::RequestMetaObject::new();
        meta.insert(
            TICKET_META.into(),
            serde_json::Value::String(record.call_id.clone()),
        );
        // Always sent (all four for an unrestricted agent): the adapter
        // enforces it in its classifier and, for a read-only agent, in the
        // engine's read-only mode.
        ewii_mcp::set_statements(&mut meta, policy.allowed_statements());
        // The intent is durable before the call crosses the tunnel: a call
        // the hub cannot audit is not sent, so nothing runs unaudited.
        let intent = Instant::now();
        if let Err(e) = self.audit.record_intent(record).await {
            tracing::error!(error = %e, agent = %agent.name, tool = %request.name, "call not audited; not sent");
            return (Err(not_audited(deployment)), NOT_AUDITED);
        }
        self.metrics.stage("audit_intent", intent.elapsed());
        let progress = context.meta.get_progress_token().map(|token| ProgressSink {
            peer: context.peer.clone(),
            token,
        });
        // Dropping the call (cancelled, timed out) cancels it at the
        // adapter, which stops the statement in the engine (through the
        // holding replica for a remote deployment).
        let call = self.relay(&live, tool, arguments.as_ref(), meta, progress);
        let relayed = Instant::now();
        let outcome = tokio::select! {
            r = call => r,
            _ = context.ct.cancelled() => {
                return (Err(ErrorData::internal_error("the call was cancelled", None)), "cancelled");
            }
            _ = tokio::time::sleep(self.call_timeout) => {
                return (Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "deployment '{deployment}' did not answer within {} s; the hub asked it to \
                     cancel the statement",
                    self.call_timeout.as_secs()
                ))]).into()), "failed");
            }
        };
        self.metrics.stage("deployment", relayed.elapsed());
        match outcome {
            Ok(routed) => {
                record.request_digest = Some(routed.receipt.request_digest);
                record.response_digest = Some(routed.receipt.response_digest);
                record.response_signature = Some(routed.receipt.signature);
                record.signature_scheme = Some(routed.receipt.scheme);
                let mut result = routed.result;
                // The answer's size as it crossed the tunnel, unless the
                // policy cuts it (then it is measured again).
                record.bytes_out = routed.bytes;
                if let Some(limit) = policy.max_bytes {
                    policy::cap_result_bytes(&mut result, limit);
                    record.bytes_out = 0;
                }
                let is_error = result.is_error == Some(true);
                let rows = result.structured_content.as_ref().and_then(policy::rows_in);
                record.rows = rows;
                if let (Some(limit), Some(rows)) = (policy.row_limit, rows)
                    && rows > u64::from(limit)
                {
                    record.decision = "deny".into();
                    record.rule = Some(Rule::RowLimit.as_str().into());
                    let got = usize::try_from(rows).unwrap_or(usize::MAX);
                    return (denied(policy::row_limit_exceeded(limit, got)), "withheld");
                }
                tracing::info!(
                    agent = %agent.name, workspace = %agent.workspace, deployment = %deployment,
                    tool = %tool, is_error, "tool call"
                );
                (
                    Ok(result.into()),
                    if is_error { "tool_error" } else { "ok" },
                )
            }
            Err(UpstreamError::Rpc(e)) => (Err(e), "tool_error"),
            // Not sent: the replica holding the tunnel is out of reach.
            Err(e @ UpstreamError::Unreachable(_)) => {
                tracing::warn!(deployment = %deployment, error = %e, "routed call not sent");
                (
                    Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                        "deployment '{deployment}' cannot be reached right now ({e}). Nothing \
                         ran there; retry in a moment."
                    ))])
                    .into()),
                    "offline",
                )
            }
            // The request did not run (or the answer cannot be read): the
            // agent gets an error that says so.
            Err(
                e @ (UpstreamError::SessionLost
                | UpstreamError::Refused(_)
                | UpstreamError::Malformed(_)),
            ) => (
                Err(ErrorData::internal_error(e.to_string(), None)),
                "tool_error",
            ),
            Err(e) => {
                tracing::warn!(deployment = %deployment, error = %e, "routed call failed");
                (
                    Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                        "deployment '{deployment}' went offline during the call ({e}); the \
                         statement may or may not have run there. Retry once it is back in \
                         tools/list."
                    ))])
                    .into()),
                    "offline",
                )
            }
        }
    }

    /// Sends one authorised, audited call to the deployment: over its
    /// tunnel here, or to the replica holding it (progress is relayed for
    /// local tunnels only).
    async fn relay(
        &self,
        held: &Held,
        tool: &str,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
        meta: rmcp::model::RequestMetaObject,
        progress: Option<ProgressSink>,
    ) -> Result<Routed, UpstreamError> {
        match held {
            Held::Local(live) => {
                live.upstream()
                    .call_tool(tool, arguments, meta, progress)
                    .await
            }
            Held::Remote(remote) => self
                .remote
                .call(remote, tool, arguments, meta)
                .await?
                .parse(),
        }
    }

    fn audited_statement(&self, sql: &str) -> String {
        if self.audit_redact {
            policy::redact_literals(sql)
        } else {
            sql.to_owned()
        }
    }
}

impl HubState {
    /// A call whose tool name breaks the naming rule
    /// (`^[a-zA-Z0-9_-]{1,64}$`): no tool can have it, so it is an unknown
    /// tool, refused before the name is routed, logged or stored. Its audit
    /// record (every call gets one) carries a short escaped excerpt of the
    /// name ([`crate::audit::export::log_excerpt`]), never the name itself: a name
    /// of a megabyte, or one with line breaks that would forge a syslog
    /// line, is neither stored nor exported, nor echoed to the agent.
    async fn refuse_tool_name(
        &self,
        agent: &Agent,
        request: &CallToolRequestParams,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = Instant::now();
        let excerpt = crate::audit::export::log_excerpt(&request.name, 32);
        let error = ErrorData::invalid_params(
            format!(
                "unknown tool '{excerpt}': tool names match ^[a-zA-Z0-9_-]{{1,{MAX_TOOL_NAME_LEN}}}$; \
                 call tools/list for the tools of this workspace's connected deployments"
            ),
            None,
        );
        let mut record =
            AuditRecord::started(SystemTime::now(), crate::gateway::upstream::new_ticket());
        record.workspace = agent.workspace.clone();
        record.agent = agent.name.clone();
        record.agent_id = agent.id.clone();
        record.set_oauth(agent.oauth.as_ref());
        record.tool = excerpt;
        record.bytes_in = json_len(&request.arguments);
        record.decision = "deny".into();
        record.rule = Some("tool_name".into());
        record.outcome = "unknown_tool".into();
        record.bytes_out = json_len(&error);
        let elapsed = started.elapsed();
        record.duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.metrics.call("unknown_tool", elapsed);
        tracing::info!(
            agent = %agent.name, workspace = %agent.workspace, tool = %record.tool,
            bytes = request.name.len(), "tool name refused: it breaks the naming rule"
        );
        if let Err(e) = self.audit.record(record).await {
            tracing::error!(error = %e, agent = %agent.name, "refused call not audited");
            return Err(ErrorData::internal_error(
                "the hub could not write this call to its audit trail; retry later",
                None,
            ));
        }
        Err(error)
    }
}

/// The outcome label of a call that was not sent because its intent could
/// not be written.
const NOT_AUDITED: &str = "not_audited";

fn not_audited(deployment: &str) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "the hub could not write this call to its audit trail, so it was not sent to \
             deployment '{deployment}': nothing ran there. Retry later; if this persists, the \
             operator should check the hub's store"
        ),
        None,
    )
}

fn offline(deployment: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "deployment '{deployment}' is offline: its ewii-client is not connected to the hub. \
         It reconnects by itself; retry in a while, or ask the customer to check the client. \
         Call tools/list to see the deployments online now."
    ))])
}

impl ToolBackend for HubState {
    type Caller = Agent;

    fn implementation(&self) -> Implementation {
        Implementation::new("ewii-hub", env!("CARGO_PKG_VERSION")).with_title("Ewii hub")
    }

    fn instructions(&self) -> &'static str {
        "Tools are named <deployment>_<database>_<tool>: one deployment per customer site, \
         one database per attached database. Start with <deployment>_<database>_list_tables \
         and _describe_table, then run one statement per _query call with bound params. \
         Results are bounded: follow truncated.next_offset to page. The list changes as \
         deployments connect and disconnect (notifications/tools/list_changed)."
    }

    fn list_changed(&self) -> &ListChanged {
        &self.list_changed
    }

    /// The hub relays the adapter's own progress notifications.
    fn progress_interval(&self) -> Option<Duration> {
        None
    }

    /// The agent the bearer middleware authenticated.
    fn caller(&self, extensions: &Extensions) -> Result<Agent, ErrorData> {
        ewii_mcp::from_http_request::<Agent>(extensions).ok_or_else(|| {
            ErrorData::invalid_request("no authenticated agent on this request", None)
        })
    }

    async fn tools(&self, agent: &Agent) -> Vec<Tool> {
        // An unreadable policy shows nothing (and denies every call).
        let policy = self
            .policies
            .of(agent)
            .unwrap_or_else(|_| Arc::new(Policy::nothing()));
        self.tools_for(&agent.workspace, &policy)
    }

    async fn call_tool(
        &self,
        agent: Agent,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // Before the name is used or stored: see `refuse_tool_name`.
        if validate_tool_name(&request.name).is_err() {
            return self.refuse_tool_name(&agent, &request).await;
        }
        let started = Instant::now();
        let mut record =
            AuditRecord::started(SystemTime::now(), crate::gateway::upstream::new_ticket());
        record.workspace = agent.workspace.clone();
        record.agent = agent.name.clone();
        record.agent_id = agent.id.clone();
        record.set_oauth(agent.oauth.as_ref());
        record.tool = request.name.to_string();
        record.bytes_in = json_len(&request.arguments);
        let (result, outcome) = self.route(&agent, &request, &context, &mut record).await;
        let elapsed = started.elapsed();
        record.outcome = outcome.to_owned();
        record.duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        // A relayed answer was measured on the wire; anything else the hub
        // answered itself (or withheld) is measured here.
        if record.bytes_out == 0 || outcome == "withheld" {
            record.bytes_out = result_len(&result);
        }
        self.metrics.call(outcome, elapsed);
        if outcome == NOT_AUDITED {
            // The store refused the intent and nothing was sent: there is
            // no result to withhold, only the error saying so.
            return result;
        }
        // The outcome (or the decision) is durable before the result is
        // released.
        let written = Instant::now();
        let audited = self.audit.record(record).await;
        if outcome != "denied" && outcome != "unknown_tool" {
            self.metrics.stage("audit_outcome", written.elapsed());
        }
        if let Err(e) = audited {
            tracing::error!(error = %e, agent = %agent.name, tool = %request.name, "call not audited; result withheld");
            return Err(ErrorData::internal_error(
                "the hub could not write this call to its audit trail, so its result is withheld \
                 (the statement may have run); retry later",
                None,
            ));
        }
        result
    }
}
