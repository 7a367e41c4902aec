//! The fence every SQL driver runs before the engine sees a statement: the
//! class must be one the call may run, the database's mode holds, and the
//! parameters match the placeholders.

use super::model::{Classification, StatementClass, StatementClasses};
use super::{SqlDialect, check_read_only, classify};
use crate::ToolError;

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

impl Vetted {
    /// The affected-row count a driver reports for this statement, from
    /// what the engine `counted`: none for a read (an engine counts the rows
    /// it returned, or keeps an earlier statement's count) or for a call
    /// run read-only (it cannot have changed any).
    pub fn affected_rows(&self, counted: u64) -> Option<u64> {
        (self.class != StatementClass::Read && !self.engine_read_only).then_some(counted)
    }
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

/// [`vet_statement`], then the parameter count when the classifier counted
/// the placeholders: the whole driver-side check of one call's statement
/// and `params_given` values.
pub fn vet_with_params(
    sql: &str,
    params_given: usize,
    dialect: SqlDialect,
    read_only_database: bool,
    allowed: Option<StatementClasses>,
) -> Result<Vetted, ToolError> {
    let v = vet_statement(sql, dialect, read_only_database, allowed)?;
    if let Some(expected) = v.placeholders {
        check_param_count(expected, params_given)?;
    }
    Ok(v)
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
