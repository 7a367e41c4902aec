//! `list_schemas`, `list_tables` and `describe_table` from
//! `sqlite_schema` and the `pragma_*` table functions. A schema is an
//! attached database (`main`, `temp`, …).

use ewii_driver_core::schema::{
    ColumnDescription, DescribeTableArgs, ForeignKey, IndexInfo, ObjectKind, TableDescription,
    TableInfo,
};
use ewii_driver_core::{CallContext, ToolError};
use sqlx::Row;

use crate::SqliteDatabase;
use crate::session::db_error;

impl SqliteDatabase {
    /// The attached schemas (`main`, `temp`, any `ATTACH`ed), in order.
    pub(crate) async fn schemas(&self, ctx: &CallContext) -> Result<Vec<String>, ToolError> {
        let rows = self
            .internal_rows(
                ctx,
                "SELECT name FROM pragma_database_list ORDER BY seq",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .collect())
    }

    /// The schema a call means: the one it names (which must exist), else
    /// `main`.
    async fn resolve_schema(
        &self,
        ctx: &CallContext,
        schema: Option<String>,
    ) -> Result<String, ToolError> {
        let schema = schema.unwrap_or_else(|| "main".to_owned());
        let known = self.schemas(ctx).await?;
        if known.contains(&schema) {
            Ok(schema)
        } else {
            Err(ToolError::NotFound(format!(
                "schema '{schema}' does not exist; schemas are: {}",
                known.join(", ")
            )))
        }
    }

    /// Tables and views of `schema`, or of every attached schema.
    pub(crate) async fn tables(
        &self,
        ctx: &CallContext,
        schema: Option<String>,
    ) -> Result<Vec<TableInfo>, ToolError> {
        let schemas = match schema {
            Some(s) => vec![self.resolve_schema(ctx, Some(s)).await?],
            None => self.schemas(ctx).await?,
        };
        let mut tables = Vec::new();
        for schema in schemas {
            let sql = format!(
                "SELECT name, type FROM {}.sqlite_schema WHERE type IN ('table', 'view') \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
                quote_ident(&schema)
            );
            for row in self.internal_rows(ctx, &sql, &[]).await? {
                let name: String = row.try_get(0).map_err(db_error)?;
                let kind: String = row.try_get(1).map_err(db_error)?;
                tables.push(TableInfo {
                    schema: schema.clone(),
                    name,
                    kind: kind_of(&kind),
                    row_estimate: None,
                });
            }
        }
        Ok(tables)
    }

    /// Columns, keys and indexes of one table or view.
    pub(crate) async fn describe(
        &self,
        args: DescribeTableArgs,
        ctx: &CallContext,
    ) -> Result<TableDescription, ToolError> {
        let schema = self.resolve_schema(ctx, args.schema).await?;
        let t = args.table.as_str();
        let kind_sql = format!(
            "SELECT type FROM {}.sqlite_schema WHERE name = ?1 AND type IN ('table', 'view')",
            quote_ident(&schema)
        );
        let kind_rows = self.internal_rows(ctx, &kind_sql, &[t]).await?;
        let Some(kind_row) = kind_rows.first() else {
            return Err(ToolError::NotFound(format!(
                "table '{t}' does not exist in schema '{schema}'; call list_tables to see what exists"
            )));
        };
        let kind: String = kind_row.try_get(0).map_err(db_error)?;

        let cols = self
            .internal_rows(
                ctx,
                "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1, ?2) ORDER BY cid",
                &[t, &schema],
            )
            .await?;
        let mut columns = Vec::new();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for row in &cols {
            let name: String = row.try_get(0).map_err(db_error)?;
            let data_type: String = row.try_get(1).map_err(db_error)?;
            let notnull: i64 = row.try_get(2).map_err(db_error)?;
            let default: Option<String> = row.try_get(3).map_err(db_error)?;
            let pk_pos: i64 = row.try_get(4).map_err(db_error)?;
            // An INTEGER PRIMARY KEY is the rowid: never NULL, although
            // table_info reports notnull = 0 for it.
            let rowid_alias = pk_pos > 0 && data_type.eq_ignore_ascii_case("INTEGER");
            if pk_pos > 0 {
                pk.push((pk_pos, name.clone()));
            }
            columns.push(ColumnDescription {
                name,
                data_type,
                nullable: notnull == 0 && !rowid_alias,
                default,
            });
        }
        pk.sort();

        let fk_rows = self
            .internal_rows(
                ctx,
                "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1, ?2) ORDER BY id, seq",
                &[t, &schema],
            )
            .await?;
        let mut foreign_keys: Vec<(i64, ForeignKey)> = Vec::new();
        for row in &fk_rows {
            let id: i64 = row.try_get(0).map_err(db_error)?;
            let table: String = row.try_get(1).map_err(db_error)?;
            let from: String = row.try_get(2).map_err(db_error)?;
            let to: Option<String> = row.try_get(3).map_err(db_error)?;
            match foreign_keys.last_mut() {
                Some((last, fk)) if *last == id => {
                    fk.columns.push(from);
                    fk.referenced_columns.extend(to);
                }
                _ => foreign_keys.push((
                    id,
                    ForeignKey {
                        name: None,
                        columns: vec![from],
                        referenced_schema: Some(schema.clone()),
                        referenced_table: table,
                        referenced_columns: to.into_iter().collect(),
                    },
                )),
            }
        }

        let idx_rows = self
            .internal_rows(
                ctx,
                "SELECT name, \"unique\", origin FROM pragma_index_list(?1, ?2) ORDER BY name",
                &[t, &schema],
            )
            .await?;
        let mut indexes = Vec::new();
        for row in &idx_rows {
            let name: String = row.try_get(0).map_err(db_error)?;
            let unique: i64 = row.try_get(1).map_err(db_error)?;
            let origin: String = row.try_get(2).map_err(db_error)?;
            let cols = self
                .internal_rows(
                    ctx,
                    "SELECT name FROM pragma_index_info(?1, ?2) ORDER BY seqno",
                    &[&name, &schema],
                )
                .await?;
            let columns = cols
                .iter()
                .map(|r| {
                    r.try_get::<Option<String>, _>(0)
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "<expression>".to_owned())
                })
                .collect();
            indexes.push(IndexInfo {
                name,
                columns,
                unique: unique != 0,
                primary: origin == "pk",
            });
        }

        Ok(TableDescription {
            schema,
            name: args.table,
            kind: kind_of(&kind),
            columns,
            primary_key: pk.into_iter().map(|(_, n)| n).collect(),
            foreign_keys: foreign_keys.into_iter().map(|(_, fk)| fk).collect(),
            indexes,
        })
    }
}

/// An identifier quoted for SQLite (`"…"`, inner quotes doubled).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The object kind of a `sqlite_schema.type`.
fn kind_of(kind: &str) -> ObjectKind {
    if kind == "view" {
        ObjectKind::View
    } else {
        ObjectKind::Table
    }
}
