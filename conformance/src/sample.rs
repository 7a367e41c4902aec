//! Sample databases the suites serve through adapters: the SQLite shop, a
//! `customers (id, name, country)` table of [`SHOP_CUSTOMERS`] rows.
//!
//! This is the one place the shop is built (the adapter's own tests keep a
//! copy: `ewii-conformance` depends on the adapter, so they cannot use it).

use std::path::Path;

use ewii_driver_core::DatabaseConfig;
use serde_json::{Value, json};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

/// Rows in the shop's `customers` table: `Customer 1` … `Customer 10`, even
/// ids in DE, odd in FR.
pub const SHOP_CUSTOMERS: i64 = 10;

/// Creates the shop at `path`: an SQLite file with a `customers (id, name,
/// country)` table of [`SHOP_CUSTOMERS`] rows.
pub async fn customers_db(path: &Path) -> Result<(), sqlx::Error> {
    let mut c = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await?;
    c.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL)",
    )
    .await?;
    for i in 1..=SHOP_CUSTOMERS {
        let country = if i % 2 == 0 { "DE" } else { "FR" };
        sqlx::query("INSERT INTO customers VALUES (?, ?, ?)")
            .bind(i)
            .bind(format!("Customer {i}"))
            .bind(country)
            .execute(&mut c)
            .await?;
    }
    c.close().await
}

/// [`customers_db`] as a fixture: the shop at `path`, or the test fails.
pub async fn shop_db(path: &Path) {
    customers_db(path)
        .await
        .unwrap_or_else(|e| panic!("create the sample shop at {}: {e}", path.display()));
}

/// A read-only configuration for the SQLite database `name` at `path`, as
/// an adapter serves it.
pub fn sqlite_config(name: &str, path: &Path) -> DatabaseConfig {
    ewii_driver_kit::database_config(
        name,
        "sqlite",
        &format!("sqlite://{}", path.display()),
        true,
    )
}

/// `query` tool arguments that count the shop's customers (column `n`).
pub fn count_query() -> Value {
    json!({ "sql": "SELECT count(*) AS n FROM customers", "params": [] })
}
