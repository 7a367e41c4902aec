//! Functions that act even inside a read-only transaction, per engine.
//!
//! Every list applies in every dialect: a function name of another engine
//! does not exist in this one, so refusing it costs nothing, and one check
//! for all cannot forget a dialect.

/// PostgreSQL functions that have side effects even inside a read-only
/// transaction, or that leave state behind after the call (locks,
/// sequences, xids).
///
/// These lists are the first fence only: they give a clear refusal for what
/// they name. What they miss is held by the engine (read-only transactions,
/// `query_only`) and by the per-call connection reset, which the tests
/// check with functions the lists do not name.
const POSTGRES_FUNCTIONS: &[&str] = &[
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
];

/// MySQL and MariaDB functions that reach beyond the tables: server files,
/// server-wide locks, shell access through UDFs, busy loops (`BENCHMARK`)
/// and waits on replication.
const MYSQL_FUNCTIONS: &[&str] = &[
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
];

/// SQLite functions that load code or write files.
const SQLITE_FUNCTIONS: &[&str] = &["load_extension", "writefile", "edit"];

/// Prefixes of PostgreSQL function families with side effects: every `dblink*`
/// function (its connections run outside the transaction), every advisory
/// lock function (session and transaction, exclusive and shared, `try_`),
/// statistics resets and replication slots.
const POSTGRES_PREFIXES: &[&str] = &[
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
pub(super) fn has_side_effects(name: &str) -> bool {
    [POSTGRES_FUNCTIONS, MYSQL_FUNCTIONS, SQLITE_FUNCTIONS]
        .iter()
        .any(|list| list.contains(&name))
        || POSTGRES_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use crate::{SqlDialect, StatementClass, classify};

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
}
