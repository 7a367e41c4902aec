//! Tests of the exporters: every sink, the SPEC, escaping, retries and
//! cursors.

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
struct MemSource {
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

fn record(seq: i64, decision: &str) -> ExportRecord {
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

fn fast() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        idle: Duration::from_millis(20),
        batch: 7,
    }
}

fn start<S: Source>(
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

async fn stop(cancel: CancellationToken, task: JoinHandle<()>) {
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the exporter ends on cancel")
        .unwrap();
}

/// Waits for `cond`, at most 5 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn seqs(objects: &[Value]) -> Vec<i64> {
    objects.iter().map(|o| o["seq"].as_i64().unwrap()).collect()
}

// ---- syslog parsing, as a receiver does it

/// Reads `n` octet-counted frames (RFC 6587 §3.4.1).
async fn read_frames<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, n: usize) -> Vec<String> {
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
struct Syslog {
    pri: u8,
    header: Vec<String>,
    sd: String,
    json: Value,
}

fn parse_syslog(msg: &str) -> Syslog {
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

fn check_syslog(msg: &str, expected: &ExportRecord, hostname: &str) {
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

#[test]
fn syslog_message_follows_rfc5424() {
    let mut r = record(42, "deny");
    r.json["agent"] = json!("a\"b\\c]d é");
    r.json.as_object_mut().unwrap().remove("tool");
    let msg = syslog_message(&r, "", "my host");
    let m = parse_syslog(&msg);
    assert_eq!(m.pri, 109);
    assert_eq!(m.header[1], "2023-11-14T22:13:20.165Z");
    assert_eq!(
        (m.header[2].as_str(), m.header[3].as_str()),
        ("my_host", "-")
    );
    assert_eq!(
        m.sd,
        r#"[ewii@32473 seq="42" decision="deny" workspace="acme" deployment="eu-shop" agent="a\"b\\c\]d é"]"#
    );
    assert_eq!(m.json["seq"], 42, "seq is added to the exported object");
    assert_eq!(m.json["agent"], "a\"b\\c]d é");

    let allow = syslog_message(&record(1, "allow"), "ewii-hub", &"h".repeat(300));
    let m = parse_syslog(&allow);
    assert_eq!(m.pri, 110);
    assert_eq!(m.header[2].len(), 255);
    assert_eq!(syslog_timestamp(i64::MAX), "-");
}

// ---- escaping: nothing an agent sends can break a record's line

/// Every character that [`breaks_lines`] must catch: C0, DEL, C1
/// (NEL among them), U+2028, U+2029.
fn line_breakers() -> Vec<char> {
    (0u32..0x20)
        .chain(0x7f..=0x9f)
        .chain([0x2028, 0x2029])
        .map(|c| char::from_u32(c).unwrap())
        .collect()
}

/// What a line-oriented reader may split on: `str::lines` and, wider,
/// Python's `str.splitlines` (which adds VT, FF, FS, GS, RS, NEL,
/// U+2028, U+2029).
fn splits_lines(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(
            c,
            '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{1c}'
                ..='\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}'
        )
    })
}

/// A PARAM-VALUE as an RFC 5424 receiver reads it: up to the first
/// unescaped `"`, with `\"`, `\\` and `\]` unescaped. Returns the value
/// and what follows the closing quote.
fn read_param_value(sd: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = sd.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &sd[i + 1..]),
            '\\' => match chars.clone().next() {
                Some((_, n @ ('"' | '\\' | ']'))) => {
                    value.push(n);
                    chars.next();
                }
                _ => value.push('\\'),
            },
            c => value.push(c),
        }
    }
    panic!("unterminated PARAM-VALUE: {sd}")
}

#[test]
fn breaks_lines_is_every_control_and_unicode_separator() {
    for c in line_breakers() {
        assert!(breaks_lines(c), "U+{:04X}", u32::from(c));
    }
    for c in (' '..='~').chain(['é', '\u{a0}', '\u{feff}', '€', '😀']) {
        assert!(!breaks_lines(c), "U+{:04X}", u32::from(c));
    }
}

