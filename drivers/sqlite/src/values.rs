//! SQLite values → JSON by each value's *stored* type (SQLite is
//! dynamically typed, so a column's declared type does not decide).

use ewii_driver_core::sqlx_exec::RowReader;
use ewii_driver_core::values;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, TypeInfo, ValueRef};

/// Reads a result by the stored type of each value.
pub(crate) struct SqliteRows;

/// Columns are named by SQLite's declared type (the default).
impl RowReader<Sqlite> for SqliteRows {
    /// Converts one row to JSON by the *stored* type of each value (SQLite is
    /// dynamically typed): INTEGER → number, REAL → number, TEXT → string,
    /// BLOB → base64 string, NULL → null.
    fn values(&mut self, row: &SqliteRow) -> Vec<Value> {
        (0..row.len())
            .map(|i| {
                let Ok(raw) = row.try_get_raw(i) else {
                    return Value::Null;
                };
                if raw.is_null() {
                    return Value::Null;
                }
                let kind = raw.type_info().name().to_owned();
                match kind.as_str() {
                    "INTEGER" => row.try_get::<i64, _>(i).map_or(Value::Null, Value::from),
                    "REAL" => row
                        .try_get::<f64, _>(i)
                        .map_or(Value::Null, values::float64),
                    "BLOB" => row
                        .try_get::<Vec<u8>, _>(i)
                        .map_or(Value::Null, |b| values::bytes(&b)),
                    _ => row
                        .try_get::<String, _>(i)
                        .map(Value::from)
                        .or_else(|_| row.try_get::<i64, _>(i).map(Value::from))
                        .unwrap_or(Value::Null),
                }
            })
            .collect()
    }
}
