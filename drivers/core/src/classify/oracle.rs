//! Oracle rules on top of the shared walk.
//!
//! The oracle driver runs every call in `SET TRANSACTION READ ONLY`, rolled
//! back. What that transaction does not hold, the classifier refuses by
//! name, on the tokens (strings and comments excepted):
//!
//! - PL/SQL: anonymous blocks (`BEGIN`, `DECLARE`), `CALL`, `EXEC[UTE]`,
//!   `EXECUTE IMMEDIATE`, and `WITH FUNCTION`/`WITH PROCEDURE` (PL/SQL
//!   declared inside a query);
//! - database links (`table@link`, `f@link(…)`): the remote statement runs
//!   in another database, outside this transaction's read-only mode;
//! - the side-effect packages `DBMS_…`, `UTL_…` (files, network, jobs,
//!   locks, sessions), `OWA_…`, `HTP`, `HTF`, `APEX_…`;
//! - `SELECT … FOR UPDATE` and `LOCK TABLE` (row and table locks);
//! - `seq.NEXTVAL` (a sequence advance is not rolled back);
//! - statements that are not queries: transaction control, `ALTER
//!   SESSION`/`ALTER SYSTEM`, `EXPLAIN PLAN` (it writes the plan table),
//!   `ANALYZE`, `AUDIT`, `FLASHBACK`, `PURGE`;
//! - every function that is not a built-in of an allow list, and every
//!   qualified or table function (`pkg.f(…)`, `TABLE(f(…))`): a function
//!   declared `PRAGMA AUTONOMOUS_TRANSACTION` commits its own writes even
//!   inside a read-only transaction, and only built-ins are known not to be
//!   one.
//!
//! Parameters are `:1`, `:2`, … or `:name`; each distinct name is one
//! parameter, bound in order of first appearance.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Statement, TableFactor, Visitor};
use sqlparser::dialect::OracleDialect;
use sqlparser::tokenizer::Token;

use super::model::{Classification, StatementClass};
use super::screen::{
    Screened, Tokens, first_finding, other, stacked_refusal, table_function, write,
};
use crate::ToolError;

/// First words of statements that are never queries.
const COMMANDS: &[&str] = &[
    "BEGIN",
    "DECLARE",
    "CALL",
    "EXEC",
    "EXECUTE",
    "LOCK",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "SET",
    "EXPLAIN",
    "ANALYZE",
    "AUDIT",
    "NOAUDIT",
    "FLASHBACK",
    "PURGE",
    "GRANT",
    "REVOKE",
];

/// Package prefixes with side effects.
const PACKAGE_PREFIXES: &[&str] = &["DBMS_", "UTL_", "OWA_", "APEX_", "CTX_"];

/// Packages named in full.
const PACKAGES: &[&str] = &["HTP", "HTF"];

/// Built-in SQL functions known to have no side effects (and never to be an
/// autonomous transaction).
const BUILTINS: &[&str] = &[
    // aggregates and analytics
    "avg",
    "count",
    "max",
    "min",
    "sum",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "median",
    "listagg",
    "collect",
    "corr",
    "covar_pop",
    "covar_samp",
    "cume_dist",
    "dense_rank",
    "first_value",
    "last_value",
    "lag",
    "lead",
    "nth_value",
    "ntile",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "rank",
    "ratio_to_report",
    "row_number",
    "approx_count_distinct",
    "any_value",
    "json_arrayagg",
    "json_objectagg",
    "xmlagg",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    "stats_mode",
    // numbers
    "abs",
    "acos",
    "asin",
    "atan",
    "atan2",
    "bitand",
    "ceil",
    "cos",
    "cosh",
    "exp",
    "floor",
    "ln",
    "log",
    "mod",
    "power",
    "remainder",
    "round",
    "sign",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    "width_bucket",
    "greatest",
    "least",
    // characters
    "ascii",
    "chr",
    "concat",
    "initcap",
    "instr",
    "length",
    "lengthb",
    "lower",
    "lpad",
    "ltrim",
    "nls_initcap",
    "nls_lower",
    "nls_upper",
    "regexp_count",
    "regexp_instr",
    "regexp_like",
    "regexp_replace",
    "regexp_substr",
    "replace",
    "rpad",
    "rtrim",
    "soundex",
    "substr",
    "substrb",
    "translate",
    "trim",
    "upper",
    "unistr",
    "reverse",
    // conversion
    "cast",
    "to_char",
    "to_clob",
    "to_date",
    "to_dsinterval",
    "to_yminterval",
    "to_number",
    "to_timestamp",
    "to_timestamp_tz",
    "to_binary_double",
    "to_binary_float",
    "to_nchar",
    "to_blob",
    "rawtohex",
    "hextoraw",
    "asciistr",
    "convert",
    "numtodsinterval",
    "numtoyminterval",
    "validate_conversion",
    "bin_to_num",
    "rowidtochar",
    "chartorowid",
    // dates
    "add_months",
    "current_date",
    "current_timestamp",
    "dbtimezone",
    "extract",
    "from_tz",
    "last_day",
    "localtimestamp",
    "months_between",
    "new_time",
    "next_day",
    "sessiontimezone",
    "sys_extract_utc",
    "sysdate",
    "systimestamp",
    "tz_offset",
    // null handling and comparison
    "coalesce",
    "decode",
    "lnnvl",
    "nanvl",
    "nullif",
    "nvl",
    "nvl2",
    // JSON and XML (reading)
    "json_value",
    "json_query",
    "json_exists",
    "json_object",
    "json_array",
    "json_serialize",
    "json_table",
    "xmltable",
    "xmlelement",
    "xmlforest",
    "xmlattributes",
    "xmlserialize",
    "extractvalue",
    "xmlquery",
    "xmlexists",
    // environment (reading)
    "sys_context",
    "userenv",
    "uid",
    "user",
    "ora_hash",
    "standard_hash",
    "sys_guid",
    "vsize",
    "dump",
    "empty_blob",
    "empty_clob",
    "grouping",
    "grouping_id",
    "group_id",
];

