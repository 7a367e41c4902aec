//! The real binaries as processes.
//!
//! - where they are: [`locate`] looks in one directory, [`bin_dir`]:
//!   `EWII_BIN_DIR` (the build under judgment), else
//!   `$CARGO_TARGET_DIR/debug`, else the target directory this test
//!   executable was built into; never a fallback to another build;
//! - how they run: [`Launch`] (a private temporary `HOME`, no inherited
//!   `EWII_*` variable) gives a [`RunningProcess`] whose output is captured
//!   line by line, which waits for a line or a TCP port with a deadline,
//!   and which is stopped on drop (SIGTERM, then SIGKILL after a grace);
//! - [`free_loopback_port`], [`wait_for_tcp`];
//! - the hub: [`HubCli`] (`cli`, `cli_json`, `cli_err`) and [`HubProcess`]
//!   (`ewii-hub --json serve` on loopback).

mod hub;
mod running;

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use hub::{HubCli, HubProcess};
pub use running::{Launch, Line, RunningProcess, Stream};

/// The binaries a build ships.
pub const BINARIES: [&str; 4] = ["ewii-hub", "ewii-adapter", "ewii-client", "ewii"];

/// The variable naming the directory of the binaries under test.
pub const BIN_DIR_ENV: &str = "EWII_BIN_DIR";

/// What went wrong with a process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// No binary of that name where this run looks.
    #[error(
        "{name} is not in {} ({from}); build the binaries first (`cargo build --workspace --bins`: \
         `cargo test -p ewii-conformance` builds only this crate's) or set {BIN_DIR_ENV}",
        dir.display()
    )]
    NotFound {
        /// The binary.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// Why there.
        from: &'static str,
    },
    /// No directory to look in: no `EWII_BIN_DIR`, no `CARGO_TARGET_DIR`,
    /// and the test executable's path is unknown.
    #[error("cannot tell where the binaries are: set {BIN_DIR_ENV}")]
    NoBinDir,
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// What was awaited did not happen in time.
    #[error("{what} did not happen within {within:?}; output so far:\n{output}")]
    Deadline {
        /// What was awaited.
        what: String,
        /// The deadline.
        within: Duration,
        /// The process's output until then.
        output: String,
    },
    /// The process ended before what was awaited happened.
    #[error("{program} exited ({status}) before {what}; output:\n{output}")]
    Exited {
        /// The program.
        program: String,
        /// How it ended.
        status: String,
        /// What was awaited.
        what: String,
        /// Its whole output.
        output: String,
    },
}

/// The directory the binaries are taken from, and why that one.
pub fn bin_dir() -> Result<(PathBuf, &'static str), ProcessError> {
    choose_bin_dir(
        std::env::var_os(BIN_DIR_ENV),
        std::env::var_os("CARGO_TARGET_DIR"),
        std::env::current_exe().ok(),
    )
}

/// [`bin_dir`]'s choice, from the two variables and the test executable.
fn choose_bin_dir(
    bin_dir: Option<OsString>,
    target_dir: Option<OsString>,
    exe: Option<PathBuf>,
) -> Result<(PathBuf, &'static str), ProcessError> {
    if let Some(dir) = bin_dir.filter(|d| !d.is_empty()) {
        return Ok((PathBuf::from(dir), "EWII_BIN_DIR"));
    }
    if let Some(dir) = target_dir.filter(|d| !d.is_empty()) {
        return Ok((Path::new(&dir).join("debug"), "$CARGO_TARGET_DIR/debug"));
    }
    // Tests run from <target>/<profile>/deps/, binaries sit in <profile>/.
    let dir = exe
        .as_deref()
        .and_then(Path::parent)
        .ok_or(ProcessError::NoBinDir)?;
    let dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().ok_or(ProcessError::NoBinDir)?
    } else {
        dir
    };
    Ok((dir.to_owned(), "the target directory of this test"))
}

/// The path of binary `name` (one of [`BINARIES`]) in [`bin_dir`].
pub fn locate(name: &str) -> Result<PathBuf, ProcessError> {
    let (dir, from) = bin_dir()?;
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ProcessError::NotFound {
            name: name.to_owned(),
            dir,
            from,
        })
    }
}

/// A loopback port free for both TCP and UDP when asked (a hub takes QUIC
/// on UDP and HTTP on TCP). Another process may take it before it is used;
/// prefer binding port 0 where the program allows it.
pub fn free_loopback_port() -> std::io::Result<u16> {
    for _ in 0..64 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no loopback port free for both TCP and UDP",
    ))
}

/// How often waits look again.
const POLL: Duration = Duration::from_millis(20);

/// Waits until something accepts TCP connections at `addr`.
pub async fn wait_for_tcp(addr: SocketAddr, within: Duration) -> Result<(), ProcessError> {
    let deadline = Instant::now() + within;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ProcessError::Deadline {
                what: format!("a listener on {addr}"),
                within,
                output: String::new(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bin_dir_is_the_first_configured_place() {
        let exe = Some(PathBuf::from("/t/debug/deps/suite-0123"));
        let choose = |b: Option<&str>, t: Option<&str>, e: Option<PathBuf>| {
            choose_bin_dir(b.map(OsString::from), t.map(OsString::from), e).unwrap()
        };
        assert_eq!(
            choose(Some("/build/bin"), Some("/tgt"), exe.clone()),
            (PathBuf::from("/build/bin"), "EWII_BIN_DIR")
        );
        assert_eq!(
            choose(Some(""), Some("/tgt"), exe.clone()),
            (PathBuf::from("/tgt/debug"), "$CARGO_TARGET_DIR/debug")
        );
        assert_eq!(
            choose(None, None, exe),
            (
                PathBuf::from("/t/debug"),
                "the target directory of this test"
            )
        );
        assert_eq!(
            choose(None, None, Some(PathBuf::from("/t/release/ewii"))).0,
            PathBuf::from("/t/release")
        );
        assert!(matches!(
            choose_bin_dir(None, None, None),
            Err(ProcessError::NoBinDir)
        ));
    }
}