#[test]
fn sd_value_escapes_specials_and_every_line_breaker() {
    assert_eq!(sd_value(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
    assert_eq!(sd_value("é ok"), "é ok", "UTF-8 stays as is (§6.3.3)");
    for c in line_breakers() {
        let escaped = sd_value(&format!("x{c}y"));
        assert_eq!(escaped, format!("x\\u{:04x}y", u32::from(c)));
        assert!(!escaped.chars().any(breaks_lines));
    }
    // A value's own `\u000a` text stays distinguishable from an
    // escaped line feed: its backslash is doubled.
    assert_eq!(sd_value("\\u000a"), "\\\\u000a");
    assert_ne!(sd_value("\\u000a"), sd_value("\n"));

    // Cut to SD_VALUE_MAX octets, never inside an escape: the receiver
    // still finds the closing quote right after the value.
    for big in [
        "a".repeat(1 << 20),
        "\\".repeat(1000),
        "]".repeat(1000),
        "\n".repeat(1000),
        "é".repeat(1000),
        format!("{}\"", "a".repeat(SD_VALUE_MAX - 4)),
    ] {
        let v = sd_value(&big);
        assert!(v.len() <= SD_VALUE_MAX, "{} octets", v.len());
        assert!(v.ends_with('…'), "{v}");
        let framed = format!("{v}\" rest");
        let (read, after) = read_param_value(&framed);
        assert_eq!(after, " rest", "{v}");
        assert!(read.ends_with('…'));
    }
    let fits = "a".repeat(200);
    assert_eq!(sd_value(&fits), fits, "short values are kept whole");
}

#[test]
fn header_fields_are_printusascii_within_their_lengths() {
    assert_eq!(header_field("a b\tc\u{85}é\u{2028}d", 255), "a_b_c___d");
    assert_eq!(header_field("", 48), "-");
    for c in line_breakers() {
        let f = header_field(&format!("h{c}x"), 255);
        assert_eq!(f, "h_x", "U+{:04X}", u32::from(c));
    }
    let f = header_field(&"é".repeat(300), 48);
    assert_eq!(f.len(), 48);
    assert!(f.bytes().all(|b| (33..=126).contains(&b)));
    let f = header_field(&"h".repeat(300), 255);
    assert_eq!(f.len(), 255);
}

/// An SD-NAME (§6.3.2, §6.3.3): 1 to 32 PRINTUSASCII octets except `=`,
/// space, `]` and `"`.
fn is_sd_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'))
}

#[test]
fn sd_names_and_msgid_follow_rfc5424() {
    for name in [SD_ID, "seq", "decision"].into_iter().chain(SD_FIELDS) {
        assert!(is_sd_name(name), "{name}");
    }
    for bad in ["", "a=b", "a b", "a]", "a\"", "é", &"n".repeat(33)] {
        assert!(!is_sd_name(bad), "{bad:?}");
    }
    assert_eq!(header_field(MSGID, 32), MSGID);
    assert_eq!(header_field(MSGID_INTENT, 32), MSGID_INTENT);
}

#[test]
fn json_text_is_one_line_and_reads_back_unchanged() {
    let nasty: String = line_breakers().into_iter().collect::<String>() + "\"\\]é";
    let value = json!({ "tool": nasty, "arguments": { nasty.clone(): [nasty.clone()] } });
    let text = json_text(&value);
    assert!(!text.chars().any(breaks_lines), "{text}");
    assert!(!splits_lines(&text), "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    assert_eq!(json_text(&json!({"a": "b"})), r#"{"a":"b"}"#);
}

#[test]
fn log_excerpt_is_short_escaped_and_says_how_long() {
    let huge = "x".repeat(1 << 20);
    let e = log_excerpt(&huge, 32);
    assert_eq!(e, format!("{}… (1048576 bytes)", "x".repeat(32)));
    let e = log_excerpt("eu_x\r\n<110>1 \\", 32);
    assert_eq!(e, "eu_x\\u000d\\u000a<110>1 \\u005c");
    assert!(!splits_lines(&e));
    assert_eq!(log_excerpt("eu_shop_query", 32), "eu_shop_query");
}

#[test]
fn a_forged_record_is_still_one_rfc5424_line() {
    let forged = "eu_x\r\n<110>1 2026-01-01T00:00:00Z forged ewii - - - decision=allow";
    let mut r = record(7, "deny");
    r.json["tool"] = json!(forged);
    r.json["agent"] = json!("bot\u{2028}\u{85}\"]\\");
    r.json["statement"] = json!("SELECT 1\n<110>1 - - - - - decision=allow\u{2029}");
    let msg = syslog_message(&r, "ewii\nhub", "host\r\n<110>1");
    assert!(!msg.chars().any(breaks_lines), "{msg:?}");
    assert!(!splits_lines(&msg));
    assert!(msg.starts_with("<109>1 "));
    let m = parse_syslog(&msg);
    assert_eq!(m.header[2], "host__<110>1");
    assert_eq!(m.header[3], "ewii_hub");
    assert_eq!(m.header[5], "tool_call");
    // The JSON MSG reads back exactly what was recorded.
    assert_eq!(m.json["tool"], forged);
    assert_eq!(m.json["statement"], r.json["statement"]);
    // The structured data reads back field by field.
    let (_, rest) = m.sd.split_once(" agent=\"").unwrap();
    let (agent, rest) = read_param_value(rest);
    assert_eq!(agent, "bot\\u2028\\u0085\"]\\");
    let (_, rest) = rest.split_once(" tool=\"").unwrap();
    let (tool, rest) = read_param_value(rest);
    assert_eq!(
        tool,
        "eu_x\\u000d\\u000a<110>1 2026-01-01T00:00:00Z forged ewii - - - decision=allow"
    );
    assert_eq!(rest, "]");
}

#[tokio::test]
async fn jsonl_keeps_a_record_with_line_separators_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let config = SinkConfig::Jsonl {
        path: path.clone(),
        max_bytes: DEFAULT_MAX_BYTES,
        keep: 1,
    };
    let mut r = record(1, "allow");
    r.json["tool"] = json!("a\u{2028}b\u{2029}c\u{85}d\u{7f}e\n");
    let mut sink = Sink::open(&config).await.unwrap();
    sink.send(&[r.clone(), record(2, "deny")]).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.chars().any(|c| c != '\n' && breaks_lines(c)),
        "{text:?}"
    );
    assert_eq!(text.matches('\n').count(), 2, "{text:?}");
    for c in ['\u{2028}', '\u{2029}', '\u{85}', '\u{7f}'] {
        assert!(!text.contains(c), "U+{:04X} raw in {text:?}", u32::from(c));
    }
    let objects = read_jsonl(&path);
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0], export_object(&r));
}

