//! What every sqlx-based driver does the same way, whatever its engine
//! (feature `sqlx`): the shape of its connection pool, binding parameters
//! by their JSON type, checking the placeholder count the engine found when
//! it prepared a statement, and running a statement into a
//! [`ResultBuilder`] ([`fetch_into`]).
//!
//! What differs per engine stays in the driver: how a value becomes JSON
//! (a [`RowReader`]), how a statement is stopped at the time limit, and
//! what a session must be cleared of after a call.

use std::time::Duration;

use ewii_tools_schema::{ColumnInfo, SqlParam};
use futures::{Stream, TryStreamExt};
use serde_json::Value;
use sqlx::pool::PoolOptions;
use sqlx::{
    Arguments, AssertSqlSafe, Column, Database, Either, Encode, Executor, IntoArguments, Row,
    Statement, Type, TypeInfo,
};

use crate::{Next, ResultBuilder, ToolError, check_param_count};

/// Connections a database's pool opens at the most: a call holds one for
/// its whole run, so this bounds the calls that run at once per database.
pub const MAX_CONNECTIONS: u32 = 4;

/// How long an unused pooled connection stays open.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The pool a driver opens a database with: at most [`MAX_CONNECTIONS`],
/// none opened before a call needs one, idle ones closed after
/// [`IDLE_TIMEOUT`]. The driver adds its engine's acquire timeout and
/// connection setup.
pub fn pool_options<DB: Database>() -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .idle_timeout(Some(IDLE_TIMEOUT))
}

/// Binds the call's parameters in order, each as its own JSON type: null,
/// boolean, 64-bit integer, double, text. For engines that convert a bound
/// value to the column's type themselves (SQLite, MySQL/MariaDB); the
/// PostgreSQL driver binds by the type the server inferred instead.
pub fn bind_by_value<DB: Database>(params: &[SqlParam]) -> Result<DB::Arguments, ToolError>
where
    bool: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    f64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut args = DB::Arguments::default();
    for (i, p) in params.iter().enumerate() {
        let added = match p {
            SqlParam::Null => args.add(None::<String>),
            SqlParam::Bool(b) => args.add(*b),
            SqlParam::Int(n) => args.add(*n),
            SqlParam::Float(f) => args.add(*f),
            SqlParam::Text(t) => args.add(t.clone()),
        };
        added.map_err(|e| ToolError::InvalidArguments(format!("cannot bind params[{i}]: {e}")))?;
    }
    Ok(args)
}

/// Refuses `given` params unless they match the placeholders the engine
/// counted when it prepared `statement` (a `?` inside a string or a comment
/// never counts). SQLite would bind missing ones as NULL, and a model
/// should hear about the mismatch instead.
pub fn check_prepared_params<S: Statement>(statement: &S, given: usize) -> Result<(), ToolError> {
    let expected = match statement.parameters() {
        Some(Either::Right(n)) => n,
        Some(Either::Left(types)) => types.len(),
        None => given,
    };
    check_param_count(expected, given)
}

/// How a driver turns the rows of one result into the tool's JSON.
pub trait RowReader<DB: Database> {
    /// The result's columns, asked once, with its first row: by default
    /// each column's name and the engine's name of its type.
    fn columns(&mut self, first: &DB::Row) -> Vec<ColumnInfo> {
        column_info(first.columns(), |t| t.name().to_owned())
    }

    /// One row's values, in column order.
    fn values(&mut self, row: &DB::Row) -> Vec<Value>;
}

/// The descriptions of `columns`, each type named by `type_name`.
pub fn column_info<C: Column>(
    columns: &[C],
    type_name: impl Fn(&<C::Database as Database>::TypeInfo) -> String,
) -> Vec<ColumnInfo> {
    columns
        .iter()
        .map(|c| ColumnInfo {
            name: c.name().to_owned(),
            type_name: type_name(c.type_info()),
        })
        .collect()
}

