//! Server errors → tool errors.

use std::time::Duration;

use ewii_driver_core::ToolError;
use mongodb::error::{Error, ErrorKind};

/// The server's code for an operation stopped by `maxTimeMS`.
const MAX_TIME_MS_EXPIRED: i32 = 50;

/// The error's message, without anything that could carry a credential.
pub fn message(e: &Error) -> String {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => format!("{} ({}, code {})", c.message, c.code_name, c.code),
        ErrorKind::Authentication { message, .. } => format!("authentication failed: {message}"),
        ErrorKind::InvalidArgument { message, .. } => message.clone(),
        _ => e.to_string(),
    }
}

/// What is wrong with a URL the crate could not parse (never the URL).
pub fn url_problem(e: &Error) -> String {
    match e.kind.as_ref() {
        ErrorKind::InvalidArgument { message, .. } => message.clone(),
        _ => "the URL could not be parsed".into(),
    }
}

/// A failed operation as the model sees it: `maxTimeMS` → `Timeout`.
pub fn tool_error(e: &Error, limit: Duration) -> ToolError {
    if let ErrorKind::Command(c) = e.kind.as_ref()
        && c.code == MAX_TIME_MS_EXPIRED
    {
        return ToolError::Timeout { limit };
    }
    let text = message(e);
    if text.contains("MaxTimeMSExpired") || text.contains("exceeded time limit") {
        return ToolError::Timeout { limit };
    }
    if let ErrorKind::ServerSelection { .. } = e.kind.as_ref() {
        return ToolError::Unavailable(text);
    }
    ToolError::Database(text)
}
