//! The operator's fence holds at the engine (issue #12, items 1–4), end to
//! end: agent → hub → QUIC tunnel → client → adapter → real PostgreSQL and
//! MariaDB databases attached read-WRITE, on SQLite and PostgreSQL hub
//! stores alike.
//!
//! - A read-only agent (`statements = ["read"]`) runs a corpus of parser
//!   differentials; the data fingerprints never change, each statement is
//!   denied at the hub or runs read-only, and the audit class is the class
//!   that was enforced.
//! - User-defined functions that delete rows fail inside the engine.
//! - Advisory locks taken in a call are not held after it.
//! - An aggregated row over the agent's `max_bytes` is cut with a notice.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::SystemTime;

use ewii_conformance::adapter::TestAdapter;
use ewii_conformance::agent::{Agent, agent, call, text_of};
use ewii_conformance::client::TestClient;
use ewii_conformance::db::{Backend, ServerDatabase, server_url, with_database};
use ewii_conformance::hub::start_hub;
use ewii_conformance::site::{agent_credential, deploy};
use ewii_conformance::suite;
use ewii_driver_core::{DatabaseConfig, Limits, SecretString};
use ewii_hub::Store;
use ewii_hub::gateway::serve::RunningHub;
use rmcp::model::CallToolResult;
use serde_json::{Value, json};
use sqlx::{Connection as _, Row as _};

suite!(
    read_only_agent_cannot_write_through_parser_differentials,
    advisory_locks_do_not_outlive_a_call,
    aggregated_row_over_max_bytes_is_cut,
);

fn now() -> SystemTime {
    SystemTime::now()
}

/// A fresh PostgreSQL database owned by the test user (not a superuser),
/// dropped when this is dropped.
struct PgTarget {
    /// The database, made with the test user's URL.
    database: ServerDatabase,
    /// The same database, reached as the superuser.
    admin: String,
}

const PG_SETUP: &str = r#"
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO items SELECT g, 'item ' || g || ' ' || repeat('x', 40) FROM generate_series(1, 50) g;
CREATE SEQUENCE seq;
CREATE TABLE log (id serial PRIMARY KEY, note text);
CREATE FUNCTION wipe() RETURNS bigint LANGUAGE sql AS 'WITH d AS (DELETE FROM items RETURNING 1) SELECT count(*) FROM d';
CREATE FUNCTION wipe_pl() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM items; RETURN 1; END $$;
CREATE FUNCTION bump() RETURNS bigint LANGUAGE sql AS 'SELECT nextval(''seq'')';
CREATE FUNCTION take_lock() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_lock(4242); PERFORM pg_advisory_lock_shared(4243); RETURN pg_try_advisory_lock(4244); END $$;
CREATE FUNCTION wipe_proc() RETURNS void LANGUAGE sql AS 'DELETE FROM items';
CREATE PROCEDURE wipe_call() LANGUAGE sql AS 'DELETE FROM items';
CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM items;
DO $$ BEGIN FOR i IN 1..40 LOOP EXECUTE format('CREATE TABLE wide_table_with_a_long_name_%s (a int)', i); END LOOP; END $$;
"#;

impl PgTarget {
    async fn create() -> Option<PgTarget> {
        let admin = server_url("EWII_TEST_POSTGRES_ADMIN_URL", true)?;
        let user_url = server_url("EWII_TEST_POSTGRES_URL", true)?;
        let database = ServerDatabase::create(&user_url, "ewii_fence")
            .await
            .unwrap();
        let mut c = sqlx::PgConnection::connect(database.url()).await.unwrap();
        sqlx::raw_sql(PG_SETUP).execute(&mut c).await.unwrap();
        c.close().await.ok();
        Some(PgTarget {
            admin: with_database(&admin, database.name()),
            database,
        })
    }

    fn config(&self, name: &str, read_only: bool) -> DatabaseConfig {
        DatabaseConfig {
            name: name.into(),
            driver: "postgres".into(),
            url: SecretString::new(self.database.url().to_owned()),
            read_only,
            limits: Limits::default(),
        }
    }

