//! Audit intent before execution (issue #12 item 9), end to end through a
//! real hub, real QUIC tunnels, real adapters and rmcp agents, on SQLite
//! and PostgreSQL hub stores alike:
//!
//! - a call whose intent the store refuses is not sent: the statement never
//!   reaches the database and the agent is told so;
//! - while a statement runs in the engine, its intent is already in the
//!   store; its outcome follows and names it;
//! - an outcome the store refuses withholds the result and leaves an intent
//!   without an outcome, which `audit verify` accepts and `audit tail`
//!   shows as "no outcome recorded";
//! - `audit verify` names a changed intent, a deleted outcome, a deleted
//!   last outcome, and an outcome re-pointed at another call's intent.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant, SystemTime};

use ewii_conformance::adapter::TestAdapter;
use ewii_conformance::agent::{Agent, STEP, agent, call, text_of};
use ewii_conformance::client::TestClient;
use ewii_conformance::db::{Backend, server_url};
use ewii_conformance::hub::start_hub;
use ewii_conformance::sample::{count_query, shop_db, sqlite_config};
use ewii_conformance::site::{agent_credential, deploy};
use ewii_conformance::suite;
use ewii_driver_core::{DatabaseConfig, Limits, SecretString};
use ewii_hub::Store;
use ewii_hub::audit::trail::{AuditLog, AuditRecord};
use ewii_hub::gateway::serve::RunningHub;
use ewii_hub::state::store::Verification;
use ewii_hub::state::store::audit::chain_hash;
use rmcp::model::CallToolRequestParams;
use rmcp::service::ServiceError;
use serde_json::{Value, json};

suite!(
    a_call_whose_intent_cannot_be_written_is_not_sent,
    the_intent_is_in_the_store_while_the_statement_runs,
    a_refused_outcome_withholds_the_result_and_leaves_an_open_intent,
    verify_names_a_changed_intent_and_a_deleted_outcome,
    one_audit_commit_costs,
);

fn now() -> SystemTime {
    SystemTime::now()
}

/// A hub with workspace `acme` and deployment `deployment` serving
/// `databases` through a real client.
async fn site(
    store: &Store,
    deployment: &str,
    databases: Vec<DatabaseConfig>,
) -> (RunningHub, TestAdapter, TestClient) {
    store.create_workspace("acme", None, now()).await.unwrap();
    let hub = start_hub(store, |_| {}).await;
    let adapter = TestAdapter::start(databases).await;
    let d = deploy(store, &hub, "acme", deployment, adapter).await;
    (hub, d.adapter, d.client)
}

/// An agent of `acme` with `policy`, connected.
async fn agent_of(hub: &RunningHub, store: &Store, name: &str, policy: Option<&str>) -> Agent {
    let credential = agent_credential(store, "acme", name, policy).await;
    agent(&hub.mcp_url(), &credential).await
}

/// A tools/call whose answer is a JSON-RPC error: its message.
async fn call_error(a: &Agent, tool: &str, arguments: Value) -> String {
    let Value::Object(map) = arguments else {
        panic!("arguments must be an object")
    };
    let r = tokio::time::timeout(
        STEP,
        a.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(map)),
    )
    .await
    .expect("tools/call timed out");
    match r {
        Err(ServiceError::McpError(e)) => e.message.to_string(),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

fn is_sqlite(backend: &Backend) -> bool {
    backend.url.starts_with("sqlite:")
}

/// Makes the hub's store refuse audit inserts (all of them, or only
/// outcomes) with a trigger, as a full disk or a broken replica would.
async fn refuse_audit_inserts(backend: &Backend, only_outcomes: bool) {
    let outcome = r#"'%"kind":"outcome"%'"#;
    if is_sqlite(backend) {
        let when = if only_outcomes {
            format!("WHEN NEW.record LIKE {outcome}")
        } else {
            String::new()
        };
        backend
            .raw_exec(format!(
                "CREATE TRIGGER ewii_test_refuse BEFORE INSERT ON audit_log {when} \
                 BEGIN SELECT RAISE(ABORT, 'the audit store refuses (test)'); END"
            ))
            .await;
    } else {
        let condition = if only_outcomes {
            format!("NEW.record LIKE {outcome}")
        } else {
            "true".into()
        };
        backend
            .raw_exec(format!(
                "CREATE FUNCTION ewii_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF {condition} THEN RAISE EXCEPTION 'the audit store refuses (test)'; \
                 END IF; RETURN NEW; END $$"
            ))
            .await;
        backend
            .raw_exec(
                "CREATE TRIGGER ewii_test_refuse BEFORE INSERT ON audit_log FOR EACH ROW \
             EXECUTE FUNCTION ewii_test_refuse()"
                    .into(),
            )
            .await;
    }
}

async fn accept_audit_inserts(backend: &Backend) {
    if is_sqlite(backend) {
        backend
            .raw_exec("DROP TRIGGER ewii_test_refuse".into())
            .await;
    } else {
        backend
            .raw_exec("DROP TRIGGER ewii_test_refuse ON audit_log".into())
            .await;
        backend
            .raw_exec("DROP FUNCTION ewii_test_refuse()".into())
            .await;
    }
}

/// Rows of `customers` in the adapter's SQLite file, read past the hub.
async fn customers_in(path: &std::path::Path) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    use sqlx::Row as _;
    let n: i64 = sqlx::query("SELECT count(*) AS n FROM customers")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    pool.close().await;
    n
}

