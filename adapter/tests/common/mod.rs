//! Shared helpers for the adapter's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const TOKEN: &str = "test-enrolment-token-0123456789";

/// A temporary adapter home with the test token.
pub struct TestHome {
    pub dir: tempfile::TempDir,
}

impl TestHome {
    pub fn new() -> Self {
        TestHome {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn store(&self) -> PathBuf {
        self.home().join("credentials.enc")
    }

    /// The local credential file `init` made.
    pub fn credential_file(&self) -> PathBuf {
        self.home().join("local-credential")
    }

    /// The local credential callers of `serve` must present.
    pub fn credential(&self) -> String {
        std::fs::read_to_string(self.credential_file())
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ewii-adapter"));
        c.env("EWII_ADAPTER_HOME", self.home())
            .env("EWII_ENROLLMENT_TOKEN", TOKEN)
            .env("EWII_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`ewii-adapter {}` failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure, returning stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "`ewii-adapter {}` unexpectedly succeeded",
            args.join(" ")
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn init(&self) {
        self.ok(&["init", "--workspace-id", "ws-test"]);
    }

    /// Creates a SQLite file with a `customers` table and attaches it.
    pub async fn attach_shop(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.db"));
        make_shop_db(&path).await;
        self.ok(&[
            "add-database",
            name,
            "--driver",
            "sqlite",
            "--url",
            &format!("sqlite://{}", path.display()),
        ]);
        path
    }

    /// Starts `serve` with extra arguments and returns it with its URL.
    pub fn serve(&self, extra: &[&str]) -> (ServeProcess, String) {
        let mut args = vec!["serve"];
        if !extra.iter().any(|a| *a == "--unix" || *a == "--stdio") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        args.extend(extra);
        let mut child = self
            .command()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned();
        assert!(!url.is_empty(), "serve printed no address");
        (ServeProcess(child), url)
    }
}

/// Kills the server when dropped.
pub struct ServeProcess(pub Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sample shop (`customers (id, name, country)`, 10 rows, even ids in
/// DE). `ewii_conformance::sample` is the one place it is built; this copy
/// stays because `ewii-conformance` depends on this crate.
pub async fn make_shop_db(path: &Path) {
    use sqlx::{ConnectOptions as _, Connection as _};
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL)",
    )
    .execute(&mut c)
    .await
    .unwrap();
    for i in 1..=10 {
        let country = if i % 2 == 0 { "DE" } else { "FR" };
        sqlx::query("INSERT INTO customers VALUES (?, ?, ?)")
            .bind(i)
            .bind(format!("Customer {i}"))
            .bind(country)
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
