//! SQL Server values (tiberius `ColumnData`) → JSON.
//!
//! | SQL Server | JSON |
//! |---|---|
//! | `tinyint`, `smallint`, `int`, `bigint` | number |
//! | `real`, `float` | number (`NaN`/`inf` as strings) |
//! | `decimal`, `numeric`, `money`, `smallmoney` | string, exact, scale kept (`"12.50"`) |
//! | `bit` | `true` / `false` |
//! | `char`, `varchar`, `nchar`, `nvarchar`, `text`, `ntext`, `xml` | string |
//! | `uniqueidentifier` | string, upper case as SQL Server prints it |
//! | `binary`, `varbinary`, `image`, `rowversion` | base64 string |
//! | `date` | `"YYYY-MM-DD"` |
//! | `time` | `"HH:MM:SS[.fffffff]"` |
//! | `datetime`, `smalldatetime`, `datetime2` | `"YYYY-MM-DDTHH:MM:SS[.fff]"` (no zone: SQL Server stores none) |
//! | `datetimeoffset` | ISO 8601 with its offset, `"…+02:00"` |
//! | NULL | `null` |
//!
//! A string or binary value larger than the call's byte limit is replaced by
//! a notice saying how to read it in parts
//! ([`ewii_driver_core::values::oversized`]).

use ewii_driver_core::values;
use serde_json::Value;
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::{ColumnData, ColumnType};

/// Days from 0001-01-01 to 1970-01-01.
const DAYS_0001_TO_1970: i64 = 719_162;
/// Days from 1900-01-01 to 1970-01-01.
const DAYS_1900_TO_1970: i64 = 25_567;

/// One cell as JSON; strings and binaries over `max_bytes` become a notice.
pub(crate) fn cell(data: &ColumnData<'_>, max_bytes: u64) -> Value {
    let long = |len: usize| len as u64 > max_bytes;
    match data {
        ColumnData::U8(v) => v.map_or(Value::Null, Value::from),
        ColumnData::I16(v) => v.map_or(Value::Null, Value::from),
        ColumnData::I32(v) => v.map_or(Value::Null, Value::from),
        ColumnData::I64(v) => v.map_or(Value::Null, Value::from),
        ColumnData::F32(v) => v.map_or(Value::Null, values::float32),
        ColumnData::F64(v) => v.map_or(Value::Null, values::float64),
        ColumnData::Bit(v) => v.map_or(Value::Null, Value::from),
        ColumnData::String(v) => match v {
            None => Value::Null,
            Some(s) if long(s.len()) => {
                values::oversized(s.len() as u64, max_bytes, "SUBSTRING(col, 1, 4000)")
            }
            Some(s) => Value::from(s.as_ref()),
        },
        ColumnData::Guid(v) => v.map_or(Value::Null, |g| {
            Value::from(g.hyphenated().to_string().to_uppercase())
        }),
        ColumnData::Binary(v) => match v {
            None => Value::Null,
            Some(b) if long(b.len() * 4 / 3) => {
                values::oversized(b.len() as u64, max_bytes, "SUBSTRING(col, 1, 3000)")
            }
            Some(b) => values::bytes(b),
        },
        ColumnData::Numeric(v) => v.map_or(Value::Null, |n| Value::from(numeric(n))),
        ColumnData::Xml(v) => match v {
            None => Value::Null,
            Some(x) => {
                let text = x.as_ref().clone().into_string();
                if long(text.len()) {
                    values::oversized(
                        text.len() as u64,
                        max_bytes,
                        "SUBSTRING(CAST(col AS nvarchar(max)), 1, 4000)",
                    )
                } else {
                    Value::from(text)
                }
            }
        },
        ColumnData::DateTime(v) => v.map_or(Value::Null, |d| Value::from(datetime(d))),
        ColumnData::SmallDateTime(v) => v.map_or(Value::Null, |d| Value::from(smalldatetime(d))),
        ColumnData::Time(v) => v.map_or(Value::Null, |t| Value::from(time(t))),
        ColumnData::Date(v) => v.map_or(Value::Null, |d| Value::from(date(d))),
        ColumnData::DateTime2(v) => v.map_or(Value::Null, |d| Value::from(datetime2(d))),
        ColumnData::DateTimeOffset(v) => v.map_or(Value::Null, |d| Value::from(datetimeoffset(d))),
    }
}

