//! The document-driver kit and the driver's own checks, against the
//! nx-27017 stand-in (a wire-compatible server, NOT MongoDB) started by each
//! test, and against real MongoDB when `EWII_TEST_MONGODB_URL` is set: those
//! tests are `#[ignore]`d, so without a server cargo reports them as ignored,
//! never as passed; `scripts/test.sh` runs them with `--ignored` when it is set.
//!
//! Gated on the stand-in (run only against real MongoDB), and why:
//! - `maxTimeMS` stopping a slow operation on the server: nx-27017 ignores
//!   `maxTimeMS` (measured: a 0.36 s regex scan with `maxTimeMS: 100`
//!   completes), so on the stand-in only the client-side backstop is shown;
//! - Decimal128 round trips: the stand-in rejects Decimal128 values.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use async_trait::async_trait;
use ewii_driver_core::schema::StandardTool;
use ewii_driver_core::{
    CallContext, Catalog, DatabaseConfig, Driver, DriverError, Limits, ToolError, dispatch,
};
use ewii_driver_kit::documents::{DocumentKitHarness, StandIn, run_documents};
use ewii_driver_kit::{database_config, server_url, unique_name};
use ewii_driver_mongodb::MONGO_DRIVER;
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Value, json};

struct Harness {
    /// Server URL without a database (`mongodb://host:port`).
    base: String,
    stand_in: bool,
}

impl Harness {
    fn url(&self, database: &str) -> String {
        format!("{}/{database}", self.base.trim_end_matches('/'))
    }
}

async fn client(config: &DatabaseConfig) -> Result<(mongodb::Client, String), String> {
    let (options, db) = ewii_driver_mongodb::client_options(config)
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        mongodb::Client::with_options(options).map_err(|e| e.to_string())?,
        db,
    ))
}

#[async_trait]
impl DocumentKitHarness for Harness {
    fn driver(&self) -> &'static dyn Driver {
        &MONGO_DRIVER
    }

    async fn create_empty(&self) -> Result<DatabaseConfig, String> {
        Ok(database_config(
            "kitdocs",
            "mongodb",
            &self.url(&unique_name("ewii_kit")),
            true,
        ))
    }

    async fn insert(
        &self,
        config: &DatabaseConfig,
        collection: &str,
        docs: Vec<Value>,
    ) -> Result<(), String> {
        let (client, db) = client(config).await?;
        let docs: Vec<Document> = docs
            .into_iter()
            .map(|d| match Bson::try_from(d) {
                Ok(Bson::Document(d)) => Ok(d),
                other => Err(format!("fixture document: {other:?}")),
            })
            .collect::<Result<_, _>>()?;
        client
            .database(&db)
            .collection::<Document>(collection)
            .insert_many(docs)
            .await
            .map(|_| ())
            .map_err(|e| format!("insert into {collection}: {e}"))
    }

    async fn raw_state(&self, config: &DatabaseConfig) -> Result<Vec<(String, u64)>, String> {
        let (client, db) = client(config).await?;
        let db = client.database(&db);
        let mut names = db
            .list_collection_names()
            .await
            .map_err(|e| e.to_string())?;
        names.sort();
        let mut state = Vec::new();
        for name in names {
            let n = db
                .collection::<Document>(&name)
                .count_documents(doc! {})
                .await
                .map_err(|e| e.to_string())?;
            state.push((name, n));
        }
        Ok(state)
    }

    fn stand_in(&self) -> Option<&'static str> {
        self.stand_in.then_some(StandIn::NAME)
    }
}

fn real_mongodb() -> Harness {
    let Some(url) = server_url("EWII_TEST_MONGODB_URL", false) else {
        panic!(
            "this test needs real MongoDB: set EWII_TEST_MONGODB_URL=mongodb://user:pass@host:27017/ \
             (it is #[ignore]d so that without a server it is reported as ignored, never as passed)"
        );
    };
    // The kit makes its own databases: keep the server part of the URL.
    let base = match url
        .find("://")
        .and_then(|s| url[s + 3..].find('/').map(|i| s + 3 + i))
    {
        Some(path) => url[..path].to_owned(),
        None => url,
    };
    Harness {
        base,
        stand_in: false,
    }
}

fn stand_in_harness(s: &StandIn) -> Harness {
    Harness {
        base: format!("mongodb://127.0.0.1:{}", s.port()),
        stand_in: true,
    }
}

#[tokio::test]
async fn document_kit_against_the_nx27017_stand_in() {
    let Some(s) = StandIn::start() else { return };
    run_documents(&stand_in_harness(&s)).await.assert_passed();
}

#[tokio::test]
#[ignore = "needs real MongoDB: EWII_TEST_MONGODB_URL (scripts/test.sh runs it with --ignored when set)"]
async fn document_kit_against_real_mongodb() {
    let h = real_mongodb();
    run_documents(&h).await.assert_passed();
}

async fn open(config: DatabaseConfig) -> Catalog {
    let mut catalog = Catalog::new();
    let change = catalog.apply(vec![config]).await;
    assert!(change.failed.is_empty(), "{:?}", change.failed);
    catalog
}

