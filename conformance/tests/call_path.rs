//! The call path's behaviour towards a client that does more than one
//! call at a time: a request whose id is already in flight on its session
//! is answered with an error at once (and the first one still answers);
//! `notifications/cancelled` stops the statement in the engine; a long
//! call sends `notifications/progress` to a caller that sent a
//! `progressToken`. Each for an agent on the hub (through the tunnel) and
//! for a caller of the adapter itself, on a real PostgreSQL server.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ewii_conformance::adapter::{CREDENTIAL, TestAdapter};
use ewii_conformance::db::{Backend, ServerDatabase, server_url};
use ewii_conformance::hub::start_hub;
use ewii_conformance::site::{Deployed, agent_credential, deploy};
use ewii_driver_core::{DatabaseConfig, Limits, SecretString};
use ewii_hub::gateway::serve::RunningHub;
use ewii_wire::sse::SseDecoder;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::sync::mpsc;

/// One place calls go: the hub (an agent's bearer, namespaced tools) or
/// the adapter itself (its local credential).
struct Target {
    what: &'static str,
    addr: SocketAddr,
    bearer: String,
    query_tool: String,
}

/// A hub on SQLite with one deployment `site` whose adapter serves the
/// PostgreSQL database as `pg`, and an unrestricted agent.
struct Site {
    hub: RunningHub,
    deployed: Deployed,
    agent: String,
    _database: ServerDatabase,
    admin: String,
    _backend: Backend,
}

impl Site {
    async fn start() -> Option<Site> {
        let admin = server_url("EWII_TEST_POSTGRES_ADMIN_URL", true)?;
        let user_url = server_url("EWII_TEST_POSTGRES_URL", true)?;
        let database = ServerDatabase::create(&user_url, "ewii_callpath")
            .await
            .unwrap();
        let backend = Backend::sqlite().await;
        let store = &backend.store;
        store
            .create_workspace("acme", None, SystemTime::now())
            .await
            .unwrap();
        let hub = start_hub(store, |_| {}).await;
        let adapter = TestAdapter::start(vec![DatabaseConfig {
            name: "pg".into(),
            driver: "postgres".into(),
            url: SecretString::new(database.url().to_owned()),
            read_only: true,
            limits: Limits::default(),
        }])
        .await;
        let deployed = deploy(store, &hub, "acme", "site", adapter).await;
        let agent = agent_credential(store, "acme", "bot", None).await;
        Some(Site {
            hub,
            deployed,
            agent,
            _database: database,
            admin,
            _backend: backend,
        })
    }

    fn targets(&self) -> [Target; 2] {
        [
            Target {
                what: "an agent on the hub",
                addr: self.hub.http_addr,
                bearer: self.agent.clone(),
                query_tool: "site_pg_query".into(),
            },
            Target {
                what: "a caller of the adapter",
                addr: self.deployed.adapter.addr,
                bearer: CREDENTIAL.into(),
                query_tool: "pg_query".into(),
            },
        ]
    }

    /// Statements carrying `marker` that are running now, as the server
    /// sees them.
    async fn running(&self, marker: &str) -> i64 {
        let mut c = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE state = 'active' AND pid <> pg_backend_pid() AND position($1 in query) > 0",
        )
        .bind(marker)
        .fetch_one(&mut c)
        .await
        .unwrap();
        c.close().await.ok();
        n
    }
}

/// A raw MCP session over HTTP/1.1, each POST on its own connection, the
/// messages of each answer delivered as they arrive.
struct Session {
    addr: SocketAddr,
    bearer: String,
    id: String,
}

impl Session {
    async fn open(target: &Target) -> Session {
        let mut s = Session {
            addr: target.addr,
            bearer: target.bearer.clone(),
            id: String::new(),
        };
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "call-path-test", "version": "1"}}});
        let (id, mut answer) = s.post_with_session(init).await;
        s.id = id.expect("initialize sets a session");
        assert!(answer.recv().await.unwrap().get("result").is_some());
        let (_, mut none) = s
            .post_with_session(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert!(none.recv().await.is_none());
        s
    }

    async fn post(&self, message: Value) -> mpsc::Receiver<Value> {
        self.post_with_session(message).await.1
    }

    async fn post_with_session(&self, message: Value) -> (Option<String>, mpsc::Receiver<Value>) {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = http::Request::post("/mcp")
            .header(http::header::HOST, self.addr.ip().to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.bearer),
            );
        if !self.id.is_empty() {
            request = request
                .header("mcp-session-id", &self.id)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let request = request
            .body(Full::new(Bytes::from(message.to_string())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let session = response
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let sse = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        let (tx, rx) = mpsc::channel(64);
        let mut body = response.into_body();
        tokio::spawn(async move {
            let mut decoder = SseDecoder::new();
            let mut json = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if !sse {
                    json.extend_from_slice(&data);
                    continue;
                }
                for event in decoder.push(&data) {
                    if let Ok(v) = serde_json::from_str::<Value>(&event.data)
                        && tx.send(v).await.is_err()
                    {
                        return;
                    }
                }
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&json) {
                let _ = tx.send(v).await;
            }
        });
        (session, rx)
    }
}

