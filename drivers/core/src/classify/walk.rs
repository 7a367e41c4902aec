//! The walk over a parsed statement: its class (what in it is not a read)
//! and the number of placeholders it expects.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, Query, SetExpr, Statement, Value, ValueWithSpan, Visit, Visitor,
};

use super::model::{Classification, StatementClass};
use super::side_effects::has_side_effects;

/// Number of parameters `statement` expects: the highest `$n` / `?n`, or
/// the number of bare `?` placeholders.
pub(super) fn placeholders(statement: &Statement) -> usize {
    let mut counter = PlaceholderCounter::default();
    let _ = statement.visit(&mut counter);
    counter.highest.max(counter.bare)
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

/// The class of one parsed statement, with the reason in words.
pub(super) fn classify_statement(statement: &Statement) -> Classification {
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
    use crate::{SqlDialect, StatementClass, check_param_count, classify};
    fn class(sql: &str) -> StatementClass {
        classify(sql, SqlDialect::Sqlite).expect("parses").class
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
}