/// Screens an Oracle text before it is parsed (see the module doc).
pub(super) fn screen(sql: &str) -> Result<Screened, ToolError> {
    let t = Tokens::new(&OracleDialect {}, sql)?;
    // A PL/SQL block holds `;` of its own: it is refused as PL/SQL, and
    // only then is a `;` a second statement.
    let finding = finding(&t);
    if finding.is_none() && t.stacked() {
        return Err(stacked_refusal("Oracle"));
    }
    Ok(Screened {
        finding,
        placeholders: placeholder_names(&t).len(),
    })
}

/// The distinct bind names (`:1`, `:id`) in order of first appearance.
fn placeholder_names(t: &Tokens) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: String| {
        if !names.contains(&name) {
            names.push(name);
        }
    };
    for (i, tok) in t.tokens.iter().enumerate() {
        match (tok, t.tokens.get(i + 1)) {
            (Token::Placeholder(p), _) => add(p.to_ascii_lowercase()),
            (Token::Colon, Some(Token::Number(n, _))) => add(format!(":{n}")),
            (Token::Colon, Some(Token::Word(w))) => add(format!(":{}", w.value.to_lowercase())),
            _ => {}
        }
    }
    names
}

fn finding(t: &Tokens) -> Option<Classification> {
    let head = t.head(2);
    if let Some(first) = head.first() {
        if COMMANDS.contains(&first.as_str()) {
            return other(format!(
                "an Oracle {first} statement, which is not a query (PL/SQL, procedure calls, \
                 transaction and session control never run as a read)"
            ));
        }
        if first == "ALTER" && matches!(head.get(1).map(String::as_str), Some("SESSION" | "SYSTEM"))
        {
            return other("ALTER SESSION/SYSTEM changes settings");
        }
    }
    if t.tokens.iter().any(|tok| matches!(tok, Token::AtSign)) {
        return other(database_link());
    }
    for w in t.words() {
        let upper = w.value.to_uppercase();
        if w.quote_style.is_none() && upper.contains('@') {
            return other(database_link());
        }
        if PACKAGE_PREFIXES.iter().any(|p| upper.starts_with(p))
            || PACKAGES.contains(&upper.as_str())
        {
            return other(format!(
                "{} is an Oracle package that can act outside the statement (files, network, \
                 jobs, locks, sessions)",
                w.value
            ));
        }
    }
    for (i, word) in t.keywords() {
        let next = t.keyword_at(i + 1);
        match (word.as_str(), next.as_deref()) {
            ("IMMEDIATE", _) => return other("EXECUTE IMMEDIATE runs dynamic SQL"),
            ("FOR", Some("UPDATE")) => {
                return write("SELECT … FOR UPDATE takes row locks");
            }
            ("WITH", Some("FUNCTION" | "PROCEDURE")) => {
                return other("WITH FUNCTION/PROCEDURE declares PL/SQL inside the query");
            }
            ("NEXTVAL", _) => {
                return other("NEXTVAL advances a sequence, which no rollback undoes");
            }
            _ => {}
        }
    }
    None
}

fn database_link() -> &'static str {
    "a database link (name@link) runs the statement in another database, outside this \
     transaction's read-only mode"
}

/// Refuses, in a parsed read, every function call that is not a known
/// built-in, and table functions: any other function may be declared
/// `PRAGMA AUTONOMOUS_TRANSACTION` and commit writes of its own.
pub(super) fn check_functions(statement: &Statement) -> Option<Classification> {
    first_finding(statement, &mut UnknownCalls)
}

struct UnknownCalls;

impl Visitor for UnknownCalls {
    type Break = Classification;

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Classification> {
        if let Expr::Function(f) = expr {
            let known = match f.name.0.as_slice() {
                [one] => {
                    let name = one.to_string().to_ascii_lowercase();
                    BUILTINS.contains(&name.as_str())
                }
                _ => false,
            };
            if !known {
                return ControlFlow::Break(Classification::new(
                    StatementClass::Other,
                    format!(
                        "{}() is not a built-in function Ewii knows to be side-effect free; a \
                         stored function may be an autonomous transaction that commits its \
                         own writes, so only built-ins run in a read",
                        f.name
                    ),
                ));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Classification> {
        if let Some(name) = table_function(factor) {
            return ControlFlow::Break(Classification::new(
                StatementClass::Other,
                format!("{name}(…) is a table function; only tables and views are read"),
            ));
        }
        if matches!(factor, TableFactor::TableFunction { .. }) {
            return ControlFlow::Break(Classification::new(
                StatementClass::Other,
                "TABLE(…) reads a table function; only tables and views are read",
            ));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
#[path = "oracle_tests.rs"]
mod tests;
