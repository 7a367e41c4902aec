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
    /// Every dialect.
    pub const ALL: [SqlDialect; 3] = [SqlDialect::Sqlite, SqlDialect::Postgres, SqlDialect::MySql];

    /// The name a tool's `_meta["ewii/dialect"]` carries: `sqlite`,
    /// `postgres` or `mysql` (MariaDB speaks `mysql`).
    pub fn as_str(self) -> &'static str {
        match self {
            SqlDialect::Sqlite => "sqlite",
            SqlDialect::Postgres => "postgres",
            SqlDialect::MySql => "mysql",
        }
    }

    /// Parses [`SqlDialect::as_str`]; anything else (including `mariadb`,
    /// which is advertised as `mysql`) is `None`, so a caller fails closed.
    pub fn from_name(name: &str) -> Option<SqlDialect> {
        SqlDialect::ALL.into_iter().find(|d| d.as_str() == name)
    }

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

impl StatementClass {
    /// Every class, in policy order.
    pub const ALL: [StatementClass; 4] = [
        StatementClass::Read,
        StatementClass::Write,
        StatementClass::Ddl,
        StatementClass::Other,
    ];

    /// The name used in policies and in the `ewii/statements` call meta:
    /// `read`, `write`, `ddl`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementClass::Read => "read",
            StatementClass::Write => "write",
            StatementClass::Ddl => "ddl",
            StatementClass::Other => "other",
        }
    }

    /// Parses [`StatementClass::as_str`].
    pub fn from_name(name: &str) -> Option<StatementClass> {
        StatementClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    fn bit(self) -> u8 {
        match self {
            StatementClass::Read => 1,
            StatementClass::Write => 2,
            StatementClass::Ddl => 4,
            StatementClass::Other => 8,
        }
    }
}

/// The statement classes a call may run: what the hub's policy allows the
/// calling agent, sent with each call as `_meta["ewii/statements"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatementClasses(u8);

impl StatementClasses {
    /// All four classes (an unrestricted agent).
    pub fn all() -> StatementClasses {
        StatementClasses::from_classes(StatementClass::ALL)
    }

    /// Exactly `classes`.
    pub fn from_classes(classes: impl IntoIterator<Item = StatementClass>) -> StatementClasses {
        StatementClasses(classes.into_iter().fold(0, |bits, c| bits | c.bit()))
    }

    /// Parses the names of the `ewii/statements` meta; `Err` names the first
    /// entry that is not a class, so a caller can refuse the call (fail
    /// closed) rather than guess.
    pub fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<StatementClasses, String> {
        let mut classes = Vec::new();
        for name in names {
            classes.push(StatementClass::from_name(name).ok_or_else(|| name.to_owned())?);
        }
        Ok(StatementClasses::from_classes(classes))
    }

    /// Whether `class` is allowed.
    pub fn contains(self, class: StatementClass) -> bool {
        self.0 & class.bit() != 0
    }

    /// Whether the call may only read: none of `write`, `ddl`, `other` is
    /// allowed, so the driver runs it in the engine's read-only mode.
    pub fn read_only(self) -> bool {
        ![
            StatementClass::Write,
            StatementClass::Ddl,
            StatementClass::Other,
        ]
        .into_iter()
        .any(|c| self.contains(c))
    }

    /// The classes a plain `EXPLAIN` (which does not run its statement)
    /// may show the plan of: writes and DDL too, but `other` only when it
    /// was allowed (what cannot be parsed stays refused).
    pub fn for_plain_explain(self) -> StatementClasses {
        StatementClasses(
            self.0
                | StatementClass::Write.bit()
                | StatementClass::Ddl.bit()
                | StatementClass::Read.bit(),
        )
    }

    /// The allowed classes, in policy order.
    pub fn classes(self) -> Vec<StatementClass> {
        StatementClass::ALL
            .into_iter()
            .filter(|c| self.contains(*c))
            .collect()
    }

    /// The allowed class names, in policy order (the `ewii/statements` meta).
    pub fn names(self) -> Vec<&'static str> {
        self.classes()
            .into_iter()
            .map(StatementClass::as_str)
            .collect()
    }
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

/// Functions that have side effects even inside a read-only transaction,
/// or that leave state behind after the call (locks, sequences, xids).
///
/// This list is the first fence only: it gives a clear refusal for what it
/// names. What it misses is held by the engine (read-only transactions,
/// `query_only`) and by the per-call connection reset, which the tests
/// check with functions the list does not name.
const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    // PostgreSQL: server administration and files
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_drop_replication_slot",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_logical_emit_message",
    "pg_stat_statements_reset",
    "pg_promote",
    "pg_log_backend_memory_contexts",
    "pg_import_system_collations",
    // PostgreSQL: large objects
    "lo_create",
    "lo_creat",
    "lo_from_bytea",
    "lo_put",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_open",
    "lo_truncate",
    "lo_truncate64",
    "lowrite",
    // PostgreSQL: session state, notifications, sequences, xids
    "set_config",
    "pg_notify",
    "nextval",
    "setval",
    "txid_current",
    "pg_current_xact_id",
    "pg_sleep_for",
    // (pg_sleep and SLEEP are left to the time limit, which cancels them on
    // the server.)
    // MySQL / MariaDB
    "load_file",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "is_used_lock",
    "sys_exec",
    "sys_eval",
    "benchmark",
    "master_pos_wait",
    "master_gtid_wait",
    "source_pos_wait",
    "wait_for_executed_gtid_set",
    "wait_until_sql_thread_after_gtids",
    // SQLite
    "load_extension",
    "writefile",
    "edit",
];

