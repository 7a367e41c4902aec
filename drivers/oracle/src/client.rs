//! The Oracle Client (ODPI-C, loaded at run time) and one call's session.
//!
//! The `oracle` crate's API blocks: each call runs on a blocking thread
//! (`spawn_blocking`) with its own connection, so nothing survives a call.
//! The session starts with `SET TRANSACTION READ ONLY` for a call that runs
//! read-only, has the Oracle call timeout set to the database's limit (the
//! server-side round trip is abandoned and the statement broken at the
//! limit), and always ends rolled back unless the call may write and
//! succeeded. A client cancellation or the limit sends a break
//! (`Connection::break_execution`) from another thread.

use std::sync::Arc;
use std::time::Duration;

use ewii_driver_core::{CallContext, ToolError};
use oracle::Connection;

use crate::url::Target;

/// What to tell an operator whose machine has no Oracle Client.
pub(crate) const INSTANT_CLIENT_HELP: &str = "the Oracle Client libraries were not found \
     (DPI-1047). The oracle driver loads them at run time: install Oracle Instant Client 19 or \
     later (the Basic or Basic Light package, \
     https://www.oracle.com/database/technologies/instant-client.html; on Debian/Ubuntu also \
     libaio1), then set LD_LIBRARY_PATH to its directory (for example \
     LD_LIBRARY_PATH=/opt/oracle/instantclient_23_5) — or ORACLE_HOME to a full Oracle Client \
     installation — in the environment of ewii-adapter, and restart it";

/// An Oracle error as a message that says what to fix; a missing Oracle
/// Client (DPI-1047) names what to install and which variable to set.
pub(crate) fn describe_error(message: &str) -> String {
    if message.contains("DPI-1047") {
        format!("{INSTANT_CLIENT_HELP}. The Oracle Client loader said: {message}")
    } else if message.contains("ORA-01017") {
        format!(
            "{message} (check the URL's user name and the password given with \
             --password-stdin)"
        )
    } else {
        message.to_owned()
    }
}

/// A connection error for a tool call.
pub(crate) fn unavailable(e: &oracle::Error) -> ToolError {
    ToolError::Unavailable(describe_error(&e.to_string()))
}

/// An engine error for a tool call; ORA-01013 (the break) and ORA-03156 /
/// DPI-1067 (the call timeout) are the time limit.
pub(crate) fn statement_error(e: &oracle::Error, limit: Duration) -> ToolError {
    let text = e.to_string();
    if ["ORA-01013", "ORA-03156", "DPI-1067", "DPI-1080"]
        .iter()
        .any(|code| text.contains(code))
    {
        ToolError::Timeout { limit }
    } else {
        ToolError::Database(describe_error(&text))
    }
}

/// Logs in (blocking).
pub(crate) fn connect(target: &Target) -> Result<Connection, oracle::Error> {
    let mut conn = Connection::connect(
        &target.user,
        target.password.expose(),
        &target.connect_string,
    )?;
    conn.set_autocommit(false);
    Ok(conn)
}

/// Runs `work` on a blocking thread with a fresh connection: read-only
/// transaction when `read_only`, call timeout `limit`, rolled back unless
/// `work` succeeded and `commit` says the call may keep its changes.
/// Cancellation or the backstop breaks the running call.
pub(crate) async fn with_session<T, F>(
    target: &Target,
    ctx: &CallContext,
    limit: Duration,
    read_only: bool,
    work: F,
) -> Result<T, ToolError>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<(T, bool), ToolError> + Send + 'static,
{
    let target = target.clone();
    let (conn_tx, mut conn_rx) = tokio::sync::oneshot::channel::<Arc<Connection>>();
    let task = tokio::task::spawn_blocking(move || {
        let conn = Arc::new(connect(&target).map_err(|e| unavailable(&e))?);
        let _ = conn_tx.send(Arc::clone(&conn));
        let started = conn
            .set_call_timeout(Some(limit))
            .and_then(|()| match read_only {
                true => conn.execute("SET TRANSACTION READ ONLY", &[]).map(|_| ()),
                false => Ok(()),
            });
        let outcome = match started {
            Ok(()) => work(&conn),
            Err(e) => Err(statement_error(&e, limit)),
        };
        // Nothing a read-only call did is kept, and a failed call keeps
        // nothing either.
        let end = match &outcome {
            Ok((_, true)) if !read_only => conn.commit(),
            _ => conn.rollback(),
        };
        if let Err(e) = end {
            tracing::warn!(error = %e, "ending the Oracle transaction failed");
        }
        let _ = conn.close();
        outcome.map(|(value, _)| value)
    });
    let backstop = limit + Duration::from_secs(2);
    let outcome = ctx.interruptible(limit, backstop, task).await;
    match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(ToolError::Database(format!(
            "the Oracle call failed on its thread: {join}"
        ))),
        Err(e) => {
            // Stop the statement in the engine; the thread then rolls back
            // and closes the connection itself.
            // (Not awaited: a login still under way is bounded by the call
            // timeout set right after it.)
            if let Ok(conn) = conn_rx.try_recv() {
                let _ = tokio::task::spawn_blocking(move || conn.break_execution()).await;
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_instant_client_says_what_to_install_and_set() {
        let msg = describe_error(
            "DPI-1047: Cannot locate a 64-bit Oracle Client library: \"libclntsh.so: cannot \
             open shared object file: No such file or directory\"",
        );
        for word in [
            "Instant Client",
            "LD_LIBRARY_PATH",
            "ORACLE_HOME",
            "libclntsh.so",
        ] {
            assert!(msg.contains(word), "{word}: {msg}");
        }
        assert_eq!(
            describe_error("ORA-00942: table or view does not exist"),
            "ORA-00942: table or view does not exist"
        );
    }

    /// Runs against the real Oracle Client loader of this machine: where
    /// Instant Client is absent (as on the build machines), logging in must
    /// fail with the clear error; where it is present, the login fails for
    /// another reason (nothing listens on the port) and says so.
    #[tokio::test]
    async fn logging_in_without_instant_client_gives_the_clear_error() {
        let target = crate::url::parse("oracle://nobody@127.0.0.1:9/NOSUCH").expect("url");
        let ctx = CallContext::default();
        let outcome = with_session(&target, &ctx, Duration::from_secs(10), true, |_| {
            Ok(((), false))
        })
        .await;
        let err = outcome.expect_err("nothing to log in to").to_string();
        println!("login error: {err}");
        if oracle_client_installed() {
            assert!(!err.contains("LD_LIBRARY_PATH"), "{err}");
        } else {
            assert!(
                err.contains("DPI-1047")
                    && err.contains("LD_LIBRARY_PATH")
                    && err.contains("Instant Client"),
                "{err}"
            );
        }
    }

    /// Whether this machine has an Oracle Client the loader can find:
    /// `ORACLE_HOME`, a `libclntsh.so` in `LD_LIBRARY_PATH`, or one in the
    /// dynamic loader's cache.
    fn oracle_client_installed() -> bool {
        let in_path = std::env::var("LD_LIBRARY_PATH").is_ok_and(|paths| {
            paths
                .split(':')
                .any(|dir| std::path::Path::new(dir).join("libclntsh.so").exists())
        });
        let in_cache = std::fs::read("/etc/ld.so.cache")
            .is_ok_and(|cache| cache.windows(9).any(|w| w == b"libclntsh"));
        std::env::var_os("ORACLE_HOME").is_some() || in_path || in_cache
    }
}