fn call(id: u64, tool: &str, sql: &str, meta: Option<Value>) -> Value {
    let mut params = json!({"name": tool, "arguments": {"sql": sql}});
    if let Some(meta) = meta {
        params["_meta"] = meta;
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

/// The answer to request `id` on `rx`, and the notifications before it.
async fn answer(rx: &mut mpsc::Receiver<Value>, id: u64, within: Duration) -> (Value, Vec<Value>) {
    let mut notes = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no answer to request {id} within {within:?}"))
            .unwrap_or_else(|| panic!("the stream of request {id} ended without an answer"));
        if m.get("method").is_some() {
            notes.push(m);
        } else {
            assert_eq!(m["id"], json!(id), "{m}");
            return (m, notes);
        }
    }
}

fn marker() -> String {
    format!(
        "m{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn a_duplicate_in_flight_id_is_refused_at_once_and_the_first_still_answers() {
    ewii_conformance::agent::install_crypto_provider();
    let Some(site) = Site::start().await else {
        return;
    };
    for target in site.targets() {
        let session = Session::open(&target).await;
        let m = marker();
        let sql = format!("SELECT pg_sleep(2), 'first' AS which /* {m} */");
        let mut first = session.post(call(7, &target.query_tool, &sql, None)).await;
        // The first is running in the engine before the duplicate is sent.
        let deadline = Instant::now() + Duration::from_secs(10);
        while site.running(&m).await == 0 {
            assert!(Instant::now() < deadline, "{}: never ran", target.what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let sent = Instant::now();
        let mut second = session
            .post(call(7, &target.query_tool, "SELECT 'second'", None))
            .await;
        let (dup, _) = answer(&mut second, 7, Duration::from_secs(1)).await;
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "{}: the duplicate waited",
            target.what
        );
        assert_eq!(
            dup["error"]["code"],
            json!(-32600),
            "{}: {dup}",
            target.what
        );
        let message = dup["error"]["message"].as_str().unwrap();
        assert!(message.contains("already in flight"), "{message}");
        let (ok, _) = answer(&mut first, 7, Duration::from_secs(15)).await;
        assert!(
            ok["result"]["isError"] != json!(true),
            "{}: {ok}",
            target.what
        );
        assert!(ok.to_string().contains("first"), "{}: {ok}", target.what);
        // Once answered, the id may be used again.
        let mut again = session
            .post(call(7, &target.query_tool, "SELECT 'again'", None))
            .await;
        let (ok, _) = answer(&mut again, 7, Duration::from_secs(15)).await;
        assert!(ok.to_string().contains("again"), "{}: {ok}", target.what);
    }
}

#[tokio::test]
async fn cancelling_a_call_stops_its_statement_in_the_engine() {
    ewii_conformance::agent::install_crypto_provider();
    let Some(site) = Site::start().await else {
        return;
    };
    for target in site.targets() {
        let session = Session::open(&target).await;
        let m = marker();
        let sql = format!("SELECT pg_sleep(30) /* {m} */");
        let _running = session.post(call(9, &target.query_tool, &sql, None)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while site.running(&m).await == 0 {
            assert!(Instant::now() < deadline, "{}: never ran", target.what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut none = session
            .post(
                json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                         "params": {"requestId": 9, "reason": "the user gave up"}}),
            )
            .await;
        assert!(none.recv().await.is_none());
        let cancelled = Instant::now();
        while site.running(&m).await > 0 {
            assert!(
                cancelled.elapsed() < Duration::from_secs(2),
                "{}: the statement still runs 2 s after the cancellation",
                target.what
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "{}: statement gone {} ms after notifications/cancelled",
            target.what,
            cancelled.elapsed().as_millis()
        );
    }
}

#[tokio::test]
async fn a_long_call_reports_progress_to_a_caller_that_asked() {
    ewii_conformance::agent::install_crypto_provider();
    let Some(site) = Site::start().await else {
        return;
    };
    for target in site.targets() {
        let session = Session::open(&target).await;
        let mut rx = session
            .post(call(
                11,
                &target.query_tool,
                "SELECT pg_sleep(2.5), 'slow' AS done",
                Some(json!({"progressToken": "tok-11"})),
            ))
            .await;
        let (ok, notes) = answer(&mut rx, 11, Duration::from_secs(15)).await;
        assert!(ok.to_string().contains("slow"), "{}: {ok}", target.what);
        let progress: Vec<_> = notes
            .iter()
            .filter(|n| n["method"] == "notifications/progress")
            .collect();
        assert!(
            !progress.is_empty(),
            "{}: no progress in {notes:?}",
            target.what
        );
        let mut last = -1.0;
        for p in &progress {
            assert_eq!(p["params"]["progressToken"], json!("tok-11"), "{p}");
            let at = p["params"]["progress"].as_f64().unwrap();
            assert!(at > last, "progress must increase: {progress:?}");
            last = at;
        }
        // Without a token, no progress.
        let mut rx = session
            .post(call(
                12,
                &target.query_tool,
                "SELECT pg_sleep(1.5), 'quiet' AS done",
                None,
            ))
            .await;
        let (_, notes) = answer(&mut rx, 12, Duration::from_secs(15)).await;
        assert!(
            notes
                .iter()
                .all(|n| n["method"] != "notifications/progress"),
            "{}: {notes:?}",
            target.what
        );
    }
}