/// Prefixes of function families with side effects: every `dblink*`
/// function (its connections run outside the transaction), every advisory
/// lock function (session and transaction, exclusive and shared, `try_`),
/// statistics resets and replication slots.
const SIDE_EFFECT_PREFIXES: &[&str] = &[
    "dblink",
    "pg_advisory",
    "pg_try_advisory",
    "pg_stat_reset",
    "pg_create_",
    "pg_replication_slot_advance",
    "pg_copy_",
    "pg_file_",
];

/// Whether `name` (lowercase, unqualified) is a function with side effects.
fn has_side_effects(name: &str) -> bool {
    SIDE_EFFECT_FUNCTIONS.contains(&name)
        || SIDE_EFFECT_PREFIXES.iter().any(|p| name.starts_with(p))
}

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

/// What a driver decided about one statement before running it
/// ([`vet_statement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vetted {
    /// The class the driver's own classifier found; `Other` for a
    /// statement it could not parse (which runs only when the call is
    /// allowed `other`).
    pub class: StatementClass,
    /// Placeholders the classifier counted; `None` when it could not parse
    /// the statement (the engine's prepare then counts them).
    pub placeholders: Option<usize>,
    /// Whether the call must run in the engine's read-only mode: the
    /// database is read-only, or the call may only read.
    pub engine_read_only: bool,
}

/// The driver-side fence, the same for every SQL driver: classifies `sql`
/// once, in the database's own `dialect`, and refuses it unless it may run.
///
/// - On a read-only database only a single plain read runs
///   ([`check_read_only`]), whatever the call is allowed.
/// - `allowed` is the call's statement classes (`CallContext::statements`,
///   from the hub's `ewii/statements` meta). The class found here must be
///   one of them: the hub classified the same text in the same dialect, so
///   a disagreement means one of the two parsers is wrong, and the stricter
///   answer wins.
/// - A statement the classifier cannot parse is refused, on read-write
///   databases too, unless `allowed` includes `other`. A direct call (no
///   hub, `allowed` = `None`) keeps the database's own mode for what
///   parses, but an unparsable statement is refused as well: the caller is
///   the customer's own local client, and a customer who attached a
///   database through Ewii expects Ewii's limits and one-statement rule to
///   hold for everything it runs, which it can only promise for statements
///   it understands. The engine-specific syntax the parser misses can still
///   be run with the database's own client.
pub fn vet_statement(
    sql: &str,
    dialect: SqlDialect,
    read_only_database: bool,
    allowed: Option<StatementClasses>,
) -> Result<Vetted, ToolError> {
    let engine_read_only = read_only_database || allowed.is_some_and(StatementClasses::read_only);
    let refuse_class = |c: &Classification, allowed: StatementClasses| ToolError::Refused {
        reason: format!(
            "the agent's policy allows {} statements only, and the database's own classifier \
             reads this statement as {} ({}); nothing ran. Ask the operator for a policy \
             that allows `{}` if it is really needed",
            names_phrase(allowed),
            c.class.as_str(),
            c.detail,
            c.class.as_str()
        ),
    };
    if read_only_database {
        let c = check_read_only(sql, dialect)?;
        if let Some(a) = allowed
            && !a.contains(c.class)
        {
            return Err(refuse_class(&c, a));
        }
        return Ok(Vetted {
            class: c.class,
            placeholders: Some(c.placeholders),
            engine_read_only,
        });
    }
    match classify(sql, dialect) {
        Ok(c) => {
            if let Some(a) = allowed
                && !a.contains(c.class)
            {
                return Err(refuse_class(&c, a));
            }
            Ok(Vetted {
                class: c.class,
                placeholders: Some(c.placeholders),
                engine_read_only,
            })
        }
        Err(ToolError::InvalidArguments(reason))
            if allowed.is_some_and(|a| a.contains(StatementClass::Other)) =>
        {
            // The hub let the agent run `other`: the engine is the judge of
            // syntax the parser does not know (one statement per call still
            // holds: statements run as prepared statements).
            tracing::debug!(%reason, "unparsable statement runs as `other`");
            Ok(Vetted {
                class: StatementClass::Other,
                placeholders: None,
                engine_read_only,
            })
        }
        Err(ToolError::InvalidArguments(reason)) => Err(ToolError::Refused {
            reason: format!(
                "{reason}. A statement Ewii cannot parse cannot be shown to be safe, so it \
                 counts as `other` and only runs for a call allowed `other` (an agent whose \
                 hub policy lists \"other\"); rewrite it in syntax the classifier knows, or \
                 run it with the database's own client"
            ),
        }),
        Err(e) => Err(e),
    }
}

