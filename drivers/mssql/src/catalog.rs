//! `list_schemas`, `list_tables`, `describe_table` from the `sys` catalog
//! views, in a read-only (rolled back) session. Every name is a bound
//! parameter.

use ewii_driver_core::ToolError;
use ewii_driver_core::schema::{
    ColumnDescription, DescribeTableArgs, ForeignKey, IndexInfo, ObjectKind, TableDescription,
    TableInfo,
};
use serde_json::Value;

use crate::MssqlDatabase;

/// User schemas (fixed database roles own schemas with ids ≥ 16384).
const SCHEMAS: &str = "SELECT name FROM sys.schemas WHERE schema_id < 16384 \
     AND name NOT IN ('sys', 'INFORMATION_SCHEMA', 'guest') ORDER BY name";

const TABLES: &str = "SELECT s.name, o.name, o.type, \
     (SELECT SUM(p.rows) FROM sys.partitions p WHERE p.object_id = o.object_id \
        AND p.index_id IN (0, 1)) \
     FROM sys.objects o JOIN sys.schemas s ON s.schema_id = o.schema_id \
     WHERE o.type IN ('U', 'V') AND o.is_ms_shipped = 0 AND (@P1 IS NULL OR s.name = @P1) \
     ORDER BY s.name, o.name";

const OBJECT: &str = "SELECT s.name, o.name, o.type FROM sys.objects o \
     JOIN sys.schemas s ON s.schema_id = o.schema_id \
     WHERE o.type IN ('U', 'V') AND o.name = @P1 AND s.name = COALESCE(@P2, SCHEMA_NAME())";

const COLUMNS: &str = "SELECT c.name, TYPE_NAME(c.user_type_id), c.max_length, c.precision, \
     c.scale, c.is_nullable, OBJECT_DEFINITION(c.default_object_id) \
     FROM sys.columns c WHERE c.object_id = OBJECT_ID(QUOTENAME(@P2) + '.' + QUOTENAME(@P1)) \
     ORDER BY c.column_id";

const INDEXES: &str = "SELECT i.name, i.is_unique, i.is_primary_key, \
     STRING_AGG(c.name, ',') WITHIN GROUP (ORDER BY ic.key_ordinal) \
     FROM sys.indexes i \
     JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
        AND ic.is_included_column = 0 \
     JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
     WHERE i.object_id = OBJECT_ID(QUOTENAME(@P2) + '.' + QUOTENAME(@P1)) AND i.name IS NOT NULL \
     GROUP BY i.name, i.is_unique, i.is_primary_key ORDER BY i.name";

