//! The test database servers (PostgreSQL and MariaDB, started by
//! `scripts/test-databases.sh`): their URLs from the environment, and
//! throwaway databases on them that are dropped even when a test panics.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{AssertSqlSafe, Connection, Executor, MySqlConnection, PgConnection};

/// How long dropping a throwaway database may take before it is left.
const DROP_LIMIT: Duration = Duration::from_secs(30);

/// The URL of a test database server from environment variable `var`.
///
/// Unset: prints a `SKIPPED` line and returns `None` — unless `required_in_ci`
/// is true and `CI` is set, where a missing server is a failure (the
/// PostgreSQL and MariaDB servers are started by `scripts/test-databases.sh`
/// and must never be silently skipped there).
///
/// # Panics
/// Under `CI`, when `required_in_ci` and `var` is unset or empty.
pub fn server_url(var: &str, required_in_ci: bool) -> Option<String> {
    let in_ci = std::env::var_os("CI").is_some();
    match decide(var, std::env::var(var).ok(), in_ci, required_in_ci) {
        Ok(Some(url)) => Some(url),
        Ok(None) => {
            println!("SKIPPED: {var} is not set; this test needs a live server");
            None
        }
        Err(refusal) => panic!("{refusal}"),
    }
}

/// [`server_url`]'s decision: the URL, `None` to skip, or why skipping is
/// not allowed.
fn decide(
    var: &str,
    value: Option<String>,
    in_ci: bool,
    required_in_ci: bool,
) -> Result<Option<String>, String> {
    match value {
        Some(url) if !url.is_empty() => Ok(Some(url)),
        _ if required_in_ci && in_ci => Err(format!(
            "{var} is not set but CI requires this server: start it with \
             `eval \"$(scripts/test-databases.sh start)\"`"
        )),
        _ => Ok(None),
    }
}

/// A name no other test (of this run or another) uses: `prefix`, the
/// process id, the clock's nanoseconds and a counter. Lower-case `prefix`
/// keeps it a valid unquoted identifier on every engine.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

/// `url` with its database path replaced by `database` (the query string,
/// if any, kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let path_start = head[authority_start..]
        .find('/')
        .map_or(head.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &head[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Runs `work` to completion on a thread with its own runtime: `Drop` is
/// synchronous and may run inside a runtime, where `block_on` panics.
pub fn block_on_own_thread(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(work);
        }
    })
    .join();
}

/// Why a throwaway database could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The server URL is neither `postgres://` nor `mysql://`/`mariadb://`.
    #[error("not a PostgreSQL or MariaDB URL: {0}")]
    UnknownEngine(String),
    /// The server refused or could not be reached.
    #[error("{0}")]
    Sql(#[from] sqlx::Error),
}

/// The engines a [`ServerDatabase`] can live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    MariaDb,
}

impl Engine {
    fn of(url: &str) -> Result<Engine, ServerError> {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        match scheme {
            "postgres" | "postgresql" => Ok(Engine::Postgres),
            "mysql" | "mariadb" => Ok(Engine::MariaDb),
            _ => Err(ServerError::UnknownEngine(scheme.to_owned())),
        }
    }

    async fn exec(self, server: &str, sql: String) -> Result<(), sqlx::Error> {
        match self {
            Engine::Postgres => {
                let mut c = PgConnection::connect(server).await?;
                let r = c.execute(AssertSqlSafe(sql)).await;
                c.close().await.ok();
                r.map(|_| ())
            }
            Engine::MariaDb => {
                let mut c = MySqlConnection::connect(server).await?;
                let r = c.execute(AssertSqlSafe(sql)).await;
                c.close().await.ok();
                r.map(|_| ())
            }
        }
    }

