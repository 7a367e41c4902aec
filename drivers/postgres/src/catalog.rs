//! `list_schemas`, `list_tables` and `describe_table` from the system
//! catalogs (`pg_namespace`, `pg_class`, `pg_attribute`, `pg_index`,
//! `pg_constraint`), showing only what the role may use.

use ewii_driver_core::schema::{
    ColumnDescription, DescribeTableArgs, ForeignKey, IndexInfo, ObjectKind, TableDescription,
    TableInfo,
};
use ewii_driver_core::{CallContext, ToolError};
use sqlx::Row;

use crate::PgDatabase;
use crate::errors::db_error;
use crate::session::Session;

/// Schemas the role may use, sorted, without the system ones.
pub(crate) async fn schemas(db: &PgDatabase, ctx: &CallContext) -> Result<Vec<String>, ToolError> {
    let rows = db
        .catalog_rows(
            ctx,
            "SELECT nspname::text FROM pg_namespace \
             WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' \
               AND has_schema_privilege(nspname, 'USAGE') \
             ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
}

/// Tables, views and foreign tables of `schema` (or of every schema the role
/// may use), with the planner's row estimate.
pub(crate) async fn tables(
    db: &PgDatabase,
    ctx: &CallContext,
    schema: Option<&str>,
) -> Result<Vec<TableInfo>, ToolError> {
    let rows = db
        .catalog_rows(
            ctx,
            "SELECT n.nspname::text, c.relname::text, c.relkind::text, c.reltuples::float8 \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' \
               AND ($1::text IS NULL OR n.nspname = $1) \
               AND has_schema_privilege(n.oid, 'USAGE') \
             ORDER BY 1, 2",
            &[schema],
        )
        .await?;
    let mut tables = Vec::new();
    for r in &rows {
        let estimate: f64 = r.try_get(3).map_err(db_error)?;
        let relkind: String = r.try_get(2).map_err(db_error)?;
        tables.push(TableInfo {
            schema: r.try_get(0).map_err(db_error)?,
            name: r.try_get(1).map_err(db_error)?,
            kind: kind_of(&relkind),
            // -1 means "never analysed": no estimate rather than a wrong one.
            row_estimate: (estimate >= 0.0 && relkind != "v").then_some(estimate as i64),
        });
    }
    Ok(tables)
}

fn kind_of(relkind: &str) -> ObjectKind {
    match relkind {
        "v" => ObjectKind::View,
        "m" => ObjectKind::MaterializedView,
        _ => ObjectKind::Table,
    }
}

/// (name, columns, referenced schema, referenced table, referenced columns)
type ForeignKeyRow = (String, Vec<String>, String, String, Vec<String>);

/// Columns, keys and indexes of one table or view, inside the session's
/// transaction.
pub(crate) async fn describe(
    s: &mut Session,
    args: &DescribeTableArgs,
) -> Result<TableDescription, ToolError> {
    let found: Option<(sqlx::postgres::types::Oid, String, String)> = sqlx::query_as(
        "SELECT c.oid, n.nspname::text, c.relkind::text \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
           AND (($2::text IS NULL AND pg_table_is_visible(c.oid)) OR n.nspname = $2) \
         LIMIT 1",
    )
    .bind(&args.table)
    .bind(&args.schema)
    .fetch_optional(&mut *s.conn)
    .await
    .map_err(db_error)?;
    let Some((oid, schema, relkind)) = found else {
        let place = args
            .schema
            .as_deref()
            .map(|sc| format!("schema '{sc}'"))
            .unwrap_or_else(|| "the search path".into());
        return Err(ToolError::NotFound(format!(
            "table '{}' does not exist in {place}; call list_tables to see what exists",
            args.table
        )));
    };

    let cols: Vec<(String, String, bool, Option<String>)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, \
                pg_get_expr(d.adbin, d.adrelid) \
         FROM pg_attribute a \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *s.conn)
    .await
    .map_err(db_error)?;

    let primary_key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text \
         FROM pg_index i \
         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = $1 AND i.indisprimary \
         ORDER BY k.ord",
    )
    .bind(oid)
    .fetch_all(&mut *s.conn)
    .await
    .map_err(db_error)?;

    let fks: Vec<ForeignKeyRow> = sqlx::query_as(
        "SELECT con.conname::text, \
                ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, ord) \
                      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n \
                      ORDER BY k.ord), \
                fn.nspname::text, fc.relname::text, \
                ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, ord) \
                      JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n \
                      ORDER BY k.ord) \
         FROM pg_constraint con \
         JOIN pg_class fc ON fc.oid = con.confrelid \
         JOIN pg_namespace fn ON fn.oid = fc.relnamespace \
         WHERE con.conrelid = $1 AND con.contype = 'f' \
         ORDER BY con.conname",
    )
    .bind(oid)
    .fetch_all(&mut *s.conn)
    .await
    .map_err(db_error)?;

    let idx: Vec<(String, bool, bool, Vec<String>)> = sqlx::query_as(
        "SELECT ic.relname::text, i.indisunique, i.indisprimary, \
                ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) \
                      FROM generate_series(1, i.indnkeyatts::int) AS k ORDER BY k) \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
         WHERE i.indrelid = $1 \
         ORDER BY ic.relname",
    )
    .bind(oid)
    .fetch_all(&mut *s.conn)
    .await
    .map_err(db_error)?;

    Ok(TableDescription {
        schema,
        name: args.table.clone(),
        kind: kind_of(&relkind),
        columns: cols
            .into_iter()
            .map(|(name, data_type, nullable, default)| ColumnDescription {
                name,
                data_type,
                nullable,
                default,
            })
            .collect(),
        primary_key,
        foreign_keys: fks
            .into_iter()
            .map(|(name, columns, rschema, rtable, rcols)| ForeignKey {
                name: Some(name),
                columns,
                referenced_schema: Some(rschema),
                referenced_table: rtable,
                referenced_columns: rcols,
            })
            .collect(),
        indexes: idx
            .into_iter()
            .map(|(name, unique, primary, columns)| IndexInfo {
                name,
                columns,
                unique,
                primary,
            })
            .collect(),
    })
}
