//! T-SQL (SQL Server) rules on top of the shared walk.
//!
//! SQL Server has no read-only transaction: the engine fence of the mssql
//! driver is a transaction that is always rolled back, which cannot undo
//! what reaches outside the database (`xp_cmdshell`, a linked server
//! through `OPENQUERY`, a file written by `BULK`/`OPENROWSET`). So the
//! classifier refuses, by name and on the tokens (strings and comments
//! excepted), everything that runs code or reaches out:
//!
//! - `EXEC`/`EXECUTE` of anything (procedures and dynamic SQL), and every
//!   `xp_…`/`sp_…` name anywhere (extended and system procedures);
//! - `OPENROWSET`, `OPENQUERY`, `OPENDATASOURCE` (other servers, files);
//! - `SELECT … INTO` (creates a table), `BULK INSERT`, `WAITFOR`;
//! - `NEXT VALUE FOR` (a sequence advance is not rolled back);
//! - locking table hints (`UPDLOCK`, `XLOCK`, `HOLDLOCK`, `TABLOCK[X]`…);
//! - statements that are not queries at all: control-of-flow, variables,
//!   cursors, session settings, transaction control, `DBCC`, `KILL`,
//!   `SHUTDOWN`, `RECONFIGURE`, `BACKUP`/`RESTORE`, `USE`, permissions;
//! - stacked batches: SQL Server runs every statement of a batch, with or
//!   without `;`, so more than one statement, `GO` (a client tool's batch
//!   separator), and any text the parser cannot read are refused outright,
//!   even for a call allowed `other`;
//! - schema-qualified function calls (`dbo.f(…)`, `sys.fn_…`) and
//!   table-valued functions: a user-defined function can call extended
//!   procedures.
//!
//! Parameters are `@P1`, `@P2`, … (what `sp_executesql` binds): counted by
//! the highest index.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Statement, TableFactor, Visitor};
use sqlparser::dialect::MsSqlDialect;

use super::model::Classification;
use super::screen::{
    Screened, Tokens, first_finding, other, stacked_refusal, table_function, write,
};
use crate::ToolError;

/// First words of statements that are never queries.
const COMMANDS: &[&str] = &[
    "DBCC",
    "KILL",
    "SHUTDOWN",
    "RECONFIGURE",
    "BACKUP",
    "RESTORE",
    "CHECKPOINT",
    "REVERT",
    "SETUSER",
    "READTEXT",
    "WRITETEXT",
    "UPDATETEXT",
    "DECLARE",
    "USE",
    "PRINT",
    "RAISERROR",
    "THROW",
    "GOTO",
    "RETURN",
    "WHILE",
    "IF",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVE",
    "SET",
    "GRANT",
    "DENY",
    "REVOKE",
    "ENABLE",
    "DISABLE",
    "OPEN",
    "FETCH",
    "CLOSE",
    "DEALLOCATE",
    "SEND",
    "RECEIVE",
    "MOVE",
    "GET",
    "END",
    "BREAK",
    "CONTINUE",
];

/// Words that run code or reach outside the database wherever they stand.
const ANYWHERE: &[(&str, &str)] = &[
    ("EXEC", "EXEC runs a procedure or dynamic SQL"),
    ("EXECUTE", "EXECUTE runs a procedure or dynamic SQL"),
    (
        "OPENROWSET",
        "OPENROWSET reads files or another server outside this transaction",
    ),
    (
        "OPENQUERY",
        "OPENQUERY runs a statement on a linked server outside this transaction",
    ),
    (
        "OPENDATASOURCE",
        "OPENDATASOURCE connects to another server outside this transaction",
    ),
    (
        "WAITFOR",
        "WAITFOR blocks the session or waits for messages",
    ),
];

/// Table hints that take locks held until the transaction ends.
const LOCK_HINTS: &[&str] = &[
    "UPDLOCK",
    "XLOCK",
    "HOLDLOCK",
    "TABLOCK",
    "TABLOCKX",
    "PAGLOCK",
    "SERIALIZABLE",
    "REPEATABLEREAD",
];

/// Screens a T-SQL text before it is parsed (see the module doc).
pub(super) fn screen(sql: &str) -> Result<Screened, ToolError> {
    let t = Tokens::new(&MsSqlDialect {}, sql)?;
    if t.keywords().any(|(_, w)| w == "GO") {
        return Err(ToolError::Refused {
            reason: "GO is the batch separator of client tools (sqlcmd, SSMS), not T-SQL; send \
                     one statement per call, without GO"
                .into(),
        });
    }
    if t.stacked() {
        return Err(stacked_refusal("SQL Server"));
    }
    let placeholders = t
        .words()
        .filter_map(|w| parameter_index(&w.value))
        .max()
        .unwrap_or(0);
    Ok(Screened {
        finding: finding(&t),
        placeholders,
    })
}

/// The index of a `@Pn` parameter.
fn parameter_index(word: &str) -> Option<usize> {
    let rest = word.strip_prefix('@')?;
    let digits = rest.strip_prefix('P').or_else(|| rest.strip_prefix('p'))?;
    digits.parse().ok()
}

fn finding(t: &Tokens) -> Option<Classification> {
    let head = t.head(1);
    if let Some(first) = head.first()
        && COMMANDS.contains(&first.as_str())
    {
        return other(format!("a T-SQL {first} statement, which is not a query"));
    }
    let starts_as_query = matches!(head.first().map(String::as_str), Some("SELECT" | "WITH"));
    for (i, word) in t.keywords() {
        if let Some((_, why)) = ANYWHERE.iter().find(|(w, _)| *w == word) {
            return other(*why);
        }
        match word.as_str() {
            "BULK" => return write("BULK INSERT / OPENROWSET(BULK …) loads data from files"),
            "INTO" if starts_as_query => {
                return write("SELECT … INTO creates a table and writes rows into it");
            }
            "NEXT" if t.keyword_at(i + 1).as_deref() == Some("VALUE") => {
                return other("NEXT VALUE FOR advances a sequence, which no rollback undoes");
            }
            w if LOCK_HINTS.contains(&w) => {
                return write(format!(
                    "the {w} hint takes locks held until the transaction ends"
                ));
            }
            _ => {}
        }
    }
    for w in t.words() {
        let lower = w.value.to_ascii_lowercase();
        if lower.starts_with("xp_") || lower.starts_with("sp_") {
            return other(format!(
                "{} is an extended or system procedure; procedures run code outside the \
                 statement",
                w.value
            ));
        }
    }
    None
}

/// Refuses, in a parsed read, schema-qualified function calls and
/// table-valued functions: a user-defined function may call extended
/// procedures, which no rollback undoes.
pub(super) fn check_functions(statement: &Statement) -> Option<Classification> {
    first_finding(statement, &mut QualifiedCalls)
}

struct QualifiedCalls;

impl Visitor for QualifiedCalls {
    type Break = Classification;

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Classification> {
        if let Expr::Function(f) = expr
            && f.name.0.len() > 1
        {
            return ControlFlow::Break(Classification::new(
                super::StatementClass::Other,
                format!(
                    "{}() is a user-defined or system function; it may call extended \
                     procedures, so only built-in functions run in a read",
                    f.name
                ),
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Classification> {
        if let Some(name) = table_function(factor) {
            return ControlFlow::Break(Classification::new(
                super::StatementClass::Other,
                format!(
                    "{name}(…) is a table-valued function; it may call extended procedures, so \
                     only tables and views are read"
                ),
            ));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
#[path = "tsql_tests.rs"]
mod tests;