    /// Rows, content hash, sequence state, large objects, relations,
    /// functions and advisory locks of the database, seen by the superuser.
    async fn fingerprint(&self) -> String {
        let mut c = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM items)::text || '/' || \
                    (SELECT coalesce(sum(hashtext(i::text)), 0) FROM items i)::text || '/' || \
                    (SELECT last_value::text || is_called::text FROM seq) || '/' || \
                    (SELECT count(*) FROM log)::text || '/' || \
                    (SELECT count(*) FROM pg_largeobject_metadata)::text || '/' || \
                    (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace)::text || '/' || \
                    (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace)::text || '/' || \
                    (SELECT count(*) FROM pg_prepared_xacts)::text",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        c.close().await.ok();
        row.get(0)
    }

    /// Advisory locks held in this database by anyone.
    async fn advisory_locks(&self) -> i64 {
        let mut c = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        c.close().await.ok();
        n
    }
}

/// A fresh MariaDB database of the test user, dropped when this is dropped.
struct MariaTarget {
    _database: ServerDatabase,
    url: String,
    lock: String,
}

impl MariaTarget {
    async fn create() -> Option<MariaTarget> {
        let user_url = server_url("EWII_TEST_MARIADB_URL", true)?;
        let database = ServerDatabase::create(&user_url, "ewii_fence")
            .await
            .unwrap();
        let url = database.url().to_owned();
        let lock = format!("{}_lock", database.name());
        let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
        for sql in [
            "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL) ENGINE=InnoDB"
                .to_owned(),
            "INSERT INTO items SELECT seq, CONCAT('item ', seq, ' ', REPEAT('x', 40)) FROM seq_1_to_50"
                .to_owned(),
            "CREATE SEQUENCE seq".to_owned(),
            "CREATE FUNCTION wipe() RETURNS INT MODIFIES SQL DATA BEGIN DELETE FROM items; RETURN 1; END"
                .to_owned(),
            "CREATE PROCEDURE wipe_call() MODIFIES SQL DATA DELETE FROM items".to_owned(),
            format!(
                "CREATE FUNCTION take_lock() RETURNS INT NO SQL RETURN GET_LOCK('{lock}', 0)"
            ),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap();
        }
        c.close().await.ok();
        Some(MariaTarget {
            _database: database,
            url,
            lock,
        })
    }

    fn config(&self, name: &str, read_only: bool) -> DatabaseConfig {
        DatabaseConfig {
            name: name.into(),
            driver: "mariadb".into(),
            url: SecretString::new(self.url.clone()),
            read_only,
            limits: Limits::default(),
        }
    }

