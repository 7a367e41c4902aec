//! The adapter's live catalog and its MCP face (rmcp `ServerHandler`).
//!
//! Every advertised tool carries `_meta["ewii/dialect"]`, the classifier
//! dialect of its database, so the hub classifies statements in the
//! dialect the engine speaks. Every `tools/call` from the hub carries
//! `_meta["ewii/statements"]`, the agent's allowed statement classes; the
//! drivers enforce them (classifier and engine read-only mode, see
//! [`ewii_driver_core::vet_statement`]). A call without it is a local
//! caller's and keeps the database's own mode; a malformed one is refused
//! before anything runs.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ewii_driver_core::schema::ToolDescriptor;
use ewii_driver_core::{
    CallContext, Catalog, CatalogChange, DatabaseConfig, STATEMENTS_META, StatementClasses,
    ToolError,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestMethod,
    CompleteRequestParams, CompleteResult, ContentBlock, Implementation, ListPromptsRequestMethod,
    ListPromptsResult, ListResourceTemplatesRequestMethod, ListResourceTemplatesResult,
    ListResourcesRequestMethod, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, SubscriptionFilter, Tool, ToolAnnotations,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde_json::Value;
use tokio::sync::{RwLock, broadcast};

pub use ewii_driver_core::TOOLS_PAGE_SIZE;

/// The adapter's live state: the catalog of attached databases and the
/// connected MCP clients to tell when it changes.
pub struct Adapter {
    catalog: RwLock<Catalog>,
    changes: broadcast::Sender<()>,
    peers: Mutex<Vec<Peer<RoleServer>>>,
}

impl Adapter {
    /// An adapter serving `configs`. Databases that fail to open are
    /// reported in the returned change and left out.
    pub async fn new(configs: Vec<DatabaseConfig>) -> (Arc<Adapter>, CatalogChange) {
        let mut catalog = Catalog::new();
        let change = catalog.apply(configs).await;
        let (changes, _) = broadcast::channel(16);
        let adapter = Arc::new(Adapter {
            catalog: RwLock::new(catalog),
            changes,
            peers: Mutex::new(Vec::new()),
        });
        (adapter, change)
    }

    /// Brings the catalog to `configs` and, if the tools changed, sends
    /// `notifications/tools/list_changed` to every connected client.
    pub async fn apply(&self, configs: Vec<DatabaseConfig>) -> CatalogChange {
        let change = self.catalog.write().await.apply(configs).await;
        for (name, e) in &change.failed {
            tracing::warn!(database = %name, error = %e, "database left out of the catalog");
        }
        if change.tools_changed() {
            tracing::info!(
                added = ?change.added, removed = ?change.removed, changed = ?change.changed,
                "catalog changed"
            );
            self.notify_list_changed().await;
        }
        change
    }

    async fn notify_list_changed(&self) {
        // 2026-07-28 clients listen through `subscriptions/listen`.
        let _ = self.changes.send(());
        // Session clients (≤ 2025-11-25) get it on their session stream.
        let peers: Vec<Peer<RoleServer>> = match self.peers.lock() {
            Ok(mut p) => {
                p.retain(|peer| !peer.is_transport_closed());
                p.clone()
            }
            Err(_) => Vec::new(),
        };
        for peer in peers {
            if let Err(e) = peer.notify_tool_list_changed().await {
                tracing::debug!(error = %e, "could not notify a client of the catalog change");
            }
        }
    }

    /// The advertised tools.
    pub async fn tools(&self) -> Vec<ToolDescriptor> {
        self.catalog.read().await.tools().to_vec()
    }

    /// Runs one tool. The catalog lock is released before the database is
    /// called, so a slow query never blocks a catalog change.
    pub async fn call(
        &self,
        name: &str,
        arguments: Value,
        ctx: &CallContext,
    ) -> Result<Value, ToolError> {
        let resolved = self.catalog.read().await.resolve(name)?;
        resolved.call(arguments, ctx).await
    }

    /// Closes every database.
    pub async fn close(&self) {
        self.catalog.write().await.close().await;
    }

    fn register_peer(&self, peer: Peer<RoleServer>) {
        if let Ok(mut p) = self.peers.lock() {
            p.retain(|peer| !peer.is_transport_closed());
            p.push(peer);
        }
    }
}

/// Converts a catalog descriptor into an rmcp tool.
pub fn to_mcp_tool(d: &ToolDescriptor) -> Tool {
    let mut tool = Tool::new(
        d.name.clone(),
        d.description.clone(),
        Arc::new(d.input_schema.clone()),
    )
    .with_title(d.title.clone())
    .with_raw_output_schema(Arc::new(d.output_schema.clone()))
    .with_annotations(ToolAnnotations::from_raw(
        Some(d.title.clone()),
        Some(d.annotations.read_only_hint),
        Some(d.annotations.destructive_hint),
        Some(d.annotations.idempotent_hint),
        Some(d.annotations.open_world_hint),
    ));
    tool.meta = d.meta.clone().map(Into::into);
    tool
}

/// The call's allowed statement classes from its `_meta`: `Ok(None)` when
/// absent (a local caller), `Err` with the reason when present but not a
/// list of `read`, `write`, `ddl`, `other` (the call is then refused: a
/// meta the adapter cannot read must not widen what runs).
pub fn statements_of(
    meta: &serde_json::Map<String, Value>,
) -> Result<Option<StatementClasses>, String> {
    let Some(value) = meta.get(STATEMENTS_META) else {
        return Ok(None);
    };
    let names: Option<Vec<&str>> = value
        .as_array()
        .and_then(|items| items.iter().map(Value::as_str).collect());
    let Some(names) = names else {
        return Err(format!(
            "the call's _meta \"{STATEMENTS_META}\" is not a list of statement classes"
        ));
    };
    StatementClasses::from_names(names)
        .map(Some)
        .map_err(|bad| {
            format!(
                "the call's _meta \"{STATEMENTS_META}\" names an unknown statement class \"{bad}\" \
             (known: read, write, ddl, other)"
            )
        })
}

/// Turns a tool outcome into an MCP result: structured content plus the same
/// JSON as text (for clients without structured content support), plus an
/// explicit truncation notice; failures become `isError` results whose text
/// tells the model what to fix.
pub fn to_call_result(outcome: Result<Value, ToolError>) -> CallToolResult {
    match outcome {
        Ok(value) => {
            let notice = value
                .get("truncated")
                .and_then(|t| t.get("message"))
                .and_then(Value::as_str)
                .map(|m| format!("TRUNCATED: {m}"));
            let mut result = CallToolResult::structured(value);
            if let Some(n) = notice {
                result.content.push(ContentBlock::text(n));
            }
            result
        }
        Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
    }
}

/// The rmcp server handler: one per MCP session, all sharing one [`Adapter`].
#[derive(Clone)]
pub struct McpService {
    adapter: Arc<Adapter>,
}

impl McpService {
    /// A handler over `adapter`.
    pub fn new(adapter: Arc<Adapter>) -> Self {
        McpService { adapter }
    }
}

impl ServerHandler for McpService {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(
            Implementation::new("ewii-adapter", env!("CARGO_PKG_VERSION"))
                .with_title("Ewii MCP adapter"),
        )
        .with_instructions(
            "Each attached database contributes tools named <database>_<tool>. Start with \
             <database>_list_tables and <database>_describe_table, then run one statement per \
             <database>_query call with bound params. Results are bounded: follow \
             truncated.next_offset to page.",
        )
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.adapter.register_peer(context.peer);
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self.adapter.tools().await;
        let (range, next_cursor) = ewii_driver_core::tools_page(
            tools.len(),
            request.as_ref().and_then(|r| r.cursor.as_deref()),
        )
        .map_err(|m| ErrorData::invalid_params(m, None))?;
        Ok(ListToolsResult {
            tools: tools[range].iter().map(to_mcp_tool).collect(),
            next_cursor,
            ..Default::default()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = Instant::now();
        // rmcp moves the request's `_meta` into the context; read both.
        let statements = match request.meta.as_deref() {
            Some(meta) if meta.contains_key(STATEMENTS_META) => statements_of(meta),
            _ => statements_of(&context.meta),
        };
        let statements = match statements {
            Ok(s) => s,
            Err(reason) => {
                tracing::warn!(tool = %request.name, %reason, "call refused");
                return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "refused: {reason}; nothing ran. Update the hub and the adapter to \
                     matching versions"
                ))])
                .into());
            }
        };
        let ctx = CallContext {
            cancel: context.ct.clone(),
            statements,
        };
        let arguments = request.arguments.map(Value::Object).unwrap_or(Value::Null);
        let outcome = self.adapter.call(&request.name, arguments, &ctx).await;
        match &outcome {
            Ok(_) => {
                tracing::info!(tool = %request.name, ms = started.elapsed().as_millis() as u64, "tool call")
            }
            Err(e) => {
                tracing::info!(tool = %request.name, ms = started.elapsed().as_millis() as u64, error = %e, "tool call failed")
            }
        }
        Ok(to_call_result(outcome).into())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.adapter.changes.subscribe();
        loop {
            tokio::select! {
                _ = context.cancelled() => return Ok(()),
                r = changes.recv() => match r {
                    Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if context.sink().notify_tool_list_changed().await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    // Only tools are declared (get_info). rmcp's defaults would answer these
    // with empty lists, i.e. handle capabilities the server never declared;
    // MCP requires a server that handles prompts, resources or completions
    // to declare them, so they are unknown methods here (-32601).
    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Err(ErrorData::method_not_found::<ListPromptsRequestMethod>())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Err(ErrorData::method_not_found::<ListResourcesRequestMethod>())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Err(ErrorData::method_not_found::<
            ListResourceTemplatesRequestMethod,
        >())
    }

    async fn complete(
        &self,
        _request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        Err(ErrorData::method_not_found::<CompleteRequestMethod>())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [rmcp::model::ProtocolVersion]> {
        Cow::Borrowed(rmcp::model::ProtocolVersion::KNOWN_VERSIONS)
    }
}
