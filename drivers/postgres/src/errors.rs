//! Engine errors turned into messages that say what to fix, without the
//! URL (it may hold a password).

use ewii_driver_core::{DriverError, ToolError};
use sqlx::postgres::PgConnectOptions;

/// Keeps a URL out of an error message coming from the URL parser.
pub(crate) fn strip_url(message: &str) -> String {
    message
        .split_whitespace()
        .map(|w| if w.contains("://") { "<url>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A statement error, as the model sees it.
pub(crate) fn db_error(e: sqlx::Error) -> ToolError {
    match e {
        sqlx::Error::Database(d) => {
            let mut msg = d.message().to_owned();
            if let Some(hint) = d
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.hint())
            {
                msg.push_str(&format!(" (hint: {hint})"));
            }
            ToolError::Database(msg)
        }
        sqlx::Error::PoolTimedOut => ToolError::Unavailable(
            "no connection became free within 10 s; the database may be overloaded".into(),
        ),
        sqlx::Error::Io(e) => ToolError::Unavailable(format!("connection lost: {e}")),
        other => ToolError::Database(other.to_string()),
    }
}

/// Whether the server stopped the statement: its `statement_timeout`, or
/// the `pg_cancel_backend` the driver sends at a timeout or cancellation.
pub(crate) fn is_statement_timeout(e: &sqlx::Error) -> bool {
    // 57014 = query_canceled (statement_timeout or pg_cancel_backend).
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("57014"))
}

/// A failure to connect, naming the server and what to check.
pub(crate) fn connect_error(options: &PgConnectOptions, e: sqlx::Error) -> DriverError {
    let at = format!("{}:{}", options.get_host(), options.get_port());
    match e {
        sqlx::Error::Database(d) => {
            let msg = d.message().to_owned();
            let what_to_do = match d.code().as_deref() {
                Some("28P01") | Some("28000") => "check the user name and password",
                Some("3D000") => "check the database name in the URL path",
                _ => "check the URL and the server's pg_hba.conf",
            };
            DriverError::Connect(format!("the server at {at} said: {msg}; {what_to_do}"))
        }
        sqlx::Error::Io(io) => DriverError::Connect(format!(
            "cannot reach a PostgreSQL server at {at} ({io}); check host, port and firewall"
        )),
        sqlx::Error::Tls(t) => DriverError::Connect(format!(
            "TLS with {at} failed ({t}); check sslmode and the server certificate"
        )),
        sqlx::Error::PoolTimedOut => DriverError::Connect(format!(
            "no answer from {at} within 10 s; check host, port and firewall"
        )),
        other => DriverError::Connect(format!("{at}: {other}")),
    }
}