    /// Drops `name`, ending the sessions still using it first: a test that
    /// panicked may have left a transaction open, on which a plain
    /// `DROP DATABASE` would wait for ever.
    async fn drop_database(self, server: &str, name: &str) -> Result<(), sqlx::Error> {
        match self {
            Engine::Postgres => {
                self.exec(
                    server,
                    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                )
                .await
            }
            Engine::MariaDb => {
                let mut c = MySqlConnection::connect(server).await?;
                let sessions: Vec<i64> = sqlx::query_scalar(
                    "SELECT ID FROM information_schema.PROCESSLIST \
                     WHERE DB = ? AND ID <> CONNECTION_ID()",
                )
                .bind(name)
                .fetch_all(&mut c)
                .await?;
                for id in sessions {
                    // Gone already is as good as killed.
                    let _ = c.execute(AssertSqlSafe(format!("KILL {id}"))).await;
                }
                let r = c
                    .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")))
                    .await;
                c.close().await.ok();
                r.map(|_| ())
            }
        }
    }
}

/// A throwaway database on a test server, dropped when this value is.
///
/// Made with the rights of the URL it is created from (the test user, who
/// may create databases, or the admin URL); [`url`](Self::url) reaches it
/// with the same credentials.
#[derive(Debug)]
pub struct ServerDatabase {
    engine: Engine,
    server: String,
    name: String,
    url: String,
}

impl ServerDatabase {
    /// Creates database [`unique_name`]`(prefix)` on the server at `server`
    /// (a `postgres://` or `mysql://` URL of any database there).
    pub async fn create(server: &str, prefix: &str) -> Result<ServerDatabase, ServerError> {
        let engine = Engine::of(server)?;
        let name = unique_name(prefix);
        let create = match engine {
            Engine::Postgres => format!("CREATE DATABASE \"{name}\""),
            Engine::MariaDb => format!("CREATE DATABASE `{name}`"),
        };
        engine.exec(server, create).await?;
        Ok(ServerDatabase {
            engine,
            url: with_database(server, &name),
            server: server.to_owned(),
            name,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL it was created from.
    pub fn server(&self) -> &str {
        &self.server
    }
}

impl Drop for ServerDatabase {
    fn drop(&mut self) {
        let (engine, server, name) = (self.engine, self.server.clone(), self.name.clone());
        block_on_own_thread(async move {
            match tokio::time::timeout(DROP_LIMIT, engine.drop_database(&server, &name)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("could not drop test database {name}: {e}"),
                Err(_) => eprintln!("dropping test database {name} took over 30 s; left"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_skips_outside_ci_and_fails_in_it() {
        let url = Some("postgres://u@h/db".to_owned());
        assert_eq!(decide("V", url.clone(), true, true), Ok(url));
        assert_eq!(decide("V", None, false, true), Ok(None));
        assert_eq!(decide("V", Some(String::new()), false, true), Ok(None));
        // Optional servers (engines CI does not run) skip even in CI.
        assert_eq!(decide("V", None, true, false), Ok(None));
        for unset in [None, Some(String::new())] {
            let refusal = decide("EWII_TEST_X_URL", unset, true, true).unwrap_err();
            assert!(
                refusal.contains("EWII_TEST_X_URL is not set but CI requires this server"),
                "{refusal}"
            );
        }
    }

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("mysql://root@h:3306/mysql?ssl-mode=disabled", "x"),
            "mysql://root@h:3306/x?ssl-mode=disabled"
        );
        assert_eq!(with_database("mysql://root@h", "x"), "mysql://root@h/x");
        // A slash in the query string is not the path.
        assert_eq!(
            with_database("postgres://h/db?sslrootcert=/etc/ca.pem", "x"),
            "postgres://h/x?sslrootcert=/etc/ca.pem"
        );
    }

    #[test]
    fn unique_names_do_not_repeat() {
        let a = unique_name("kit");
        let b = unique_name("kit");
        assert_ne!(a, b);
        assert!(a.starts_with("kit_") && a.len() < 64, "{a}");
    }

    #[test]
    fn only_postgres_and_mariadb_servers_hold_throwaway_databases() {
        assert_eq!(Engine::of("postgresql://h/d").unwrap(), Engine::Postgres);
        assert_eq!(Engine::of("mariadb://h/d").unwrap(), Engine::MariaDb);
        assert!(matches!(
            Engine::of("sqlite:///tmp/x.db"),
            Err(ServerError::UnknownEngine(s)) if s == "sqlite"
        ));
    }
}