/// What [`fetch_into`] and [`read_result`] read.
pub struct ResultRead<DB: Database> {
    /// The result's columns; `None` when no row came (the driver may know
    /// them from the prepared statement).
    pub columns: Option<Vec<ColumnInfo>>,
    /// The engine's summary of the statement (rows affected, summed).
    pub done: DB::QueryResult,
    /// The builder filled up before the stream ended: rows may be left
    /// unread, and the driver stops the statement or closes the connection
    /// rather than drain them.
    pub stopped: bool,
}

/// Runs the agent's `sql` with its bound `arguments` on `conn` and feeds
/// the result to `builder` through `reader` ([`read_result`]).
pub async fn fetch_into<DB: Database>(
    conn: &mut DB::Connection,
    sql: &str,
    arguments: DB::Arguments,
    reader: &mut impl RowReader<DB>,
    builder: &mut ResultBuilder,
) -> Result<ResultRead<DB>, sqlx::Error>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
{
    // Agent SQL is dynamic by design: the driver vetted it, and its values
    // are bound, never interpolated.
    let stream = conn.fetch_many(sqlx::query_with(AssertSqlSafe(sql), arguments));
    read_result(stream, reader, builder).await
}

/// Feeds a statement's result stream (`fetch_many`) to `builder` until it
/// ends or the builder is full.
pub async fn read_result<DB: Database>(
    mut stream: impl Stream<Item = Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>> + Unpin,
    reader: &mut impl RowReader<DB>,
    builder: &mut ResultBuilder,
) -> Result<ResultRead<DB>, sqlx::Error> {
    let mut read = ResultRead {
        columns: None,
        done: DB::QueryResult::default(),
        stopped: false,
    };
    while let Some(item) = stream.try_next().await? {
        match item {
            Either::Left(done) => Extend::<DB::QueryResult>::extend(&mut read.done, [done]),
            Either::Right(row) => {
                if read.columns.is_none() {
                    read.columns = Some(reader.columns(&row));
                }
                if builder.push(reader.values(&row)) == Next::Stop {
                    read.stopped = true;
                    break;
                }
            }
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::{SqliteConnection, SqliteRow};
    use sqlx::{AssertSqlSafe, Connection, Executor, SqlSafeStr, Sqlite};

    use super::*;
    use crate::Limits;

    struct Integers;

    impl RowReader<Sqlite> for Integers {
        fn values(&mut self, row: &SqliteRow) -> Vec<Value> {
            vec![Value::from(row.get::<i64, _>(0))]
        }
    }

    fn limits(max_rows: u32) -> Limits {
        Limits {
            max_rows,
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn reads_rows_sums_changes_and_stops_when_full() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        conn.execute("CREATE TABLE t (a INTEGER)").await.unwrap();

        let mut builder = ResultBuilder::new(&limits(10), None, None);
        let insert = sqlx::query_with(
            "INSERT INTO t VALUES (?), (?), (?)",
            bind_by_value::<Sqlite>(&[SqlParam::Int(1), SqlParam::Int(2), SqlParam::Int(3)])
                .unwrap(),
        );
        let read = read_result(conn.fetch_many(insert), &mut Integers, &mut builder)
            .await
            .unwrap();
        assert_eq!((read.done.rows_affected(), read.stopped), (3, false));
        assert!(read.columns.is_none());

        let mut builder = ResultBuilder::new(&limits(2), None, None);
        let select = sqlx::raw_sql("SELECT a FROM t ORDER BY a");
        let read = read_result(conn.fetch_many(select), &mut Integers, &mut builder)
            .await
            .unwrap();
        assert!(read.stopped, "a third row exists beyond the limit of two");
        assert_eq!(read.columns.unwrap()[0].name, "a");
        let rows = builder.finish(vec![], None).rows;
        assert_eq!(rows, vec![vec![Value::from(1)], vec![Value::from(2)]]);
    }

    #[tokio::test]
    async fn the_engines_placeholder_count_must_match_the_params() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let sql = AssertSqlSafe("SELECT ?, '?', ?2 -- ?").into_sql_str();
        let statement = conn.prepare(sql).await.unwrap();
        assert!(check_prepared_params(&statement, 2).is_ok());
        let err = check_prepared_params(&statement, 1).unwrap_err();
        assert!(matches!(err, ToolError::InvalidArguments(m) if m.contains("placeholder")));
    }
}
