//! Statement classification (sqlparser).
//!
//! The classifier is the *first* fence of read-only mode: it gives a model a
//! clear reason before anything reaches the engine. It is never the only
//! fence: every driver also opens read-only databases in a mode where the
//! engine itself refuses writes (read-only connection, `query_only`,
//! read-only transaction), and the driver test kit proves both.
//!
//! Rules, on a read-only database:
//! - exactly one statement (stacked statements hide writes behind a read);
//! - it must be a query or an `EXPLAIN` of one (no `SET`, `PRAGMA`,
//!   `ATTACH`, transaction control, `CALL`, `DO`, `COPY`…);
//! - no data-modifying CTE, no `SELECT … INTO`, no locking clause;
//! - no call to a function with side effects that a read-only transaction
//!   still allows (`pg_terminate_backend`, `set_config`, `load_extension`…);
//! - a statement the parser cannot understand is refused: what cannot be
//!   classified cannot be shown to be a read.

use std::ops::ControlFlow;

use serde::Serialize;
use sqlparser::ast::{
    Expr, ObjectName, Query, SetExpr, Statement, Value, ValueWithSpan, Visit, Visitor,
};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use crate::ToolError;

/// The SQL dialect a statement is parsed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL and MariaDB.
    MySql,
}

impl SqlDialect {
    fn parser_dialect(self) -> Box<dyn Dialect> {
        match self {
            SqlDialect::Sqlite => Box::new(SQLiteDialect {}),
            SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
            SqlDialect::MySql => Box::new(MySqlDialect {}),
        }
    }
}

/// Broad class of a statement, for read-only checks and operator policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementClass {
    /// Reads data only.
    Read,
    /// Changes rows (INSERT, UPDATE, DELETE, MERGE, COPY FROM, a writing CTE…).
    Write,
    /// Changes the schema (CREATE, ALTER, DROP, TRUNCATE…).
    Ddl,
    /// Anything else: session settings, transaction control, procedures,
    /// engine commands. Never allowed on a read-only database.
    Other,
}

/// Result of [`classify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// The broad class.
    pub class: StatementClass,
    /// Why, in words (e.g. "a data-modifying CTE (DELETE)").
    pub detail: String,
    /// Number of parameters the statement expects: the highest `$n` / `?n`,
    /// or the number of bare `?` placeholders.
    pub placeholders: usize,
}

impl Classification {
    /// A classification; [`classify`] fills in `placeholders` afterwards.
    fn new(class: StatementClass, detail: impl Into<String>) -> Self {
        Classification {
            class,
            detail: detail.into(),
            placeholders: 0,
        }
    }
}

/// Refuses a call whose `params` do not match the statement's placeholders,
/// before the engine sees it (SQLite would bind the missing ones as NULL).
pub fn check_param_count(expected: usize, given: usize) -> Result<(), ToolError> {
    if expected == given {
        return Ok(());
    }
    Err(ToolError::InvalidArguments(format!(
        "the statement has {expected} placeholder(s) but {given} param(s) were given; pass \
         exactly one value in `params` per placeholder, in order"
    )))
}

/// Counts placeholders: `$n` and `?n` by their highest index, bare `?` by
/// occurrence.
#[derive(Default)]
struct PlaceholderCounter {
    highest: usize,
    bare: usize,
}

impl Visitor for PlaceholderCounter {
    type Break = ();

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<()> {
        if let Value::Placeholder(p) = &value.value {
            match p.get(1..).and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => self.highest = self.highest.max(n),
                None if p == "?" => self.bare += 1,
                None => {}
            }
        }
        ControlFlow::Continue(())
    }
}

/// Functions that have side effects even inside a read-only transaction.
const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    // PostgreSQL
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_export",
    "lo_import",
    "lo_unlink",
    "dblink_exec",
    "dblink",
    "dblink_connect",
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_notify",
    "nextval",
    "setval",
    "pg_sleep_for",
    // MySQL / MariaDB
    "load_file",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "sys_exec",
    "sys_eval",
    "benchmark",
    "master_pos_wait",
    "master_gtid_wait",
    "source_pos_wait",
    "wait_for_executed_gtid_set",
    // SQLite
    "load_extension",
    "writefile",
    "edit",
];

