//! Errors of drivers and tool calls.

use std::time::Duration;

/// Why a tool call failed. The `Display` text is shown to the model as an
/// `isError` result, so each message says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not match the tool's input schema.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The statement is not allowed on this database.
    #[error("refused: {reason}")]
    Refused {
        /// What was refused and what to do instead.
        reason: String,
    },
    /// The engine rejected or failed the statement.
    #[error("the database returned an error: {0}")]
    Database(String),
    /// The named object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The call ran past the database's time limit and was cancelled.
    #[error(
        "the statement ran longer than the {}s time limit and was cancelled on the server; \
         narrow it (WHERE, LIMIT, an index) and try again",
        .limit.as_secs_f64()
    )]
    Timeout {
        /// The limit that was hit.
        limit: Duration,
    },
    /// The caller cancelled the call.
    #[error("the call was cancelled by the client")]
    Cancelled,
    /// The tool does not exist on this database.
    #[error("{0}")]
    UnknownTool(String),
    /// The database cannot be reached right now.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

impl ToolError {
    /// `EXPLAIN ANALYZE` asked of a read-only database, where it is never
    /// offered: it runs the statement.
    pub fn analyze_on_read_only() -> ToolError {
        ToolError::Refused {
            reason: "EXPLAIN ANALYZE runs the statement; it is only available on read-write \
                     databases. Call explain without `analyze`"
                .into(),
        }
    }
}

/// A failure opening or checking a database.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// No driver of that name is linked into this build.
    #[error(
        "driver '{name}' is not built into this binary yet (built in: {built_in}); \
         use one of those, or a build that includes the {name} driver"
    )]
    NotBuiltIn {
        /// The requested driver.
        name: String,
        /// The drivers this build has, comma separated.
        built_in: String,
    },
    /// No driver of that name exists at all.
    #[error("unknown driver '{name}'; choose one of: {known}")]
    Unknown {
        /// The requested driver.
        name: String,
        /// Every driver name Ewii knows, comma separated.
        known: String,
    },
    /// The URL is malformed or does not suit the driver.
    #[error("bad database URL: {0}")]
    BadUrl(String),
    /// The database could not be reached or refused the connection.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Another failure, with the engine's message.
    #[error("{0}")]
    Other(String),
}
