//! Statements made fit for logs: literals replaced by `?`.

use super::UNPARSABLE_REDACTED;
use std::ops::ControlFlow;

use ewii_driver_core::SqlDialect;
use sqlparser::ast::{Expr, Value as SqlValue, ValueWithSpan, VisitMut, VisitorMut};
use sqlparser::dialect::{
    Dialect, MsSqlDialect, MySqlDialect, OracleDialect, PostgreSqlDialect, SQLiteDialect,
};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
/// The dialects [`redact_literals`] tries, in order (redaction only: it
/// never decides what runs).
const REDACTION_DIALECTS: [SqlDialect; 3] =
    [SqlDialect::Postgres, SqlDialect::MySql, SqlDialect::Sqlite];

/// Replaces every literal value of a statement with `?` and renders it
/// again, for logs. Parsed in the first of PostgreSQL, MySQL and SQLite that
/// accepts it; returns [`UNPARSABLE_REDACTED`] when none does.
///
/// Identifiers and placeholders (`$1`, `?`, `:name`) stay, comments go. A
/// lone double-quoted name in an expression is redacted too: MySQL reads
/// `"secret"` as a string. Literals the parser keeps outside expressions
/// (option values, passwords in some DDL) are caught by a second, token
/// level pass, which may also turn a type size such as `VARCHAR(20)` into
/// `VARCHAR(?)`.
pub fn redact_literals(sql: &str) -> String {
    // A MongoDB document command (JSON) has its values replaced instead.
    if let Some(redacted) = super::documents::redact_command(sql) {
        return redacted;
    }
    for dialect in REDACTION_DIALECTS {
        let parser_dialect = parser_dialect(dialect);
        let Ok(mut statements) = Parser::parse_sql(parser_dialect.as_ref(), sql) else {
            continue;
        };
        let _ = statements.visit(&mut LiteralRedactor);
        let rendered: Vec<String> = statements.iter().map(ToString::to_string).collect();
        return redact_literal_tokens(parser_dialect.as_ref(), &rendered.join("; "))
            .unwrap_or_else(|| UNPARSABLE_REDACTED.to_owned());
    }
    UNPARSABLE_REDACTED.to_owned()
}

fn parser_dialect(dialect: SqlDialect) -> Box<dyn Dialect> {
    match dialect {
        SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
        SqlDialect::MySql => Box::new(MySqlDialect {}),
        SqlDialect::Sqlite => Box::new(SQLiteDialect {}),
        SqlDialect::MsSql => Box::new(MsSqlDialect {}),
        SqlDialect::Oracle => Box::new(OracleDialect {}),
    }
}

/// Turns literal values into `?` placeholders.
struct LiteralRedactor;

impl VisitorMut for LiteralRedactor {
    type Break = ();

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        if !matches!(value.value, SqlValue::Placeholder(_) | SqlValue::Null) {
            value.value = SqlValue::Placeholder("?".into());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(ident) = expr
            && ident.quote_style == Some('"')
        {
            *expr = Expr::Value(SqlValue::Placeholder("?".into()).with_empty_span());
        }
        ControlFlow::Continue(())
    }
}

/// Second pass over the rendered text: any literal token the AST pass did
/// not reach becomes `?`. `None` if the text does not tokenize.
fn redact_literal_tokens(dialect: &dyn Dialect, sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(dialect, sql).tokenize().ok()?;
    Some(
        tokens
            .into_iter()
            .map(|token| {
                if is_literal_token(&token) {
                    "?".to_owned()
                } else {
                    token.to_string()
                }
            })
            .collect(),
    )
}

fn is_literal_token(token: &Token) -> bool {
    matches!(
        token,
        Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}
