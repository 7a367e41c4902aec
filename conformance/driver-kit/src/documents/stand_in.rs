//! The nx-27017 stand-in: a MongoDB wire-protocol server backed by SQLite
//! (PyPI `nx-27017`, installed by `scripts/test-mongodb.sh` into a venv
//! under `$EWII_CACHE`). It is NOT MongoDB: tests that use it say so, and
//! what it cannot show is gated to a real server (`EWII_TEST_MONGODB_URL`).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned stand-in version (also in `scripts/test-mongodb.sh`).
pub const NX27017_VERSION: &str = "0.8.1";

/// How long the stand-in may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(20);

/// One running stand-in on a free port, stopped when dropped.
pub struct StandIn {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl StandIn {
    /// The stand-in's name, as tests print it.
    pub const NAME: &'static str = "nx-27017 0.8.1 (wire-compatible stand-in, not MongoDB)";

    /// Starts a stand-in with isolated in-memory databases, or returns
    /// `None` after printing `SKIPPED` when it is not installed (run
    /// `scripts/test-mongodb.sh install`). With `EWII_REQUIRE_NX27017` set
    /// (`scripts/test.sh` sets it) a missing stand-in is a failure.
    ///
    /// # Panics
    /// When it is required but missing, or does not come up.
    pub fn start() -> Option<StandIn> {
        let bin = binary();
        if !bin.exists() {
            let why = format!(
                "the nx-27017 stand-in is not installed at {} (scripts/test-mongodb.sh install)",
                bin.display()
            );
            if std::env::var_os("EWII_REQUIRE_NX27017").is_some() {
                panic!("{why}, and EWII_REQUIRE_NX27017 is set");
            }
            println!("SKIPPED: {why}");
            return None;
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("ewii-nx27017-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("stand-in directory {}: {e}", dir.display()));
        let child = Command::new(&bin)
            .args(["--data-dir", "memory", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--pid-file")
            .arg(dir.join("nx.pid"))
            .arg("--log-file")
            .arg(dir.join("nx.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stand_in = StandIn { child, port, dir };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < START_LIMIT,
                "the nx-27017 stand-in did not accept connections on port {port} within {START_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("using {} on port {port}", StandIn::NAME);
        Some(stand_in)
    }

    /// A URL for database `database` on the stand-in.
    pub fn url(&self, database: &str) -> String {
        format!("mongodb://127.0.0.1:{}/{database}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the stand-in is installed: `EWII_NX27017_BIN`, or the venv that
/// `scripts/test-mongodb.sh` creates under `$EWII_CACHE`.
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("EWII_NX27017_BIN") {
        return PathBuf::from(bin);
    }
    let cache = std::env::var_os("EWII_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ewii")
        });
    cache.join(format!("venv-nx-27017-{NX27017_VERSION}/bin/nx-27017"))
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}
