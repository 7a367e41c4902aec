//! The rmcp server both MCP endpoints run: [`ToolServer`], one per MCP
//! session, over one shared [`ToolBackend`].
//!
//! What the adapter and the hub share lives here once: the capabilities
//! (tools with `listChanged`), the protocol versions
//! ([`ProtocolVersion::KNOWN_VERSIONS`]: 2025-06-18, 2025-11-25 and the
//! stateless 2026-07-28, among older ones), `tools/list` paging, the
//! `list_changed` fan-out to session clients and to 2026-07-28
//! `subscriptions/listen` subscribers ([`ListChanged`]), and the binding of
//! a session to the caller that opened it. What differs is the backend's:
//! who the caller is, which tools it sees, and what a call does.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestMethod, CompleteRequestParams,
    CompleteResult, ErrorData, Extensions, Implementation, InitializeRequestParams,
    InitializeResult, ListPromptsRequestMethod, ListPromptsResult,
    ListResourceTemplatesRequestMethod, ListResourceTemplatesResult, ListResourcesRequestMethod,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};

use crate::list_changed::ListChanged;
use crate::page::list_page;

/// Who sent a request, as far as the shared server needs to know.
pub trait SessionCaller {
    /// The caller's identity: an MCP session stays bound to the first
    /// identity it sees, and refuses requests of any other.
    fn owner(&self) -> &str;

    /// The `list_changed` fan-out group of the caller's sessions and
    /// subscriptions: a change to a group's tools reaches only them.
    fn group(&self) -> &str;
}

/// What an MCP tool server does, beyond what [`ToolServer`] shares: the
/// adapter's catalog and the hub's routing each implement it once.
pub trait ToolBackend: Send + Sync + 'static {
    /// The authenticated caller of a request.
    type Caller: SessionCaller + Send + Sync + 'static;

    /// The server's name, version and title.
    fn implementation(&self) -> Implementation;

    /// How a model should use the tools (the `initialize` instructions).
    fn instructions(&self) -> &'static str;

    /// The fan-out that tells this backend's sessions when tools change.
    fn list_changed(&self) -> &ListChanged;

    /// The caller of a request from its extensions (the HTTP request's
    /// parts, where an authenticating middleware left its verdict); an
    /// error refuses the request.
    fn caller(&self, extensions: &Extensions) -> Result<Self::Caller, ErrorData>;

    /// Every tool `caller` may see, in a stable order (pages are offsets
    /// into it).
    fn tools(&self, caller: &Self::Caller) -> impl Future<Output = Vec<Tool>> + Send;

    /// How often a call whose caller sent a `progressToken` reports
    /// progress ([`crate::progress`]); `None` when the backend reports
    /// progress itself (the hub relays its deployments' progress).
    fn progress_interval(&self) -> Option<std::time::Duration> {
        Some(crate::progress::PROGRESS_INTERVAL)
    }

    /// Runs one `tools/call` for `caller`.
    fn call_tool(
        &self,
        caller: Self::Caller,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CallToolResponse, ErrorData>> + Send;
}

/// A value an HTTP middleware put in the request's extensions (rmcp hands
/// the handler the request's parts among its extensions).
pub fn from_http_request<T: Clone + Send + Sync + 'static>(extensions: &Extensions) -> Option<T> {
    extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<T>())
        .cloned()
}

/// The rmcp handler of one MCP session over a shared backend.
pub struct ToolServer<B> {
    backend: Arc<B>,
    /// The caller that opened the session.
    owner: Arc<OnceLock<String>>,
}

impl<B> Clone for ToolServer<B> {
    fn clone(&self) -> Self {
        ToolServer {
            backend: self.backend.clone(),
            owner: self.owner.clone(),
        }
    }
}

impl<B: ToolBackend> ToolServer<B> {
    /// A session handler over `backend`.
    pub fn new(backend: Arc<B>) -> ToolServer<B> {
        ToolServer {
            backend,
            owner: Arc::new(OnceLock::new()),
        }
    }

