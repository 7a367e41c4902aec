//! MySQL/MariaDB values → JSON (the mapping is documented in the crate docs).
//!
//! Every statement of the driver runs as a prepared statement, so values
//! arrive in the binary protocol; the temporal decoders below read that
//! format directly, which also covers what chrono cannot hold (zero dates,
//! `TIME` values beyond 24 hours or negative).

use std::collections::HashSet;

use ewii_driver_core::schema::ColumnInfo;
use ewii_driver_core::sqlx_exec::RowReader;
use ewii_driver_core::values::{bytes as base64, float32, float64};
use serde_json::Value;
use sqlx::mysql::{MySqlColumn, MySqlRow, MySqlTypeInfo};
use sqlx::{Column, MySql, Row, Type, TypeInfo, ValueRef};

/// How the values of one result column are converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The column is always NULL (e.g. `SELECT NULL`).
    Null,
    /// A signed integer type, up to 64 bits.
    Signed,
    /// An unsigned integer type or `YEAR`.
    Unsigned,
    /// `FLOAT` (single precision).
    Float,
    /// `DOUBLE`.
    Double,
    /// `DECIMAL`: the server's exact text.
    Decimal,
    /// `DATE`.
    Date,
    /// `DATETIME` (no time zone).
    DateTime,
    /// `TIMESTAMP` (UTC: the driver's sessions run with `time_zone = '+00:00'`).
    Timestamp,
    /// `TIME` (a duration, may be negative or over 24 hours).
    Time,
    /// `BIT(n)`.
    Bit,
    /// `JSON` (MySQL's type, or a MariaDB JSON column).
    Json,
    /// Character data.
    Text,
    /// Binary data (binary collation), `GEOMETRY`.
    Binary,
}

impl Kind {
    /// The kind of a result column. `json_column` says the column is a
    /// MariaDB JSON column (a LONGTEXT with a `json_valid` check, which the
    /// protocol cannot tell apart from text).
    pub(crate) fn of(type_info: &MySqlTypeInfo, json_column: bool) -> Kind {
        match type_info.name() {
            "NULL" => Kind::Null,
            "FLOAT" => Kind::Float,
            "DOUBLE" => Kind::Double,
            "DECIMAL" => Kind::Decimal,
            "DATE" => Kind::Date,
            "DATETIME" => Kind::DateTime,
            "TIMESTAMP" => Kind::Timestamp,
            "TIME" => Kind::Time,
            "BIT" => Kind::Bit,
            "JSON" => Kind::Json,
            "YEAR" => Kind::Unsigned,
            "GEOMETRY" => Kind::Binary,
            _ if <u64 as Type<MySql>>::compatible(type_info) => Kind::Unsigned,
            _ if <i64 as Type<MySql>>::compatible(type_info) => Kind::Signed,
            // Text is told from binary data by collation (binary = 63), not
            // by the BINARY flag, which `_bin` collations also set.
            _ if <str as Type<MySql>>::compatible(type_info) && json_column => Kind::Json,
            _ if <str as Type<MySql>>::compatible(type_info) => Kind::Text,
            _ => Kind::Binary,
        }
    }

    /// The column's type name as shown to the model.
    pub(crate) fn type_name(self, type_info: &MySqlTypeInfo) -> String {
        let name = type_info.name();
        match self {
            Kind::Json => "JSON".to_owned(),
            // sqlx names text with a `_bin` collation after the BINARY flag;
            // show what the column really holds.
            Kind::Text => match name {
                "BINARY" => "CHAR",
                "VARBINARY" => "VARCHAR",
                "TINYBLOB" => "TINYTEXT",
                "BLOB" => "TEXT",
                "MEDIUMBLOB" => "MEDIUMTEXT",
                "LONGBLOB" => "LONGTEXT",
                other => other,
            }
            .to_owned(),
            _ => name.to_owned(),
        }
    }
}

/// Whether a MariaDB JSON column could hide behind this column: text of a
/// BLOB/TEXT type read from a table.
pub(crate) fn may_be_json_column(column: &MySqlColumn) -> bool {
    let ti = column.type_info();
    <str as Type<MySql>>::compatible(ti)
        && (ti.name().ends_with("TEXT") || ti.name().ends_with("BLOB"))
}