/// "read and write", "no" for messages.
fn names_phrase(allowed: StatementClasses) -> String {
    let names = allowed.names();
    match names.as_slice() {
        [] => "no".to_owned(),
        [one] => format!("`{one}`"),
        [init @ .., last] => format!(
            "{} and `{last}`",
            init.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
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
    if has_side_effects(&base) {
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
    fn side_effect_families_are_other() {
        let pg = |sql: &str| classify(sql, SqlDialect::Postgres).expect("parses").class;
        for sql in [
            "SELECT lo_create(0)",
            "SELECT lo_from_bytea(0, 'x')",
            "SELECT pg_logical_emit_message(true, 'p', 'x')",
            "SELECT pg_stat_reset()",
            "SELECT pg_stat_reset_shared('bgwriter')",
            "SELECT dblink_open('c', 'SELECT 1')",
            "SELECT pg_advisory_lock_shared(1)",
            "SELECT pg_try_advisory_lock_shared(1)",
            "SELECT pg_try_advisory_xact_lock(1)",
            "SELECT txid_current()",
            "SELECT pg_current_xact_id()",
            "SELECT setval('s', 5)",
            "SELECT pg_create_logical_replication_slot('s', 'test_decoding')",
        ] {
            assert_eq!(pg(sql), StatementClass::Other, "{sql}");
        }
        let my = |sql: &str| classify(sql, SqlDialect::MySql).expect("parses").class;
        for sql in ["SELECT GET_LOCK('x', 1)", "SELECT RELEASE_ALL_LOCKS()"] {
            assert_eq!(my(sql), StatementClass::Other, "{sql}");
        }
    }

    #[test]
    fn dialect_and_class_names_round_trip() {
        for d in SqlDialect::ALL {
            assert_eq!(SqlDialect::from_name(d.as_str()), Some(d));
        }
        assert_eq!(SqlDialect::from_name("mariadb"), None);
        let all = StatementClasses::all();
        assert_eq!(all.names(), vec!["read", "write", "ddl", "other"]);
        assert!(!all.read_only());
        let read = StatementClasses::from_names(["read"]).expect("known");
        assert!(read.read_only() && read.contains(StatementClass::Read));
        assert!(StatementClasses::from_names(["read", "delete"]).is_err_and(|b| b == "delete"));
        assert!(StatementClasses::default().read_only());
        assert!(read.for_plain_explain().contains(StatementClass::Write));
        assert!(!read.for_plain_explain().contains(StatementClass::Other));
    }

    #[test]
    fn the_driver_fence_checks_the_calls_classes_and_fails_closed() {
        let read = Some(StatementClasses::from_classes([StatementClass::Read]));
        let all = Some(StatementClasses::all());
        let pg = SqlDialect::Postgres;
        // A read-only call on a read-write database: engine read-only, and
        // a write the classifier sees is refused before it runs.
        let v = vet_statement("SELECT 1", pg, false, read).expect("read");
        assert!(v.engine_read_only);
        let err = vet_statement("DELETE FROM t", pg, false, read).expect_err("write");
        assert!(
            err.to_string().contains("`read`") && err.to_string().contains("write"),
            "{err}"
        );
        // Unparsable: refused without `other`, on read-write databases and
        // for direct calls alike; runs as `other` only when allowed.
        let garbage = "SELEC 1 FRM";
        assert!(matches!(
            vet_statement(garbage, pg, false, read),
            Err(ToolError::Refused { .. })
        ));
        assert!(matches!(
            vet_statement(garbage, pg, false, None),
            Err(ToolError::Refused { .. })
        ));
        let v = vet_statement(garbage, pg, false, all).expect("other allowed");
        assert_eq!(
            (v.class, v.placeholders, v.engine_read_only),
            (StatementClass::Other, None, false)
        );
        assert!(
            vet_statement(garbage, pg, true, all).is_err(),
            "never on a read-only database"
        );
        // Direct calls keep the database's own mode for what parses.
        let v = vet_statement("DELETE FROM t", pg, false, None).expect("own mode");
        assert_eq!(
            (v.class, v.engine_read_only),
            (StatementClass::Write, false)
        );
        assert!(vet_statement("DELETE FROM t", pg, true, all).is_err());
        // Stacked statements stay refused whatever is allowed.
        assert!(vet_statement("SELECT 1; SELECT 2", pg, false, all).is_err());
    }

    #[test]
    fn read_only_check_explains_itself() {
        let err = check_read_only("DELETE FROM t", SqlDialect::Sqlite).expect_err("refused");
        assert!(err.to_string().contains("read-only"), "{err}");
        assert!(check_read_only("SELECT 1", SqlDialect::Sqlite).is_ok());
    }
}
