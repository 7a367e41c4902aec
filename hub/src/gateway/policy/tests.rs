//! Tests of the policy: every rule, the TOML errors, classification,
//! caps and redaction.

use std::time::{Duration, Instant};

use ewii_driver_core::SqlDialect;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Map, Value};

use super::*;
use serde_json::json;

fn args(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn eval(policy: &Policy, deployment: &str, tool: &str, arguments: Value) -> Decision {
    let arguments = args(arguments);
    policy.evaluate(&Call {
        deployment,
        tool,
        arguments: Some(&arguments),
        dialect: Some(SqlDialect::Postgres),
        accepts_max_bytes: true,
    })
}

fn policy(text: &str) -> Policy {
    Policy::from_toml(text).unwrap()
}

#[track_caller]
fn assert_denied(decision: &Decision, rule: Rule, needle: &str) -> String {
    match decision {
        Decision::Deny {
            rule: got, message, ..
        } => {
            assert_eq!(*got, rule, "{message}");
            let prefix = format!("agent policy rule `{rule}`:");
            assert!(message.starts_with(&prefix), "{message}");
            assert!(message.contains(needle), "{message}");
            assert!(message.contains("ewii-hub policy set"), "{message}");
            message.clone()
        }
        allow => panic!("expected a {rule} denial, got {allow:?}"),
    }
}

#[test]
fn unrestricted_allows_everything_unchanged() {
    let p = Policy::unrestricted();
    assert_eq!(p, Policy::default());
    assert_eq!(p, policy(""));
    let d = eval(&p, "eu", "my_shop_query", json!({"sql": "DROP TABLE t"}));
    assert_eq!(
        d,
        Decision::Allow {
            database: Some("my_shop".into()),
            suffix: Some("query".into()),
            statement: Some("DROP TABLE t".into()),
            class: Some(StatementKind::Ddl),
            arguments: None,
        }
    );
    assert!(eval(&p, "eu", "weird", json!({})).is_allowed());
    assert_eq!(p.summary(), "unrestricted");
}

#[test]
fn deployments_rule() {
    let p = policy(r#"deployments = ["eu", "us"]"#);
    assert!(eval(&p, "eu", "shop_list_tables", json!({})).is_allowed());
    let msg = assert_denied(
        &eval(&p, "asia", "shop_list_tables", json!({})),
        Rule::Deployments,
        "`asia` is not one of them",
    );
    assert!(
        msg.starts_with(
            "agent policy rule `deployments`: this agent may call deployments eu, us only"
        ),
        "{msg}"
    );
    assert!(
        eval(
            &policy(r#"deployments = ["*"]"#),
            "asia",
            "shop_query",
            json!({"sql": "SELECT 1"})
        )
        .is_allowed()
    );
    assert_denied(
        &eval(&policy("deployments = []"), "eu", "shop_query", json!({})),
        Rule::Deployments,
        "may call no deployment",
    );
}

#[test]
fn databases_rule() {
    let p = policy(r#"databases = ["shop", "eu.big_data"]"#);
    assert!(eval(&p, "us", "shop_describe_table", json!({"table": "t"})).is_allowed());
    assert!(eval(&p, "eu", "big_data_list_tables", json!({})).is_allowed());
    let d = eval(&p, "us", "big_data_list_tables", json!({}));
    assert_denied(
        &d,
        Rule::Databases,
        "database `big_data` of deployment `us`",
    );
    assert!(matches!(d, Decision::Deny { database: Some(db), .. } if db == "big_data"));
    assert_denied(
        &eval(&p, "eu", "crm_query", json!({"sql": "SELECT 1"})),
        Rule::Databases,
        "databases shop, eu.big_data only",
    );
    // A tool that names no database cannot be shown to be within the list.
    assert_denied(
        &eval(&p, "eu", "vacuum", json!({})),
        Rule::Databases,
        "not a standard tool",
    );
    assert!(eval(&policy(r#"databases = ["*"]"#), "eu", "vacuum", json!({})).is_allowed());
}

#[test]
fn tools_rule() {
    let p = policy(r#"tools = ["query", "list_tables", "shop_vacuum"]"#);
    assert!(eval(&p, "eu", "shop_list_tables", json!({})).is_allowed());
    assert!(eval(&p, "eu", "shop_vacuum", json!({})).is_allowed());
    assert_denied(
        &eval(&p, "eu", "shop_explain", json!({"sql": "SELECT 1"})),
        Rule::Tools,
        "tools query, list_tables, shop_vacuum only; tool `shop_explain` (explain)",
    );
    assert_denied(
        &eval(&p, "eu", "crm_vacuum", json!({})),
        Rule::Tools,
        "`crm_vacuum`",
    );
    assert!(eval(&policy(r#"tools = ["*"]"#), "eu", "crm_vacuum", json!({})).is_allowed());
    // list_tables is not tables: a suffix matches whole.
    assert_denied(
        &eval(
            &policy(r#"tools = ["list_schemas"]"#),
            "eu",
            "shop_list_tables",
            json!({}),
        ),
        Rule::Tools,
        "(list_tables)",
    );
}

#[test]
fn statements_rule() {
    let p = policy(r#"statements = ["read"]"#);
    let d = eval(
        &p,
        "eu",
        "shop_query",
        json!({"sql": "SELECT * FROM t WHERE a = $1"}),
    );
    assert!(
        matches!(
            d,
            Decision::Allow {
                class: Some(StatementKind::Read),
                ..
            }
        ),
        "{d:?}"
    );
    let d = eval(&p, "eu", "shop_query", json!({"sql": "DELETE FROM t"}));
    let msg = assert_denied(&d, Rule::Statements, "");
    assert!(
        msg.starts_with(
            "agent policy rule `statements`: this agent may run read statements only; this \
             statement is a write (DELETE)"
        ),
        "{msg}"
    );
    assert!(
        matches!(&d, Decision::Deny { statement: Some(s), .. } if s == "DELETE FROM t"),
        "{d:?}"
    );
    // Unparsable statements fail closed.
    assert_denied(
        &eval(&p, "eu", "shop_query", json!({"sql": "SELEC 1"})),
        Rule::Statements,
        "could not be classified",
    );
    // Catalog tools are reads; unknown tools are `other`.
    assert!(eval(&p, "eu", "shop_list_schemas", json!({})).is_allowed());
    assert_denied(
        &eval(&p, "eu", "shop_vacuum", json!({})),
        Rule::Statements,
        "`shop_vacuum` is not a standard tool, so its calls count as `other`",
    );
    // EXPLAIN is a read unless it runs the statement.
    assert!(eval(&p, "eu", "shop_explain", json!({"sql": "DELETE FROM t"})).is_allowed());
    assert!(
        eval(
            &p,
            "eu",
            "shop_explain",
            json!({"sql": "DELETE FROM t", "analyze": false})
        )
        .is_allowed()
    );
    assert_denied(
        &eval(
            &p,
            "eu",
            "shop_explain",
            json!({"sql": "DELETE FROM t", "analyze": true}),
        ),
        Rule::Statements,
        "EXPLAIN with analyze runs the statement, and this statement is a write (DELETE)",
    );
    assert!(
        eval(
            &p,
            "eu",
            "shop_explain",
            json!({"sql": "SELECT 1", "analyze": true})
        )
        .is_allowed()
    );
    // A missing sql argument is refused only when statements are restricted.
    assert_denied(
        &eval(&p, "eu", "shop_query", json!({})),
        Rule::Statements,
        "has no sql argument",
    );
    assert_denied(
        &eval(&p, "eu", "shop_query", json!({"sql": 3})),
        Rule::Statements,
        "has no sql argument",
    );
    let d = eval(&Policy::unrestricted(), "eu", "shop_query", json!({}));
    assert!(matches!(d, Decision::Allow { class: None, .. }), "{d:?}");
    // Several kinds, and none.
    let rw = policy(r#"statements = ["write", "read"]"#);
    assert!(
        eval(
            &rw,
            "eu",
            "shop_query",
            json!({"sql": "UPDATE t SET a = 1"})
        )
        .is_allowed()
    );
    assert_denied(
        &eval(&rw, "eu", "shop_query", json!({"sql": "DROP TABLE t"})),
        Rule::Statements,
        "read and write statements only; this statement is DDL (DROP)",
    );
    assert_denied(
        &eval(
            &policy("statements = []"),
            "eu",
            "shop_list_tables",
            json!({}),
        ),
        Rule::Statements,
        "may run no statement",
    );
}

#[test]
fn row_limit_caps_max_rows() {
    let p = policy("row_limit = 100");
    let rewritten = |d: Decision| match d {
        Decision::Allow { arguments, .. } => arguments,
        deny => panic!("denied: {deny:?}"),
    };
    let capped = rewritten(eval(
        &p,
        "eu",
        "shop_query",
        json!({"sql": "SELECT 1", "params": [1]}),
    ));
    assert_eq!(
        capped,
        Some(args(
            json!({"sql": "SELECT 1", "params": [1], "max_rows": 100})
        ))
    );
    let capped = rewritten(eval(
        &p,
        "eu",
        "shop_query",
        json!({"sql": "SELECT 1", "max_rows": 5000}),
    ));
    assert_eq!(
        capped,
        Some(args(json!({"sql": "SELECT 1", "max_rows": 100})))
    );
    let capped = rewritten(eval(
        &p,
        "eu",
        "shop_query",
        json!({"sql": "SELECT 1", "max_rows": null}),
    ));
    assert_eq!(
        capped,
        Some(args(json!({"sql": "SELECT 1", "max_rows": 100})))
    );
    // Within the limit, or not a query: forwarded unchanged.
    assert_eq!(
        rewritten(eval(
            &p,
            "eu",
            "shop_query",
            json!({"sql": "SELECT 1", "max_rows": 10})
        )),
        None
    );
    assert_eq!(
        rewritten(eval(&p, "eu", "shop_list_tables", json!({}))),
        None
    );

    // The result check, after the call.
    let result = json!({"columns": [], "rows": [[1], [2], [3]]});
    assert_eq!(rows_in(&result), Some(3));
    assert_eq!(rows_in(&json!({"rows": "x"})), None);
    let msg = row_limit_exceeded(2, 3);
    assert!(
        msg.starts_with("agent policy rule `row_limit`: this agent may receive at most 2 row(s)"),
        "{msg}"
    );
    assert!(msg.contains("held 3") && msg.contains("`offset`"), "{msg}");
}

#[test]
fn rate_limiter_allows_a_burst_then_refills() {
    let limiter = RateLimiter::new();
    let limit = RateLimit {
        calls: 3,
        per_seconds: 60,
    };
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(limiter.check("agent-a", &limit, t0), Ok(()));
    }
    let wait = limiter.check("agent-a", &limit, t0).unwrap_err();
    assert!(
        wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
        "{wait:?}"
    );
    // Other agents have their own bucket.
    assert_eq!(limiter.check("agent-b", &limit, t0), Ok(()));
    // A refused call takes nothing; one call comes back every 20 s.
    let wait = limiter
        .check("agent-a", &limit, t0 + Duration::from_secs(10))
        .unwrap_err();
    assert!(
        wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
        "{wait:?}"
    );
    assert_eq!(
        limiter.check("agent-a", &limit, t0 + Duration::from_secs(20)),
        Ok(())
    );
    assert!(
        limiter
            .check("agent-a", &limit, t0 + Duration::from_secs(20))
            .is_err()
    );
    // After a full window the whole burst is back, and no more.
    let t1 = t0 + Duration::from_secs(600);
    for _ in 0..3 {
        assert_eq!(limiter.check("agent-a", &limit, t1), Ok(()));
    }
    assert!(limiter.check("agent-a", &limit, t1).is_err());
    // A clock that goes backwards does not mint calls.
    assert!(limiter.check("agent-a", &limit, t0).is_err());

    let msg = rate_limited(&limit, Duration::from_millis(19_200));
    assert!(
        msg.starts_with("agent policy rule `rate_limit`: this agent may make at most 3 call(s) per 60 second(s); wait 20 second(s)"),
        "{msg}"
    );
    assert!(
        policy("rate_limit = { calls = 60, per_seconds = 60 }")
            .rate_limit
            .is_some()
    );
}

#[test]
fn toml_round_trips_and_summarises() {
    let text = r#"
        deployments = ["eu", "us"]
        databases = ["shop", "eu.big_data"]
        tools = ["query", "list_tables"]
        statements = ["read", "write"]
        row_limit = 100
        rate_limit = { calls = 60, per_seconds = 60 }
    "#;
    let p = policy(text);
    assert_eq!(
        p.statements,
        vec![StatementKind::Read, StatementKind::Write]
    );
    assert_eq!(
        p.summary(),
        "deployments: eu, us; databases: shop, eu.big_data; tools: query, list_tables; \
         statements: read, write; row_limit: 100; rate_limit: 60/60s"
    );
    let p = policy(
        "deployments = [\"eu\"]\nstatements = [\"read\"]\nrow_limit = 100\n[rate_limit]\ncalls = 60\nper_seconds = 60\n",
    );
    assert_eq!(
        p.summary(),
        "deployments: eu; statements: read; row_limit: 100; rate_limit: 60/60s"
    );
    assert_eq!(policy("tools = []").summary(), "tools: none");
}

#[test]
fn toml_errors_are_clear() {
    let err = Policy::from_toml("deployments = [\"eu\"]\nrow_limits = 5\n").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PolicyError::Toml { .. }));
    assert!(
        msg.contains("line 2") && msg.contains("unknown field `row_limits`"),
        "{msg}"
    );

    let msg = Policy::from_toml(r#"statements = ["read", "writes"]"#)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("unknown variant `writes`") && msg.contains("`read`"),
        "{msg}"
    );

    let msg = Policy::from_toml("rate_limit = { calls = 5, seconds = 1 }")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("unknown field `seconds`"), "{msg}");

    let msg = Policy::from_toml("row_limit = -1").unwrap_err().to_string();
    assert!(msg.contains("line 1"), "{msg}");

    assert_eq!(
        Policy::from_toml("row_limit = 0"),
        Err(PolicyError::ZeroLimit { field: "row_limit" })
    );
    assert_eq!(
        Policy::from_toml("rate_limit = { calls = 0, per_seconds = 1 }"),
        Err(PolicyError::ZeroLimit {
            field: "rate_limit.calls"
        })
    );
    let err = Policy::from_toml("rate_limit = { calls = 1, per_seconds = 0 }").unwrap_err();
    assert!(err.to_string().contains("set it to 1 or more"), "{err}");

    for (text, field, needle) in [
        (
            r#"deployments = ["EU"]"#,
            "deployments",
            "a deployment name",
        ),
        (r#"databases = ["Shop"]"#, "databases", "lowercase"),
        (
            r#"databases = ["e_u.shop"]"#,
            "databases",
            "not a deployment name",
        ),
        (r#"databases = ["eu."]"#, "databases", "empty"),
        (
            r#"tools = ["shop_query"]"#,
            "tools",
            "list \"query\" in `tools` and \"shop\"",
        ),
        (r#"tools = ["bad tool"]"#, "tools", "by suffix"),
    ] {
        let err = Policy::from_toml(text).unwrap_err();
        assert!(
            matches!(&err, PolicyError::BadEntry { field: f, .. } if *f == field),
            "{err:?}"
        );
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[test]
fn classification_is_one_dialect_and_fails_closed() {
    let kind = |sql: &str, d| classify_for_policy(sql, d).0;
    let pg = Some(SqlDialect::Postgres);
    let my = Some(SqlDialect::MySql);
    assert_eq!(
        kind("SELECT a FROM t WHERE b = $1", pg),
        StatementKind::Read
    );
    assert_eq!(kind("INSERT INTO t VALUES (1)", pg), StatementKind::Write);
    assert_eq!(kind("CREATE TABLE x (a INT)", pg), StatementKind::Ddl);
    assert_eq!(kind("SET search_path = x", pg), StatementKind::Other);
    // No dialect, or a statement that does not parse: `other`.
    assert_eq!(kind("SELECT 1", None), StatementKind::Other);
    let (k, why) = classify_for_policy("SELEC 1 FRM", pg);
    assert_eq!(k, StatementKind::Other);
    assert!(why.contains("could not be classified as postgres"), "{why}");
    assert_eq!(kind("", pg), StatementKind::Other);
    // Stacked statements: `other`, whatever they hold.
    let (k, why) = classify_for_policy("SELECT 1; DELETE FROM t", pg);
    assert_eq!(k, StatementKind::Other);
    assert!(why.contains("2 statements"), "{why}");
    // MySQL runs executable comments; PostgreSQL reads them as comments.
    assert_eq!(
        kind("SELECT 1 /*! , SLEEP(10) */", my),
        StatementKind::Other
    );
    // PostgreSQL-only syntax, in the PostgreSQL dialect.
    assert_eq!(kind("SELECT $1::int", pg), StatementKind::Read);
    // A dialect named by the tool but unknown to the hub is no dialect.
    assert_eq!(SqlDialect::from_name("mariadb"), None);
    assert_eq!(SqlDialect::from_name("mysql"), my);
}

#[test]
fn denials_carry_the_class_and_every_call_the_allowed_statements() {
    let p = policy(r#"statements = ["read"]"#);
    match eval(&p, "eu", "shop_query", json!({"sql": "DELETE FROM t"})) {
        Decision::Deny { class, .. } => assert_eq!(class, Some(StatementKind::Write)),
        allow => panic!("{allow:?}"),
    }
    assert_eq!(p.allowed_statements().names(), vec!["read"]);
    assert!(p.allowed_statements().read_only());
    assert_eq!(
        Policy::unrestricted().allowed_statements().names(),
        vec!["read", "write", "ddl", "other"]
    );
}

#[test]
fn max_bytes_is_validated_forwarded_and_cuts_results() {
    assert_eq!(
        Policy::from_toml("max_bytes = 0"),
        Err(PolicyError::ZeroLimit { field: "max_bytes" })
    );
    let p = policy("max_bytes = 100\nrow_limit = 5");
    assert_eq!(p.summary(), "row_limit: 5; max_bytes: 100");
    match eval(
        &p,
        "eu",
        "shop_query",
        json!({"sql": "SELECT 1", "max_bytes": 1000}),
    ) {
        Decision::Allow { arguments, .. } => assert_eq!(
            arguments,
            Some(args(
                json!({"sql": "SELECT 1", "max_rows": 5, "max_bytes": 100})
            ))
        ),
        deny => panic!("{deny:?}"),
    }
    // A tool that does not accept max_bytes is not sent one.
    let a = args(json!({"sql": "SELECT 1"}));
    let d = p.evaluate(&Call {
        deployment: "eu",
        tool: "shop_query",
        arguments: Some(&a),
        dialect: Some(SqlDialect::Sqlite),
        accepts_max_bytes: false,
    });
    assert!(
        matches!(&d, Decision::Allow { arguments: Some(a), .. } if !a.contains_key("max_bytes")),
        "{d:?}"
    );

    // Rows: trailing rows go until the rest fits.
    let rows: Vec<Value> = (0..10).map(|i| json!([format!("row-{i:04}")])).collect();
    let mut r = CallToolResult::structured(json!({
        "columns": [{"name": "a", "type": "text"}], "rows": rows, "row_count": 10, "offset": 4
    }));
    assert!(cap_result_bytes(&mut r, 50));
    let s = r.structured_content.as_ref().unwrap();
    // Each row is 12 bytes of JSON: 4 fit in 50.
    assert_eq!(s["rows"].as_array().unwrap().len(), 4);
    assert_eq!(s["row_count"], 4);
    assert_eq!(s["truncated"]["reason"], "max_bytes");
    assert_eq!(s["truncated"]["limit"], 50);
    assert_eq!(s["truncated"]["next_offset"], 8);
    let text: Vec<String> = r
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    assert!(
        !text[0].contains("row-0004") && text[0].contains("row-0003"),
        "{}",
        text[0]
    );
    assert!(
        text[1].starts_with("TRUNCATED: ") && text[1].contains("`max_bytes`"),
        "{}",
        text[1]
    );
    // One aggregated row over the limit: withheld, with the notice.
    let big = "x".repeat(10_000);
    let mut r = CallToolResult::structured(
        json!({"columns": [], "rows": [[big]], "row_count": 1, "offset": 0}),
    );
    assert!(cap_result_bytes(&mut r, 100));
    let s = r.structured_content.as_ref().unwrap();
    assert_eq!(s["rows"], json!([]));
    assert!(
        s["truncated"]["message"]
            .as_str()
            .unwrap()
            .contains("alone is")
    );
    assert!(
        r.content
            .iter()
            .all(|c| c.as_text().is_none_or(|t| t.text.len() < 1000))
    );
    // Under the limit: untouched.
    let mut r = CallToolResult::structured(
        json!({"columns": [], "rows": [[1]], "row_count": 1, "offset": 0}),
    );
    assert!(!cap_result_bytes(&mut r, 100));
    // No rows, over the limit: withheld. Text only: cut.
    let mut r = CallToolResult::structured(json!({"plan": big}));
    assert!(cap_result_bytes(&mut r, 100));
    assert_eq!(r.is_error, Some(true));
    assert!(r.structured_content.is_none());
    let mut r = CallToolResult::error(vec![ContentBlock::text("é".repeat(100))]);
    assert!(cap_result_bytes(&mut r, 51));
    assert_eq!(r.content[0].as_text().unwrap().text.len(), 50);
}

#[test]
fn redact_literals_keeps_names_and_placeholders() {
    let r = redact_literals(
        "SELECT name, 42 AS n FROM users WHERE email = 'alice@example.com' AND age > 30.5 \
         AND id = $1 -- secret comment",
    );
    assert!(
        !r.contains("alice") && !r.contains("42") && !r.contains("30.5"),
        "{r}"
    );
    assert!(!r.contains("secret"), "{r}");
    assert!(
        r.contains("users") && r.contains("email") && r.contains("name"),
        "{r}"
    );
    assert!(r.contains("$1"), "{r}");
    assert_eq!(
        redact_literals("INSERT INTO t (a, b) VALUES (?, 'x')"),
        "INSERT INTO t (a, b) VALUES (?, ?)"
    );
    let r = redact_literals("SELECT * FROM t WHERE d > DATE '2024-01-01' AND s = E'x\\ny'");
    assert!(!r.contains("2024") && !r.contains("x\\ny"), "{r}");
    // MySQL reads "secret" as a string; it is redacted whatever the engine.
    let r = redact_literals(r#"SELECT * FROM "Users" WHERE password = "hunter2""#);
    assert!(!r.contains("hunter2") && r.contains("\"Users\""), "{r}");
    // Literals outside expressions are caught by the token pass.
    let r = redact_literals("ALTER USER bob WITH PASSWORD 'hunter2'");
    assert!(!r.contains("hunter2"), "{r}");
    let r = redact_literals("SELECT 1; DELETE FROM t WHERE id = 7");
    assert!(r.contains("DELETE FROM t") && !r.contains('7'), "{r}");
    assert_eq!(redact_literals("SELEC 'x' FRM"), UNPARSABLE_REDACTED);
}

#[test]
fn split_tool_finds_the_suffix() {
    assert_eq!(split_tool("shop_query"), Some(("shop", "query")));
    assert_eq!(
        split_tool("big_data_list_tables"),
        Some(("big_data", "list_tables"))
    );
    assert_eq!(
        split_tool("my_list_list_schemas"),
        Some(("my_list", "list_schemas"))
    );
    assert_eq!(
        split_tool("a_b_describe_table"),
        Some(("a_b", "describe_table"))
    );
    assert_eq!(split_tool("query_explain"), Some(("query", "explain")));
    assert_eq!(split_tool("x_query_query"), Some(("x_query", "query")));
    assert_eq!(split_tool("shop_tables"), None);
    assert_eq!(split_tool("list_tables"), None);
    assert_eq!(split_tool("_list_tables"), None);
    assert_eq!(split_tool("_query"), None);
    assert_eq!(split_tool("shopquery"), None);
    assert_eq!(split_tool("shop_vacuum"), None);
}

#[test]
fn rules_display_as_policy_fields() {
    let names: Vec<String> = [
        Rule::Deployments,
        Rule::Databases,
        Rule::Tools,
        Rule::Statements,
        Rule::RowLimit,
        Rule::RateLimit,
    ]
    .iter()
    .map(|r| r.to_string())
    .collect();
    assert_eq!(
        names,
        [
            "deployments",
            "databases",
            "tools",
            "statements",
            "row_limit",
            "rate_limit"
        ]
    );
    assert_eq!(Rule::RowLimit.as_str(), "row_limit");
    assert_eq!(
        serde_json::to_value(Rule::RateLimit).ok(),
        Some(json!("rate_limit"))
    );
}