    async fn fingerprint(&self) -> String {
        let mut c = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
        let checksum = sqlx::query("CHECKSUM TABLE items")
            .fetch_one(&mut c)
            .await
            .unwrap();
        let checksum: Option<i64> = checksum.try_get(1).ok();
        let row = sqlx::query(
            "SELECT CONCAT((SELECT count(*) FROM items), '/', \
                    (SELECT next_not_cached_value FROM seq), '/', \
                    (SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()), '/', \
                    (SELECT count(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()))",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        let rest: String = row.try_get(0).unwrap();
        c.close().await.ok();
        format!("{checksum:?}/{rest}")
    }

    /// Whether the test's user lock is free (nobody holds it).
    async fn lock_is_free(&self) -> bool {
        let mut c = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
        let free: Option<i64> = sqlx::query_scalar("SELECT IS_FREE_LOCK(?)")
            .bind(&self.lock)
            .fetch_one(&mut c)
            .await
            .unwrap();
        c.close().await.ok();
        free == Some(1)
    }
}

/// A hub with workspace `acme` and deployment `site`, whose adapter serves
/// `databases`.
struct Site {
    hub: RunningHub,
    _adapter: TestAdapter,
    client: TestClient,
}

async fn site(store: &Store, databases: Vec<DatabaseConfig>) -> Site {
    assert!(
        ewii_driver_core::find_driver("mariadb").is_ok()
            && ewii_adapter::drivers::BUILT_IN.contains(&"mysql"),
        "the mysql driver is not linked into this test"
    );
    store.create_workspace("acme", None, now()).await.unwrap();
    let hub = start_hub(store, |_| {}).await;
    let adapter = TestAdapter::start(databases).await;
    let d = deploy(store, &hub, "acme", "site", adapter).await;
    Site {
        hub,
        _adapter: d.adapter,
        client: d.client,
    }
}

fn denied_by_hub(r: &CallToolResult) -> bool {
    r.is_error == Some(true) && text_of(r).contains("agent policy rule `statements`")
}

async fn last_record(store: &Store) -> Value {
    store.audit_tail(1).await.unwrap().pop().unwrap().record
}

/// Statements on which PostgreSQL and sqlparser disagree, or that
/// sqlparser cannot parse, or that write in ways a parser does not see.
const PG_CORPUS: &[&str] = &[
    // comment nesting
    "SELECT count(*) FROM items /* /* */ WHERE id > 0 */",
    "/* /* */ DELETE FROM items /* */ */ SELECT 1",
    "DELETE FROM items /* /* */ WHERE false */",
    "SELECT 1 /* /* */ ; DELETE FROM items; /* */ */",
    "SELECT 1 /* */ ; DELETE FROM items",
    "SELECT 1 -- ; DELETE FROM items",
    // dollar quoting
    "DO $$ BEGIN DELETE FROM items; END $$",
    "DO $x$ BEGIN DELETE FROM items; END $x$",
    "SELECT $$;DELETE FROM items;$$",
    "SELECT $tag$ ' $tag$, 1; DELETE FROM items",
    // escapes
    "SELECT U&'\\0041' AS a",
    "SELECT U&'d\\0061t\\+000061' UESCAPE '\\'",
    "SELECT E'\\''; DELETE FROM items; --'",
    "SELECT 'a\\'; DELETE FROM items; --'",
    // stacked and transaction control
    "SELECT 1; DELETE FROM items",
    "BEGIN; DELETE FROM items; COMMIT",
    "COMMIT",
    "SET transaction_read_only = off",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "SET search_path = pg_temp",
    // engine syntax
    "COPY items TO STDOUT",
    "COPY (SELECT 1) TO PROGRAM 'true'",
    "CALL wipe_call()",
    "WITH d AS (DELETE FROM items RETURNING id) SELECT count(*) FROM d",
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    "SELECT * FROM items FOR UPDATE",
    "SELECT * FROM items FOR NO KEY UPDATE SKIP LOCKED",
    "LOCK TABLE items IN ACCESS EXCLUSIVE MODE",
    "TABLE items",
    "VALUES (1), (2)",
    "PREPARE p AS DELETE FROM items",
    "EXECUTE p",
    "SELECT * INTO copied FROM items",
    "CREATE TEMP TABLE tt AS SELECT 1",
    "TRUNCATE items",
    "REFRESH MATERIALIZED VIEW mv",
    "NOTIFY ch, 'x'",
    "LISTEN ch",
    "VACUUM items",
    "ANALYZE items",
    "EXPLAIN ANALYZE DELETE FROM items",
    "INSERT INTO log (note) VALUES ('x')",
    "MERGE INTO items t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN DELETE",
    // functions the classifier reads as reads, and ones on the deny-list
    "SELECT wipe()",
    "SELECT wipe_pl()",
    "SELECT * FROM wipe()",
    "SELECT (SELECT wipe())",
    "SELECT 1 WHERE EXISTS (SELECT wipe_pl())",
    "SELECT wipe_proc()",
    "SELECT bump()",
    "SELECT nextval('seq')",
    "SELECT setval('seq', 99)",
    "SELECT lo_create(0)",
    "SELECT lo_from_bytea(0, 'x')",
    "SELECT lo_import('/etc/hostname')",
    "SELECT pg_logical_emit_message(false, 'ewii', 'x')",
    "SELECT pg_stat_reset()",
    "SELECT txid_current()",
    "SELECT set_config('search_path', 'pg_temp', false)",
    "SELECT dblink_exec('dbname=postgres', 'SELECT 1')",
];

/// The same for MariaDB.
const MARIA_CORPUS: &[&str] = &[
    // executable comments
    "SELECT 1 /*! ; DELETE FROM items */",
    "SELECT 1 /*M! , wipe() */",
    "SELECT 1 /*!50000 , wipe() */",
    "SELECT 1 /*!99999 , wipe() */",
    "SELECT * FROM items /*M!100000 INTO OUTFILE '/tmp/ewii_fence_out' */",
    // comments
    "SELECT 1 # ; DELETE FROM items",
    "SELECT 1 --; DELETE FROM items",
    "SELECT 1 -- ; DELETE FROM items",
    "SELECT 1 /* */; DELETE FROM items",
    // backslash escapes hiding a quote
    "SELECT 'a\\'; DELETE FROM items; -- '",
    "SELECT \"a\\\"; DELETE FROM items; -- \"",
    "SELECT 'a\\\\'; DELETE FROM items; -- '",
    // stacked, transactions, session
    "SELECT 1; DELETE FROM items",
    "SET SESSION TRANSACTION READ WRITE",
    "SET @x = (SELECT wipe())",
    "SELECT 1 INTO @v",
    "COMMIT",
    "XA START 'ewii'",
    // engine syntax
    "HANDLER items OPEN",
    "HANDLER items READ FIRST",
    "CALL wipe_call()",
    "DO wipe()",
    "PREPARE s FROM 'DELETE FROM items'",
    "EXECUTE s",
    "SELECT * FROM items FOR UPDATE",
    "SELECT * FROM items LOCK IN SHARE MODE",
    "LOCK TABLES items WRITE",
    "TABLE items",
    "VALUES (1), (2)",
    "REPLACE INTO items VALUES (1, 'x')",
    "INSERT INTO items VALUES (1000, 'x')",
    "DELETE FROM items",
    "SELECT * FROM items INTO OUTFILE '/tmp/ewii_fence_out2'",
    "LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE items",
    "CREATE TEMPORARY TABLE tt (a INT)",
    "FLUSH TABLES",
    "OPTIMIZE TABLE items",
    // functions
    "SELECT wipe()",
    "SELECT id FROM items WHERE id = 1 UNION SELECT wipe()",
    "SELECT BENCHMARK(1, wipe())",
    "SELECT NEXTVAL(seq)",
    "SELECT NEXT VALUE FOR seq",
    "SELECT SETVAL(seq, 99)",
    "SELECT GET_LOCK('ewii_fence_corpus', 0)",
    "SELECT SLEEP(0)",
];

/// Runs `corpus` on `tool` as `agent`; after each statement the
/// fingerprint must be unchanged and the audit record must carry the class
/// that was enforced. Returns (denied at the hub, refused by the adapter
/// or the engine, ran read-only).
async fn run_corpus<F, Fut>(
    store: &Store,
    agent: &Agent,
    tool: &str,
    corpus: &[&str],
    fingerprint: F,
) -> (usize, usize, usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let before = fingerprint().await;
    let (mut denied, mut refused, mut ran) = (0, 0, 0);
    for sql in corpus {
        let r = call(agent, tool, json!({ "sql": sql })).await;
        let rec = last_record(store).await;
        assert_eq!(rec["tool"], tool, "{sql}: {rec}");
        assert_eq!(rec["statement"], *sql, "{sql}: {rec}");
        if denied_by_hub(&r) {
            denied += 1;
            assert_eq!(rec["decision"], "deny", "{sql}: {rec}");
            assert_eq!(rec["rule"], "statements", "{sql}: {rec}");
            let class = rec["statement_class"]
                .as_str()
                .unwrap_or_else(|| panic!("{sql}: a denial records the class it refused: {rec}"));
            assert_ne!(class, "read", "{sql}: a read was denied: {rec}");
        } else {
            // Forwarded: the hub's one classification said read, and the
            // adapter ran it (read-only) or refused it.
            assert_eq!(rec["decision"], "allow", "{sql}: {rec}");
            assert_eq!(rec["statement_class"], "read", "{sql}: {rec}");
            if r.is_error == Some(true) {
                refused += 1;
            } else {
                ran += 1;
            }
        }
        assert_eq!(
            fingerprint().await,
            before,
            "{tool}: `{sql}` changed the data ({})",
            text_of(&r)
        );
    }
    (denied, refused, ran)
}

async fn read_only_agent_cannot_write_through_parser_differentials(backend: &Backend) {
    let Some(pg) = PgTarget::create().await else {
        return;
    };
    let Some(maria) = MariaTarget::create().await else {
        return;
    };
    let store = &backend.store;
    let s = site(
        store,
        vec![pg.config("pg", false), maria.config("maria", false)],
    )
    .await;
    let reader = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "reader", Some("statements = [\"read\"]")).await,
    )
    .await;

    assert!(PG_CORPUS.len() + MARIA_CORPUS.len() >= 80);
    let pg_counts = run_corpus(store, &reader, "site_pg_query", PG_CORPUS, || {
        pg.fingerprint()
    })
    .await;
    let maria_counts = run_corpus(store, &reader, "site_maria_query", MARIA_CORPUS, || {
        maria.fingerprint()
    })
    .await;
    println!(
        "postgres corpus of {}: {pg_counts:?} (denied at the hub, refused by adapter or engine, \
         ran read-only); mariadb corpus of {}: {maria_counts:?}",
        PG_CORPUS.len(),
        MARIA_CORPUS.len()
    );

    // A user-defined function that deletes: the classifier sees a read, the
    // engine refuses it.
    let r = call(&reader, "site_pg_query", json!({"sql": "SELECT wipe_pl()"})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(
        text_of(&r).contains("read-only transaction"),
        "{}",
        text_of(&r)
    );
    let r = call(&reader, "site_maria_query", json!({"sql": "SELECT wipe()"})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text_of(&r).contains("READ ONLY"), "{}", text_of(&r));
    // Reads still run.
    let r = call(
        &reader,
        "site_pg_query",
        json!({"sql": "SELECT count(*) FROM items"}),
    )
    .await;
    assert_eq!(r.structured_content.unwrap()["rows"][0][0], 50);

    // The same functions do delete for an agent allowed to write: the
    // engine, not the function, is what held.
    let writer = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "writer", None).await,
    )
    .await;
    let r = call(&writer, "site_pg_query", json!({"sql": "SELECT wipe_pl()"})).await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    assert!(pg.fingerprint().await.starts_with("0/"));
    let r = call(&writer, "site_maria_query", json!({"sql": "SELECT wipe()"})).await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    assert!(
        maria.fingerprint().await.contains("/0/"),
        "{}",
        maria.fingerprint().await
    );

    s.client.stop().await;
    s.hub.shutdown().await;
}

