//! Oracle classifier tests: what must be refused on a read-only database,
//! and the reads that must pass.

use super::super::screen::refusal_failures;
use crate::{SqlDialect, StatementClass, check_read_only, classify};

const O: SqlDialect = SqlDialect::Oracle;

/// Every statement here must be refused on a read-only database; the
/// second field is a word the refusal must contain.
const REFUSED: &[(&str, &str)] = &[
    ("BEGIN DELETE FROM t; END;", "BEGIN"),
    ("begin null; end;", "BEGIN"),
    ("DECLARE x NUMBER; BEGIN x := 1; END;", "DECLARE"),
    ("CALL purge_orders()", "CALL"),
    ("EXEC dbms_stats.gather_table_stats('A', 'T')", "EXEC"),
    ("EXECUTE IMMEDIATE 'DROP TABLE t'", "EXECUTE"),
    ("SELECT * FROM t FOR UPDATE", "FOR UPDATE"),
    (
        "SELECT * FROM t WHERE id = 1 FOR UPDATE NOWAIT",
        "FOR UPDATE",
    ),
    ("SELECT a FROM t FOR UPDATE OF a SKIP LOCKED", "FOR UPDATE"),
    ("SELECT dbms_lock.sleep(10) FROM dual", "dbms_lock"),
    ("SELECT DBMS_PIPE.SEND_MESSAGE('x') FROM dual", "DBMS_PIPE"),
    ("SELECT sys.dbms_java.runjava('x') FROM dual", "dbms_java"),
    ("SELECT UTL_HTTP.REQUEST('http://x') FROM dual", "UTL_HTTP"),
    ("SELECT utl_file.fopen('D', 'f', 'w') FROM dual", "utl_file"),
    (
        "SELECT UTL_INADDR.GET_HOST_ADDRESS('x') FROM dual",
        "UTL_INADDR",
    ),
    ("SELECT htp.print('x') FROM dual", "htp"),
    ("SELECT * FROM orders@remote_db", "database link"),
    ("SELECT * FROM \"ORDERS\"@remote", "database link"),
    ("SELECT f@remote(1) FROM dual", "database link"),
    ("SELECT log_and_return(1) FROM dual", "autonomous"),
    ("SELECT app_pkg.audit_read(id) FROM t", "autonomous"),
    ("SELECT * FROM TABLE(app_pkg.rows_of(1))", "table function"),
    (
        "WITH FUNCTION f RETURN NUMBER IS BEGIN RETURN 1; END; SELECT f FROM dual",
        "PL/SQL",
    ),
    ("SELECT order_seq.NEXTVAL FROM dual", "NEXTVAL"),
    ("LOCK TABLE t IN EXCLUSIVE MODE", "LOCK"),
    ("SET TRANSACTION READ WRITE", "SET"),
    ("COMMIT", "COMMIT"),
    ("ALTER SESSION SET CURRENT_SCHEMA = other", "ALTER SESSION"),
    ("ALTER SYSTEM KILL SESSION '1,2'", "ALTER SESSION/SYSTEM"),
    ("EXPLAIN PLAN FOR SELECT * FROM t", "EXPLAIN"),
    ("DELETE FROM t", "writes"),
    ("UPDATE t SET a = 1", "writes"),
    ("INSERT INTO t VALUES (1)", "writes"),
    (
        "MERGE INTO t USING s ON (t.id = s.id) WHEN MATCHED THEN UPDATE SET t.a = s.a",
        "writes",
    ),
    ("DROP TABLE t", "schema"),
    ("CREATE TABLE x (a NUMBER)", "schema"),
    ("TRUNCATE TABLE t", "schema"),
    ("GRANT SELECT ON t TO PUBLIC", "GRANT"),
    ("FLASHBACK TABLE t TO BEFORE DROP", "FLASHBACK"),
    ("SELECT 1 FROM dual; DELETE FROM t", "one statement"),
];

#[test]
fn oracle_refusals() {
    assert!(REFUSED.len() >= 30);
    let failures = refusal_failures(REFUSED, O);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn oracle_reads_pass() {
    let reads = [
        "SELECT 1 FROM dual",
        "SELECT * FROM hr.employees WHERE department_id = :1",
        "SELECT first_name, last_name FROM employees WHERE employee_id = :id",
        "SELECT COUNT(*) FROM orders",
        "SELECT * FROM orders ORDER BY id FETCH FIRST 10 ROWS ONLY",
        "SELECT * FROM orders WHERE ROWNUM <= 10",
        "SELECT NVL(a, 0), TO_CHAR(created, 'YYYY-MM-DD') FROM t",
        "SELECT SYSDATE FROM dual",
        "WITH x AS (SELECT 1 AS a FROM dual) SELECT a FROM x",
        "SELECT a FROM t UNION ALL SELECT b FROM u",
        "SELECT SUBSTR(name, 1, 3), UPPER(name) FROM t",
        "SELECT id, ROW_NUMBER() OVER (PARTITION BY g ORDER BY id) AS rn FROM t",
        "SELECT 'BEGIN dbms_lock.sleep(1); END;' AS harmless_text FROM dual",
        "SELECT 1 FROM dual -- FOR UPDATE in a comment",
        "SELECT e.name, d.name FROM emp e JOIN dept d ON e.dept_id = d.id",
        "SELECT DECODE(status, 'A', 'active', 'other') FROM t",
        "SELECT owner, table_name FROM all_tables",
    ];
    assert!(reads.len() >= 15);
    for sql in reads {
        let c = check_read_only(sql, O).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(c.class, StatementClass::Read, "{sql}");
    }
}

#[test]
fn oracle_parameters_count_distinct_names() {
    let n = |sql: &str| classify(sql, O).expect("parses").placeholders;
    assert_eq!(n("SELECT * FROM t WHERE a = :1 AND b = :2"), 2);
    assert_eq!(n("SELECT * FROM t WHERE a = :id OR b = :id"), 1);
    assert_eq!(n("SELECT 1 FROM dual"), 0);
}
