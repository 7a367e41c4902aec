//! PostgreSQL result values → JSON (the mapping is documented in the crate
//! docs).

use ewii_driver_core::schema::ColumnInfo;
use ewii_driver_core::sqlx_exec::{RowReader, column_info};
use ewii_driver_core::values;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::{BigDecimal, Uuid};
use sqlx::{Column, Postgres, Row, TypeInfo, ValueRef};

/// Reads a result by each column's PostgreSQL type.
pub(crate) struct PgRows;

impl RowReader<Postgres> for PgRows {
    /// Types are named in lowercase, as PostgreSQL writes them.
    fn columns(&mut self, first: &PgRow) -> Vec<ColumnInfo> {
        column_info(first.columns(), |t| t.name().to_lowercase())
    }

    fn values(&mut self, row: &PgRow) -> Vec<Value> {
        (0..row.len()).map(|i| value_at(row, i)).collect()
    }
}

fn ts(t: NaiveDateTime) -> Value {
    json!(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

fn tstz(t: DateTime<Utc>) -> Value {
    json!(t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
}

/// Decodes `Option<T>` and maps it, NULL → null, decode failure → a note.
macro_rules! get {
    ($row:expr, $i:expr, $t:ty, $f:expr) => {
        match $row.try_get::<Option<$t>, _>($i) {
            Ok(Some(v)) => $f(v),
            Ok(None) => Value::Null,
            Err(e) => json!(format!("<cannot decode: {e}>")),
        }
    };
}

/// Decodes an array column element by element.
macro_rules! get_array {
    ($row:expr, $i:expr, $t:ty, $f:expr) => {
        get!($row, $i, Vec<Option<$t>>, |v: Vec<Option<$t>>| {
            Value::Array(v.into_iter().map(|e| e.map_or(Value::Null, $f)).collect())
        })
    };
}

fn value_at(row: &PgRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let type_name = row.columns()[i].type_info().name().to_owned();
    match type_name.as_str() {
        "BOOL" => get!(row, i, bool, Value::Bool),
        "INT2" => get!(row, i, i16, Value::from),
        "INT4" => get!(row, i, i32, Value::from),
        "INT8" => get!(row, i, i64, Value::from),
        "OID" => get!(
            row,
            i,
            sqlx::postgres::types::Oid,
            |o: sqlx::postgres::types::Oid| json!(o.0)
        ),
        "FLOAT4" => get!(row, i, f32, values::float32),
        "FLOAT8" => get!(row, i, f64, values::float64),
        "NUMERIC" => numeric(row, i),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" | "UNKNOWN" | "CHAR" => {
            get!(row, i, String, Value::from)
        }
        "UUID" => get!(row, i, Uuid, |u: Uuid| json!(u.to_string())),
        "JSON" | "JSONB" => get!(row, i, Value, |v| v),
        "BYTEA" => get!(row, i, Vec<u8>, |b: Vec<u8>| values::bytes(&b)),
        "DATE" => get!(row, i, NaiveDate, |d: NaiveDate| json!(d.to_string())),
        "TIME" => get!(row, i, NaiveTime, |t: NaiveTime| json!(t.to_string())),
        "TIMESTAMP" => get!(row, i, NaiveDateTime, ts),
        "TIMESTAMPTZ" => get!(row, i, DateTime<Utc>, tstz),
        "BOOL[]" => get_array!(row, i, bool, Value::Bool),
        "INT2[]" => get_array!(row, i, i16, Value::from),
        "INT4[]" => get_array!(row, i, i32, Value::from),
        "INT8[]" => get_array!(row, i, i64, Value::from),
        "FLOAT4[]" => get_array!(row, i, f32, values::float32),
        "FLOAT8[]" => get_array!(row, i, f64, values::float64),
        "NUMERIC[]" => get_array!(row, i, BigDecimal, |d: BigDecimal| json!(
            d.normalized().to_plain_string()
        )),
        "TEXT[]" | "VARCHAR[]" | "BPCHAR[]" | "NAME[]" => get_array!(row, i, String, Value::from),
        "UUID[]" => get_array!(row, i, Uuid, |u: Uuid| json!(u.to_string())),
        "JSON[]" | "JSONB[]" => get_array!(row, i, Value, |v| v),
        "DATE[]" => get_array!(row, i, NaiveDate, |d: NaiveDate| json!(d.to_string())),
        "TIMESTAMP[]" => get_array!(row, i, NaiveDateTime, ts),
        "TIMESTAMPTZ[]" => get_array!(row, i, DateTime<Utc>, tstz),
        "BYTEA[]" => get_array!(row, i, Vec<u8>, |b: Vec<u8>| values::bytes(&b)),
        // sqlx reads results in binary format, which is type-specific:
        // ask for a cast rather than guess at bytes.
        other => json!(format!(
            "<{} value: cast it in SQL, e.g. column::text>",
            other.to_lowercase()
        )),
    }
}

/// `numeric` exactly, at the value's own display scale.
///
/// sqlx's conversion pads the scale to whole base-10000 digit groups
/// (`2.5` would read `2.5000`), so the display scale is taken from the wire
/// header (ndigits, weight, sign, dscale: four big-endian u16).
fn numeric(row: &PgRow, i: usize) -> Value {
    let header = row
        .try_get_raw(i)
        .ok()
        .filter(|v| matches!(v.format(), sqlx::postgres::PgValueFormat::Binary))
        .and_then(|v| v.as_bytes().ok())
        .filter(|b| b.len() >= 8)
        .map(|b| {
            (
                u16::from_be_bytes([b[4], b[5]]),
                u16::from_be_bytes([b[6], b[7]]),
            )
        });
    match header {
        Some((0xC000, _)) => json!("NaN"),
        Some((0xD000, _)) => json!("Infinity"),
        Some((0xF000, _)) => json!("-Infinity"),
        _ => get!(row, i, BigDecimal, |d: BigDecimal| {
            let d = match header {
                Some((_, dscale)) => d.with_scale(i64::from(dscale)),
                None => d,
            };
            json!(d.to_plain_string())
        }),
    }
}