/// An exact decimal: the digits with the scale kept (`12.50`, `-0.05`).
pub(crate) fn numeric(n: Numeric) -> String {
    let scale = usize::from(n.scale());
    let value = n.value();
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil(days_since_1970: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days_from_civil inverse.
    let z = days_since_1970 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn ymd(days_since_1970: i64) -> String {
    let (y, m, d) = civil(days_since_1970);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `date`: days since 0001-01-01.
pub(crate) fn date(d: Date) -> String {
    ymd(i64::from(d.days()) - DAYS_0001_TO_1970)
}

/// Seconds since midnight and a fraction of `scale` digits.
fn clock(seconds: u64, fraction: u64, scale: u32) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if fraction == 0 || scale == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        let frac = format!("{fraction:0>width$}", width = scale as usize);
        format!("{h:02}:{m:02}:{s:02}.{}", frac.trim_end_matches('0'))
    }
}

/// `time`: increments of 10^-scale seconds since midnight.
pub(crate) fn time(t: Time) -> String {
    let unit = 10u64.pow(u32::from(t.scale()));
    clock(
        t.increments() / unit,
        t.increments() % unit,
        u32::from(t.scale()),
    )
}

/// `datetime`: days since 1900-01-01 and 1/300 s since midnight, shown to
/// the millisecond as SQL Server does.
pub(crate) fn datetime(d: DateTime) -> String {
    let ticks = u64::from(d.seconds_fragments());
    let millis = (ticks * 1000 + 150) / 300;
    format!(
        "{}T{}",
        ymd(i64::from(d.days()) - DAYS_1900_TO_1970),
        clock(millis / 1000, millis % 1000, 3)
    )
}

/// `smalldatetime`: days since 1900-01-01 and minutes since midnight.
pub(crate) fn smalldatetime(d: SmallDateTime) -> String {
    format!(
        "{}T{}",
        ymd(i64::from(d.days()) - DAYS_1900_TO_1970),
        clock(u64::from(d.seconds_fragments()) * 60, 0, 0)
    )
}

/// `datetime2`: a date and a time, no zone.
pub(crate) fn datetime2(d: DateTime2) -> String {
    format!("{}T{}", date(d.date()), time(d.time()))
}

/// `datetimeoffset`: TDS carries the UTC instant and the offset in minutes;
/// shown as the local time with its offset, as SQL Server prints it.
pub(crate) fn datetimeoffset(d: DateTimeOffset) -> String {
    let utc = d.datetime2();
    let offset = i64::from(d.offset());
    let unit = 10u64.pow(u32::from(utc.time().scale()));
    let utc_seconds = (utc.time().increments() / unit) as i64;
    let fraction = utc.time().increments() % unit;
    let day_seconds = 86_400i64;
    let local = (i64::from(utc.date().days()) - DAYS_0001_TO_1970) * day_seconds
        + utc_seconds
        + offset * 60;
    let (days, secs) = (local.div_euclid(day_seconds), local.rem_euclid(day_seconds));
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.unsigned_abs();
    format!(
        "{}T{}{sign}{:02}:{:02}",
        ymd(days),
        clock(secs as u64, fraction, u32::from(utc.time().scale())),
        abs / 60,
        abs % 60
    )
}

/// The SQL Server type name of a result column.
pub(crate) fn type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Null => "null",
        ColumnType::Bit | ColumnType::Bitn => "bit",
        ColumnType::Int1 => "tinyint",
        ColumnType::Int2 => "smallint",
        ColumnType::Int4 => "int",
        ColumnType::Int8 => "bigint",
        ColumnType::Intn => "int",
        ColumnType::Datetime4 => "smalldatetime",
        ColumnType::Float4 => "real",
        ColumnType::Float8 | ColumnType::Floatn => "float",
        ColumnType::Money => "money",
        ColumnType::Money4 => "smallmoney",
        ColumnType::Datetime | ColumnType::Datetimen => "datetime",
        ColumnType::Guid => "uniqueidentifier",
        ColumnType::Decimaln => "decimal",
        ColumnType::Numericn => "numeric",
        ColumnType::Daten => "date",
        ColumnType::Timen => "time",
        ColumnType::Datetime2 => "datetime2",
        ColumnType::DatetimeOffsetn => "datetimeoffset",
        ColumnType::BigVarBin => "varbinary",
        ColumnType::BigVarChar => "varchar",
        ColumnType::BigBinary => "binary",
        ColumnType::BigChar => "char",
        ColumnType::NVarchar => "nvarchar",
        ColumnType::NChar => "nchar",
        ColumnType::Xml => "xml",
        ColumnType::Udt => "udt",
        ColumnType::Text => "text",
        ColumnType::Image => "image",
        ColumnType::NText => "ntext",
        ColumnType::SSVariant => "sql_variant",
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::json;
    use tiberius::Uuid;

    use super::*;

    const MAX: u64 = 1024;

    #[test]
    fn exact_decimals_keep_their_scale() {
        let n = |v: i128, s: u8| numeric(Numeric::new_with_scale(v, s));
        assert_eq!(n(1250, 2), "12.50");
        assert_eq!(n(-5, 2), "-0.05");
        assert_eq!(n(42, 0), "42");
        assert_eq!(
            n(123_456_789_012_345_678_901_234_567_890, 10),
            "12345678901234567890.1234567890"
        );
        let money = ColumnData::Numeric(Some(Numeric::new_with_scale(199_900, 4)));
        assert_eq!(cell(&money, MAX), json!("19.9900"));
    }

    #[test]
    fn dates_and_times_are_iso_8601() {
        // 2024-02-29 is 738_944 days after 0001-01-01.
        let d = Date::new(738_944);
        assert_eq!(date(d), "2024-02-29");
        assert_eq!(date(Date::new(0)), "0001-01-01");
        let t = Time::new(452_961_234_567, 7); // 12:34:56.1234567
        assert_eq!(time(t), "12:34:56.1234567");
        assert_eq!(time(Time::new(3600, 0)), "01:00:00");
        assert_eq!(
            datetime2(DateTime2::new(d, t)),
            "2024-02-29T12:34:56.1234567"
        );
        // datetime: 1900-01-01 + 45_000 days, noon + 1/300 s * 150 = .500
        let dt = DateTime::new(45_000, 12 * 3600 * 300 + 150);
        assert_eq!(datetime(dt), "2023-03-17T12:00:00.5");
        assert_eq!(datetime(DateTime::new(-1, 0)), "1899-12-31T00:00:00");
        assert_eq!(
            smalldatetime(SmallDateTime::new(0, 61)),
            "1900-01-01T01:01:00"
        );
    }

    #[test]
    fn datetimeoffset_shows_local_time_and_offset() {
        // UTC 2024-02-29 23:30:00, offset +02:00 → 2024-03-01T01:30:00+02:00
        let utc = DateTime2::new(Date::new(738_944), Time::new((23 * 3600 + 1800) * 1000, 3));
        let v = cell(
            &ColumnData::DateTimeOffset(Some(DateTimeOffset::new(utc, 120))),
            MAX,
        );
        assert_eq!(v, json!("2024-03-01T01:30:00+02:00"));
        let west = DateTimeOffset::new(utc, -330);
        assert_eq!(datetimeoffset(west), "2024-02-29T18:00:00-05:30");
    }

    #[test]
    fn scalars_guids_binary_and_nulls() {
        assert_eq!(cell(&ColumnData::I32(Some(-7)), MAX), json!(-7));
        assert_eq!(cell(&ColumnData::I64(None), MAX), Value::Null);
        assert_eq!(cell(&ColumnData::Bit(Some(true)), MAX), json!(true));
        assert_eq!(cell(&ColumnData::F32(Some(0.1)), MAX), json!(0.1));
        assert_eq!(cell(&ColumnData::F64(Some(f64::NAN)), MAX), json!("NaN"));
        let g = Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").expect("uuid");
        assert_eq!(
            cell(&ColumnData::Guid(Some(g)), MAX),
            json!("6F9619FF-8B86-D011-B42D-00C04FC964FF")
        );
        let bin = ColumnData::Binary(Some(Cow::Borrowed(&[0u8, 255, 16][..])));
        assert_eq!(cell(&bin, MAX), json!("AP8Q"));
        let s = ColumnData::String(Some(Cow::Borrowed("héllo")));
        assert_eq!(cell(&s, MAX), json!("héllo"));
    }

    #[test]
    fn large_values_are_bounded_by_max_bytes() {
        let big = "x".repeat(5000);
        let v = cell(&ColumnData::String(Some(Cow::Owned(big))), MAX);
        let notice = v.as_str().expect("a notice");
        assert!(
            notice.contains("5000 bytes") && notice.contains("SUBSTRING"),
            "{notice}"
        );
        let blob = vec![7u8; 4000];
        let v = cell(&ColumnData::Binary(Some(Cow::Owned(blob))), MAX);
        assert!(v.as_str().is_some_and(|n| n.contains("4000 bytes")));
    }
}
