//! The client's connection log: one JSON object per line, appended, so the
//! customer's admin can see (and feed to their SIEM) every forward the hub
//! made, every refusal, and when the tunnel went up or down.
//!
//! The log names destinations and the hub's identity, so it is created
//! private (mode 0600). Writing it never fails the forward being logged:
//! an I/O error is reported through `tracing` and the record is dropped.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// One line of the connection log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionRecord {
    /// When it happened: RFC 3339, UTC, milliseconds (`2026-01-02T03:04:05.678Z`).
    pub time: String,
    /// The SPIFFE ID of this client (its SVID).
    pub spiffe_id: String,
    /// `forward`, `refused`, `tunnel_up`, `tunnel_down`, `connect_failed`,
    /// `enrolled`, `renewed`, `renew_failed`, `goodbye` (a stop that
    /// revoked the deployment; outcome `ok` once the hub acknowledged) or
    /// `revoked` (the hub revoked this SVID).
    pub event: &'static str,
    /// The adapter destination (`unix:/…` or `tcp:…`), when one is involved.
    pub destination: Option<String>,
    /// Bytes received from the adapter.
    pub bytes_in: u64,
    /// Bytes sent to the adapter.
    pub bytes_out: u64,
    /// How long the forward (or tunnel) lasted.
    pub duration_ms: u64,
    /// `ok`, or the error.
    pub outcome: String,
}

impl ConnectionRecord {
    /// A record stamped with the current time: no destination, zero
    /// counters, outcome `ok`. Set the other fields as needed.
    pub fn now(spiffe_id: impl Into<String>, event: &'static str) -> Self {
        ConnectionRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            spiffe_id: spiffe_id.into(),
            event,
            destination: None,
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 0,
            outcome: "ok".into(),
        }
    }
}

/// An open JSON-lines connection log.
#[derive(Debug)]
pub struct ConnectionLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl ConnectionLog {
    /// Opens `path` for appending, creating it (mode 0600) and its parent
    /// directories as needed. An existing log is tightened to 0600 too.
    pub fn open(path: &Path) -> std::io::Result<ConnectionLog> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        #[cfg(unix)]
        {
            // `mode` applies only when the file is created; a log left
            // readable by an older release or an admin's `touch` is fixed.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(ConnectionLog {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` as one line. The line is written with a single
    /// `write_all` on an append-mode file, so concurrent writers do not
    /// interleave within a line. Errors are logged, never returned: the
    /// forward being recorded has already happened.
    pub fn record(&self, entry: &ConnectionRecord) {
        let mut line = match serde_json::to_vec(entry) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a connection log record");
                return;
            }
        };
        line.push(b'\n');
        // A panic while holding the lock leaves a plain file handle behind,
        // still fine to append to.
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = file.write_all(&line).and_then(|()| file.flush()) {
            tracing::error!(
                path = %self.path.display(),
                error = %e,
                "cannot write the connection log"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_records_are_two_json_lines_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/nested/connections.jsonl");
        let log = ConnectionLog::open(&path).unwrap();

        let mut forward = ConnectionRecord::now("spiffe://hub.example/hub", "forward");
        forward.destination = Some("tcp:127.0.0.1:8080".into());
        forward.bytes_in = 1234;
        forward.bytes_out = 56;
        forward.duration_ms = 7;
        log.record(&forward);
        let mut refused = ConnectionRecord::now("spiffe://hub.example/hub", "refused");
        refused.destination = Some("tcp:127.0.0.1:1".into());
        refused.outcome = "destination tcp:127.0.0.1:1 is not in this client's allow-list".into();
        log.record(&refused);
        drop(log);

        // Reopening appends rather than truncating.
        let log = ConnectionLog::open(&path).unwrap();
        log.record(&ConnectionRecord::now(
            "spiffe://hub.example/hub",
            "tunnel_down",
        ));

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(text.ends_with('\n'));

        let first = &lines[0];
        assert_eq!(first["event"], "forward");
        assert_eq!(first["spiffe_id"], "spiffe://hub.example/hub");
        assert_eq!(first["destination"], "tcp:127.0.0.1:8080");
        assert_eq!(first["bytes_in"], 1234);
        assert_eq!(first["bytes_out"], 56);
        assert_eq!(first["duration_ms"], 7);
        assert_eq!(first["outcome"], "ok");
        let time = first["time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok()
                && time.ends_with('Z')
                && time.len() == "2026-01-02T03:04:05.678Z".len(),
            "{time}"
        );

        assert_eq!(lines[1]["event"], "refused");
        assert!(lines[1]["outcome"].as_str().unwrap().contains("allow-list"));
        assert_eq!(lines[2]["event"], "tunnel_down");
        assert_eq!(lines[2]["destination"], serde_json::Value::Null);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_readable_log_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connections.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        ConnectionLog::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