#[test]
fn parse_specs_and_names() {
    let c = parse_spec("jsonl:/var/log/ewii/audit.jsonl", None).unwrap();
    assert_eq!(
        c,
        SinkConfig::Jsonl {
            path: "/var/log/ewii/audit.jsonl".into(),
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP
        }
    );
    assert_eq!(c.name(), "jsonl:/var/log/ewii/audit.jsonl");
    assert_eq!(
        parse_spec("jsonl:/a.jsonl?max_bytes=1000&keep=0", None).unwrap(),
        SinkConfig::Jsonl {
            path: "/a.jsonl".into(),
            max_bytes: 1000,
            keep: 0
        }
    );

    let c = parse_spec("syslog+tcp://siem.example.com?hostname=hub-1", None).unwrap();
    assert_eq!(c.name(), "syslog:siem.example.com:514");
    assert!(
        matches!(&c, SinkConfig::Syslog { tls: None, hostname, app_name, .. }
        if hostname == "hub-1" && app_name == "ewii-hub")
    );
    let c = parse_spec("syslog+tls://[::1]?ca=/etc/ewii/siem-ca.pem", None).unwrap();
    assert_eq!(c.name(), "syslog:[::1]:6514");
    assert!(matches!(&c, SinkConfig::Syslog { tls: Some(t), .. }
        if t.server_name == "::1" && t.ca_file.as_deref() == Some(Path::new("/etc/ewii/siem-ca.pem"))));
    let c = parse_spec(
        "syslog+tls://10.0.0.5:1514?server_name=siem.corp&app_name=ewii",
        None,
    )
    .unwrap();
    assert!(
        matches!(&c, SinkConfig::Syslog { addr, tls: Some(t), app_name, .. }
        if addr == "10.0.0.5:1514" && t.server_name == "siem.corp" && app_name == "ewii")
    );

    let token = BearerToken::new("s3cr3t-token".into());
    let c = parse_spec(
        "https://siem.example.com/ingest?ca=/ca.pem&timeout=5&index=ewii",
        Some(token.clone()),
    )
    .unwrap();
    assert_eq!(
        c,
        SinkConfig::Https {
            url: "https://siem.example.com/ingest?index=ewii".into(),
            bearer: Some(token),
            ca_file: Some("/ca.pem".into()),
            timeout: Duration::from_secs(5),
        }
    );
    assert_eq!(c.name(), "https:https://siem.example.com/ingest");
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("index=ewii"),
        "{shown}"
    );
    parse_spec("http://127.0.0.1:8080/ingest", None).unwrap();

    for bad in [
        "audit.jsonl",
        "jsonl:audit.jsonl",
        "jsonl:/a.jsonl?max_bytes=lots",
        "jsonl:/a.jsonl?max_bytes=0",
        "jsonl:/a.jsonl?colour=red",
        "syslog+tcp://",
        "syslog+tcp://host:0",
        "syslog+udp://host",
        "syslog+tls://host?cert=/x",
        "http://siem.example.com/ingest",
        "https://admin:hunter2@siem.example.com/",
    ] {
        let err = parse_spec(bad, None).unwrap_err();
        assert!(matches!(err, ExportError::Spec(_)), "{bad}: {err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The files of a rotated set, oldest first.
fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..1000)
        .map(|n| numbered(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

#[tokio::test]
async fn jsonl_rotation_keeps_every_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let config = SinkConfig::Jsonl {
        path: path.clone(),
        max_bytes: 1000,
        keep: 100,
    };
    let records: Vec<ExportRecord> = (1..=60).map(|s| record(s, "allow")).collect();
    let mut sink = Sink::open(&config).await.unwrap();
    for batch in records[..40].chunks(7) {
        sink.send(batch).await.unwrap();
    }
    // A restart: the sink is opened again on the same files.
    drop(sink);
    let mut sink = Sink::open(&config).await.unwrap();
    for batch in records[40..].chunks(7) {
        sink.send(batch).await.unwrap();
    }

    let files = rotated_files(&path);
    assert!(files.len() > 5, "{files:?}");
    let mut all = Vec::new();
    for file in &files {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size <= 1000, "{} has {size} bytes", file.display());
        all.extend(read_jsonl(file));
    }
    assert_eq!(seqs(&all), (1..=60).collect::<Vec<_>>());
    assert_eq!(all[0], export_object(&records[0]));
}

#[tokio::test]
async fn jsonl_rotation_honours_keep() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let config = SinkConfig::Jsonl {
        path: path.clone(),
        max_bytes: 700,
        keep: 2,
    };
    let mut sink = Sink::open(&config).await.unwrap();
    let records: Vec<ExportRecord> = (1..=50).map(|s| record(s, "deny")).collect();
    for batch in records.chunks(3) {
        sink.send(batch).await.unwrap();
    }
    assert!(numbered(&path, 2).exists());
    assert!(!numbered(&path, 3).exists());
    let files = rotated_files(&path);
    assert_eq!(files.len(), 3);
    let all: Vec<Value> = files.iter().flat_map(|f| read_jsonl(f)).collect();
    let tail = seqs(&all);
    assert_eq!(*tail.last().unwrap(), 50);
    assert!(tail.windows(2).all(|w| w[1] == w[0] + 1), "{tail:?}");
}

