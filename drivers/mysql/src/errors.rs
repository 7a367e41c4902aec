//! Engine errors turned into messages that say what to fix.

use std::io::ErrorKind;

use ewii_driver_core::ToolError;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError};

/// MariaDB `ER_STATEMENT_TIMEOUT`: `max_statement_time` was exceeded.
pub(crate) const ER_STATEMENT_TIMEOUT: u16 = 1969;
/// MySQL `ER_QUERY_TIMEOUT`: `max_execution_time` was exceeded.
pub(crate) const ER_QUERY_TIMEOUT: u16 = 3024;
/// `ER_QUERY_INTERRUPTED`: the statement was stopped by `KILL QUERY`.
pub(crate) const ER_QUERY_INTERRUPTED: u16 = 1317;
/// `ER_UNKNOWN_SYSTEM_VARIABLE`.
pub(crate) const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
/// `ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION`.
const ER_READ_ONLY_TRANSACTION: u16 = 1792;
/// `ER_DBACCESS_DENIED_ERROR`: the user may not use the database.
const ER_DBACCESS_DENIED: u16 = 1044;
/// `ER_ACCESS_DENIED_ERROR`: wrong user name or password.
const ER_ACCESS_DENIED: u16 = 1045;
/// `ER_BAD_DB_ERROR`: unknown database.
const ER_BAD_DB: u16 = 1049;

/// The server's error number, when `e` is an error the server sent.
pub(crate) fn error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(d) => d
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// Whether the connection is still in a known state after `e`: the server
/// answered with an error packet, so the protocol is in step.
pub(crate) fn connection_survives(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(_))
}

/// A statement error, as the model sees it.
pub(crate) fn tool_error(e: sqlx::Error) -> ToolError {
    match error_number(&e) {
        Some(ER_READ_ONLY_TRANSACTION) => ToolError::Refused {
            reason: "this database is read-only and the server refused the statement \
                     (it runs inside a READ ONLY transaction); only reads run here"
                .into(),
        },
        _ => match e {
            sqlx::Error::Database(d) => ToolError::Database(one_line(d.message())),
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                ToolError::Unavailable(one_line(&e.to_string()))
            }
            other => ToolError::Database(one_line(&other.to_string())),
        },
    }
}

/// A failure to get a working connection, as the model sees it.
pub(crate) fn unavailable(e: &sqlx::Error, options: &MySqlConnectOptions) -> ToolError {
    match e {
        sqlx::Error::PoolTimedOut => ToolError::Unavailable(format!(
            "no connection to {} could be made or freed in time: the server may be down or \
             every connection busy; try again shortly",
            endpoint(options)
        )),
        other => ToolError::Unavailable(connect_error(other, options)),
    }
}

/// One line saying why connecting failed and what to check. Never contains
/// the password (the URL is not part of any sqlx error message).
pub(crate) fn connect_error(e: &sqlx::Error, options: &MySqlConnectOptions) -> String {
    let at = endpoint(options);
    let message = match (error_number(e), e) {
        (Some(ER_ACCESS_DENIED), sqlx::Error::Database(d)) => format!(
            "the server at {at} refused the login of user '{}': check the user name and \
             password in the URL ({})",
            options.get_username(),
            d.message()
        ),
        (Some(ER_BAD_DB | ER_DBACCESS_DENIED), sqlx::Error::Database(d)) => format!(
            "the database '{}' does not exist on {at} or the user may not use it: check the \
             database name in the URL path ({})",
            options.get_database().unwrap_or_default(),
            d.message()
        ),
        (_, sqlx::Error::Io(io)) if io.kind() == ErrorKind::ConnectionRefused => format!(
            "nothing accepts connections at {at} (connection refused): check the host and \
             port in the URL and that the server is running"
        ),
        (_, sqlx::Error::Io(io)) => format!(
            "cannot reach {at} ({io}): check the host and port in the URL, DNS and firewalls"
        ),
        (_, sqlx::Error::Tls(t)) => format!(
            "the TLS handshake with {at} failed ({t}): check ssl-mode and ssl-ca in the URL"
        ),
        (_, sqlx::Error::PoolTimedOut) => {
            format!("no answer from {at} in time: check the host and port in the URL and firewalls")
        }
        (_, sqlx::Error::Database(d)) => format!("the server at {at} said: {}", d.message()),
        (_, other) => format!("connecting to {at} failed: {other}"),
    };
    one_line(&message)
}

/// `host:port` (or the socket path): safe to show, it holds no secret.
pub(crate) fn endpoint(options: &MySqlConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// Error texts reach a model and log lines: keep them on one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
