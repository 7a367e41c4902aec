//! `notifications/tools/list_changed` reaches the clients of the changed
//! group and no others: session clients (2025-11-25, registered at
//! `notifications/initialized`) and 2026-07-28 `subscriptions/listen`
//! subscribers alike; a session refuses a second caller.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ewii_mcp::{ListChanged, SessionCaller, ToolBackend, ToolServer};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, Extensions, Implementation,
    ProtocolVersion, ServerNotification, SubscriptionFilter, Tool,
};
use rmcp::service::{
    NotificationContext, RequestContext, RoleClient, RoleServer, RunningService, Subscription,
};
use rmcp::{ClientHandler, ClientServiceExt, ServiceExt};

const QUICK: Duration = Duration::from_millis(300);
const STEP: Duration = Duration::from_secs(5);

/// One session's view of a shared fan-out: every caller of this backend
/// is in `group`.
struct GroupBackend {
    shared: Arc<ListChanged>,
    group: &'static str,
}

struct Member(&'static str);

impl SessionCaller for Member {
    fn owner(&self) -> &str {
        self.0
    }
    fn group(&self) -> &str {
        self.0
    }
}

impl ToolBackend for GroupBackend {
    type Caller = Member;

    fn implementation(&self) -> Implementation {
        Implementation::new("list-changed-test", "0")
    }
    fn instructions(&self) -> &'static str {
        "test"
    }
    fn list_changed(&self) -> &ListChanged {
        &self.shared
    }
    fn caller(&self, _: &Extensions) -> Result<Member, ErrorData> {
        Ok(Member(self.group))
    }
    async fn tools(&self, _: &Member) -> Vec<Tool> {
        vec![Tool::new(
            format!("{}_query", self.group),
            "t",
            Arc::new(Default::default()),
        )]
    }
    async fn call_tool(
        &self,
        _: Member,
        _: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Err(ErrorData::internal_error("not in this test", None))
    }
}

#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl ClientHandler for Counting {
    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn serve(shared: &Arc<ListChanged>, group: &'static str) -> tokio::io::DuplexStream {
    let (server_side, client_side) = tokio::io::duplex(64 * 1024);
    let server = ToolServer::new(Arc::new(GroupBackend {
        shared: shared.clone(),
        group,
    }));
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_side).await {
            let _ = running.waiting().await;
        }
    });
    client_side
}

/// A 2025-11-25 session client of `group` and its notification count.
async fn session_client(
    shared: &Arc<ListChanged>,
    group: &'static str,
) -> (RunningService<RoleClient, Counting>, Arc<AtomicUsize>) {
    let counting = Counting::default();
    let count = counting.0.clone();
    let client = counting.serve(serve(shared, group)).await.unwrap();
    // A round trip after `initialized`, so the server has registered it.
    let tools = client.list_tools(None).await.unwrap();
    assert_eq!(tools.tools[0].name, format!("{group}_query"));
    (client, count)
}

/// A 2026-07-28 client of `group` and its `listen` subscription.
async fn subscriber(
    shared: &Arc<ListChanged>,
    group: &'static str,
) -> (RunningService<RoleClient, ()>, Subscription) {
    let client = ()
        .serve_with_lifecycle(
            serve(shared, group),
            rmcp::ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
    let subscription = client
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await
        .unwrap();
    assert_eq!(
        subscription.acknowledged(),
        &SubscriptionFilter::builder().tools_list_changed().build()
    );
    (client, subscription)
}

async fn heard(subscription: &mut Subscription, within: Duration) -> bool {
    match tokio::time::timeout(within, subscription.next()).await {
        Ok(next) => matches!(
            next.unwrap(),
            Some(ServerNotification::ToolListChangedNotification(_))
        ),
        Err(_) => false,
    }
}

async fn count_reaches(count: &AtomicUsize, n: usize) -> bool {
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::time::Instant::now() < deadline {
        if count.load(Ordering::SeqCst) >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_change_reaches_its_group_only_on_both_protocol_generations() {
    let shared = Arc::new(ListChanged::new());
    let (_a_session, a_count) = session_client(&shared, "a").await;
    let (_b_session, b_count) = session_client(&shared, "b").await;
    let (_a_client, mut a_listen) = subscriber(&shared, "a").await;
    let (_b_client, mut b_listen) = subscriber(&shared, "b").await;

    shared.notify(Some("a")).await;
    assert!(heard(&mut a_listen, STEP).await, "a's subscriber missed it");
    assert!(count_reaches(&a_count, 1).await, "a's session missed it");
    assert!(
        !heard(&mut b_listen, QUICK).await,
        "b's subscriber heard a's change"
    );
    assert_eq!(
        b_count.load(Ordering::SeqCst),
        0,
        "b's session heard a's change"
    );

    // Everyone, when the change's group is unknown.
    shared.notify(None).await;
    assert!(heard(&mut a_listen, STEP).await);
    assert!(heard(&mut b_listen, STEP).await);
    assert!(count_reaches(&a_count, 2).await);
    assert!(count_reaches(&b_count, 1).await);
}

#[tokio::test]
async fn a_closed_session_is_dropped_not_notified() {
    let shared = Arc::new(ListChanged::new());
    let (gone, _) = session_client(&shared, "a").await;
    gone.cancel().await.unwrap();
    let (_kept, count) = session_client(&shared, "a").await;
    shared.notify(Some("a")).await;
    assert!(count_reaches(&count, 1).await);
}
