//! The token-level screen the T-SQL and Oracle classifiers run before the
//! parser: what these engines execute that sqlparser parses loosely or not
//! at all (procedure calls, PL/SQL blocks, rowset functions that reach other
//! servers, database links, batch separators) is found on the tokens, where
//! strings and comments are already told apart from code.

use std::ops::ControlFlow;

use sqlparser::ast::{ObjectName, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::Dialect;
use sqlparser::tokenizer::{Token, Tokenizer, Word};

use super::model::{Classification, StatementClass};
use crate::ToolError;

/// One statement's significant tokens (no whitespace or comments).
pub(super) struct Tokens {
    pub(super) tokens: Vec<Token>,
}

/// What a dialect screen decided before parsing.
pub(super) struct Screened {
    /// Something that is not a read, with the reason; `None` when the
    /// parser and the walk decide.
    pub(super) finding: Option<Classification>,
    /// The placeholders the statement expects, counted on the tokens.
    pub(super) placeholders: usize,
}

impl Tokens {
    /// Tokenizes `sql` in `dialect`; a text that does not tokenize is
    /// refused (it cannot be shown to be a read).
    pub(super) fn new(dialect: &dyn Dialect, sql: &str) -> Result<Tokens, ToolError> {
        let tokens = Tokenizer::new(dialect, sql).tokenize().map_err(|e| {
            ToolError::InvalidArguments(format!(
                "the statement could not be read ({e}); check the SQL syntax"
            ))
        })?;
        Ok(Tokens {
            tokens: tokens
                .into_iter()
                .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
                .collect(),
        })
    }

    /// Every word, quoted or not.
    pub(super) fn words(&self) -> impl Iterator<Item = &Word> {
        self.tokens.iter().filter_map(|t| match t {
            Token::Word(w) => Some(w),
            _ => None,
        })
    }

    /// The unquoted words, uppercased, with their token index.
    pub(super) fn keywords(&self) -> impl Iterator<Item = (usize, String)> + '_ {
        self.tokens.iter().enumerate().filter_map(|(i, t)| match t {
            Token::Word(w) if w.quote_style.is_none() => Some((i, w.value.to_uppercase())),
            _ => None,
        })
    }

    /// The first `n` unquoted words of the statement, uppercased (leading
    /// parentheses skipped).
    pub(super) fn head(&self, n: usize) -> Vec<String> {
        self.tokens
            .iter()
            .skip_while(|t| matches!(t, Token::LParen))
            .take(n)
            .map(|t| match t {
                Token::Word(w) if w.quote_style.is_none() => w.value.to_uppercase(),
                _ => String::new(),
            })
            .collect()
    }

    /// The unquoted word at `i`, uppercased.
    pub(super) fn keyword_at(&self, i: usize) -> Option<String> {
        match self.tokens.get(i) {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
            _ => None,
        }
    }

    /// Whether a `;` is followed by anything: a second statement.
    pub(super) fn stacked(&self) -> bool {
        self.tokens
            .iter()
            .position(|t| matches!(t, Token::SemiColon))
            .is_some_and(|i| {
                self.tokens[i + 1..]
                    .iter()
                    .any(|t| !matches!(t, Token::SemiColon))
            })
    }
}

/// A finding of class `other` with its reason.
pub(super) fn other(detail: impl Into<String>) -> Option<Classification> {
    Some(Classification::new(StatementClass::Other, detail))
}

/// A finding of class `write` with its reason.
pub(super) fn write(detail: impl Into<String>) -> Option<Classification> {
    Some(Classification::new(StatementClass::Write, detail))
}

/// The refusal of stacked statements, in the wording `classify` uses.
pub(super) fn stacked_refusal(engine: &str) -> ToolError {
    ToolError::Refused {
        reason: format!(
            "more than one statement was sent in one call; {engine} would run every statement \
             of the text, so send exactly one statement per call (stacked statements are not \
             run)"
        ),
    }
}

/// The first finding of a dialect's visitor over a parsed statement.
pub(super) fn first_finding<V: Visitor<Break = Classification>>(
    statement: &Statement,
    visitor: &mut V,
) -> Option<Classification> {
    match statement.visit(visitor) {
        ControlFlow::Break(c) => Some(c),
        ControlFlow::Continue(()) => None,
    }
}

/// The name of a table-valued function in a `FROM` clause (`f(…)`), which
/// the dialects with user-defined functions refuse in a read.
pub(super) fn table_function(factor: &TableFactor) -> Option<&ObjectName> {
    match factor {
        TableFactor::Table {
            name,
            args: Some(_),
            ..
        } => Some(name),
        _ => None,
    }
}

/// Test support: the statements of `refused` that `dialect` does not refuse
/// on a read-only database with a reason naming the paired word.
#[cfg(test)]
pub(super) fn refusal_failures(
    refused: &[(&str, &str)],
    dialect: super::SqlDialect,
) -> Vec<String> {
    refused
        .iter()
        .filter_map(|(sql, word)| match super::check_read_only(sql, dialect) {
            Err(ToolError::Refused { reason }) if reason.contains(word) => None,
            other => Some(format!(
                "{sql}: expected a refusal naming {word}, got {other:?}"
            )),
        })
        .collect()
}
