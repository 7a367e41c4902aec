//! `list_schemas`, `list_tables`, `describe_table` from the `ALL_*`
//! dictionary views (what the user can see), in a read-only session.

use ewii_driver_core::schema::{
    ColumnDescription, DescribeTableArgs, ForeignKey, IndexInfo, ObjectKind, TableDescription,
    TableInfo,
};
use ewii_driver_core::{CallContext, ToolError};
use oracle::Row;

use crate::OracleDatabase;
use crate::client::{statement_error, with_session};

const SCHEMAS: &str = "SELECT username FROM all_users WHERE oracle_maintained = 'N' \
     ORDER BY username";

const TABLES: &str = "SELECT owner, table_name, 'TABLE', num_rows FROM all_tables \
     WHERE owner = NVL(:s, USER) AND nested = 'NO' AND secondary = 'N' \
     UNION ALL SELECT owner, view_name, 'VIEW', NULL FROM all_views WHERE owner = NVL(:s, USER) \
     UNION ALL SELECT owner, mview_name, 'MVIEW', NULL FROM all_mviews WHERE owner = NVL(:s, USER) \
     ORDER BY 1, 2";

const OBJECT: &str = "SELECT owner, object_name, object_type FROM all_objects \
     WHERE object_name = :t AND owner = NVL(:s, USER) \
     AND object_type IN ('TABLE', 'VIEW', 'MATERIALIZED VIEW') ORDER BY object_type DESC";

const COLUMNS: &str = "SELECT column_name, data_type, data_length, data_precision, data_scale, \
     nullable, data_default FROM all_tab_columns WHERE table_name = :t AND owner = :s \
     ORDER BY column_id";

const INDEXES: &str = "SELECT i.index_name, i.uniqueness, \
     (SELECT COUNT(*) FROM all_constraints c WHERE c.owner = i.table_owner \
        AND c.table_name = i.table_name AND c.constraint_type = 'P' \
        AND c.index_name = i.index_name), \
     LISTAGG(ic.column_name, ',') WITHIN GROUP (ORDER BY ic.column_position) \
     FROM all_indexes i JOIN all_ind_columns ic ON ic.index_owner = i.owner \
        AND ic.index_name = i.index_name \
     WHERE i.table_name = :t AND i.table_owner = :s \
     GROUP BY i.index_name, i.uniqueness, i.table_owner, i.table_name ORDER BY i.index_name";

const FOREIGN_KEYS: &str = "SELECT c.constraint_name, \
     LISTAGG(cc.column_name, ',') WITHIN GROUP (ORDER BY cc.position), \
     r.owner, r.table_name, \
     LISTAGG(rc.column_name, ',') WITHIN GROUP (ORDER BY rc.position) \
     FROM all_constraints c \
     JOIN all_cons_columns cc ON cc.owner = c.owner AND cc.constraint_name = c.constraint_name \
     JOIN all_constraints r ON r.owner = c.r_owner AND r.constraint_name = c.r_constraint_name \
     JOIN all_cons_columns rc ON rc.owner = r.owner AND rc.constraint_name = r.constraint_name \
        AND rc.position = cc.position \
     WHERE c.constraint_type = 'R' AND c.table_name = :t AND c.owner = :s \
     GROUP BY c.constraint_name, r.owner, r.table_name ORDER BY c.constraint_name";