    /// The request's caller; the session is bound to the first one seen.
    fn caller(&self, extensions: &Extensions) -> Result<B::Caller, ErrorData> {
        let caller = self.backend.caller(extensions)?;
        let owner = self.owner.get_or_init(|| caller.owner().to_owned());
        if owner != caller.owner() {
            return Err(ErrorData::invalid_request(
                "this MCP session belongs to another credential; start a new session",
                None,
            ));
        }
        Ok(caller)
    }
}

impl<B: ToolBackend> ServerHandler for ToolServer<B> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(self.backend.implementation())
        .with_instructions(self.backend.instructions())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        self.caller(&context.extensions)?;
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if let Ok(caller) = self.caller(&context.extensions) {
            self.backend
                .list_changed()
                .register(caller.group(), context.peer);
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        let tools = self.backend.tools(&caller).await;
        list_page(tools, request.as_ref())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        let progress = context.meta.get_progress_token();
        let peer = context.peer.clone();
        let call = self.backend.call_tool(caller, request, context);
        match (progress, self.backend.progress_interval()) {
            (Some(token), Some(every)) => {
                crate::progress::with_progress(call, peer, token, every).await
            }
            _ => call.await,
        }
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let caller = self.caller(&context.request_context().extensions)?;
        self.backend
            .list_changed()
            .listen(caller.group(), &context)
            .await
    }

    // Only tools are declared (`get_info`). rmcp's defaults would answer
    // these with empty lists, handling capabilities the server never
    // declared; MCP requires a server that handles prompts, resources or
    // completions to declare them, so here they are unknown methods
    // (-32601).
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

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The caller an HTTP middleware authenticated, by name.
    #[derive(Clone)]
    struct Named(&'static str);

    impl SessionCaller for Named {
        fn owner(&self) -> &str {
            self.0
        }
        fn group(&self) -> &str {
            "everyone"
        }
    }

    struct ByHeader(ListChanged);

    impl ToolBackend for ByHeader {
        type Caller = Named;

        fn implementation(&self) -> Implementation {
            Implementation::new("test", "0")
        }
        fn instructions(&self) -> &'static str {
            "test"
        }
        fn list_changed(&self) -> &ListChanged {
            &self.0
        }
        fn caller(&self, extensions: &Extensions) -> Result<Named, ErrorData> {
            from_http_request::<Named>(extensions)
                .ok_or_else(|| ErrorData::invalid_request("nobody", None))
        }
        async fn tools(&self, _: &Named) -> Vec<Tool> {
            Vec::new()
        }
        async fn call_tool(
            &self,
            _: Named,
            _: CallToolRequestParams,
            _: RequestContext<RoleServer>,
        ) -> Result<CallToolResponse, ErrorData> {
            Err(ErrorData::internal_error("no tools", None))
        }
    }

    fn from(who: Option<&'static str>) -> Extensions {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        if let Some(who) = who {
            parts.extensions.insert(Named(who));
        }
        let mut extensions = Extensions::new();
        extensions.insert(parts);
        extensions
    }

    #[test]
    fn a_session_stays_with_the_caller_that_opened_it() {
        let backend = Arc::new(ByHeader(ListChanged::new()));
        let session = ToolServer::new(backend.clone());
        assert!(session.caller(&from(None)).is_err());
        assert_eq!(session.caller(&from(Some("alice"))).unwrap().0, "alice");
        // The same session, also through a clone of its handler.
        let e = session.clone().caller(&from(Some("bob"))).err().unwrap();
        assert!(e.message.contains("belongs to another credential"), "{e:?}");
        assert_eq!(session.caller(&from(Some("alice"))).unwrap().0, "alice");
        // Another session is bob's to open.
        assert!(ToolServer::new(backend).caller(&from(Some("bob"))).is_ok());
    }

    #[test]
    fn every_known_protocol_version_is_served() {
        let session = ToolServer::new(Arc::new(ByHeader(ListChanged::new())));
        let versions = session.supported_protocol_versions();
        for v in [
            ProtocolVersion::V_2025_06_18,
            ProtocolVersion::V_2025_11_25,
            ProtocolVersion::V_2026_07_28,
        ] {
            assert!(versions.contains(&v), "{v:?}");
        }
        let info = session.get_info();
        let tools = info.capabilities.tools.expect("tools capability");
        assert_eq!(tools.list_changed, Some(true));
        assert_eq!(info.instructions.as_deref(), Some("test"));
    }
}