#[tokio::test]
async fn syslog_over_tcp_sends_octet_counted_rfc5424() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let receiver = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        read_frames(&mut conn, &mut Vec::new(), 2).await
    });
    let config = SinkConfig::Syslog {
        addr,
        tls: None,
        app_name: DEFAULT_APP_NAME.into(),
        hostname: "hub-1".into(),
    };
    let batch = [record(1, "allow"), record(2, "deny")];
    let mut sink = Sink::open(&config).await.unwrap();
    sink.send(&batch).await.unwrap();
    let frames = receiver.await.unwrap();
    check_syslog(&frames[0], &batch[0], "hub-1");
    check_syslog(&frames[1], &batch[1], "hub-1");
}

#[tokio::test]
async fn syslog_over_tls_checks_the_receiver_certificate() {
    install_provider();
    let pki = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    let receiver = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            // The first client does not trust the CA and gives up.
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                return read_frames(&mut tls, &mut Vec::new(), 2).await;
            }
        }
    });
    let config = |ca_file| SinkConfig::Syslog {
        addr: addr.clone(),
        tls: Some(SyslogTls {
            server_name: "localhost".into(),
            ca_file,
        }),
        app_name: DEFAULT_APP_NAME.into(),
        hostname: "hub-1".into(),
    };
    let err = Sink::open(&config(None)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ExportError::Syslog {
                action: "TLS handshake",
                ..
            }
        ),
        "{err}"
    );

    let batch = [record(7, "deny"), record(8, "allow")];
    let mut sink = Sink::open(&config(Some(ca))).await.unwrap();
    sink.send(&batch).await.unwrap();
    let frames = receiver.await.unwrap();
    check_syslog(&frames[0], &batch[0], "hub-1");
    check_syslog(&frames[1], &batch[1], "hub-1");
}