async fn advisory_locks_do_not_outlive_a_call(backend: &Backend) {
    let Some(pg) = PgTarget::create().await else {
        return;
    };
    let Some(maria) = MariaTarget::create().await else {
        return;
    };
    let store = &backend.store;
    let s = site(
        store,
        vec![
            pg.config("pg", false),
            pg.config("pgro", true),
            maria.config("maria", false),
            maria.config("mariaro", true),
        ],
    )
    .await;
    // Unrestricted: the hub lets `other` (the lock functions) through.
    let full = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "full", None).await,
    )
    .await;
    let reader = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "reader", Some("statements = [\"read\"]")).await,
    )
    .await;
    let ran = |r: &CallToolResult| {
        assert!(r.is_error != Some(true), "{}", text_of(r));
        r.structured_content.as_ref().unwrap()["rows"][0][0].clone()
    };

    // PostgreSQL, read-write: session, shared and try locks, directly
    // (class `other`) and hidden in a function (a read to every parser).
    for sql in [
        "SELECT pg_advisory_lock(4242)::text",
        "SELECT pg_advisory_lock_shared(4243)::text",
        "SELECT pg_try_advisory_lock(4244)",
        "SELECT take_lock()",
    ] {
        let r = call(&full, "site_pg_query", json!({ "sql": sql })).await;
        ran(&r);
        assert_eq!(pg.advisory_locks().await, 0, "`{sql}` left a lock held");
    }
    // Through a function as the read-only agent, on the read-write and
    // the read-only database: the lock is taken, then released by the reset.
    for tool in ["site_pg_query", "site_pgro_query"] {
        let r = call(&reader, tool, json!({"sql": "SELECT take_lock()"})).await;
        assert_eq!(ran(&r), json!(true), "{tool}");
        assert_eq!(pg.advisory_locks().await, 0, "{tool} left a lock held");
        // The pooled connection still works after its reset.
        let r = call(&reader, tool, json!({"sql": "SELECT count(*) FROM items"})).await;
        assert_eq!(ran(&r), json!(50));
    }

    // MariaDB: GET_LOCK directly (read-write, class `other`) and through a
    // function (read-write and read-only).
    let r = call(
        &full,
        "site_maria_query",
        json!({"sql": "SELECT GET_LOCK(?, 0)", "params": [maria.lock.clone()]}),
    )
    .await;
    assert_eq!(ran(&r), json!(1));
    assert!(maria.lock_is_free().await, "GET_LOCK outlived the call");
    for (agent, tool) in [
        (&full, "site_maria_query"),
        (&reader, "site_maria_query"),
        (&reader, "site_mariaro_query"),
    ] {
        let r = call(agent, tool, json!({"sql": "SELECT take_lock()"})).await;
        assert_eq!(ran(&r), json!(1), "{tool}");
        assert!(
            maria.lock_is_free().await,
            "{tool}: the lock outlived the call"
        );
    }
    s.client.stop().await;
    s.hub.shutdown().await;
}

