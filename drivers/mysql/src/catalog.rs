//! `list_schemas`, `list_tables` and `describe_table` from
//! `information_schema`. In MySQL a schema is a database.

use std::collections::HashSet;

use ewii_driver_core::ToolError;
use ewii_driver_core::schema::{
    ColumnDescription, ForeignKey, IndexInfo, ObjectKind, TableDescription, TableInfo,
};

use crate::session::{Session, json_check};
use crate::{Flavor, number, text};

/// Schemas of the server itself, left out of listings (they can still be
/// named explicitly).
const SYSTEM_SCHEMAS: &str = "('information_schema', 'mysql', 'performance_schema', 'sys')";

/// User schemas, sorted.
pub(crate) async fn schemas(s: &mut Session) -> Result<Vec<String>, ToolError> {
    let sql = format!(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA \
         WHERE SCHEMA_NAME NOT IN {SYSTEM_SCHEMAS} ORDER BY SCHEMA_NAME"
    );
    let rows = s.rows(sqlx::AssertSqlSafe(sql), &[]).await?;
    Ok(rows.iter().filter_map(|r| text(r, 0)).collect())
}

/// The connection's default database (the URL path), if any.
async fn current_database(s: &mut Session) -> Result<Option<String>, ToolError> {
    let rows = s.rows("SELECT DATABASE()", &[]).await?;
    Ok(rows.first().and_then(|r| text(r, 0)))
}

/// The schema a call means: the one it names (which must exist), else the
/// connection's default database.
async fn resolve_schema(s: &mut Session, schema: Option<String>) -> Result<String, ToolError> {
    let Some(schema) = schema else {
        return current_database(s).await?.ok_or_else(|| {
            ToolError::InvalidArguments(
                "the database URL names no default database: pass `schema` (call \
                 list_schemas to see them)"
                    .into(),
            )
        });
    };
    let found = s
        .rows(
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            &[&schema],
        )
        .await?;
    if found.is_empty() {
        let known = schemas(s).await?;
        return Err(ToolError::NotFound(format!(
            "schema '{schema}' does not exist; schemas are: {}",
            known.join(", ")
        )));
    }
    Ok(schema)
}

fn kind(table_type: &str) -> ObjectKind {
    if table_type.contains("VIEW") {
        ObjectKind::View
    } else {
        ObjectKind::Table
    }
}

/// Tables and views of `schema`; without one, of the connection's default
/// database, or of every user schema when the URL names none.
pub(crate) async fn tables(
    s: &mut Session,
    schema: Option<String>,
) -> Result<Vec<TableInfo>, ToolError> {
    let schema = match schema {
        Some(named) => Some(resolve_schema(s, Some(named)).await?),
        None => current_database(s).await?,
    };
    let columns = "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, TABLE_ROWS \
                   FROM information_schema.TABLES";
    let rows = match &schema {
        Some(schema) => {
            let sql = format!("{columns} WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME");
            s.rows(sqlx::AssertSqlSafe(sql), &[schema]).await?
        }
        None => {
            let sql = format!(
                "{columns} WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS} \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME"
            );
            s.rows(sqlx::AssertSqlSafe(sql), &[]).await?
        }
    };
    Ok(rows
        .iter()
        .filter_map(|r| {
            let kind = kind(&text(r, 2)?);
            Some(TableInfo {
                schema: text(r, 0)?,
                name: text(r, 1)?,
                kind,
                // Views have no row estimate.
                row_estimate: (kind == ObjectKind::Table).then(|| number(r, 3)).flatten(),
            })
        })
        .collect())
}

/// Columns, keys and indexes of one table or view.
pub(crate) async fn describe(
    s: &mut Session,
    table: String,
    schema: Option<String>,
) -> Result<TableDescription, ToolError> {
    let schema = resolve_schema(s, schema).await?;
    let key: [&str; 2] = [&schema, &table];
    let found = s
        .rows(
            "SELECT TABLE_TYPE FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            &key,
        )
        .await?;
    let Some(table_type) = found.first().and_then(|r| text(r, 0)) else {
        return Err(ToolError::NotFound(format!(
            "table '{table}' does not exist in schema '{schema}'; call list_tables to see \
             what exists"
        )));
    };
    let columns = columns(s, &key).await?;
    let (primary_key, foreign_keys) = keys(s, &key).await?;
    let indexes = indexes(s, &key).await?;
    Ok(TableDescription {
        schema,
        name: table,
        kind: kind(&table_type),
        columns,
        primary_key,
        foreign_keys,
        indexes,
    })
}