#[tokio::test]
async fn syslog_reconnects_when_the_receiver_closed_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let receiver = tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        let a = read_frames(&mut first, &mut Vec::new(), 3).await;
        drop(first);
        closed_tx.send(()).unwrap();
        let (mut second, _) = listener.accept().await.unwrap();
        let b = read_frames(&mut second, &mut Vec::new(), 3).await;
        [a, b].concat()
    });
    let source = Arc::new(MemSource::default());
    let config = SinkConfig::Syslog {
        addr,
        tls: None,
        app_name: DEFAULT_APP_NAME.into(),
        hostname: "hub-1".into(),
    };
    let (wake, cancel, task) = start(config, source.clone(), fast());
    for _ in 0..3 {
        source.append("allow");
    }
    wake.notify_waiters();
    closed_rx.await.unwrap();
    // Let the FIN arrive before the next batch.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..3 {
        source.append("deny");
    }
    wake.notify_waiters();
    let frames = tokio::time::timeout(Duration::from_secs(5), receiver)
        .await
        .unwrap()
        .unwrap();
    let got: Vec<i64> = frames
        .iter()
        .map(|f| parse_syslog(f).json["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![1, 2, 3, 4, 5, 6]);
    stop(cancel, task).await;
}

#[tokio::test]
async fn siem_down_syslog_loses_nothing_and_never_blocks_calls() {
    // A port with nothing listening yet: connections are refused.
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);

    let source = Arc::new(MemSource::default());
    let config = SinkConfig::Syslog {
        addr: addr.to_string(),
        tls: None,
        app_name: DEFAULT_APP_NAME.into(),
        hostname: "hub-1".into(),
    };
    let name = config.name();
    let (wake, cancel, task) = start(config, source.clone(), fast());

    // Tool calls go on while the SIEM is down; none waits for it.
    let mut slowest = Duration::ZERO;
    for i in 0..60 {
        let t = Instant::now();
        source.append(if i % 5 == 0 { "deny" } else { "allow" });
        wake.notify_waiters();
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(source.cursor_of(&name), 0, "nothing was delivered");

    let listener = TcpListener::bind(addr).await.unwrap();
    let source2 = source.clone();
    let receiver = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        read_frames(&mut conn, &mut Vec::new(), 100).await
    });
    for _ in 0..40 {
        let t = Instant::now();
        source2.append("allow");
        wake.notify_waiters();
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let frames = tokio::time::timeout(Duration::from_secs(5), receiver)
        .await
        .expect("all records arrive")
        .unwrap();
    let got: Vec<i64> = frames
        .iter()
        .map(|f| parse_syslog(f).json["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        got,
        (1..=100).collect::<Vec<_>>(),
        "every record once, in order"
    );
    let records = source.records.lock().unwrap().clone();
    for (frame, record) in frames.iter().zip(&records) {
        check_syslog(frame, record, "hub-1");
    }
    eventually("the cursor to reach 100", || source.cursor_of(&name) == 100).await;
    assert!(
        slowest < Duration::from_millis(50),
        "an append waited {slowest:?}"
    );
    stop(cancel, task).await;
}

#[derive(Default)]
struct Collector {
    posts: AtomicUsize,
    refused: Mutex<Vec<Vec<i64>>>,
    accepted: Mutex<Vec<Vec<Value>>>,
    auth: Mutex<Vec<String>>,
}

/// Refuses the first 3 batches with 503, then accepts.
async fn collect(
    State(c): State<Arc<Collector>>,
    headers: HeaderMap,
    axum::Json(batch): axum::Json<Vec<Value>>,
) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    c.auth.lock().unwrap().push(auth.to_string());
    if c.posts.fetch_add(1, Ordering::SeqCst) < 3 {
        c.refused.lock().unwrap().push(seqs(&batch));
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        c.accepted.lock().unwrap().push(batch);
        StatusCode::NO_CONTENT
    }
}