/// Result column descriptions.
pub(crate) fn column_info(columns: &[MySqlColumn], kinds: &[Kind]) -> Vec<ColumnInfo> {
    columns
        .iter()
        .zip(kinds)
        .map(|(c, k)| ColumnInfo {
            name: c.name().to_owned(),
            type_name: k.type_name(c.type_info()),
        })
        .collect()
}

/// The kinds of `columns`; `json_columns` are the ordinals of MariaDB JSON
/// columns among them.
pub(crate) fn kinds_of(columns: &[MySqlColumn], json_columns: &HashSet<usize>) -> Vec<Kind> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| Kind::of(c.type_info(), json_columns.contains(&i)))
        .collect()
}

/// Reads a result by the kinds of its columns, decided with its first row:
/// a placeholder's type is only known once a value is bound.
pub(crate) struct MySqlRows<'a> {
    /// Ordinals of the MariaDB JSON columns of the result.
    json_columns: &'a HashSet<usize>,
    kinds: Vec<Kind>,
}

impl<'a> MySqlRows<'a> {
    /// A reader that shows the columns at `json_columns` as JSON.
    pub(crate) fn new(json_columns: &'a HashSet<usize>) -> Self {
        MySqlRows {
            json_columns,
            kinds: Vec::new(),
        }
    }
}

impl RowReader<MySql> for MySqlRows<'_> {
    fn columns(&mut self, first: &MySqlRow) -> Vec<ColumnInfo> {
        self.kinds = kinds_of(first.columns(), self.json_columns);
        column_info(first.columns(), &self.kinds)
    }

    fn values(&mut self, row: &MySqlRow) -> Vec<Value> {
        row_values(row, &self.kinds)
    }
}

/// Converts one row by the kinds of its columns.
fn row_values(row: &MySqlRow, kinds: &[Kind]) -> Vec<Value> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| value(row, i, *kind))
        .collect()
}

fn value(row: &MySqlRow, i: usize, kind: Kind) -> Value {
    match row.try_get_raw(i) {
        Ok(raw) if !raw.is_null() => {}
        _ => return Value::Null,
    }
    let converted = match kind {
        Kind::Null => Some(Value::Null),
        Kind::Signed => row.try_get_unchecked::<i64, _>(i).ok().map(Value::from),
        Kind::Unsigned => row.try_get_unchecked::<u64, _>(i).ok().map(unsigned),
        Kind::Float => row.try_get_unchecked::<f32, _>(i).ok().map(float32),
        Kind::Double => row.try_get_unchecked::<f64, _>(i).ok().map(float64),
        Kind::Decimal => row.try_get_unchecked::<&str, _>(i).ok().map(Value::from),
        Kind::Date => bytes(row, i).and_then(|b| date_time(b, false, false)),
        Kind::DateTime => bytes(row, i).and_then(|b| date_time(b, true, false)),
        Kind::Timestamp => bytes(row, i).and_then(|b| date_time(b, true, true)),
        Kind::Time => bytes(row, i).and_then(time),
        Kind::Bit => bytes(row, i).and_then(bit),
        Kind::Json => row.try_get_unchecked::<&str, _>(i).ok().map(json_text),
        Kind::Text => row.try_get_unchecked::<&str, _>(i).ok().map(Value::from),
        Kind::Binary => bytes(row, i).map(base64),
    };
    // A value the expected decoder cannot read is still shown, as text if
    // it is text and as base64 otherwise, rather than silently as null.
    converted.unwrap_or_else(|| match row.try_get_unchecked::<&str, _>(i) {
        Ok(s) => Value::from(s),
        Err(_) => bytes(row, i).map_or(Value::Null, base64),
    })
}

fn bytes(row: &MySqlRow, i: usize) -> Option<&[u8]> {
    row.try_get_unchecked::<&[u8], _>(i).ok()
}

/// Unsigned integers above `i64::MAX` become strings: many JSON readers
/// hold numbers in an i64 or a double and would corrupt them.
fn unsigned(n: u64) -> Value {
    match i64::try_from(n) {
        Ok(i) => Value::from(i),
        Err(_) => Value::from(n.to_string()),
    }
}

