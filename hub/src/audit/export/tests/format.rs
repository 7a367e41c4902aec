//! Exporter tests: the record formats: RFC 5424 lines, escaping, JSON text, excerpts.

use super::jsonl::read_jsonl;
use super::*;

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
