//! `check`: the SQLite version, whether the engine holds the connection
//! read-only (`query_only`), and that the file really is a database.

use ewii_driver_core::{CheckReport, DriverError};

use crate::SqliteDatabase;

/// Opens a pooled connection and reports.
pub(crate) async fn check(db: &SqliteDatabase) -> Result<CheckReport, DriverError> {
    let mut conn = db
        .pool
        .acquire()
        .await
        .map_err(|e| DriverError::Connect(format!("cannot open the SQLite database: {e}")))?;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| DriverError::Connect(e.to_string()))?;
    let query_only: i64 = sqlx::query_scalar("PRAGMA query_only")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| DriverError::Other(e.to_string()))?;
    // Reading the schema proves the file is a database, not just a file.
    sqlx::query("SELECT count(*) FROM sqlite_schema")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| {
            DriverError::Connect(format!("the file is not a usable SQLite database: {e}"))
        })?;
    let mut warnings = Vec::new();
    if !db.read_only {
        warnings.push(CheckReport::READ_WRITE_WARNING.into());
    }
    Ok(CheckReport {
        server_version: format!("SQLite {version}"),
        engine_read_only: db.read_only && query_only == 1,
        warnings,
    })
}
