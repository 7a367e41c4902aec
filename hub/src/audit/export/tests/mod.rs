//! Tests of the exporters: the record formats and their escaping, the
//! SPEC, and each sink (JSON lines, syslog, HTTPS) with its retries and
//! cursor. This module holds what they share: an in-memory trail, fast
//! retries, a syslog frame reader.

mod format;
mod https;
mod jsonl;
mod spec;
mod syslog;

use std::path::Path;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::format::{
    MSGID, MSGID_INTENT, SD_FIELDS, SD_ID, header_field, sd_value, syslog_timestamp,
};
use super::jsonl::numbered;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;
use crate::audit::egress::test_support::{TlsListener, install_provider, test_pki};

/// The audit table in memory. Appending is synchronous and takes the
/// lock only to push, as a tool call would.
#[derive(Default)]
pub(super) struct MemSource {
    records: Mutex<Vec<ExportRecord>>,
    cursors: Mutex<HashMap<String, i64>>,
}

impl MemSource {
    fn append(&self, decision: &str) -> i64 {
        let mut records = self.records.lock().unwrap();
        let seq = records.len() as i64 + 1;
        records.push(record(seq, decision));
        seq
    }

    fn cursor_of(&self, exporter: &str) -> i64 {
        self.cursors
            .lock()
            .unwrap()
            .get(exporter)
            .copied()
            .unwrap_or(0)
    }
}

impl Source for MemSource {
    async fn after(&self, seq: i64, limit: usize) -> Result<Vec<ExportRecord>, String> {
        let records = self.records.lock().unwrap();
        Ok(records
            .iter()
            .filter(|r| r.seq > seq)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn cursor(&self, exporter: &str) -> Result<i64, String> {
        Ok(self.cursor_of(exporter))
    }

    async fn set_cursor(&self, exporter: &str, seq: i64) -> Result<(), String> {
        self.cursors
            .lock()
            .unwrap()
            .insert(exporter.to_string(), seq);
        Ok(())
    }
}

pub(super) fn record(seq: i64, decision: &str) -> ExportRecord {
    let time_ms = 1_700_000_000_123 + seq;
    ExportRecord {
        seq,
        time_ms,
        decision: decision.to_string(),
        json: json!({
            "time_ms": time_ms,
            "workspace": "acme",
            "deployment": "eu-shop",
            "agent": "bot",
            "tool": "eu_shop_query",
            "decision": decision,
            "statement": "SELECT name FROM customers WHERE id = ?",
            "outcome": if decision == "allow" { "ok" } else { "denied" },
        }),
    }
}

pub(super) fn fast() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        idle: Duration::from_millis(20),
        batch: 7,
    }
}

pub(super) fn start<S: Source>(
    config: SinkConfig,
    source: Arc<S>,
    policy: RetryPolicy,
) -> (Arc<Notify>, CancellationToken, JoinHandle<()>) {
    let wake = Arc::new(Notify::new());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_with(
        config,
        source,
        wake.clone(),
        cancel.clone(),
        policy,
    ));
    (wake, cancel, task)
}

pub(super) async fn stop(cancel: CancellationToken, task: JoinHandle<()>) {
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the exporter ends on cancel")
        .unwrap();
}

/// Waits for `cond`, at most 5 s.
pub(super) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(super) fn seqs(objects: &[Value]) -> Vec<i64> {
    objects.iter().map(|o| o["seq"].as_i64().unwrap()).collect()
}

// ---- syslog parsing, as a receiver does it

/// Reads `n` octet-counted frames (RFC 6587 §3.4.1).
pub(super) async fn read_frames<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    n: usize,
) -> Vec<String> {
    let mut frames = Vec::new();
    while frames.len() < n {
        if let Some(sp) = buf.iter().position(|&b| b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
            if buf.len() >= sp + 1 + len {
                frames.push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
                buf.drain(..sp + 1 + len);
                continue;
            }
        }
        let mut chunk = [0u8; 4096];
        let k = r.read(&mut chunk).await.unwrap();
        assert!(k > 0, "connection closed after {} frames", frames.len());
        buf.extend_from_slice(&chunk[..k]);
    }
    frames
}

#[derive(Debug)]
pub(super) struct Syslog {
    pri: u8,
    header: Vec<String>,
    sd: String,
    json: Value,
}

pub(super) fn parse_syslog(msg: &str) -> Syslog {
    let (pri, rest) = msg.strip_prefix('<').unwrap().split_once('>').unwrap();
    let mut parts = rest.splitn(7, ' ');
    let header: Vec<String> = parts.by_ref().take(6).map(str::to_string).collect();
    let rest = parts.next().unwrap();
    let (sd, msg) = rest.split_once("] \u{FEFF}").expect("SD then BOM");
    Syslog {
        pri: pri.parse().unwrap(),
        header,
        sd: format!("{sd}]"),
        json: serde_json::from_str(msg).unwrap(),
    }
}

pub(super) fn check_syslog(msg: &str, expected: &ExportRecord, hostname: &str) {
    let m = parse_syslog(msg);
    let severity = if expected.decision == "allow" { 6 } else { 5 };
    assert_eq!(m.pri, 13 * 8 + severity);
    assert_eq!(m.header[0], "1");
    assert_eq!(
        m.header[1],
        syslog_timestamp(expected.time_ms),
        "RFC 3339 with ms"
    );
    assert_eq!(m.header[2], hostname);
    assert_eq!(m.header[3], "ewii-hub");
    assert_eq!(m.header[4], std::process::id().to_string());
    assert_eq!(m.header[5], "tool_call");
    assert_eq!(
        m.sd,
        format!(
            "[ewii@32473 seq=\"{}\" decision=\"{}\" workspace=\"acme\" \
             deployment=\"eu-shop\" agent=\"bot\" tool=\"eu_shop_query\"]",
            expected.seq, expected.decision
        )
    );
    assert_eq!(m.json, export_object(expected));
}