const FOREIGN_KEYS: &str = "SELECT fk.name, \
     STRING_AGG(pc.name, ',') WITHIN GROUP (ORDER BY fkc.constraint_column_id), \
     SCHEMA_NAME(rt.schema_id), rt.name, \
     STRING_AGG(rc.name, ',') WITHIN GROUP (ORDER BY fkc.constraint_column_id) \
     FROM sys.foreign_keys fk \
     JOIN sys.foreign_key_columns fkc ON fkc.constraint_object_id = fk.object_id \
     JOIN sys.columns pc ON pc.object_id = fkc.parent_object_id \
        AND pc.column_id = fkc.parent_column_id \
     JOIN sys.columns rc ON rc.object_id = fkc.referenced_object_id \
        AND rc.column_id = fkc.referenced_column_id \
     JOIN sys.tables rt ON rt.object_id = fk.referenced_object_id \
     WHERE fk.parent_object_id = OBJECT_ID(QUOTENAME(@P2) + '.' + QUOTENAME(@P1)) \
     GROUP BY fk.name, rt.schema_id, rt.name ORDER BY fk.name";

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn list(v: &Value) -> Vec<String> {
    v.as_str()
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

fn kind(code: &Value) -> ObjectKind {
    match code.as_str().map(str::trim) {
        Some("V") => ObjectKind::View,
        _ => ObjectKind::Table,
    }
}

/// A column's declared type: `nvarchar(50)`, `decimal(10,2)`, `varchar(max)`.
pub(crate) fn declared_type(name: &str, max_length: i64, precision: i64, scale: i64) -> String {
    match name {
        "varchar" | "char" | "varbinary" | "binary" if max_length == -1 => format!("{name}(max)"),
        "nvarchar" | "nchar" if max_length == -1 => format!("{name}(max)"),
        "varchar" | "char" | "varbinary" | "binary" => format!("{name}({max_length})"),
        "nvarchar" | "nchar" => format!("{name}({})", max_length / 2),
        "decimal" | "numeric" => format!("{name}({precision},{scale})"),
        "datetime2" | "time" | "datetimeoffset" => format!("{name}({scale})"),
        _ => name.to_owned(),
    }
}

impl MssqlDatabase {
    pub(crate) async fn schemas(&self) -> Result<Vec<String>, ToolError> {
        let rows = self.catalog_rows(SCHEMAS, &[]).await?;
        Ok(rows.iter().map(|r| text(&r[0])).collect())
    }

    pub(crate) async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, ToolError> {
        let rows = self.catalog_rows(TABLES, &[schema]).await?;
        Ok(rows
            .iter()
            .map(|r| TableInfo {
                schema: text(&r[0]),
                name: text(&r[1]),
                kind: kind(&r[2]),
                row_estimate: r[3].as_i64().or_else(|| r[3].as_str()?.parse().ok()),
            })
            .collect())
    }

    pub(crate) async fn describe(
        &self,
        args: &DescribeTableArgs,
    ) -> Result<TableDescription, ToolError> {
        let object = self
            .catalog_rows(OBJECT, &[Some(&args.table), args.schema.as_deref()])
            .await?;
        let Some(found) = object.first() else {
            return Err(ToolError::NotFound(format!(
                "no table or view `{}` in schema `{}`; call list_tables to see the names",
                args.table,
                args.schema
                    .as_deref()
                    .unwrap_or("(the login's default schema)")
            )));
        };
        let (schema, name) = (text(&found[0]), text(&found[1]));
        let key = [Some(name.as_str()), Some(schema.as_str())];
        let int = |v: &Value| v.as_i64().unwrap_or_default();
        let columns = self
            .catalog_rows(COLUMNS, &key)
            .await?
            .iter()
            .map(|r| ColumnDescription {
                name: text(&r[0]),
                data_type: declared_type(&text(&r[1]), int(&r[2]), int(&r[3]), int(&r[4])),
                nullable: r[5].as_bool().unwrap_or(true),
                default: r[6].as_str().map(str::to_owned),
            })
            .collect();
        let indexes: Vec<IndexInfo> = self
            .catalog_rows(INDEXES, &key)
            .await?
            .iter()
            .map(|r| IndexInfo {
                name: text(&r[0]),
                unique: r[1].as_bool().unwrap_or(false),
                primary: r[2].as_bool().unwrap_or(false),
                columns: list(&r[3]),
            })
            .collect();
        let primary_key = indexes
            .iter()
            .find(|i| i.primary)
            .map(|i| i.columns.clone())
            .unwrap_or_default();
        let foreign_keys = self
            .catalog_rows(FOREIGN_KEYS, &key)
            .await?
            .iter()
            .map(|r| ForeignKey {
                name: r[0].as_str().map(str::to_owned),
                columns: list(&r[1]),
                referenced_schema: r[2].as_str().map(str::to_owned),
                referenced_table: text(&r[3]),
                referenced_columns: list(&r[4]),
            })
            .collect();
        Ok(TableDescription {
            schema,
            name,
            kind: kind(&found[2]),
            columns,
            primary_key,
            foreign_keys,
            indexes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_read_like_sql_server() {
        assert_eq!(declared_type("nvarchar", 100, 0, 0), "nvarchar(50)");
        assert_eq!(declared_type("varchar", -1, 0, 0), "varchar(max)");
        assert_eq!(declared_type("decimal", 9, 10, 2), "decimal(10,2)");
        assert_eq!(declared_type("datetime2", 8, 27, 7), "datetime2(7)");
        assert_eq!(declared_type("int", 4, 10, 0), "int");
    }
}
