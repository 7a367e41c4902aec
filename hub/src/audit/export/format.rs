//! How a record is written for a sink: the exported JSON object, the RFC
//! 5424 line, and the escaping that keeps every record one line.

use super::ExportRecord;

use serde_json::Value;

/// RFC 5424 facility 13, "log audit".
pub(super) const FACILITY_LOG_AUDIT: u8 = 13;
/// RFC 5424 severity 6, informational: an allowed call.
pub(super) const SEVERITY_ALLOW: u8 = 6;
/// RFC 5424 severity 5, notice: a denied call.
pub(super) const SEVERITY_DENY: u8 = 5;
/// SD-ID of the structured data. 32473 is the example enterprise number
/// reserved for documentation (RFC 5612); replace it if Ewii registers one.
pub(super) const SD_ID: &str = "ewii@32473";
/// MSGID of a call's final audit record (its outcome, or the decision of a
/// call that never crossed a tunnel): one per call.
pub(super) const MSGID: &str = "tool_call";
/// MSGID of a call's intent record, committed before the call crossed the
/// tunnel; its outcome follows with the same `call_id`. A SIEM rule that
/// counts calls filters on `tool_call`.
pub(super) const MSGID_INTENT: &str = "tool_call_intent";
/// Record fields copied into the structured data, after `seq` and
/// `decision`.
pub(super) const SD_FIELDS: [&str; 6] = [
    "kind",
    "call_id",
    "workspace",
    "deployment",
    "agent",
    "tool",
];

/// The object exported for `record`: its JSON, with `seq` added when the
/// stored object does not carry it (receivers deduplicate by it).
pub(super) fn export_object(record: &ExportRecord) -> Value {
    let mut json = record.json.clone();
    if let Value::Object(map) = &mut json
        && !map.contains_key("seq")
    {
        map.insert("seq".into(), Value::from(record.seq));
    }
    json
}

/// An RFC 5424 message for `record`:
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID tool_call [ewii@32473 …] BOM JSON`
/// (`tool_call_intent` for an intent record).
///
/// Facility 13 (log audit); severity 6 (informational) for `allow`, 5
/// (notice) otherwise. Every part is made safe here, whatever the record
/// holds (tool names and arguments come from agents), so that one record
/// is always exactly one line and one frame and nothing in it can pose as
/// another record (a `\n<110>1 …` inside a value):
///
/// - header fields: PRINTUSASCII only (others become
///   `_`), cut to their §6 lengths, `-` when empty;
/// - PARAM-VALUEs: `"`, `\` and `]` escaped (§6.3.3), line
///   breaking characters written as `\uXXXX`, cut to
///   [`SD_VALUE_MAX`] octets; SD-NAMEs are constants checked by a test;
/// - the MSG ([`json_text`]): JSON, with the characters JSON leaves raw
///   that break lines (DEL, C1 including NEL, U+2028, U+2029) escaped too.
///
/// The frame length (RFC 6587) is counted on this finished string.
pub fn syslog_message(record: &ExportRecord, app_name: &str, hostname: &str) -> String {
    let severity = if record.decision == "allow" {
        SEVERITY_ALLOW
    } else {
        SEVERITY_DENY
    };
    let pri = FACILITY_LOG_AUDIT * 8 + severity;
    let timestamp = syslog_timestamp(record.time_ms);
    let hostname = header_field(hostname, 255);
    let app_name = header_field(app_name, 48);
    let procid = header_field(&std::process::id().to_string(), 128);
    let intent = record.json.get("kind").and_then(Value::as_str) == Some("intent");
    let msgid = header_field(if intent { MSGID_INTENT } else { MSGID }, 32);
    let mut sd = format!(
        "[{SD_ID} seq=\"{}\" decision=\"{}\"",
        record.seq,
        sd_value(&record.decision)
    );
    for field in SD_FIELDS {
        let value = match record.json.get(field) {
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            _ => continue,
        };
        sd.push_str(&format!(" {field}=\"{}\"", sd_value(&value)));
    }
    sd.push(']');
    // §6.4: a MSG that is UTF-8 starts with the BOM.
    format!(
        "<{pri}>1 {timestamp} {hostname} {app_name} {procid} {msgid} {sd} \u{FEFF}{}",
        json_text(&export_object(record))
    )
}

/// RFC 3339 UTC with milliseconds, or `-` for a time RFC 5424 cannot show.
pub(super) fn syslog_timestamp(time_ms: i64) -> String {
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(time_ms) {
        Some(t) if (0..=9999).contains(&chrono::Datelike::year(&t)) => {
            t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        }
        _ => "-".to_string(),
    }
}

/// An RFC 5424 header field (§6): PRINTUSASCII (33–126), so no space,
/// control character or non-ASCII (each becomes `_`), at most `max`
/// octets, `-` (NILVALUE) when empty.
pub(super) fn header_field(value: &str, max: usize) -> String {
    // Every kept character is one ASCII octet, so `max` characters are
    // `max` octets.
    let field: String = value
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_string()
    } else {
        field
    }
}

/// Whether `c` can end a line for some reader: the C0 and C1 controls and
/// DEL (Unicode `Cc`, NEL U+0085 among them) and the Unicode line and
/// paragraph separators. None of them may reach a log raw.
pub fn breaks_lines(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Longest PARAM-VALUE, in octets after escaping (the whole value is in
/// the JSON MSG; the structured data is for indexing).
pub const SD_VALUE_MAX: usize = 256;

/// An SD PARAM-VALUE (§6.3.3): `"`, `\` and `]` escaped with `\`;
/// characters that [`breaks_lines`] written as `\uXXXX` (a backslash of
/// the value itself is always doubled, so this cannot be confused with
/// the value's own text); at most [`SD_VALUE_MAX`] octets, a cut value
/// ending in `…`.
pub(super) fn sd_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(SD_VALUE_MAX));
    let mut piece = String::new();
    for c in value.chars() {
        piece.clear();
        if matches!(c, '"' | '\\' | ']') {
            piece.push('\\');
            piece.push(c);
        } else if breaks_lines(c) {
            piece.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            piece.push(c);
        }
        if out.len() + piece.len() > SD_VALUE_MAX - '…'.len_utf8() {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
    }
    out
}

/// A short, single-line rendering of an untrusted string for a log, an
/// audit record or an error message: at most `max_chars` of its
/// characters, those that [`breaks_lines`] and `\` written as `\uXXXX`,
/// and when cut, `…` and the full length in bytes. For a value too bad to
/// keep whole (a tool name of a megabyte, or with line breaks).
pub fn log_excerpt(value: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    for c in chars.by_ref().take(max_chars) {
        if breaks_lines(c) || c == '\\' {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push_str(&format!("… ({} bytes)", value.len()));
    }
    out
}

/// `value` as one line of JSON for a log: `serde_json` escapes `"`, `\`
/// and C0 controls, and this escapes the rest of what [`breaks_lines`]
/// (DEL, C1, U+2028, U+2029) as `\uXXXX`. Those characters can only occur
/// inside JSON strings, where the escape means the same character, so the
/// value reads back unchanged. Used by every sink: a JSON lines reader
/// that splits on Unicode line breaks (Python's `str.splitlines`, some
/// SIEM agents) would otherwise see one record as two.
pub fn json_text(value: &Value) -> String {
    let raw = value.to_string();
    if !raw.chars().any(breaks_lines) {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if breaks_lines(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The URL without credentials, query or fragment, for names and logs.
pub(super) fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_string(),
    }
}
