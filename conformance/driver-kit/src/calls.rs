//! Tool-call shorthands the kit's checks and drivers' own tests share: a
//! call with the default context, a query with given statement classes, a
//! configuration with default limits.

use ewii_driver_core::schema::StandardTool;
use ewii_driver_core::{
    CallContext, Database, DatabaseConfig, Limits, SecretString, SqlDialect, StatementClasses,
    ToolError, dispatch,
};
use serde_json::{Value, json};

/// Calls `tool` with `args` as a direct caller (the default context).
pub async fn call(db: &dyn Database, tool: StandardTool, args: Value) -> Result<Value, ToolError> {
    dispatch(db, tool, args, &CallContext::default()).await
}

/// Runs `sql` (no parameters) through the `query` tool as a direct caller.
pub async fn query(db: &dyn Database, sql: &str) -> Result<Value, ToolError> {
    query_as(db, sql, &CallContext::default()).await
}

/// Runs `sql` (no parameters) through the `query` tool with `ctx`, e.g. a
/// caller allowed only some statement classes ([`classes`]).
pub async fn query_as(db: &dyn Database, sql: &str, ctx: &CallContext) -> Result<Value, ToolError> {
    dispatch(db, StandardTool::Query, json!({ "sql": sql }), ctx).await
}

/// A call allowed exactly the statement classes `names` (`read`, `write`,
/// `ddl`, `other`), as the hub sends for an agent's policy.
///
/// # Panics
/// On a name that is not a statement class (a mistake in the test).
pub fn classes(names: &[&str]) -> CallContext {
    let statements = StatementClasses::from_names(names.iter().copied())
        .unwrap_or_else(|e| panic!("statement classes {names:?}: {e}"));
    CallContext {
        statements: Some(statements),
        ..CallContext::default()
    }
}

/// A configuration for database `name` of `driver` at `url`, default limits.
pub fn database_config(name: &str, driver: &str, url: &str, read_only: bool) -> DatabaseConfig {
    DatabaseConfig {
        name: name.into(),
        driver: driver.into(),
        url: SecretString::new(url),
        read_only,
        limits: Limits::default(),
    }
}

/// Placeholder number `n` (from 1) in `dialect`: `$n` or `?`.
pub fn placeholder(dialect: SqlDialect, n: usize) -> String {
    match dialect {
        SqlDialect::Postgres => format!("${n}"),
        SqlDialect::Sqlite | SqlDialect::MySql => "?".to_owned(),
        SqlDialect::MsSql => format!("@P{n}"),
        SqlDialect::Oracle => format!(":{n}"),
    }
}

/// Asserts that `sql`, which the classifier cannot parse, is refused for
/// want of the `other` class: to a caller allowed `read`, `write` and `ddl`,
/// and to a direct caller alike (the default context never allows `other`).
///
/// # Panics
/// When either call is not refused naming `` `other` ``.
pub async fn assert_unparsable_needs_other(db: &dyn Database, sql: &str) {
    for ctx in [classes(&["read", "write", "ddl"]), CallContext::default()] {
        let outcome = query_as(db, sql, &ctx).await;
        assert!(
            matches!(&outcome, Err(e @ ToolError::Refused { .. }) if e.to_string().contains("`other`")),
            "`{sql}` with classes {:?}: {outcome:?}",
            ctx.statements
        );
    }
}

/// The rows of `sql` with `params`, or what failed.
pub(crate) async fn rows(
    db: &dyn Database,
    sql: &str,
    params: Value,
) -> Result<Vec<Vec<Value>>, String> {
    let r = call(
        db,
        StandardTool::Query,
        json!({"sql": sql, "params": params}),
    )
    .await
    .map_err(|e| format!("`{sql}` failed: {e}"))?;
    serde_json::from_value(r["rows"].clone()).map_err(|e| e.to_string())
}

/// Numbers may come back as JSON numbers or (for DECIMAL sums) strings.
pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_from_json_numbers_and_decimal_strings() {
        assert_eq!(as_i64(&json!(42)), Some(42));
        assert_eq!(as_i64(&json!("6307.0000")), Some(6307));
        assert_eq!(as_i64(&json!("x")), None);
        assert_eq!(as_i64(&Value::Null), None);
    }

    #[test]
    fn placeholders_follow_the_dialect() {
        assert_eq!(placeholder(SqlDialect::Postgres, 2), "$2");
        assert_eq!(placeholder(SqlDialect::MySql, 2), "?");
        assert_eq!(placeholder(SqlDialect::Sqlite, 1), "?");
    }

    #[test]
    #[should_panic(expected = "statement classes")]
    fn an_unknown_statement_class_is_a_test_mistake() {
        classes(&["read", "everything"]);
    }
}
