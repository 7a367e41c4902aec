//! Nothing from before a revoke, and nothing an agent sends, can forge
//! what the hub trusts or tells: an enrolment token issued before
//! `revoke --deployment` cannot undo it, and a tool name or argument with
//! line breaks cannot forge a record in the SIEM's syslog stream. Real hub,
//! real QUIC tunnel, real adapter, rmcp agents, a real TCP syslog receiver;
//! on SQLite and PostgreSQL hub stores alike.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant, SystemTime};

use ewii_client::client::ClientError;
use ewii_conformance::adapter::TestAdapter;
use ewii_conformance::agent::{Agent, STEP, agent, call, text_of, wait_for_tools};
use ewii_conformance::client::{enrol_client, start_client};
use ewii_conformance::db::Backend;
use ewii_conformance::hub::{start_hub, wait_registered};
use ewii_conformance::sample::count_query;
use ewii_conformance::suite;
use ewii_conformance::svid::issue_svid;
use ewii_hub::audit::export::{SinkConfig, breaks_lines};
use rmcp::model::{CallToolRequestParams, ErrorCode};
use serde_json::{Value, json};

suite!(
    a_token_issued_before_a_revoke_cannot_undo_it,
    forged_tool_names_and_arguments_give_one_syslog_record_per_call,
);

fn now() -> SystemTime {
    SystemTime::now()
}

/// Waits for the agent to see `tool`, then calls it with a count query and
/// returns the row count.
async fn count_through(a: &Agent, tool: &str) -> Value {
    wait_for_tools(a, |n| n.iter().any(|t| t == tool)).await;
    let r = call(a, tool, count_query()).await;
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    r.structured_content.unwrap()["rows"].clone()
}

// -- item 6: revocation cannot be undone by an old token ----------------------

async fn a_token_issued_before_a_revoke_cannot_undo_it(backend: &Backend) {
    let store = &backend.store;
    store.create_workspace("acme", None, now()).await.unwrap();
    let ttl = Duration::from_secs(600);
    let (dep, first) = store
        .create_deployment("acme", "eu", ttl, now())
        .await
        .unwrap();
    // A spare token, issued before the revoke and never used: the one an
    // attacker (or a stale compose file) would hold.
    let spare = store
        .issue_enrolment_token("acme", "eu", ttl, now())
        .await
        .unwrap();
    let (_, credential) = store.create_agent("acme", "bot", now()).await.unwrap();
    let hub = start_hub(store, |_| {}).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let state = tempfile::tempdir().unwrap();
    let client = enrol_client(&hub, &adapter, state.path(), first.token.expose())
        .await
        .expect("the first token enrols");
    wait_registered(&hub, "acme", "eu").await;
    let a = agent(&hub.mcp_url(), credential.expose()).await;
    assert_eq!(count_through(&a, "eu_shop_query").await, json!([[10]]));

    // Revoke from the CLI: the spare token dies with it, in the revoke's
    // transaction.
    let live = hub.state.registry.find("acme", "eu").unwrap();
    let out = backend.cli_json(&[
        "--json",
        "revoke",
        "--workspace",
        "acme",
        "--deployment",
        "eu",
    ]);
    assert_eq!(out["deployment"], "eu");
    assert_eq!(out["tokens_revoked"], 1, "{out}");
    tokio::time::timeout(STEP, live.tunnel.closed())
        .await
        .expect("the revoked tunnel stayed open");
    client.stop().await;

    // The token from before the revoke: refused, with the reason and the
    // next step.
    let state2 = tempfile::tempdir().unwrap();
    let err = enrol_client(&hub, &adapter, state2.path(), spare.token.expose())
        .await
        .err()
        .expect("a token issued before the revoke brought the deployment back");
    match &err {
        ClientError::Refused { reason, message } => {
            assert_eq!(reason, "token_revoked", "{err}");
            assert!(
                message.contains("ewii-hub deployment token --workspace acme eu"),
                "{message}"
            );
            assert!(message.contains("revoked"), "{message}");
        }
        other => panic!("not a refusal: {other}"),
    }
    // Nothing changed: still revoked, not registered, the token not spent
    // (it is refused the same way again, not as already used).
    let revoked = store.revocation_state().await.unwrap();
    assert!(revoked.spiffe_ids.contains(&dep.spiffe_id.to_string()));
    assert!(hub.state.registry.find("acme", "eu").is_none());
    let again = store
        .consume_enrolment_token(spare.token.expose(), now())
        .await
        .unwrap_err();
    assert_eq!(again.reason(), "token_revoked", "{again}");
    assert!(
        state2.path().read_dir().unwrap().all(|e| {
            let name = e.unwrap().file_name();
            !name.to_string_lossy().starts_with("svid")
        }),
        "an SVID was written for a refused token"
    );

    // A token issued after the revoke, by the CLI: the deployment is back
    // and a call goes through.
    let issued = backend.cli_json(&["--json", "deployment", "token", "--workspace", "acme", "eu"]);
    let token = issued["enrolment_token"].as_str().unwrap().to_owned();
    let state3 = tempfile::tempdir().unwrap();
    let client3 = enrol_client(&hub, &adapter, state3.path(), &token)
        .await
        .expect("a token issued after the revoke brings the deployment back");
    wait_registered(&hub, "acme", "eu").await;
    assert!(
        !store
            .revocation_state()
            .await
            .unwrap()
            .spiffe_ids
            .contains(&dep.spiffe_id.to_string())
    );
    assert_eq!(count_through(&a, "eu_shop_query").await, json!([[10]]));
    // The revoke of before cannot be undone twice either: the old spare
    // token is still refused now that the deployment is back.
    let still = store
        .consume_enrolment_token(spare.token.expose(), now())
        .await
        .unwrap_err();
    assert_eq!(still.reason(), "token_revoked");

    a.cancel().await.ok();
    client3.stop().await;
    hub.shutdown().await;
}