/// Log output of the whole test binary.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Captures every log line of this test binary, or `None` if another
/// test installed a global subscriber first. Global, because a scoped
/// subscriber misses events whose callsites another test thread
/// registers at the same time.
fn captured_logs() -> Option<&'static Logs> {
    static LOGS: std::sync::OnceLock<Option<Logs>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .ok()
            .map(|()| logs)
    })
    .as_ref()
}

#[tokio::test]
async fn siem_down_https_retries_the_same_batch_until_accepted() {
    install_provider();
    let logs = captured_logs();
    let collector = Arc::new(Collector::default());
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(collect))
        .with_state(collector.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let source = Arc::new(MemSource::default());
    for _ in 0..5 {
        source.append("allow");
    }
    let config = SinkConfig::Https {
        url,
        bearer: Some(BearerToken::new("s3cret-bearer".into())),
        ca_file: None,
        timeout: Duration::from_secs(5),
    };
    let name = config.name();
    let (wake, cancel, task) = start(config, source.clone(), fast());
    // More calls while the receiver refuses.
    for _ in 0..20 {
        source.append("deny");
        wake.notify_waiters();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually("the cursor to reach 25", || source.cursor_of(&name) == 25).await;

    let refused = collector.refused.lock().unwrap().clone();
    let accepted = collector.accepted.lock().unwrap().clone();
    let first = seqs(&accepted[0]);
    assert_eq!(
        refused,
        vec![first.clone(); 3],
        "the refused batch is retried as is"
    );
    assert_eq!(first[0], 1);
    let all: Vec<i64> = accepted.iter().flat_map(|b| seqs(b)).collect();
    assert_eq!(all, (1..=25).collect::<Vec<_>>());
    assert!(accepted.iter().all(|b| b.len() <= 7));
    assert!(
        collector
            .auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer s3cret-bearer")
    );
    stop(cancel, task).await;
    server.abort();

    let Some(logs) = logs else {
        eprintln!("another global subscriber is installed: log checks skipped");
        return;
    };
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.contains("s3cret"), "{logs}");
    // This exporter's lines: its name has this test's port.
    let ours = format!("exporter={name}");
    let count = |level: &str, text: &str| {
        logs.lines()
            .filter(|l| l.contains(&ours) && l.contains(level) && l.contains(text))
            .count()
    };
    assert_eq!(count("WARN", "audit export failing"), 1, "{logs}");
    assert_eq!(count("WARN", ""), 1, "one warning per outage: {logs}");
    assert_eq!(count("DEBUG", "audit export retry failed"), 2, "{logs}");
    assert_eq!(count("INFO", "audit export recovered"), 1, "{logs}");
}

#[tokio::test]
async fn https_over_tls_posts_batches_with_the_bearer_token() {
    install_provider();
    let pki = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let collector = Arc::new(Collector::default());
    collector.posts.store(3, Ordering::SeqCst); // accept from the start
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(collect))
        .with_state(collector.clone());
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/ingest",
        tcp.local_addr().unwrap().port()
    );
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(pki.server.clone()),
    };
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let source = Arc::new(MemSource::default());
    for i in 0..16 {
        source.append(if i % 2 == 0 { "allow" } else { "deny" });
    }
    let config = SinkConfig::Https {
        url,
        bearer: Some(BearerToken::new("t0ken".into())),
        ca_file: Some(ca),
        timeout: Duration::from_secs(5),
    };
    let name = config.name();
    let (_wake, cancel, task) = start(config, source.clone(), fast());
    eventually("the cursor to reach 16", || source.cursor_of(&name) == 16).await;
    let accepted = collector.accepted.lock().unwrap().clone();
    let sizes: Vec<usize> = accepted.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![7, 7, 2]);
    let records = source.records.lock().unwrap().clone();
    let all: Vec<Value> = accepted.concat();
    assert_eq!(all, records.iter().map(export_object).collect::<Vec<_>>());
    assert!(
        collector
            .auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer t0ken")
    );
    stop(cancel, task).await;
    server.abort();
}
