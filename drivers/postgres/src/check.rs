//! `check`: server version, whether the engine holds the transaction
//! read-only, and a warning when a read-only database's role could write.

use ewii_driver_core::{CheckReport, DriverError};
use sqlx::{ConnectOptions, Connection};

use crate::PgDatabase;
use crate::errors::connect_error;

/// Connects on a fresh connection (not the pool, so that errors come
/// straight from the server) and reports.
pub(crate) async fn check(db: &PgDatabase) -> Result<CheckReport, DriverError> {
    let mut conn = db
        .options
        .connect()
        .await
        .map_err(|e| connect_error(&db.options, e))?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| DriverError::Other(e.to_string()))?;
    let begin = if db.read_only {
        "BEGIN READ ONLY"
    } else {
        "BEGIN"
    };
    sqlx::raw_sql(begin)
        .execute(&mut conn)
        .await
        .map_err(|e| DriverError::Other(e.to_string()))?;
    let ro: String = sqlx::query_scalar("SHOW transaction_read_only")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| DriverError::Other(e.to_string()))?;
    let (role, can_write): (String, bool) = sqlx::query_as(
        "SELECT current_user::text, \
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \
            OR EXISTS (SELECT 1 FROM information_schema.table_privileges \
                       WHERE grantee = current_user \
                         AND privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')) \
            OR EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                       WHERE c.relkind IN ('r', 'p') \
                         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                         AND pg_has_role(current_user, c.relowner, 'USAGE')) \
            OR EXISTS (SELECT 1 FROM pg_namespace \
                       WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' \
                         AND has_schema_privilege(oid, 'CREATE'))",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| DriverError::Other(e.to_string()))?;
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
    let _ = conn.close().await;
    let mut warnings = Vec::new();
    if db.read_only && can_write {
        warnings.push(format!(
            "the role '{role}' can write to this database (table privileges, ownership or \
             CREATE on a schema); Ewii keeps it read-only (read-only transactions and \
             statement checks), but a least-privilege role is the safer setup: see \
             docs/least-privilege.md"
        ));
    }
    if !db.read_only {
        warnings.push(CheckReport::READ_WRITE_WARNING.into());
    }
    Ok(CheckReport {
        server_version: format!("PostgreSQL {version}"),
        engine_read_only: db.read_only && ro == "on",
        warnings,
    })
}