fn text(row: &Row, i: usize) -> String {
    row.get::<_, Option<String>>(i)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn list(row: &Row, i: usize) -> Vec<String> {
    text(row, i)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn kind(code: &str) -> ObjectKind {
    match code {
        "VIEW" => ObjectKind::View,
        "MVIEW" | "MATERIALIZED VIEW" => ObjectKind::MaterializedView,
        _ => ObjectKind::Table,
    }
}

/// A column's declared type: `VARCHAR2(50)`, `NUMBER(10,2)`, `NUMBER`.
pub(crate) fn declared_type(
    name: &str,
    length: i64,
    precision: Option<i64>,
    scale: Option<i64>,
) -> String {
    match (name, precision, scale) {
        ("NUMBER", Some(p), Some(0)) => format!("NUMBER({p})"),
        ("NUMBER", Some(p), Some(s)) => format!("NUMBER({p},{s})"),
        ("VARCHAR2" | "NVARCHAR2" | "CHAR" | "NCHAR" | "RAW", _, _) => format!("{name}({length})"),
        _ => name.to_owned(),
    }
}

/// Runs trusted dictionary SQL with text values bound by name (`:t` the
/// table, `:s` the schema); rows to `map`.
fn rows<T>(
    conn: &oracle::Connection,
    sql: &str,
    values: &[(&str, Option<String>)],
    limit: std::time::Duration,
    map: impl Fn(&Row) -> T,
) -> Result<Vec<T>, ToolError> {
    let params: Vec<(&str, &dyn oracle::sql_type::ToSql)> = values
        .iter()
        .map(|(n, v)| (*n, v as &dyn oracle::sql_type::ToSql))
        .collect();
    let mut out = Vec::new();
    for row in conn
        .query_named(sql, &params)
        .map_err(|e| statement_error(&e, limit))?
    {
        out.push(map(&row.map_err(|e| statement_error(&e, limit))?));
    }
    Ok(out)
}

impl OracleDatabase {
    pub(crate) async fn schemas(&self, ctx: &CallContext) -> Result<Vec<String>, ToolError> {
        let limit = self.limits.timeout;
        with_session(&self.target, ctx, limit, true, move |conn| {
            Ok((rows(conn, SCHEMAS, &[], limit, |r| text(r, 0))?, false))
        })
        .await
    }

    pub(crate) async fn tables(
        &self,
        ctx: &CallContext,
        schema: Option<String>,
    ) -> Result<Vec<TableInfo>, ToolError> {
        let limit = self.limits.timeout;
        with_session(&self.target, ctx, limit, true, move |conn| {
            let found = rows(conn, TABLES, &[("s", schema)], limit, |r| TableInfo {
                schema: text(r, 0),
                name: text(r, 1),
                kind: kind(&text(r, 2)),
                row_estimate: r.get::<_, Option<i64>>(3).ok().flatten(),
            })?;
            Ok((found, false))
        })
        .await
    }

    pub(crate) async fn describe(
        &self,
        ctx: &CallContext,
        args: DescribeTableArgs,
    ) -> Result<TableDescription, ToolError> {
        let limit = self.limits.timeout;
        with_session(&self.target, ctx, limit, true, move |conn| {
            let object = rows(
                conn,
                OBJECT,
                &[("t", Some(args.table.clone())), ("s", args.schema.clone())],
                limit,
                |r| (text(r, 0), text(r, 1), text(r, 2)),
            )?;
            let Some((owner, name, object_type)) = object.into_iter().next() else {
                return Err(ToolError::NotFound(format!(
                    "no table or view `{}` in schema `{}`; Oracle names are upper case unless \
                     quoted — call list_tables to see the names",
                    args.table,
                    args.schema.as_deref().unwrap_or("(the user's own)")
                )));
            };
            let key = [("t", Some(name.clone())), ("s", Some(owner.clone()))];
            let columns = rows(conn, COLUMNS, &key, limit, |r| ColumnDescription {
                name: text(r, 0),
                data_type: declared_type(
                    &text(r, 1),
                    r.get::<_, Option<i64>>(2).ok().flatten().unwrap_or(0),
                    r.get::<_, Option<i64>>(3).ok().flatten(),
                    r.get::<_, Option<i64>>(4).ok().flatten(),
                ),
                nullable: text(r, 5) == "Y",
                default: r
                    .get::<_, Option<String>>(6)
                    .ok()
                    .flatten()
                    .map(|d| d.trim().to_owned()),
            })?;
            let indexes = rows(conn, INDEXES, &key, limit, |r| IndexInfo {
                name: text(r, 0),
                unique: text(r, 1) == "UNIQUE",
                primary: r.get::<_, i64>(2).unwrap_or(0) > 0,
                columns: list(r, 3),
            })?;
            let primary_key = indexes
                .iter()
                .find(|i| i.primary)
                .map(|i| i.columns.clone())
                .unwrap_or_default();
            let foreign_keys = rows(conn, FOREIGN_KEYS, &key, limit, |r| ForeignKey {
                name: Some(text(r, 0)),
                columns: list(r, 1),
                referenced_schema: Some(text(r, 2)),
                referenced_table: text(r, 3),
                referenced_columns: list(r, 4),
            })?;
            let description = TableDescription {
                schema: owner,
                name,
                kind: kind(&object_type),
                columns,
                primary_key,
                foreign_keys,
                indexes,
            };
            Ok((description, false))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_read_like_oracle() {
        assert_eq!(
            declared_type("NUMBER", 22, Some(10), Some(2)),
            "NUMBER(10,2)"
        );
        assert_eq!(declared_type("NUMBER", 22, Some(9), Some(0)), "NUMBER(9)");
        assert_eq!(declared_type("NUMBER", 22, None, None), "NUMBER");
        assert_eq!(declared_type("VARCHAR2", 100, None, None), "VARCHAR2(100)");
        assert_eq!(declared_type("DATE", 7, None, None), "DATE");
        assert_eq!(kind("MATERIALIZED VIEW"), ObjectKind::MaterializedView);
    }
}