/// 100 000 documents (inserted in batches of 10 000) read through `find`:
/// one page, bounded by rows and then by bytes, each with its notice.
async fn a_large_collection_is_bounded(h: &Harness) {
    let mut config = h.create_empty().await.expect("config");
    for batch in 0..10 {
        let docs: Vec<Value> = (0..10_000)
            .map(|i| json!({"_id": batch * 10_000 + i, "pad": "x".repeat(100)}))
            .collect();
        h.insert(&config, "big", docs).await.expect("insert batch");
    }
    config.limits = Limits {
        max_rows: 500,
        max_bytes: 1 << 20,
        timeout: Duration::from_secs(30),
    };
    let catalog = open(config.clone()).await;
    let find = catalog.resolve("kitdocs_find").expect("find tool");
    let started = Instant::now();
    let r = find
        .call(
            json!({"collection": "big", "sort": {"_id": 1}}),
            &CallContext::default(),
        )
        .await
        .expect("find");
    assert_eq!(r["returned"], json!(500));
    assert_eq!(r["truncated"]["reason"], json!("max_rows"));
    assert_eq!(r["truncated"]["next_offset"], json!(500));
    assert!(
        r["truncated"]["message"]
            .as_str()
            .expect("notice")
            .contains("offset=500")
    );
    let r = find
        .call(
            json!({"collection": "big", "sort": {"_id": 1}, "offset": 99_990}),
            &CallContext::default(),
        )
        .await
        .expect("last page");
    assert_eq!(
        (r["returned"].clone(), r["offset"].clone()),
        (json!(10), json!(99_990))
    );
    assert!(r["truncated"].is_null(), "the last page is complete: {r}");
    config.limits.max_bytes = 20_000;
    let catalog = open(config).await;
    let r = catalog
        .resolve("kitdocs_find")
        .expect("find tool")
        .call(json!({"collection": "big"}), &CallContext::default())
        .await
        .expect("find");
    assert_eq!(r["truncated"]["reason"], json!("max_bytes"));
    let bytes = serde_json::to_vec(&r["documents"]).expect("json").len();
    assert!(bytes <= 20_000, "{bytes} bytes returned");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded reads took {:?}",
        started.elapsed()
    );
    assert_eq!(
        h.raw_state(&catalog.entries()["kitdocs"].config)
            .await
            .expect("state"),
        vec![("big".to_owned(), 100_000)]
    );
}

#[tokio::test]
async fn a_100k_document_collection_is_bounded_on_the_stand_in() {
    let Some(s) = StandIn::start() else { return };
    a_large_collection_is_bounded(&stand_in_harness(&s)).await;
}

#[tokio::test]
#[ignore = "needs real MongoDB: EWII_TEST_MONGODB_URL (scripts/test.sh runs it with --ignored when set)"]
async fn a_100k_document_collection_is_bounded_on_real_mongodb() {
    let h = real_mongodb();
    a_large_collection_is_bounded(&h).await;
}

/// Real MongoDB: an aggregate that runs for many seconds is stopped by the
/// server's `maxTimeMS` (error 50), reported as a timeout.
#[tokio::test]
#[ignore = "needs real MongoDB: EWII_TEST_MONGODB_URL (scripts/test.sh runs it with --ignored when set)"]
async fn max_time_ms_stops_a_slow_operation_on_real_mongodb() {
    let h = real_mongodb();
    let mut config = h.create_empty().await.expect("config");
    let docs: Vec<Value> = (0..2000).map(|i| json!({"_id": i})).collect();
    h.insert(&config, "slow", docs).await.expect("insert");
    config.limits.timeout = Duration::from_millis(500);
    let catalog = open(config).await;
    let slow = json!({"collection": "slow", "pipeline": [
        {"$project": {"x": {"$reduce": {"input": {"$range": [0, 200000]}, "initialValue": 0,
                                         "in": {"$add": ["$$value", "$$this"]}}}}}
    ]});
    let started = Instant::now();
    let r = catalog
        .resolve("kitdocs_aggregate")
        .expect("tool")
        .call(slow, &CallContext::default())
        .await;
    assert!(matches!(r, Err(ToolError::Timeout { .. })), "{r:?}");
    // Well before the client-side backstop (limit + 2 s): the server stopped it.
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "took {:?}",
        started.elapsed()
    );
}

/// The stand-in ignores `maxTimeMS`: there a slow scan ends at the
/// driver's client-side backstop (limit + 2 s) with a timeout, and its
/// cursor is dropped. Real MongoDB is tested above.
#[tokio::test]
async fn a_slow_operation_on_the_stand_in_ends_at_the_backstop() {
    let Some(s) = StandIn::start() else { return };
    let h = stand_in_harness(&s);
    let mut config = h.create_empty().await.expect("config");
    let docs: Vec<Value> = (0..4).map(|_| json!({"s": "x".repeat(27)})).collect();
    h.insert(&config, "slow", docs).await.expect("insert");
    config.limits.timeout = Duration::from_millis(500);
    let catalog = open(config).await;
    let started = Instant::now();
    let r = catalog
        .resolve("kitdocs_find")
        .expect("tool")
        .call(
            json!({"collection": "slow", "filter": {"s": {"$regex": "^(x+x+)+y$"}}}),
            &CallContext::default(),
        )
        .await;
    assert!(matches!(r, Err(ToolError::Timeout { .. })), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn urls_are_checked_and_never_shown_with_their_password() {
    for (url, want) in [
        ("postgres://u@h/db", "mongodb:// or mongodb+srv://"),
        ("mongodb://u:hunter2@127.0.0.1:1", "name the database"),
    ] {
        let config = database_config("m", "mongodb", url, true);
        let Err(DriverError::BadUrl(e)) = MONGO_DRIVER.open(&config).await.map(|_| ()) else {
            panic!("{url} accepted")
        };
        assert!(e.contains(want), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[tokio::test]
async fn a_document_database_has_no_sql_query_tool() {
    let config = database_config("m", "mongodb", "mongodb://127.0.0.1:1/x", true);
    let db = MONGO_DRIVER.open(&config).await.expect("lazy open");
    let e = dispatch(
        db.as_ref(),
        StandardTool::Query,
        json!({"sql": "select 1"}),
        &CallContext::default(),
    )
    .await;
    assert!(matches!(e, Err(ToolError::UnknownTool(_))), "{e:?}");
}
