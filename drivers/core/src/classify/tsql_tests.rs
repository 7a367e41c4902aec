//! T-SQL classifier tests: what must be refused on a read-only database,
//! and the reads that must pass.

use super::super::screen::refusal_failures;
use crate::{SqlDialect, StatementClass, check_read_only, classify};

const T: SqlDialect = SqlDialect::MsSql;

/// Every statement here must be refused on a read-only database; the
/// second field is a word the refusal must contain.
const REFUSED: &[(&str, &str)] = &[
    ("EXEC sp_who", "EXEC"),
    ("EXECUTE dbo.purge_orders", "EXECUTE"),
    ("EXEC('DELETE FROM t')", "EXEC"),
    ("exec master..xp_cmdshell 'dir'", "EXEC"),
    (
        "SELECT * FROM t WHERE 1 = 1 EXEC xp_cmdshell 'whoami'",
        "EXEC",
    ),
    ("SELECT master.dbo.xp_cmdshell('dir')", "xp_cmdshell"),
    ("SELECT * FROM sys.sp_helptext", "sp_helptext"),
    ("SELECT [xp_dirtree]('c:\\')", "xp_dirtree"),
    (
        "SELECT * FROM OPENROWSET('SQLNCLI', 'Server=x;Trusted_Connection=yes', 'SELECT 1')",
        "OPENROWSET",
    ),
    (
        "SELECT * FROM OPENROWSET(BULK 'c:\\secrets.txt', SINGLE_CLOB) AS x",
        "OPENROWSET",
    ),
    (
        "SELECT * FROM OPENQUERY(linked, 'DELETE FROM t')",
        "OPENQUERY",
    ),
    (
        "SELECT * FROM OPENDATASOURCE('SQLNCLI', 'Data Source=x').db.dbo.t",
        "OPENDATASOURCE",
    ),
    ("SELECT * INTO copy_of_t FROM t", "INTO"),
    ("SELECT a, b INTO #tmp FROM t WHERE a > 1", "INTO"),
    ("WITH c AS (SELECT 1 AS a) SELECT a INTO t2 FROM c", "INTO"),
    ("BULK INSERT t FROM 'c:\\data.csv'", "BULK"),
    ("WAITFOR DELAY '00:00:10'", "WAITFOR"),
    ("SELECT 1 WAITFOR DELAY '00:00:05'", "WAITFOR"),
    ("SELECT 1; DELETE FROM t", "one statement"),
    ("SELECT 1; SELECT 2", "one statement"),
    ("SELECT 1\nGO\nDELETE FROM t", "GO"),
    ("SELECT * FROM t\ngo", "GO"),
    ("SELECT * FROM t DELETE FROM t", "one statement"),
    ("DELETE FROM t", "writes"),
    ("UPDATE t SET a = 1", "writes"),
    ("INSERT INTO t VALUES (1)", "writes"),
    (
        "MERGE t USING s ON t.id = s.id WHEN MATCHED THEN DELETE;",
        "writes",
    ),
    ("TRUNCATE TABLE t", "schema"),
    ("DROP TABLE t", "schema"),
    ("CREATE TABLE x (a INT)", "schema"),
    ("DECLARE @x INT", "DECLARE"),
    ("SET CONTEXT_INFO 0x01", "SET"),
    ("SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED", "SET"),
    ("BEGIN TRAN", "BEGIN"),
    ("COMMIT", "COMMIT"),
    ("USE master", "USE"),
    ("DBCC FREEPROCCACHE", "DBCC"),
    ("KILL 52", "KILL"),
    ("SHUTDOWN WITH NOWAIT", "SHUTDOWN"),
    ("RECONFIGURE", "RECONFIGURE"),
    ("BACKUP DATABASE shop TO DISK = 'c:\\x.bak'", "BACKUP"),
    ("GRANT SELECT ON t TO public", "GRANT"),
    ("SELECT NEXT VALUE FOR dbo.order_seq", "sequence"),
    ("SELECT * FROM t WITH (UPDLOCK) WHERE id = 1", "UPDLOCK"),
    ("SELECT * FROM t WITH (TABLOCKX)", "TABLOCKX"),
    ("SELECT dbo.f_with_side_effects(1)", "user-defined"),
    ("SELECT * FROM dbo.tvf(1)", "table-valued"),
    ("SELEC 1", "parsed"),
];

#[test]
fn tsql_refusals() {
    assert!(REFUSED.len() >= 30);
    let failures = refusal_failures(REFUSED, T);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tsql_reads_pass() {
    let reads = [
        "SELECT 1",
        "SELECT TOP 10 * FROM dbo.orders ORDER BY id DESC",
        "SELECT [id], [name] FROM [sales].[customers] WHERE [id] = @P1",
        "SELECT a, b FROM t WHERE a = @P1 AND b > @P2",
        "SELECT COUNT(*) FROM t WITH (NOLOCK)",
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "SELECT a FROM t UNION ALL SELECT b FROM u",
        "SELECT @@VERSION",
        "SELECT GETDATE(), SYSDATETIMEOFFSET(), NEWID()",
        "SELECT CAST(a AS NVARCHAR(10)) FROM t",
        "SELECT ISNULL(a, 0), COALESCE(b, 'x') FROM t",
        "SELECT * FROM t ORDER BY id OFFSET 10 ROWS FETCH NEXT 5 ROWS ONLY",
        "SELECT 'EXEC xp_cmdshell' AS harmless_text",
        "SELECT 1 -- EXEC xp_cmdshell in a comment",
        "SELECT t.a, u.b FROM t JOIN u ON t.id = u.t_id WHERE u.b LIKE 'x%'",
        "SELECT id, ROW_NUMBER() OVER (PARTITION BY g ORDER BY id) FROM t",
        "SELECT name FROM sys.tables",
        "SELECT 1;",
    ];
    assert!(reads.len() >= 15);
    for sql in reads {
        let c = check_read_only(sql, T).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(c.class, StatementClass::Read, "{sql}");
    }
}

#[test]
fn tsql_parameters_count_by_highest_index() {
    let n = |sql: &str| classify(sql, T).expect("parses").placeholders;
    assert_eq!(n("SELECT * FROM t WHERE a = @P1 AND b = @P2 OR c = @P1"), 2);
    assert_eq!(n("SELECT @P3"), 3);
    assert_eq!(n("SELECT 1"), 0);
}

#[test]
fn tsql_writes_keep_their_class_on_read_write_databases() {
    let c = |sql: &str| classify(sql, T).expect("classifies").class;
    assert_eq!(
        c("UPDATE t SET a = @P1 WHERE id = @P2"),
        StatementClass::Write
    );
    assert_eq!(c("DELETE FROM t WHERE id = 1"), StatementClass::Write);
    assert_eq!(c("EXEC dbo.p"), StatementClass::Other);
    assert_eq!(c("SELECT * INTO x FROM t"), StatementClass::Write);
}

#[test]
fn other_dialects_are_not_weakened_or_tightened() {
    // The T-SQL rules apply to T-SQL only: `sp_x` is an ordinary name in
    // PostgreSQL, and PostgreSQL's own rules still hold.
    assert!(check_read_only("SELECT sp_total FROM t", SqlDialect::Postgres).is_ok());
    assert!(check_read_only("SELECT pg_terminate_backend(1)", SqlDialect::Postgres).is_err());
    assert!(check_read_only("SELECT 1; SELECT 2", SqlDialect::MySql).is_err());
}