fn intact(v: Verification) -> (i64, Vec<i64>) {
    match v {
        Verification::Intact {
            records,
            open_intents,
            ..
        } => (records, open_intents),
        v => panic!("the chain should verify: {v:?}"),
    }
}

fn cli_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// -----------------------------------------------------------------------------

async fn a_call_whose_intent_cannot_be_written_is_not_sent(backend: &Backend) {
    let store = &backend.store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    shop_db(&path).await;
    let mut config = sqlite_config("shop", &path);
    config.read_only = false;
    let (hub, _adapter, client) = site(store, "rw", vec![config]).await;
    let writer = agent_of(&hub, store, "writer", None).await;
    // The path works and is audited.
    let r = call(&writer, "rw_shop_query", count_query()).await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    let (before, _) = intact(store.verify_audit().await.unwrap());
    assert_eq!(before, 2, "intent and outcome");

    refuse_audit_inserts(backend, false).await;
    for sql in [
        "DELETE FROM customers",
        "INSERT INTO customers (id, name, country) VALUES (99, 'x', 'FR')",
    ] {
        let message = call_error(&writer, "rw_shop_query", json!({ "sql": sql })).await;
        assert!(
            message.contains("could not write this call to its audit trail")
                && message.contains("not sent")
                && message.contains("nothing ran"),
            "{message}"
        );
        assert_eq!(
            customers_in(&path).await,
            10,
            "`{sql}` reached the database though its intent was not written"
        );
    }
    // Nothing half-written: the trail is as it was.
    assert_eq!(intact(store.verify_audit().await.unwrap()).0, before);

    // With the store back, the same write is audited and runs (the fence is
    // not simply closed).
    accept_audit_inserts(backend).await;
    let r = call(
        &writer,
        "rw_shop_query",
        json!({ "sql": "DELETE FROM customers" }),
    )
    .await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    assert_eq!(customers_in(&path).await, 0);
    let tail = store.audit_tail(2).await.unwrap();
    assert_eq!(tail[0].record["kind"], "intent");
    assert_eq!(tail[0].record["statement"], "DELETE FROM customers");
    assert_eq!(tail[1].record["kind"], "outcome");
    assert_eq!(tail[1].record["intent_seq"], tail[0].seq);
    assert_eq!(tail[1].record["call_id"], tail[0].record["call_id"]);
    assert_eq!(intact(store.verify_audit().await.unwrap()), (4, vec![]));
    client.stop().await;
    hub.shutdown().await;
}