async fn columns(s: &mut Session, key: &[&str; 2]) -> Result<Vec<ColumnDescription>, ToolError> {
    let json = json_checks(s, key).await;
    let rows = s
        .rows(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            key,
        )
        .await?;
    let flavor = s.flavor();
    Ok(rows
        .iter()
        .filter_map(|r| {
            let name = text(r, 0)?;
            let data_type = if json.contains(&json_check(&name)) {
                "json".to_owned()
            } else {
                text(r, 1)?
            };
            let extra = text(r, 4).unwrap_or_default();
            Some(ColumnDescription {
                nullable: text(r, 2).is_some_and(|n| n == "YES"),
                default: default_of(flavor, text(r, 3), &extra),
                name,
                data_type,
            })
        })
        .collect())
}

/// The default as the engine shows it. MariaDB writes "no default / default
/// NULL" as the bare word `NULL` (a string default is quoted: `'NULL'`);
/// an AUTO_INCREMENT column shows that instead of nothing.
fn default_of(flavor: Flavor, default: Option<String>, extra: &str) -> Option<String> {
    let default = default.filter(|d| !(flavor == Flavor::MariaDb && d == "NULL"));
    if default.is_none() && extra.to_ascii_lowercase().contains("auto_increment") {
        return Some("AUTO_INCREMENT".to_owned());
    }
    default
}

/// The `json_valid` check clauses of a table (MariaDB JSON columns). Best
/// effort: MySQL keeps a real JSON type and old servers lack the view.
async fn json_checks(s: &mut Session, key: &[&str; 2]) -> HashSet<String> {
    if s.flavor() != Flavor::MariaDb {
        return HashSet::new();
    }
    let sql = "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
               WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? \
               AND CHECK_CLAUSE LIKE 'json\\_valid(%'";
    match s.rows(sql, key).await {
        Ok(rows) => rows.iter().filter_map(|r| text(r, 0)).collect(),
        Err(e) => {
            tracing::debug!(error = %e, "JSON column lookup failed");
            HashSet::new()
        }
    }
}

async fn keys(
    s: &mut Session,
    key: &[&str; 2],
) -> Result<(Vec<String>, Vec<ForeignKey>), ToolError> {
    let rows = s
        .rows(
            "SELECT CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, \
             REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME \
             FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             AND (CONSTRAINT_NAME = 'PRIMARY' OR REFERENCED_TABLE_NAME IS NOT NULL) \
             ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION",
            key,
        )
        .await?;
    let mut primary_key = Vec::new();
    let mut foreign_keys: Vec<ForeignKey> = Vec::new();
    for r in &rows {
        let (Some(constraint), Some(column)) = (text(r, 0), text(r, 1)) else {
            continue;
        };
        let Some(referenced_table) = text(r, 3) else {
            primary_key.push(column);
            continue;
        };
        let referenced_column = text(r, 4).unwrap_or_default();
        match foreign_keys.last_mut() {
            Some(fk) if fk.name.as_deref() == Some(constraint.as_str()) => {
                fk.columns.push(column);
                fk.referenced_columns.push(referenced_column);
            }
            _ => foreign_keys.push(ForeignKey {
                name: Some(constraint),
                columns: vec![column],
                referenced_schema: text(r, 2),
                referenced_table,
                referenced_columns: vec![referenced_column],
            }),
        }
    }
    Ok((primary_key, foreign_keys))
}

async fn indexes(s: &mut Session, key: &[&str; 2]) -> Result<Vec<IndexInfo>, ToolError> {
    let rows = s
        .rows(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART \
             FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME, SEQ_IN_INDEX",
            key,
        )
        .await?;
    let mut indexes: Vec<IndexInfo> = Vec::new();
    for r in &rows {
        let Some(name) = text(r, 0) else { continue };
        // A functional index part (MySQL 8) has no column name; a prefix
        // index part shows its length, as in `CREATE INDEX … (name(10))`.
        let column = match (text(r, 2), number(r, 3)) {
            (Some(c), Some(len)) => format!("{c}({len})"),
            (Some(c), None) => c,
            (None, _) => "<expression>".to_owned(),
        };
        match indexes.last_mut() {
            Some(ix) if ix.name == name => ix.columns.push(column),
            _ => indexes.push(IndexInfo {
                primary: name == "PRIMARY",
                unique: number(r, 1) == Some(0),
                columns: vec![column],
                name,
            }),
        }
    }
    Ok(indexes)
}
