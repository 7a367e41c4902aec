//! Oracle values → JSON.
//!
//! | Oracle | JSON |
//! |---|---|
//! | `NUMBER(p)` with p ≤ 18, `INTEGER` | number |
//! | other `NUMBER`, `FLOAT` | string, exact, the declared scale kept (`NUMBER(10,2)` → `"12.50"`) |
//! | `BINARY_FLOAT`, `BINARY_DOUBLE` | number (`NaN`/`inf` as strings) |
//! | `VARCHAR2`, `NVARCHAR2`, `CHAR`, `NCHAR`, `LONG`, `ROWID`, intervals | string |
//! | `CLOB`, `NCLOB` | string, read up to the call's byte limit (a notice beyond it) |
//! | `RAW`, `LONG RAW`, `BLOB` | base64 string (BLOB read up to the byte limit) |
//! | `DATE`, `TIMESTAMP` | `"YYYY-MM-DDTHH:MM:SS[.fffffffff]"` (no zone) |
//! | `TIMESTAMP WITH [LOCAL] TIME ZONE` | ISO 8601 with offset, `"…+02:00"` |
//! | `BOOLEAN` (23ai) | `true` / `false` |
//! | NULL | `null` |
//! | anything else (objects, cursors, BFILE) | a string asking to convert it in SQL |

use std::io::Read;

use ewii_driver_core::values;
use oracle::SqlValue;
use oracle::sql_type::{Blob, Clob, OracleType, Timestamp};
use serde_json::Value;

/// One value as JSON; LOBs are read up to `max_bytes`.
pub(crate) fn cell(v: &SqlValue, max_bytes: u64) -> Value {
    match convert(v, max_bytes) {
        Ok(value) => value,
        Err(e) => Value::from(format!("[value could not be read: {e}]")),
    }
}

fn convert(v: &SqlValue, max_bytes: u64) -> oracle::Result<Value> {
    if v.is_null()? {
        return Ok(Value::Null);
    }
    let ty = v.oracle_type()?.clone();
    Ok(match ty {
        OracleType::Number(precision, scale) => number(&v.get::<String>()?, precision, scale),
        OracleType::Float(_) => Value::from(v.get::<String>()?),
        OracleType::BinaryFloat => values::float32(v.get::<f32>()?),
        OracleType::BinaryDouble => values::float64(v.get::<f64>()?),
        OracleType::Varchar2(_)
        | OracleType::NVarchar2(_)
        | OracleType::Char(_)
        | OracleType::NChar(_)
        | OracleType::Long
        | OracleType::Rowid
        | OracleType::IntervalDS(..)
        | OracleType::IntervalYM(_) => Value::from(v.get::<String>()?),
        OracleType::Raw(_) | OracleType::LongRaw => values::bytes(&v.get::<Vec<u8>>()?),
        OracleType::Date | OracleType::Timestamp(_) => Value::from(timestamp(&v.get()?, false)),
        OracleType::TimestampTZ(_) | OracleType::TimestampLTZ(_) => {
            Value::from(timestamp(&v.get()?, true))
        }
        OracleType::Boolean => Value::from(v.get::<bool>()?),
        OracleType::CLOB | OracleType::NCLOB => {
            let mut clob: Clob = v.get()?;
            bounded(&mut clob, max_bytes, false)
        }
        OracleType::BLOB => {
            let mut blob: Blob = v.get()?;
            bounded(&mut blob, max_bytes, true)
        }
        other => Value::from(format!(
            "[a {other} value; convert it in SQL, e.g. TO_CHAR(col) or JSON_SERIALIZE(col)]"
        )),
    })
}

/// Reads a LOB up to `max_bytes` (of text, or of base64 for binary).
fn bounded(lob: &mut impl Read, max_bytes: u64, binary: bool) -> Value {
    let limit = if binary { max_bytes / 4 * 3 } else { max_bytes };
    let mut buf = Vec::new();
    match lob.take(limit.saturating_add(1)).read_to_end(&mut buf) {
        Ok(_) => lob_value(buf, limit, binary),
        Err(e) => Value::from(format!("[the LOB could not be read: {e}]")),
    }
}