async fn aggregated_row_over_max_bytes_is_cut(backend: &Backend) {
    let Some(pg) = PgTarget::create().await else {
        return;
    };
    let store = &backend.store;
    let s = site(store, vec![pg.config("pg", false)]).await;
    let limited = agent(
        &s.hub.mcp_url(),
        &agent_credential(
            store,
            "acme",
            "limited",
            Some("row_limit = 2\nmax_bytes = 2000"),
        )
        .await,
    )
    .await;
    let texts = |r: &CallToolResult| -> Vec<String> {
        r.content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect()
    };

    // One row holding the whole table (about 3.5 kB of JSON).
    let r = call(
        &limited,
        "site_pg_query",
        json!({"sql": "SELECT json_agg(i) FROM items i"}),
    )
    .await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    let sc = r.structured_content.clone().unwrap();
    assert_eq!(sc["rows"], json!([]), "the aggregated row was withheld");
    assert_eq!(sc["truncated"]["reason"], "max_bytes");
    assert_eq!(sc["truncated"]["limit"], 2000);
    let message = sc["truncated"]["message"].as_str().unwrap();
    assert!(
        message.contains("`max_bytes`") && message.contains("alone is"),
        "{message}"
    );
    let all_text = texts(&r).join("\n");
    assert!(all_text.contains("TRUNCATED: "), "{all_text}");
    assert!(
        !all_text.contains("item 50"),
        "no row data in the text: {all_text}"
    );
    assert!(all_text.len() < 2000, "{} bytes of text", all_text.len());
    let rec = last_record(store).await;
    assert_eq!(rec["rows"], 0, "{rec}");

    // Rows: what fits in 2000 bytes (two rows of the row limit do).
    let r = call(
        &limited,
        "site_pg_query",
        json!({"sql": "SELECT id, name FROM items ORDER BY id"}),
    )
    .await;
    let sc = r.structured_content.clone().unwrap();
    assert_eq!(sc["rows"].as_array().unwrap().len(), 2);
    assert_eq!(sc["truncated"]["reason"], "max_rows");

    // A result without rows (40 long table names) over the limit: the hub
    // itself withholds it (the adapter has no byte limit for it).
    let r = call(&limited, "site_pg_list_tables", json!({})).await;
    assert_eq!(r.is_error, Some(true), "{:?}", r.structured_content);
    assert!(r.structured_content.is_none());
    let t = text_of(&r);
    assert!(
        t.starts_with("TRUNCATED: ") && t.contains("`max_bytes`"),
        "{t}"
    );
    assert!(!t.contains("wide_table_with_a_long_name"), "{t}");

    // Without the policy the same call returns the whole row.
    let free = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "free", None).await,
    )
    .await;
    let r = call(
        &free,
        "site_pg_query",
        json!({"sql": "SELECT json_agg(i) FROM items i"}),
    )
    .await;
    let sc = r.structured_content.unwrap();
    assert_eq!(sc["rows"].as_array().unwrap().len(), 1);
    assert!(sc.get("truncated").is_none());
    s.client.stop().await;
    s.hub.shutdown().await;
}
