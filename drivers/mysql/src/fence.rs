//! A MySQL-specific fence in front of the shared statement classifier, for
//! read-only databases.
//!
//! A read-only transaction stops writes to tables, but not what MySQL and
//! MariaDB do *outside* them: `SELECT … INTO OUTFILE` writes a file on the
//! server, `LOAD_FILE()` reads one, `GET_LOCK()` takes a server-wide lock.
//! The classifier refuses those it can parse; this check looks at the raw
//! text so that nothing it cannot see slips past — in particular the
//! executable comments `/*! … */` and `/*M! … */`, whose content the server
//! runs as SQL although a parser may skip it as a comment.
//!
//! It is deliberately blunt: a listed word anywhere in the text (even in a
//! string literal) refuses the statement, and the message says to pass such
//! text as a bound parameter instead, which always works.

use ewii_driver_core::ToolError;

/// Words that name a server-side file or lock operation, with why each is
/// refused.
const REFUSED_WORDS: &[(&str, &str)] = &[
    (
        "outfile",
        "SELECT … INTO OUTFILE writes a file on the database server",
    ),
    (
        "dumpfile",
        "SELECT … INTO DUMPFILE writes a file on the database server",
    ),
    (
        "load_file",
        "LOAD_FILE() reads a file on the database server",
    ),
    (
        "infile",
        "LOAD DATA/LOAD XML … INFILE loads a file into a table",
    ),
    (
        "get_lock",
        "GET_LOCK() takes a server-wide lock that other sessions wait on",
    ),
    ("release_lock", "RELEASE_LOCK() releases a server-wide lock"),
    (
        "release_all_locks",
        "RELEASE_ALL_LOCKS() releases server-wide locks",
    ),
];

/// Refuses, on a read-only database, SQL that reaches beyond the tables.
/// (Executable comments `/*! … */` are refused by the shared classifier,
/// which runs right after this check.)
pub(crate) fn refuse_server_side_effects(sql: &str) -> Result<(), ToolError> {
    let lower = sql.to_ascii_lowercase();
    let words = lower.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'));
    for word in words {
        if let Some((_, why)) = REFUSED_WORDS.iter().find(|(w, _)| *w == word) {
            return Err(ToolError::Refused {
                reason: format!(
                    "{why}; this database is read-only and only returns rows. If the word \
                     only appears inside a string value, pass that value as a bound \
                     parameter (`?` and `params`) instead"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_file_and_lock_operations() {
        for sql in [
            "SELECT * FROM t INTO OUTFILE '/tmp/x'",
            "select 1 into dumpfile '/tmp/x'",
            "SELECT `LOAD_FILE`('/etc/passwd')",
            "SELECT load_file ('/etc/passwd')",
            "LOAD DATA INFILE '/tmp/x' INTO TABLE t",
            "SELECT GET_LOCK('x', 1)",
            "SELECT 1 /*M! INTO OUTFILE '/tmp/x' */",
            "SELECT 1 /*m!100000 , GET_LOCK('x', 1) */",
        ] {
            assert!(
                matches!(
                    refuse_server_side_effects(sql),
                    Err(ToolError::Refused { .. })
                ),
                "{sql}"
            );
        }
    }

    #[test]
    fn ordinary_reads_pass() {
        for sql in [
            "SELECT outfile_count, my_load_file FROM t /* a comment */",
            "SELECT * FROM t WHERE note = ? -- infile_note",
            "SELECT JSON_EXTRACT(j, '$.a') FROM t",
        ] {
            assert!(refuse_server_side_effects(sql).is_ok(), "{sql}");
        }
    }
}