async fn the_intent_is_in_the_store_while_the_statement_runs(backend: &Backend) {
    let Some(pg) = server_url("EWII_TEST_POSTGRES_URL", true) else {
        return;
    };
    let store = &backend.store;
    let config = DatabaseConfig {
        name: "slow".into(),
        driver: "postgres".into(),
        url: SecretString::new(pg.clone()),
        read_only: true,
        limits: Limits::default(),
    };
    let (hub, _adapter, client) = site(store, "pg", vec![config]).await;
    let a = agent_of(&hub, store, "reader", Some("statements = [\"read\"]")).await;
    let marker = format!("intent-{}", std::process::id());
    let sql = format!("SELECT pg_sleep(2) AS slept, '{marker}' AS marker");
    let started = Instant::now();
    let call_task = tokio::spawn({
        let sql = sql.clone();
        async move { call(&a, "pg_slow_query", json!({ "sql": sql })).await }
    });

    // Wait until the engine runs the statement...
    use sqlx::Connection as _;
    let mut watch = sqlx::PgConnection::connect(&pg).await.unwrap();
    let deadline = Instant::now() + STEP;
    loop {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND pid <> pg_backend_pid() AND query LIKE '%pg_sleep%' AND query LIKE $1",
        )
        .bind(format!("%{marker}%"))
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if running > 0 {
            break;
        }
        assert!(
            !call_task.is_finished(),
            "the call ended before it was seen running"
        );
        assert!(Instant::now() < deadline, "the statement never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...and at that moment its intent is durable and its outcome is not.
    let seen_at = started.elapsed();
    let tail = store.audit_tail(10).await.unwrap();
    let intent = tail
        .iter()
        .find(|r| r.record["kind"] == "intent" && r.record["statement"] == sql.as_str())
        .unwrap_or_else(|| {
            panic!("the statement runs but its intent is not in the store: {tail:?}")
        });
    assert!(
        !tail.iter().any(|r| r.record["kind"] == "outcome"),
        "an outcome before the statement finished: {tail:?}"
    );
    assert!(!call_task.is_finished());
    assert_eq!(intent.record["decision"], "allow");
    assert_eq!(intent.record["statement_class"], "read");
    assert_eq!(intent.record["agent"], "reader");
    assert_eq!(intent.record["deployment"], "pg");
    assert_eq!(intent.record["database"], "slow");
    assert_eq!(intent.record["tool"], "pg_slow_query");
    assert_eq!(
        intent.record["spiffe_id"],
        "spiffe://ewii.local/ws/acme/dep/pg"
    );
    assert!(intent.record["svid_serial"].is_string());
    // The CLI shows it too.
    let out = backend.cli(&["audit", "tail", "--json", "-n", "5"]);
    assert!(out.status.success(), "{}", cli_text(&out));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "intent" && l["seq"] == intent.seq),
        "{lines:?}"
    );

    let r = tokio::time::timeout(STEP, call_task)
        .await
        .unwrap()
        .unwrap();
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    let tail = store.audit_tail(1).await.unwrap();
    let outcome = &tail[0].record;
    assert_eq!(outcome["kind"], "outcome");
    assert_eq!(outcome["intent_seq"], intent.seq);
    assert_eq!(outcome["call_id"], intent.record["call_id"]);
    assert_eq!(outcome["outcome"], "ok");
    assert_eq!(outcome["rows"], 1);
    assert!(outcome["response_signature"].is_string());
    println!(
        "intent durable and statement running {} ms after the call; outcome after {} ms",
        seen_at.as_millis(),
        outcome["duration_ms"]
    );
    assert_eq!(intact(store.verify_audit().await.unwrap()), (2, vec![]));
    client.stop().await;
    hub.shutdown().await;
}