/// A LOB's first bytes as JSON: the value when all of it fitted in
/// `limit`, otherwise a notice saying how to read it in parts.
pub(crate) fn lob_value(read: Vec<u8>, limit: u64, binary: bool) -> Value {
    if read.len() as u64 > limit {
        return values::oversized(
            read.len() as u64,
            limit,
            if binary {
                "DBMS_LOB.SUBSTR(col, 2000, 1) in a read-write session, or a narrower column"
            } else {
                "DBMS_LOB.SUBSTR(col, 4000, 1) in a read-write session, or SUBSTR(col, 1, 4000)"
            },
        );
    }
    if binary {
        values::bytes(&read)
    } else {
        Value::from(String::from_utf8_lossy(&read).into_owned())
    }
}

/// A NUMBER: an integer of up to 18 digits as a JSON number, anything else
/// as its exact text with the declared scale kept (Oracle's own text drops
/// trailing zeros: `12.5` for a `NUMBER(10,2)` holding 12.50).
pub(crate) fn number(text: &str, precision: u8, scale: i8) -> Value {
    let text = text.trim();
    if scale == 0
        && precision > 0
        && precision <= 18
        && let Ok(i) = text.parse::<i64>()
    {
        return Value::from(i);
    }
    if scale <= 0 || precision == 0 {
        return Value::from(normalise(text));
    }
    let scale = scale as usize;
    let text = normalise(text);
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    if frac.len() >= scale {
        return Value::from(text.clone());
    }
    Value::from(format!("{int}.{frac:0<scale$}"))
}

/// `.5` → `0.5`, `-.5` → `-0.5` (Oracle's text omits the leading zero).
fn normalise(text: &str) -> String {
    if let Some(rest) = text.strip_prefix("-.") {
        format!("-0.{rest}")
    } else if let Some(rest) = text.strip_prefix('.') {
        format!("0.{rest}")
    } else {
        text.to_owned()
    }
}

/// A DATE or TIMESTAMP as ISO 8601; with `zone`, its offset.
pub(crate) fn timestamp(t: &Timestamp, zone: bool) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.nanosecond() != 0 {
        let frac = format!("{:09}", t.nanosecond());
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    if zone {
        let minutes = t.tz_hour_offset() * 60 + t.tz_minute_offset();
        let sign = if minutes < 0 { '-' } else { '+' };
        let abs = minutes.unsigned_abs();
        s.push_str(&format!("{sign}{:02}:{:02}", abs / 60, abs % 60));
    }
    s
}

/// The Oracle type name of a result column.
pub(crate) fn type_name(t: &OracleType) -> String {
    t.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_keep_their_scale_and_exactness() {
        assert_eq!(number("12.5", 10, 2), json!("12.50"));
        assert_eq!(number("-.05", 10, 2), json!("-0.05"));
        assert_eq!(number("42", 10, 0), json!(42));
        assert_eq!(number("42", 38, 0), json!("42"));
        assert_eq!(
            number("123456789012345678901234567890.123", 0, -127),
            json!("123456789012345678901234567890.123")
        );
        assert_eq!(number("3", 5, 3), json!("3.000"));
        assert_eq!(number("0.125", 6, 2), json!("0.125"));
    }

    #[test]
    fn timestamps_are_iso_8601_with_offset() {
        let t = Timestamp::new(2024, 2, 29, 23, 30, 5, 120_000_000).expect("ts");
        assert_eq!(timestamp(&t, false), "2024-02-29T23:30:05.12");
        let z = t.and_tz_hm_offset(-5, -30).expect("tz");
        assert_eq!(timestamp(&z, true), "2024-02-29T23:30:05.12-05:30");
        let d = Timestamp::new(1999, 12, 31, 0, 0, 0, 0).expect("date");
        assert_eq!(
            timestamp(&d.and_tz_offset(7200).expect("tz"), true),
            "1999-12-31T00:00:00+02:00"
        );
    }

    #[test]
    fn lobs_are_bounded_by_max_bytes() {
        let text = "é".repeat(10).into_bytes();
        assert_eq!(lob_value(text.clone(), 100, false), json!("é".repeat(10)));
        let notice = lob_value(text, 5, false);
        assert!(
            notice.as_str().is_some_and(|n| n.contains("SUBSTR")),
            "{notice}"
        );
        assert_eq!(lob_value(vec![0, 255, 16], 30, true), json!("AP8Q"));
        let mut reader: &[u8] = &[1u8; 100];
        let v = bounded(&mut reader, 40, true);
        assert!(
            v.as_str()
                .is_some_and(|n| n.contains("over the 30-byte limit")),
            "{v}"
        );
    }
}