/// Classifies one SQL text. Errors when the text is empty, holds more than
/// one statement, or does not parse.
pub fn classify(sql: &str, dialect: SqlDialect) -> Result<Classification, ToolError> {
    // MySQL and MariaDB execute the text of `/*! … */` and `/*M! … */`
    // comments; a parser that skips them as comments would classify
    // `SELECT 1 /*M! INTO OUTFILE '/tmp/x' */` as a plain read.
    if dialect == SqlDialect::MySql {
        let lower = sql.to_ascii_lowercase();
        if lower.contains("/*!") || lower.contains("/*m!") {
            return Err(ToolError::Refused {
                reason: "MySQL and MariaDB run the text inside /*! … */ and /*M! … */ comments \
                         as SQL; write the statement without executable comments"
                    .into(),
            });
        }
    }
    let statements = Parser::parse_sql(dialect.parser_dialect().as_ref(), sql).map_err(|e| {
        ToolError::InvalidArguments(format!(
            "the statement could not be parsed ({e}); check the SQL syntax"
        ))
    })?;
    let statement = match statements.as_slice() {
        [] => {
            return Err(ToolError::InvalidArguments(
                "the SQL text holds no statement".into(),
            ));
        }
        [one] => one,
        many => {
            return Err(ToolError::Refused {
                reason: format!(
                    "{} statements were sent in one call; send exactly one statement per call \
                     (stacked statements are not run)",
                    many.len()
                ),
            });
        }
    };
    let mut counter = PlaceholderCounter::default();
    let _ = statement.visit(&mut counter);
    let mut c = classify_statement(statement);
    c.placeholders = counter.highest.max(counter.bare);
    Ok(c)
}

/// Refuses anything but a plain read on a read-only database, with the
/// reason in words.
pub fn check_read_only(sql: &str, dialect: SqlDialect) -> Result<Classification, ToolError> {
    let c = classify(sql, dialect)?;
    if c.class == StatementClass::Read {
        return Ok(c);
    }
    let what = match c.class {
        StatementClass::Write => "writes data",
        StatementClass::Ddl => "changes the schema",
        _ => "is not a plain read",
    };
    Err(ToolError::Refused {
        reason: format!(
            "this database is read-only and the statement {what}: {}. Only single SELECT \
             statements (and EXPLAIN of them) run here; ask the database's owner for a \
             read-write database if a change is really needed",
            c.detail
        ),
    })
}

fn classify_statement(statement: &Statement) -> Classification {
    let mk = |class, detail: &str| Classification::new(class, detail);
    match statement {
        Statement::Query(_) => classify_query_tree(statement),
        Statement::Explain {
            analyze,
            statement: inner,
            ..
        } => {
            let inner_class = classify_statement(inner);
            if *analyze && inner_class.class != StatementClass::Read {
                // EXPLAIN ANALYZE runs the statement.
                Classification::new(
                    inner_class.class,
                    format!("EXPLAIN ANALYZE runs the statement: {}", inner_class.detail),
                )
            } else if *analyze {
                inner_class
            } else {
                Classification::new(
                    if inner_class.class == StatementClass::Read {
                        StatementClass::Read
                    } else {
                        inner_class.class
                    },
                    format!("EXPLAIN of {}", inner_class.detail),
                )
            }
        }
        Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. } => mk(StatementClass::Read, "a SHOW/DESCRIBE command"),
        Statement::Insert(_) => mk(StatementClass::Write, "INSERT"),
        Statement::Update(_) => mk(StatementClass::Write, "UPDATE"),
        Statement::Delete(_) => mk(StatementClass::Write, "DELETE"),
        Statement::Merge(_) => mk(StatementClass::Write, "MERGE"),
        Statement::Copy { .. } => mk(StatementClass::Write, "COPY"),
        Statement::LoadData { .. } => mk(StatementClass::Write, "LOAD DATA"),
        Statement::Truncate(_) => mk(StatementClass::Ddl, "TRUNCATE"),
        Statement::Drop { .. } => mk(StatementClass::Ddl, "DROP"),
        s => {
            let text = s.to_string();
            let head: String = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
                .to_uppercase();
            if head.starts_with("CREATE")
                || head.starts_with("ALTER")
                || head.starts_with("DROP")
                || head.starts_with("COMMENT")
                || head.starts_with("RENAME")
            {
                mk(StatementClass::Ddl, &head)
            } else {
                mk(StatementClass::Other, &format!("a {head} command"))
            }
        }
    }
}

