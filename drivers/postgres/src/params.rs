//! Binding the call's parameters as the types the server inferred for
//! their placeholders, so `"2026-01-01"` binds to a `date` and `3` to an
//! `integer` placeholder.

use std::str::FromStr;

use base64::Engine as _;
use ewii_driver_core::ToolError;
use ewii_driver_core::schema::SqlParam;
use serde_json::{Value, json};
use sqlx::postgres::{PgArguments, PgTypeInfo};
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::{BigDecimal, Uuid};
use sqlx::{Arguments, TypeInfo};

/// Binds each parameter as the placeholder's server-inferred type.
pub(crate) fn bind_typed(
    params: &[SqlParam],
    types: &[PgTypeInfo],
) -> Result<PgArguments, ToolError> {
    let mut args = PgArguments::default();
    for (i, (p, t)) in params.iter().zip(types).enumerate() {
        let n = i + 1;
        let ty = t.name();
        let bad = |what: &str| {
            ToolError::InvalidArguments(format!(
                "params[{i}] (placeholder ${n}, type {}): {what}",
                ty.to_lowercase()
            ))
        };
        let text = |p: &SqlParam| match p {
            SqlParam::Text(s) => s.clone(),
            SqlParam::Int(v) => v.to_string(),
            SqlParam::Float(v) => v.to_string(),
            SqlParam::Bool(v) => v.to_string(),
            SqlParam::Null => String::new(),
        };
        let int = |p: &SqlParam| -> Result<i64, ToolError> {
            match p {
                SqlParam::Int(v) => Ok(*v),
                SqlParam::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(*f as i64),
                SqlParam::Text(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| bad(&format!("'{s}' is not an integer"))),
                other => Err(bad(&format!("expected an integer, got {other:?}"))),
            }
        };
        let float = |p: &SqlParam| -> Result<f64, ToolError> {
            match p {
                SqlParam::Int(v) => Ok(*v as f64),
                SqlParam::Float(f) => Ok(*f),
                SqlParam::Text(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| bad(&format!("'{s}' is not a number"))),
                other => Err(bad(&format!("expected a number, got {other:?}"))),
            }
        };
        let parsed = |what: &str| bad(&format!("'{}' is not a valid {what}", text(p)));
        let r = match (ty, p) {
            // NULL needs no encoding of the inferred type.
            (_, SqlParam::Null) => args.add(None::<String>),
            ("BOOL", SqlParam::Bool(b)) => args.add(*b),
            ("BOOL", other) => match text(other).to_lowercase().as_str() {
                "true" | "t" | "1" | "yes" => args.add(true),
                "false" | "f" | "0" | "no" => args.add(false),
                _ => return Err(parsed("boolean")),
            },
            ("INT2", _) => {
                args.add(i16::try_from(int(p)?).map_err(|_| bad("out of range for smallint"))?)
            }
            ("INT4", _) => {
                args.add(i32::try_from(int(p)?).map_err(|_| bad("out of range for integer"))?)
            }
            ("INT8", _) => args.add(int(p)?),
            ("FLOAT4", _) => args.add(float(p)? as f32),
            ("FLOAT8", _) => args.add(float(p)?),
            ("NUMERIC", _) => {
                args.add(BigDecimal::from_str(text(p).trim()).map_err(|_| parsed("number"))?)
            }
            ("DATE", _) => args.add(
                NaiveDate::parse_from_str(text(p).trim(), "%Y-%m-%d")
                    .map_err(|_| parsed("date (YYYY-MM-DD)"))?,
            ),
            ("TIME", _) => args.add(parse_time(&text(p)).ok_or_else(|| parsed("time (HH:MM:SS)"))?),
            ("TIMESTAMP", _) => args.add(
                parse_timestamp(&text(p))
                    .ok_or_else(|| parsed("timestamp (YYYY-MM-DDTHH:MM:SS)"))?,
            ),
            ("TIMESTAMPTZ", _) => args.add(
                parse_timestamptz(&text(p))
                    .ok_or_else(|| parsed("timestamp with time zone (RFC 3339)"))?,
            ),
            ("UUID", _) => args.add(Uuid::parse_str(text(p).trim()).map_err(|_| parsed("UUID"))?),
            ("BYTEA", _) => args.add(
                base64::engine::general_purpose::STANDARD
                    .decode(text(p))
                    .map_err(|_| parsed("base64 string"))?,
            ),
            // JSON's binary form is its text.
            ("JSON", SqlParam::Text(s)) => args.add(s.clone()),
            ("JSON", other) => args.add(text(other)),
            ("JSONB", SqlParam::Text(s)) => {
                args.add(serde_json::from_str::<Value>(s).unwrap_or_else(|_| json!(s)))
            }
            ("JSONB", SqlParam::Int(v)) => args.add(json!(v)),
            ("JSONB", SqlParam::Float(v)) => args.add(json!(v)),
            ("JSONB", SqlParam::Bool(v)) => args.add(json!(v)),
            ("TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" | "CHAR", _) => args.add(text(p)),
            (other, _) => {
                return Err(bad(&format!(
                    "values cannot be bound to a {} placeholder directly; cast it in SQL, e.g. \
                     ${n}::text, and compare with a cast (column::text = ${n})",
                    other.to_lowercase()
                )));
            }
        };
        r.map_err(|e| bad(&format!("cannot bind: {e}")))?;
    }
    Ok(args)
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    let s = s.trim();
    NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
        .ok()
}

fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
}

/// RFC 3339, or a timestamp without zone taken as UTC.
fn parse_timestamptz(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| parse_timestamp(s).map(|t| t.and_utc()))
}
