//! The store backends the hub suite runs against: a throwaway SQLite data
//! directory (always) and a throwaway PostgreSQL database (when
//! `EWII_TEST_POSTGRES_ADMIN_URL` is set; required under `CI`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use ewii_hub::state::master_key::{MASTER_KEY_ENV, MasterKey};
use ewii_hub::state::store::{DATABASE_URL_ENV, sqlite_url};
use ewii_hub::{Location, Store};
use sqlx::Connection as _;

/// Runs each named `async fn(&Backend)` as one test on SQLite and one on
/// PostgreSQL.
#[macro_export]
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::Backend::sqlite().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(backend) = super::Backend::postgres().await else { return };
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

/// One backend under test.
pub struct Backend {
    /// The store, opened the way the CLI opens it.
    pub store: Store,
    /// The database URL (for raw reads and for the CLI).
    pub url: String,
    /// The master key, base64 (for the CLI on PostgreSQL).
    pub master_key: String,
    kind: Kind,
}

enum Kind {
    Sqlite {
        dir: PathBuf,
        _tmp: tempfile::TempDir,
    },
    Postgres {
        _guard: PgDatabase,
    },
}

impl Backend {
    /// A fresh SQLite data directory, opened with `Location::Data`.
    pub async fn sqlite() -> Backend {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        // A fixed key file, so the test process and the CLI agree whatever
        // EWII_HUB_MASTER_KEY the runner has.
        let key = MasterKey::generate().unwrap();
        let store = Store::connect(
            &{
                ewii_hub::state::store::ensure_private_dir(&dir).unwrap();
                sqlite_url(&dir.join(ewii_hub::state::store::DATABASE_FILE))
            },
            MasterKey::from_base64(&key.to_base64()).unwrap(),
        )
        .await
        .unwrap();
        Backend {
            url: sqlite_url(&dir.join(ewii_hub::state::store::DATABASE_FILE)),
            master_key: key.to_base64().to_string(),
            store,
            kind: Kind::Sqlite { dir, _tmp: tmp },
        }
    }

    /// A fresh PostgreSQL database `ewii_hub_test_<random>`, or `None`
    /// (with `SKIPPED: …` printed) when no server is configured.
    pub async fn postgres() -> Option<Backend> {
        let admin = ewii_driver_kit::server_url("EWII_TEST_POSTGRES_ADMIN_URL", true)?;
        let name = format!("ewii_hub_test_{}", random_hex());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to EWII_TEST_POSTGRES_ADMIN_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        conn.close().await.ok();
        let guard = PgDatabase {
            admin: admin.clone(),
            name: name.clone(),
        };
        let url = with_database(&admin, &name);
        let key = MasterKey::generate().unwrap();
        let master_key = key.to_base64().to_string();
        let store = Store::connect(&url, key).await.unwrap();
        Some(Backend {
            store,
            url,
            master_key,
            kind: Kind::Postgres { _guard: guard },
        })
    }

    /// Where the CLI finds this backend.
    pub fn location(&self) -> Location {
        match &self.kind {
            Kind::Sqlite { dir, .. } => Location::Data(dir.clone()),
            Kind::Postgres { .. } => Location::Url(self.url.clone()),
        }
    }

    /// Runs the real `ewii-hub` binary against this backend.
    /// `ewii-hub` pointed at this backend, ready for arguments.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ewii-hub"));
        cmd.env_remove(DATABASE_URL_ENV)
            .env_remove("EWII_HUB_DATA")
            .env(MASTER_KEY_ENV, &self.master_key);
        match &self.kind {
            Kind::Sqlite { dir, .. } => cmd.arg("--data").arg(dir),
            Kind::Postgres { .. } => cmd.arg("--database-url").arg(&self.url),
        };
        cmd
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run ewii-hub")
    }

    /// Runs the CLI, expects success, parses stdout as JSON.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "ewii-hub {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ewii-hub {args:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs the CLI, expects failure, returns stderr (one line).
    pub fn cli_err(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "ewii-hub {args:?} should have failed"
        );
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert_eq!(err.lines().count(), 1, "error is not one line: {err}");
        assert!(err.starts_with("error: "), "{err}");
        err
    }

    /// Closes the store (the PostgreSQL database is dropped on drop).
    pub async fn finish(self) {
        self.store.close().await;
    }
}

/// Runs one statement on the backend's database directly, past the store
/// (to tamper with it, or to make it fail).
pub async fn raw_exec(backend: &Backend, sql: String) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&backend.url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// Audit row `seq` as stored: record, prev_hash, hash.
pub async fn raw_record(backend: &Backend, seq: i64) -> (String, String, String) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&backend.url).await.unwrap();
    let row = sqlx::query("SELECT record, prev_hash, hash FROM audit_log WHERE seq = $1")
        .bind(seq)
        .fetch_one(&pool)
        .await
        .unwrap();
    use sqlx::Row as _;
    let out = (row.get(0), row.get(1), row.get(2));
    pool.close().await;
    out
}

/// An `ewii-hub serve` process on loopback ports (killed on drop), as its
/// first JSON line announced it.
pub struct HubProcess {
    /// The process.
    pub child: tokio::process::Child,
    /// Its QUIC address.
    pub quic: std::net::SocketAddr,
    /// Its agents' MCP URL.
    pub mcp_url: String,
    /// The hub CA the clients trust.
    pub hub_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Backend {
    /// Starts `ewii-hub --json serve` on 127.0.0.1 with `extra` flags and
    /// waits for its start-up line.
    pub async fn serve_process(&self, extra: &[&str]) -> HubProcess {
        use tokio::io::AsyncBufReadExt;
        // The agents' HTTP clients use the process-wide provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let hub_ca_pem = self.cli_json(&["--json", "hub-ca"])["pem"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut child = tokio::process::Command::from(self.command())
            .args([
                "--json",
                "serve",
                "--quic",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--name",
                "127.0.0.1",
            ])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            stdout.read_line(&mut line),
        )
        .await
        .expect("ewii-hub serve did not start")
        .unwrap();
        let started: serde_json::Value = serde_json::from_str(&line).unwrap();
        HubProcess {
            child,
            quic: started["quic"].as_str().unwrap().parse().unwrap(),
            mcp_url: started["mcp_url"].as_str().unwrap().to_owned(),
            hub_ca: ewii_quic::certificates_from_pem(&hub_ca_pem, "hub CA").unwrap(),
        }
    }
}

/// Drops the throwaway database, even when the test panicked.
struct PgDatabase {
    admin: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        block_on_own_thread(async move {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        });
    }
}

/// Runs `work` to completion on a thread with its own runtime: `Drop` is
/// synchronous and may run inside a runtime, where `block_on` panics.
pub fn block_on_own_thread(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(work);
    })
    .join();
}

/// `admin` with its database path replaced by `name`.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

fn random_hex() -> String {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new().fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}