fn classify_query_tree(statement: &Statement) -> Classification {
    let mut finder = WriteFinder::default();
    if let ControlFlow::Break(detail) = statement.visit(&mut finder) {
        return detail;
    }
    Classification::new(StatementClass::Read, "a query")
}

/// Walks every nested query, statement, expression and relation of a query
/// looking for something that is not a read.
#[derive(Default)]
struct WriteFinder {
    depth: usize,
}

impl Visitor for WriteFinder {
    type Break = Classification;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Classification> {
        self.depth += 1;
        // The outer statement is the query itself; any statement nested in
        // it (a CTE's INSERT/UPDATE/DELETE) is a write.
        if self.depth > 1 && !matches!(statement, Statement::Query(_)) {
            let inner = classify_statement(statement);
            return ControlFlow::Break(Classification::new(
                match inner.class {
                    StatementClass::Read => StatementClass::Write,
                    other => other,
                },
                format!("a data-modifying CTE or subquery ({})", inner.detail),
            ));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _: &Statement) -> ControlFlow<Classification> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Classification> {
        if !query.locks.is_empty() {
            return ControlFlow::Break(Classification::new(
                StatementClass::Write,
                "a locking clause (FOR UPDATE/SHARE) takes row locks",
            ));
        }
        check_set_expr(&query.body)
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Classification> {
        if let Expr::Function(f) = expr {
            check_function_name(&f.name)?;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Classification> {
        // Table functions (`SELECT * FROM pg_read_file(…)`) are visited as
        // relations.
        check_function_name(relation)
    }
}

fn check_set_expr(body: &SetExpr) -> ControlFlow<Classification> {
    let write = |detail: &str| {
        ControlFlow::Break(Classification::new(
            StatementClass::Write,
            detail.to_owned(),
        ))
    };
    match body {
        SetExpr::Insert(_) => write("a data-modifying CTE or subquery (INSERT)"),
        SetExpr::Update(_) => write("a data-modifying CTE or subquery (UPDATE)"),
        SetExpr::Delete(_) => write("a data-modifying CTE or subquery (DELETE)"),
        SetExpr::Merge(_) => write("a data-modifying CTE or subquery (MERGE)"),
        SetExpr::Select(s) if s.into.is_some() => {
            write("SELECT … INTO creates a table or writes a file")
        }
        SetExpr::SetOperation { left, right, .. } => {
            check_set_expr(left)?;
            check_set_expr(right)
        }
        _ => ControlFlow::Continue(()),
    }
}

fn check_function_name(name: &ObjectName) -> ControlFlow<Classification> {
    let Some(last) = name.0.last() else {
        return ControlFlow::Continue(());
    };
    let base = last
        .to_string()
        .trim_matches('"')
        .trim_matches('`')
        .to_ascii_lowercase();
    if SIDE_EFFECT_FUNCTIONS.contains(&base.as_str()) {
        return ControlFlow::Break(Classification::new(
            StatementClass::Other,
            format!("{base}() has side effects even in a read-only transaction"),
        ));
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(sql: &str) -> StatementClass {
        classify(sql, SqlDialect::Sqlite).expect("parses").class
    }

    #[test]
    fn reads_are_reads() {
        for sql in [
            "SELECT 1",
            "SELECT * FROM t WHERE a = ? ORDER BY b LIMIT 3",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "SELECT a FROM t UNION SELECT b FROM u",
            "EXPLAIN QUERY PLAN SELECT * FROM t",
            "SELECT (SELECT max(a) FROM t) AS m",
        ] {
            assert_eq!(class(sql), StatementClass::Read, "{sql}");
        }
    }

    #[test]
    fn writes_and_ddl_are_found() {
        assert_eq!(class("INSERT INTO t VALUES (1)"), StatementClass::Write);
        assert_eq!(class("UPDATE t SET a = 1"), StatementClass::Write);
        assert_eq!(class("DELETE FROM t"), StatementClass::Write);
        assert_eq!(class("DROP TABLE t"), StatementClass::Ddl);
        assert_eq!(class("CREATE TABLE x (a INT)"), StatementClass::Ddl);
        assert_eq!(class("ALTER TABLE t ADD COLUMN b INT"), StatementClass::Ddl);
        assert_eq!(class("ATTACH DATABASE 'x.db' AS x"), StatementClass::Other);
        assert_eq!(class("PRAGMA writable_schema = 1"), StatementClass::Other);
        assert_eq!(class("SELECT load_extension('x')"), StatementClass::Other);
    }

    #[test]
    fn hidden_writes_are_found() {
        let pg = |sql: &str| classify(sql, SqlDialect::Postgres).expect("parses").class;
        assert_eq!(
            pg("WITH d AS (DELETE FROM t RETURNING id) SELECT * FROM d"),
            StatementClass::Write
        );
        assert_eq!(pg("SELECT * INTO new_t FROM t"), StatementClass::Write);
        assert_eq!(pg("SELECT * FROM t FOR UPDATE"), StatementClass::Write);
        assert_eq!(pg("SELECT pg_terminate_backend(42)"), StatementClass::Other);
        assert_eq!(
            pg("SELECT * FROM pg_read_file('/etc/passwd')"),
            StatementClass::Other
        );
        assert_eq!(pg("SELECT nextval('s')"), StatementClass::Other);
    }

    #[test]
    fn stacked_and_garbage_are_refused() {
        let err = classify("SELECT 1; DELETE FROM t", SqlDialect::Sqlite).expect_err("stacked");
        assert!(err.to_string().contains("exactly one statement"), "{err}");
        let err = classify("SELEC 1", SqlDialect::Sqlite).expect_err("garbage");
        assert!(matches!(err, ToolError::InvalidArguments(_)));
        assert!(classify("", SqlDialect::Sqlite).is_err());
    }

    #[test]
    fn mysql_executable_comments_are_refused() {
        for sql in [
            "SELECT 1 /*M! INTO OUTFILE '/tmp/x' */",
            "SELECT a FROM t /*!50000 , GET_LOCK('x', 1) */",
        ] {
            let err = classify(sql, SqlDialect::MySql).expect_err("refused");
            assert!(err.to_string().contains("executable comments"), "{err}");
        }
        // Only MySQL runs them; elsewhere they are comments.
        assert!(classify("SELECT 1 /*! x */", SqlDialect::Postgres).is_ok());
    }

    #[test]
    fn placeholders_are_counted() {
        let n = |sql: &str, d| classify(sql, d).expect("parses").placeholders;
        assert_eq!(
            n("SELECT * FROM t WHERE a = ? AND b > ?", SqlDialect::Sqlite),
            2
        );
        assert_eq!(n("SELECT $1 + $2, $1", SqlDialect::Postgres), 2);
        assert_eq!(n("SELECT 1", SqlDialect::Postgres), 0);
        assert_eq!(n("INSERT INTO t VALUES (?, ?, ?)", SqlDialect::MySql), 3);
        assert!(check_param_count(2, 1).is_err_and(|e| e.to_string().contains("param")));
    }

    #[test]
    fn read_only_check_explains_itself() {
        let err = check_read_only("DELETE FROM t", SqlDialect::Sqlite).expect_err("refused");
        assert!(err.to_string().contains("read-only"), "{err}");
        assert!(check_read_only("SELECT 1", SqlDialect::Sqlite).is_ok());
    }
}
