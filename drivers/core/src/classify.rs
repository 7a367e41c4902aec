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
//!
//! Modules, by concern:
//! - `model`: the dialects, the statement classes, the class sets a call
//!   may run, and [`Classification`], what the classifier answers;
//! - `walk`: the walk over the parsed statement that finds what is not a
//!   read, and the placeholder count;
//! - `side_effects`: the functions, per engine, that act even inside a
//!   read-only transaction;
//! - `documents`: the fence of the document tools (MongoDB), a recursive
//!   walk over filters and pipelines ([`classify_document_call`]);
//! - `vet`: the fence every SQL driver runs before the engine sees a
//!   statement ([`vet_statement`]), and the parameter count check;
//! - `screen`: the token-level screen the T-SQL and Oracle rules share;
//! - `tsql`, `oracle`: what SQL Server and Oracle execute that the parser
//!   and the shared walk do not see (procedures, PL/SQL, rowset functions,
//!   database links, side-effect packages, user-defined functions), found on
//!   the tokens before parsing and on the parsed functions after.
//!
//! This file holds the entry points: [`classify`] (one statement, parsed in
//! its dialect) and [`check_read_only`].

mod documents;
mod model;
mod oracle;
mod screen;
mod side_effects;
mod tsql;
mod vet;
mod walk;

use sqlparser::parser::Parser;

use crate::ToolError;

pub use documents::{
    DocumentRefusal, DocumentVerdict, classify_document_call, fence_filter, fence_pipeline,
};
pub use model::{Classification, SqlDialect, StatementClass, StatementClasses};
pub use vet::{Vetted, check_param_count, vet_statement, vet_with_params};

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
    let screened = match dialect {
        SqlDialect::MsSql => Some(tsql::screen(sql)?),
        SqlDialect::Oracle => Some(oracle::screen(sql)?),
        _ => None,
    };
    if let Some(screen::Screened {
        finding: Some(mut c),
        placeholders,
    }) = screened
    {
        c.placeholders = placeholders;
        return Ok(c);
    }
    let statements = Parser::parse_sql(dialect.parser_dialect().as_ref(), sql).map_err(|e| {
        if dialect == SqlDialect::MsSql {
            // SQL Server runs every statement of a batch, with or without
            // `;`: a text the parser cannot read may hide a second one, so
            // it never runs, not even as `other`.
            return ToolError::Refused {
                reason: format!(
                    "the statement could not be parsed ({e}); SQL Server runs every statement \
                     of a batch, so a text Ewii cannot read is never sent. Check the syntax, \
                     and send exactly one statement"
                ),
            };
        }
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
    let mut c = walk::classify_statement(statement);
    if c.class == StatementClass::Read {
        let dialect_finding = match dialect {
            SqlDialect::MsSql => tsql::check_functions(statement),
            SqlDialect::Oracle => oracle::check_functions(statement),
            _ => None,
        };
        if let Some(found) = dialect_finding {
            c = found;
        }
    }
    c.placeholders = match screened {
        Some(s) => s.placeholders,
        None => walk::placeholders(statement),
    };
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
    fn read_only_check_explains_itself() {
        let err = check_read_only("DELETE FROM t", SqlDialect::Sqlite).expect_err("refused");
        assert!(err.to_string().contains("read-only"), "{err}");
        assert!(check_read_only("SELECT 1", SqlDialect::Sqlite).is_ok());
    }
}
