//! The `ewii-hub` binary: its admin CLI run against one store, and its
//! `serve` process on loopback.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use ewii_hub::Location;
use ewii_hub::state::master_key::MASTER_KEY_ENV;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use super::running::scrub_environment;
use super::{ProcessError, RunningProcess, Stream, locate};

/// How long `ewii-hub serve` may take to announce itself.
const SERVE_START: Duration = Duration::from_secs(20);

/// `ewii-hub` pointed at one store, with its master key.
#[derive(Debug, Clone)]
pub struct HubCli {
    program: PathBuf,
    location: [OsString; 2],
    master_key: String,
}

impl HubCli {
    /// The binary at `program`, for the store at `location` sealed with
    /// `master_key` (base64).
    pub fn new(program: PathBuf, location: &Location, master_key: &str) -> HubCli {
        let location = match location {
            Location::Data(dir) => ["--data".into(), dir.into()],
            Location::Url(url) => ["--database-url".into(), url.into()],
        };
        HubCli {
            program,
            location,
            master_key: master_key.to_owned(),
        }
    }

    /// [`HubCli::new`] with the `ewii-hub` that [`locate`] finds.
    pub fn locate(location: &Location, master_key: &str) -> Result<HubCli, ProcessError> {
        Ok(HubCli::new(locate("ewii-hub")?, location, master_key))
    }

    /// `ewii-hub` with the store's flag and key, ready for arguments. No
    /// inherited `EWII_*` variable (a runner's `EWII_HUB_DATABASE_URL`
    /// would otherwise pick the store).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        scrub_environment(&mut cmd);
        cmd.env(MASTER_KEY_ENV, &self.master_key)
            .args(&self.location);
        cmd
    }

    /// Runs the CLI with `args`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run ewii-hub")
    }

    /// Runs the CLI, expects success, parses stdout as JSON.
    pub fn cli_json(&self, args: &[&str]) -> Value {
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

    /// Runs the CLI, expects failure, returns stderr (one line starting
    /// `error: `).
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

    /// Starts `ewii-hub --json serve` on 127.0.0.1 (ephemeral QUIC and HTTP
    /// ports) with `extra` flags and waits for its start-up line.
    pub async fn serve(&self, extra: &[&str]) -> HubProcess {
        let hub_ca = self.cli_json(&["--json", "hub-ca"]);
        let hub_ca = hub_ca["pem"].as_str().expect("hub-ca prints a pem");
        let hub_ca = CertificateDer::pem_slice_iter(hub_ca.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the hub CA is PEM certificates");
        let mut command = self.command();
        command
            .args(["--json", "serve", "--quic", "127.0.0.1:0"])
            .args(["--http", "127.0.0.1:0", "--name", "127.0.0.1"])
            .args(extra);
        let mut process = RunningProcess::spawn(command).expect("start ewii-hub serve");
        let line = process
            .wait_for_line(SERVE_START, |l| l.stream == Stream::Stdout)
            .await
            .unwrap_or_else(|e| panic!("ewii-hub serve did not start: {e}"));
        let started: Value = serde_json::from_str(&line.text)
            .unwrap_or_else(|e| panic!("start-up line is not JSON ({e}): {}", line.text));
        HubProcess {
            quic: started["quic"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no QUIC address in {started}")),
            mcp_url: started["mcp_url"]
                .as_str()
                .unwrap_or_else(|| panic!("no MCP URL in {started}"))
                .to_owned(),
            hub_ca,
            process,
        }
    }
}

/// An `ewii-hub serve` process on loopback, as its start-up line announced
/// it; stopped on drop.
pub struct HubProcess {
    /// The process (`kill()` for a crash, `id()` for its pid).
    pub process: RunningProcess,
    /// Its QUIC address.
    pub quic: SocketAddr,
    /// Its agents' MCP URL.
    pub mcp_url: String,
    /// The hub CA the clients trust.
    pub hub_ca: Vec<CertificateDer<'static>>,
}

impl HubProcess {
    /// Its HTTP address (from the MCP URL).
    pub fn http_addr(&self) -> SocketAddr {
        self.mcp_url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|authority| authority.parse().ok())
            .unwrap_or_else(|| panic!("no address in {}", self.mcp_url))
    }
}