fn json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::from(text))
}

/// BIT(n) arrives as big-endian bytes (at most 8).
fn bit(b: &[u8]) -> Option<Value> {
    if b.len() > 8 {
        return None;
    }
    Some(unsigned(
        b.iter()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte)),
    ))
}

/// Binary DATE/DATETIME/TIMESTAMP: a length byte (0, 4, 7 or 11), then
/// year (u16 LE), month, day, [hour, minute, second, [microseconds u32 LE]].
/// Length 0 is the zero date.
fn date_time(b: &[u8], with_time: bool, utc: bool) -> Option<Value> {
    let (&len, p) = b.split_first()?;
    let p = p.get(..usize::from(len))?;
    let at = |i: usize| p.get(i).copied().unwrap_or(0);
    let year = u16::from_le_bytes([at(0), at(1)]);
    let date = format!("{year:04}-{:02}-{:02}", at(2), at(3));
    if !with_time {
        return Some(Value::from(date));
    }
    let micros = p
        .get(7..11)
        .map_or(0, |m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
    let zone = if utc { "Z" } else { "" };
    Some(Value::from(format!(
        "{date}T{:02}:{:02}:{:02}{}{zone}",
        at(4),
        at(5),
        at(6),
        fraction(micros)
    )))
}

/// Binary TIME: a length byte (0, 8 or 12), then is-negative, days (u32
/// LE), hour, minute, second, [microseconds u32 LE]. Shown as MySQL shows
/// it: `[-]HHH:MM:SS[.ffffff]`, hours including the days.
fn time(b: &[u8]) -> Option<Value> {
    let (&len, p) = b.split_first()?;
    let p = p.get(..usize::from(len))?;
    if p.is_empty() {
        return Some(Value::from("00:00:00"));
    }
    let negative = p.first().copied()? == 1;
    let days = u32::from_le_bytes(p.get(1..5)?.try_into().ok()?);
    let (h, m, s) = (*p.get(5)?, *p.get(6)?, *p.get(7)?);
    let micros = p
        .get(8..12)
        .map_or(0, |m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
    let hours = u64::from(days) * 24 + u64::from(h);
    let sign = if negative { "-" } else { "" };
    Some(Value::from(format!(
        "{sign}{hours:02}:{m:02}:{s:02}{}",
        fraction(micros)
    )))
}

/// `.ffffff` without trailing zeros, or nothing for whole seconds.
fn fraction(micros: u32) -> String {
    if micros == 0 {
        return String::new();
    }
    format!(".{micros:06}").trim_end_matches('0').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn temporal_binary_formats() {
        assert_eq!(
            date_time(&[4, 0xE8, 0x07, 2, 29], false, false),
            Some(json!("2024-02-29"))
        );
        assert_eq!(date_time(&[0], false, false), Some(json!("0000-00-00")));
        let micros = 120_000u32.to_le_bytes();
        let dt = [
            11, 0xE8, 0x07, 2, 29, 13, 14, 15, micros[0], micros[1], micros[2], micros[3],
        ];
        assert_eq!(
            date_time(&dt, true, false),
            Some(json!("2024-02-29T13:14:15.12"))
        );
        assert_eq!(
            date_time(&[7, 0xE8, 0x07, 2, 29, 13, 14, 15], true, true),
            Some(json!("2024-02-29T13:14:15Z"))
        );
        // -838:59:59 is 34 days and 22 hours.
        assert_eq!(
            time(&[8, 1, 34, 0, 0, 0, 22, 59, 59]),
            Some(json!("-838:59:59"))
        );
        assert_eq!(time(&[0]), Some(json!("00:00:00")));
    }

    #[test]
    fn numbers() {
        assert_eq!(unsigned(u64::MAX), json!("18446744073709551615"));
        assert_eq!(unsigned(42), json!(42));
        assert_eq!(float32(0.1), json!(0.1));
        assert_eq!(bit(&[0x01, 0x02]), Some(json!(258)));
        assert_eq!(fraction(500_000), ".5");
    }
}