// -- item 7: the SIEM stream cannot be forged ---------------------------------

const FORGED: &str = "eu_x\r\n<110>1 2026-01-01T00:00:00Z forged ewii - - - decision=allow";

/// A call whose tool name breaks the naming rule: a JSON-RPC
/// invalid-params error that echoes at most a short, escaped excerpt.
async fn refused_name(a: &Agent, name: &str) -> String {
    let err = tokio::time::timeout(
        STEP,
        a.call_tool(CallToolRequestParams::new(name.to_owned())),
    )
    .await
    .expect("tools/call timed out")
    .expect_err("a malformed tool name was accepted");
    let rmcp::service::ServiceError::McpError(e) = err else {
        panic!("not a JSON-RPC error: {err}")
    };
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
    let message = e.message.to_string();
    assert!(message.starts_with("unknown tool '"), "{message}");
    assert!(message.len() < 400, "{} bytes echoed", message.len());
    assert!(!message.chars().any(breaks_lines), "{message:?}");
    message
}

/// Reads octet-counted frames (RFC 6587 §3.4.1) until `n` have arrived,
/// then for one more second to make sure no more come.
async fn syslog_frames(conn: &mut tokio::net::TcpStream, n: usize) -> Vec<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let deadline = Instant::now() + STEP;
    loop {
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp])
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("bad frame length in {:?}", &buf[..sp]));
            if buf.len() < sp + 1 + len {
                break;
            }
            frames.push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
            buf.drain(..sp + 1 + len);
        }
        let wait = if frames.len() >= n {
            Duration::from_secs(1)
        } else {
            assert!(
                Instant::now() < deadline,
                "{} of {n} syslog frames: {frames:?}",
                frames.len()
            );
            deadline - Instant::now()
        };
        let mut chunk = [0u8; 65536];
        match tokio::time::timeout(wait, conn.read(&mut chunk)).await {
            Ok(Ok(0)) => panic!("syslog connection closed after {} frames", frames.len()),
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Ok(Err(e)) => panic!("syslog read: {e}"),
            Err(_) if frames.len() >= n => break,
            Err(_) => {}
        }
    }
    assert!(buf.is_empty(), "bytes after the last frame: {buf:?}");
    frames
}

