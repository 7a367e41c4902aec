//! `check`: server version, whether the engine holds the session read-only,
//! and warnings for the admin.

use std::collections::HashSet;
use std::time::Duration;

use ewii_driver_core::{CheckReport, DriverError};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{ConnectOptions, Connection, Executor, Row};

use crate::errors::{ER_UNKNOWN_SYSTEM_VARIABLE, connect_error, endpoint, error_number, one_line};
use crate::{Flavor, MySqlDatabase, begin_read_only, init_connection, number, text};

/// Longest `check` waits for the server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Privileges that let an account change data, the schema or server files.
const WRITE_PRIVILEGES: &[&str] = &[
    "INSERT",
    "UPDATE",
    "DELETE",
    "DELETE HISTORY",
    "CREATE",
    "DROP",
    "ALTER",
    "INDEX",
    "CREATE VIEW",
    "TRIGGER",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
    "FILE",
    "SUPER",
];

/// Connects on a fresh connection (not the pool, so that errors come
/// straight from the server) and reports.
pub(crate) async fn check(db: &MySqlDatabase) -> Result<CheckReport, DriverError> {
    let mut conn = connect(&db.options).await?;
    let report = report(db, &mut conn).await;
    let _ = conn.close().await;
    report
}

async fn connect(options: &MySqlConnectOptions) -> Result<MySqlConnection, DriverError> {
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(DriverError::Connect(connect_error(&e, options))),
        Err(_) => {
            return Err(DriverError::Connect(format!(
                "no answer from {} within {} s: check the host and port in the URL and \
                 firewalls",
                endpoint(options),
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    init_connection(&mut conn)
        .await
        .map_err(|e| DriverError::Connect(connect_error(&e, options)))?;
    Ok(conn)
}

async fn report(
    db: &MySqlDatabase,
    conn: &mut MySqlConnection,
) -> Result<CheckReport, DriverError> {
    let other = |e: sqlx::Error| DriverError::Other(one_line(&e.to_string()));
    let version = first_text(conn, "SELECT VERSION()")
        .await
        .map_err(other)?
        .unwrap_or_default();
    let flavor = Flavor::of(&version);
    db.remember_flavor(flavor);
    let database = first_text(conn, "SELECT DATABASE()").await.map_err(other)?;

    let mut warnings = Vec::new();
    if database.is_none() {
        warnings.push(
            "the URL names no database: tools see every schema the account can read; name \
             one in the URL path (e.g. mysql://reader@db:3306/app)"
                .to_owned(),
        );
    }
    let mut engine_read_only = false;
    if db.read_only {
        match read_only_probe(conn).await {
            Ok(true) => engine_read_only = true,
            Ok(false) => warnings.push(
                "the server did not confirm a read-only session; writes are refused by \
                 Ewii's statement check only"
                    .to_owned(),
            ),
            Err(e) => warnings.push(one_line(&format!(
                "the server refused a read-only transaction ({e}); writes are refused by \
                 Ewii's statement check only: use MySQL 5.6+ or MariaDB 10.0+"
            ))),
        }
        warnings.extend(write_privileges_warning(conn, database.as_deref()).await);
    } else {
        warnings.push(CheckReport::READ_WRITE_WARNING.into());
    }
    Ok(CheckReport {
        server_version: flavor.server_version(&version),
        engine_read_only,
        warnings,
    })
}

async fn first_text(
    conn: &mut MySqlConnection,
    sql: &'static str,
) -> Result<Option<String>, sqlx::Error> {
    let rows = sqlx::query(sql).fetch_all(&mut *conn).await?;
    Ok(rows.first().and_then(|r| text(r, 0)))
}

/// Opens the driver's read-only transaction and asks the server whether the
/// session is read-only.
async fn read_only_probe(conn: &mut MySqlConnection) -> Result<bool, sqlx::Error> {
    begin_read_only(conn).await?;
    // MySQL 5.7.20+ and MariaDB 11.1+ name it transaction_read_only; older
    // MariaDB only knows tx_read_only.
    let value = match sqlx::query("SELECT @@SESSION.transaction_read_only")
        .fetch_one(&mut *conn)
        .await
    {
        Err(e) if error_number(&e) == Some(ER_UNKNOWN_SYSTEM_VARIABLE) => {
            sqlx::query("SELECT @@SESSION.tx_read_only")
                .fetch_one(&mut *conn)
                .await
        }
        other => other,
    };
    let rolled_back = conn.execute("ROLLBACK").await;
    let read_only = number(&value?, 0) == Some(1);
    rolled_back?;
    Ok(read_only)
}

/// A warning when a read-only database's account could write: Ewii holds
/// the database read-only, but an account with only SELECT is the fence
/// that holds whatever happens.
async fn write_privileges_warning(
    conn: &mut MySqlConnection,
    database: Option<&str>,
) -> Option<String> {
    let (user, privileges) = match write_privileges(conn, database).await {
        Ok(found) => found,
        Err(e) => {
            return Some(one_line(&format!(
                "the account's privileges could not be read ({e}); make sure it has only \
                 SELECT on this read-only database"
            )));
        }
    };
    if privileges.is_empty() {
        return None;
    }
    let target = database.map_or("*".to_owned(), |d| format!("`{d}`"));
    let mut warning = format!(
        "this database is read-only, but the account {user} has write privileges ({}); Ewii \
         still refuses writes (read-only transactions and its statement check), but for \
         defence in depth connect with an account that has only SELECT, e.g. GRANT SELECT \
         ON {target}.* TO 'reader'@'%'",
        privileges.join(", ")
    );
    if privileges.iter().any(|p| p == "FILE") {
        warning.push_str(
            "; FILE also lets SQL read and write files on the database server (Ewii refuses \
             INTO OUTFILE and LOAD_FILE on read-only databases)",
        );
    }
    Some(warning)
}

/// The current account and its write privileges (directly or through an
/// enabled role) that reach `database`, in [`WRITE_PRIVILEGES`] order.
async fn write_privileges(
    conn: &mut MySqlConnection,
    database: Option<&str>,
) -> Result<(String, Vec<String>), sqlx::Error> {
    let user = first_text(conn, "SELECT CURRENT_USER()")
        .await?
        .unwrap_or_default();
    let mut grantees = HashSet::from([grantee(&user)]);
    // MariaDB lists ROLE_NAME; MySQL 8 adds ROLE_HOST. Absent on old servers.
    if let Ok(roles) = sqlx::query("SELECT * FROM information_schema.ENABLED_ROLES")
        .fetch_all(&mut *conn)
        .await
    {
        for r in &roles {
            if let Some(name) = text(r, 0) {
                let host = if r.len() > 1 { text(r, 1) } else { None };
                grantees.insert(format!("'{name}'@'{}'", host.unwrap_or_default()));
            }
        }
    }
    let db = database.map(str::to_owned);
    let mut rows: Vec<MySqlRow> =
        sqlx::query("SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES")
            .fetch_all(&mut *conn)
            .await?;
    // Schema grants may use LIKE patterns (`app\_%`).
    rows.extend(
        sqlx::query(
            "SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES \
             WHERE ? IS NULL OR ? LIKE TABLE_SCHEMA",
        )
        .bind(db.clone())
        .bind(db.clone())
        .fetch_all(&mut *conn)
        .await?,
    );
    rows.extend(
        sqlx::query(
            "SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES \
             WHERE ? IS NULL OR TABLE_SCHEMA = ?",
        )
        .bind(db.clone())
        .bind(db)
        .fetch_all(&mut *conn)
        .await?,
    );
    let held: HashSet<String> = rows
        .iter()
        .filter(|r| text(r, 0).is_some_and(|g| grantees.contains(&g)))
        .filter_map(|r| text(r, 1))
        .collect();
    let privileges = WRITE_PRIVILEGES
        .iter()
        .filter(|p| held.contains(**p))
        .map(|p| (*p).to_owned())
        .collect();
    Ok((user, privileges))
}

/// `user@host` (as `CURRENT_USER()` shows it) in the quoted form of the
/// `GRANTEE` columns: `'user'@'host'`.
fn grantee(user: &str) -> String {
    let (name, host) = user.rsplit_once('@').unwrap_or((user, ""));
    format!("'{name}'@'{host}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grantee_quotes_like_information_schema() {
        assert_eq!(grantee("ewii@%"), "'ewii'@'%'");
        assert_eq!(grantee("a@b@localhost"), "'a@b'@'localhost'");
    }
}