async fn a_refused_outcome_withholds_the_result_and_leaves_an_open_intent(backend: &Backend) {
    let store = &backend.store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    shop_db(&path).await;
    let (hub, _adapter, client) = site(store, "eu", vec![sqlite_config("shop", &path)]).await;
    let a = agent_of(&hub, store, "reader", None).await;

    // What a hub that stops between the two commits leaves behind.
    refuse_audit_inserts(backend, true).await;
    let message = call_error(&a, "eu_shop_query", count_query()).await;
    assert!(message.contains("result is withheld"), "{message}");
    accept_audit_inserts(backend).await;
    let tail = store.audit_tail(10).await.unwrap();
    assert_eq!(tail.len(), 1, "{tail:?}");
    assert_eq!(tail[0].record["kind"], "intent");
    assert_eq!(intact(store.verify_audit().await.unwrap()), (1, vec![1]));
    let out = backend.cli(&["audit", "verify"]);
    let text = cli_text(&out);
    assert!(
        out.status.success(),
        "an open intent is not a broken chain: {text}"
    );
    assert!(
        text.contains("intact") && text.contains("no outcome recorded (records 1)"),
        "{text}"
    );

    // The next call pairs up; the open one stays listed, as it is.
    let r = call(&a, "eu_shop_query", count_query()).await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    assert_eq!(intact(store.verify_audit().await.unwrap()), (3, vec![1]));
    let out = backend.cli(&["audit", "tail"]);
    let text = cli_text(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("#1 ") && lines[0].contains("intent allow -> no outcome recorded"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("#2 ")
            && lines[1].contains("intent allow")
            && !lines[1].contains("no outcome"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("#3 ")
            && lines[2].contains("outcome allow -> ok")
            && lines[2].contains("(intent #2)"),
        "{text}"
    );
    client.stop().await;
    hub.shutdown().await;
}

async fn verify_names_a_changed_intent_and_a_deleted_outcome(backend: &Backend) {
    let store = &backend.store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    shop_db(&path).await;
    let (hub, _adapter, client) = site(store, "eu", vec![sqlite_config("shop", &path)]).await;
    let a = agent_of(&hub, store, "reader", Some("statements = [\"read\"]")).await;
    assert!(call(&a, "eu_shop_query", count_query()).await.is_error != Some(true));
    assert!(call(&a, "eu_shop_list_tables", json!({})).await.is_error != Some(true));
    assert_eq!(
        call(
            &a,
            "eu_shop_query",
            json!({ "sql": "DELETE FROM customers" })
        )
        .await
        .is_error,
        Some(true)
    );
    assert!(call(&a, "eu_shop_query", count_query()).await.is_error != Some(true));

    // 1 intent, 2 outcome, 3 intent, 4 outcome, 5 decision, 6 intent, 7 outcome.
    let out = backend.cli(&["audit", "tail", "--json"]);
    let records: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "intent", "outcome", "intent", "outcome", "decision", "intent", "outcome"
        ]
    );
    for (intent, outcome) in [(0, 1), (2, 3), (5, 6)] {
        assert_eq!(records[outcome]["intent_seq"], records[intent]["seq"]);
        assert_eq!(records[outcome]["call_id"], records[intent]["call_id"]);
    }
    assert_eq!(records[4]["rule"], "statements");
    assert_eq!(intact(store.verify_audit().await.unwrap()), (7, vec![]));

    let broken_at = |v: Verification| match v {
        Verification::Broken {
            seq,
            reason,
            verified,
        } => (seq, verified, reason),
        v => panic!("tampering not detected: {v:?}"),
    };
    let verify_cli_names = |seq: i64| {
        let out = backend.cli(&["audit", "verify"]);
        let text = cli_text(&out);
        assert_eq!(out.status.code(), Some(3), "{text}");
        assert!(text.contains(&format!("BROKEN at record {seq}")), "{text}");
    };

    // A changed intent (3).
    let (rec3, _, _) = backend.raw_audit_row(3).await;
    let changed = rec3.replacen("eu_shop_list_tables", "eu_shop_list_tablez", 1);
    assert_ne!(changed, rec3);
    set_record(backend, 3, &changed).await;
    let (seq, verified, reason) = broken_at(store.verify_audit().await.unwrap());
    assert_eq!((seq, verified), (3, 2), "{reason}");
    assert!(reason.contains("changed"), "{reason}");
    verify_cli_names(3);
    set_record(backend, 3, &rec3).await;
    assert_eq!(intact(store.verify_audit().await.unwrap()).0, 7);

    // A deleted outcome (4), then the deleted last outcome (7).
    for seq in [4, 7] {
        let (rec, prev, hash) = backend.raw_audit_row(seq).await;
        backend
            .raw_exec(format!("DELETE FROM audit_log WHERE seq = {seq}"))
            .await;
        let (at, verified, reason) = broken_at(store.verify_audit().await.unwrap());
        assert_eq!((at, verified), (seq, seq - 1), "{reason}");
        assert!(reason.contains("missing"), "{reason}");
        verify_cli_names(seq);
        backend
            .raw_exec(format!(
                "INSERT INTO audit_log (seq, record, prev_hash, hash) \
                 VALUES ({seq}, '{}', '{prev}', '{hash}')",
                rec.replace('\'', "''")
            ))
            .await;
        assert_eq!(intact(store.verify_audit().await.unwrap()).0, 7);
    }

    // Outcome 4 re-pointed at intent 1 with every hash from 4 on
    // recomputed: the hashes check out, the pairing does not.
    let mut prev = backend.raw_audit_row(3).await.2;
    for seq in 4..=7 {
        let (mut rec, _, _) = backend.raw_audit_row(seq).await;
        if seq == 4 {
            let mut v: Value = serde_json::from_str(&rec).unwrap();
            v["intent_seq"] = json!(1);
            rec = v.to_string();
        }
        let hash = chain_hash(&prev, &rec);
        backend
            .raw_exec(format!(
                "UPDATE audit_log SET record = '{}', prev_hash = '{prev}', hash = '{hash}' \
                 WHERE seq = {seq}",
                rec.replace('\'', "''")
            ))
            .await;
        prev = hash;
    }
    let (seq, verified, reason) = broken_at(store.verify_audit().await.unwrap());
    assert_eq!((seq, verified), (4, 3), "{reason}");
    assert!(reason.contains("intent 1"), "{reason}");
    verify_cli_names(4);
    client.stop().await;
    hub.shutdown().await;
}

async fn set_record(backend: &Backend, seq: i64, record: &str) {
    backend
        .raw_exec(format!(
            "UPDATE audit_log SET record = '{}' WHERE seq = {seq}",
            record.replace('\'', "''")
        ))
        .await;
}

/// What the second commit of a sent call costs: one audit commit, alone
/// (sequential calls; concurrent ones share group commits). Printed, not
/// asserted.
async fn one_audit_commit_costs(backend: &Backend) {
    let log = AuditLog::start(backend.store.clone());
    let mut took = Vec::new();
    for i in 0..100 {
        let t = Instant::now();
        log.record(AuditRecord::started(now(), format!("c{i}")))
            .await
            .unwrap();
        took.push(t.elapsed());
    }
    took.sort();
    println!(
        "one audit commit ({} store): p50 {:?}, p90 {:?}, max {:?}",
        if is_sqlite(backend) {
            "SQLite"
        } else {
            "PostgreSQL"
        },
        took[50],
        took[90],
        took[99]
    );
    assert_eq!(intact(backend.store.verify_audit().await.unwrap()).0, 100);
}