async fn forged_tool_names_and_arguments_give_one_syslog_record_per_call(backend: &Backend) {
    let store = &backend.store;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spec = format!("syslog+tcp://{}", listener.local_addr().unwrap());
    let sink = SinkConfig::parse(&spec).unwrap();
    store.create_workspace("acme", None, now()).await.unwrap();
    store
        .create_deployment("acme", "eu", Duration::from_secs(600), now())
        .await
        .unwrap();
    let (_, credential) = store.create_agent("acme", "bot", now()).await.unwrap();
    let hub = start_hub(store, |o| o.audit_export = vec![sink]).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let client = start_client(&hub, issue_svid(store, "acme", "eu").await, &adapter);
    let a = agent(&hub.mcp_url(), credential.expose()).await;
    wait_for_tools(&a, |n| n.iter().any(|t| t == "eu_shop_query")).await;

    // 1. CR/LF and a forged record in the name.
    let m = refused_name(&a, FORGED).await;
    assert!(m.contains("eu_x\\u000d\\u000a<110>1"), "{m}");
    // 2. A name of 1 MiB.
    let huge = format!("eu_{}", "a".repeat(1 << 20));
    let m = refused_name(&a, &huge).await;
    assert!(m.contains(&format!("({} bytes)", huge.len())), "{m}");
    // 3. Unicode line separators, NEL, DEL, and one character too many.
    refused_name(&a, "eu_shop\u{2028}query\u{85}\u{7f}").await;
    refused_name(&a, &format!("eu_{}", "q".repeat(62))).await;
    // 4. A legitimate name whose arguments (statement and parameter) carry
    // CR/LF, U+2028, `]` and `"`, and a forged record.
    let nasty = format!("x\r\n]\"\\\u{2028}\u{2029}\u{85}{FORGED}");
    let r = call(
        &a,
        "eu_shop_query",
        json!({
            "sql": "SELECT count(*) AS n FROM customers\r\nWHERE name <> ? -- ]\"\u{2028}",
            "params": [nasty],
        }),
    )
    .await;
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    // 5. A plain call.
    assert_eq!(count_through(&a, "eu_shop_query").await, json!([[10]]));
    const CALLS: usize = 6;

    let (mut conn, _) = tokio::time::timeout(STEP, listener.accept())
        .await
        .unwrap()
        .unwrap();
    // Two calls crossed the tunnel: each has an intent record before its
    // outcome. Every call has exactly one final record (MSGID `tool_call`).
    const RECORDS: usize = CALLS + 2;
    let frames = syslog_frames(&mut conn, RECORDS).await;
    assert_eq!(
        frames.len(),
        RECORDS,
        "one record per audit record: {frames:#?}"
    );
    let mut tools = Vec::new();
    let mut finals = Vec::new();
    let mut open_intent: Option<String> = None;
    for (i, frame) in frames.iter().enumerate() {
        // One line, one record: `<PRI>1 ` at the start and nowhere a line
        // could begin.
        assert!(!frame.chars().any(breaks_lines), "frame {i}: {frame:?}");
        let (pri, rest) = frame
            .strip_prefix('<')
            .and_then(|f| f.split_once('>'))
            .unwrap_or_else(|| panic!("frame {i}: {frame}"));
        assert!(
            pri.parse::<u8>().is_ok_and(|p| p == 109 || p == 110),
            "{frame}"
        );
        assert!(rest.starts_with("1 "), "{frame}");
        assert!(frame.len() < 8192, "frame {i} has {} bytes", frame.len());
        let msgid = rest.split(' ').nth(5).unwrap_or_default();
        let json_at = frame.find('\u{feff}').expect("BOM before the JSON message") + 3;
        let body: Value = serde_json::from_str(&frame[json_at..]).unwrap();
        assert_eq!(body["seq"], i as i64 + 1, "{frame}");
        let decision = body["decision"].as_str().unwrap();
        assert_eq!(pri == "110", decision == "allow", "{frame}");
        let call_id = body["call_id"].as_str().unwrap().to_owned();
        assert!(
            frame.contains(&format!("call_id=\"{call_id}\"")),
            "the call id is in the structured data: {frame}"
        );
        if body["kind"] == "intent" {
            assert_eq!(msgid, "tool_call_intent", "{frame}");
            assert!(open_intent.replace(call_id).is_none(), "two open intents");
            continue;
        }
        assert_eq!(msgid, "tool_call", "{frame}");
        if body["kind"] == "outcome" {
            assert_eq!(
                open_intent.take(),
                Some(call_id),
                "outcome follows its intent"
            );
        }
        tools.push(body["tool"].as_str().unwrap().to_owned());
        finals.push(body);
    }
    assert_eq!(finals.len(), CALLS, "exactly one final record per call");
    // The refused names are recorded as short escaped excerpts, denied by
    // the naming rule; the legitimate call's arguments read back intact.
    for (i, tool) in tools.iter().enumerate().take(4) {
        assert!(
            tool.len() < 100,
            "record {i} stores {} bytes of name",
            tool.len()
        );
        assert!(!tool.chars().any(breaks_lines), "{tool:?}");
    }
    assert!(
        tools[0].starts_with("eu_x\\u000d\\u000a<110>1"),
        "{}",
        tools[0]
    );
    assert!(tools[1].ends_with(&format!("({} bytes)", huge.len())));
    assert_eq!(tools[4], "eu_shop_query");
    let stored = store.audit_after(0, 100).await.unwrap();
    assert_eq!(stored.len(), RECORDS);
    for r in &stored[..4] {
        let rec = &r.record;
        assert_eq!(rec["decision"], "deny", "{rec}");
        assert_eq!(rec["rule"], "tool_name", "{rec}");
        assert!(rec.to_string().len() < 4096, "a refused call stored {rec}");
    }
    let legit = &stored[5].record;
    assert_eq!(legit["kind"], "outcome", "{legit}");
    assert_eq!(legit["params"], json!([nasty]), "{legit}");
    assert_eq!(finals[4]["params"], json!([nasty]));
    assert!(matches!(
        store.verify_audit().await.unwrap(),
        ewii_hub::state::store::Verification::Intact { .. }
    ));

    a.cancel().await.ok();
    client.stop().await;
    hub.shutdown().await;
}
