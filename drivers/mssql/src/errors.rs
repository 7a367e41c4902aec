//! SQL Server errors as messages that say what to fix.

use ewii_driver_core::ToolError;

/// Error 1222: `SET LOCK_TIMEOUT` expired.
const LOCK_TIMEOUT: u32 = 1222;
/// Error 18456: login failed.
const LOGIN_FAILED: u32 = 18456;

/// A failed statement or catalog query.
pub(crate) fn db_error(e: tiberius::error::Error) -> ToolError {
    match &e {
        tiberius::error::Error::Server(t) if t.code() == LOCK_TIMEOUT => {
            ToolError::Database(format!(
                "{} (error 1222: a lock held by another session did not free up within the \
                 time limit; try again later or read without locks)",
                t.message()
            ))
        }
        tiberius::error::Error::Server(t) => {
            ToolError::Database(format!("{} (error {})", t.message(), t.code()))
        }
        other => ToolError::Database(other.to_string()),
    }
}

/// A failed login or handshake, without the URL.
pub(crate) fn connect_error(e: &tiberius::error::Error) -> String {
    match e {
        tiberius::error::Error::Server(t) if t.code() == LOGIN_FAILED => format!(
            "login failed for the URL's user ({}); check the login name, its password and \
             that it may connect to the database",
            t.message()
        ),
        other => format!("cannot log in to SQL Server: {other}"),
    }
}
