//! Row and byte limits with paging: the one implementation every driver
//! uses, so every driver truncates the same way and says so the same way.

use ewii_tools_schema::{ColumnInfo, QueryArgs, QueryResult, Truncation, TruncationReason};
use serde_json::Value;

use crate::Limits;

/// Accumulates the rows of one result under the database's limits.
///
/// Feed it every row the engine produces, in order; it skips the first
/// `offset` rows, keeps at most `max_rows` rows and `max_bytes` bytes, and
/// tells the driver when to stop fetching (so a huge result is never read
/// in full).
#[derive(Debug)]
pub struct ResultBuilder {
    offset: u64,
    seen: u64,
    max_rows: u64,
    max_bytes: u64,
    bytes: u64,
    /// How the byte limit is named in the truncation notice.
    bytes_limit_name: &'static str,
    rows: Vec<Vec<Value>>,
    truncated: Option<Truncation>,
}

/// What the driver should do after [`ResultBuilder::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Fetch the next row.
    Continue,
    /// The result is full: stop fetching (and cancel the statement).
    Stop,
}

impl ResultBuilder {
    /// Starts a result. `requested_max_rows` (from the call) can only lower
    /// the database's configured limit, never raise it.
    pub fn new(limits: &Limits, requested_max_rows: Option<u32>, offset: Option<u64>) -> Self {
        let configured = u64::from(limits.max_rows.max(1));
        let max_rows = requested_max_rows
            .map(|r| u64::from(r.max(1)).min(configured))
            .unwrap_or(configured);
        ResultBuilder {
            offset: offset.unwrap_or(0),
            seen: 0,
            max_rows,
            max_bytes: limits.max_bytes.max(1),
            bytes: 0,
            bytes_limit_name: "the database's limit",
            rows: Vec::new(),
            truncated: None,
        }
    }

    /// The builder for a `query` call: its `max_rows`, `offset` and
    /// `max_bytes`, within the database's `limits`.
    pub fn for_query(limits: &Limits, args: &QueryArgs) -> Self {
        ResultBuilder::new(limits, args.max_rows, args.offset).with_max_bytes(args.max_bytes)
    }

    /// The engine already skipped the first `offset` rows (a server-side
    /// skip): the rows pushed start at `offset`, and the page and its
    /// truncation notice say so.
    pub fn skipped_by_engine(mut self, offset: u64) -> Self {
        self.offset = offset;
        self.seen = offset;
        self
    }

    /// Lowers the byte limit to `requested` (a call's `max_bytes`); it can
    /// never raise the database's configured limit.
    pub fn with_max_bytes(mut self, requested: Option<u64>) -> Self {
        if let Some(r) = requested
            && r < self.max_bytes
        {
            self.max_bytes = r.max(1);
            // Through the hub, this is the agent policy's `max_bytes`.
            self.bytes_limit_name = "the call's `max_bytes`";
        }
        self
    }

    /// Offers the next row of the result.
    pub fn push(&mut self, row: Vec<Value>) -> Next {
        if self.truncated.is_some() {
            return Next::Stop;
        }
        self.seen += 1;
        if self.seen <= self.offset {
            return Next::Continue;
        }
        let next_offset = self.offset + self.rows.len() as u64;
        if self.rows.len() as u64 >= self.max_rows {
            // A row beyond the limit exists: that is what makes this a
            // truncation rather than an exactly-full result.
            self.truncated = Some(Truncation {
                reason: TruncationReason::MaxRows,
                limit: self.max_rows,
                next_offset,
                message: format!(
                    "Result truncated at {} rows (the row limit). More rows exist: call again \
                     with offset={next_offset} to read the next page, or refine the query.",
                    self.max_rows
                ),
            });
            return Next::Stop;
        }
        let size = row_size(&row);
        if self.bytes + size > self.max_bytes {
            self.truncated = Some(byte_truncation(
                self.max_bytes,
                self.bytes_limit_name,
                self.rows.len() as u64,
                next_offset,
                size,
            ));
            return Next::Stop;
        }
        self.bytes += size;
        self.rows.push(row);
        Next::Continue
    }

    /// Finishes the result.
    pub fn finish(self, columns: Vec<ColumnInfo>, affected_rows: Option<u64>) -> QueryResult {
        QueryResult {
            columns,
            row_count: self.rows.len() as u64,
            rows: self.rows,
            offset: self.offset,
            affected_rows,
            truncated: self.truncated,
        }
    }
}

/// The truncation notice of a result cut at a byte limit: the one wording
/// the drivers (the database's limit) and the hub (the agent policy's
/// `max_bytes`) use. `limit_name` names the limit ("byte limit", "agent
/// policy `max_bytes`"); `kept` rows fitted, the next row was `next_size`
/// bytes.
pub fn byte_truncation(
    limit: u64,
    limit_name: &str,
    kept: u64,
    next_offset: u64,
    next_size: u64,
) -> Truncation {
    let message = if kept == 0 {
        format!(
            "The next row alone is {next_size} bytes, over the {limit} byte limit ({limit_name}): \
             select fewer or shorter columns (e.g. substr()), or aggregate less per row."
        )
    } else {
        format!(
            "Result truncated after {kept} rows at the {limit} byte limit ({limit_name}). More \
             rows exist: call again with offset={next_offset}, or select fewer columns."
        )
    };
    Truncation {
        reason: TruncationReason::MaxBytes,
        limit,
        next_offset,
        message,
    }
}

/// The size of one row as it reaches the model: its JSON encoding.
pub fn row_size(row: &[Value]) -> u64 {
    // The JSON size of the row is what reaches the model's context.
    serde_json::to_vec(row).map_or(0, |v| v.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits(max_rows: u32, max_bytes: u64) -> Limits {
        Limits {
            max_rows,
            max_bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn row_limit_truncates_only_when_more_rows_exist() {
        let mut b = ResultBuilder::new(&limits(2, 1 << 20), None, None);
        assert_eq!(b.push(vec![json!(1)]), Next::Continue);
        assert_eq!(b.push(vec![json!(2)]), Next::Continue);
        let exact = b.finish(vec![], None);
        assert!(exact.truncated.is_none());

        let mut b = ResultBuilder::new(&limits(2, 1 << 20), None, None);
        for i in 0..2 {
            b.push(vec![json!(i)]);
        }
        assert_eq!(b.push(vec![json!(3)]), Next::Stop);
        let r = b.finish(vec![], None);
        let t = r.truncated.expect("truncated");
        assert_eq!((t.reason, t.next_offset), (TruncationReason::MaxRows, 2));
    }

    #[test]
    fn offset_skips_and_requested_rows_cannot_raise_the_limit() {
        let mut b = ResultBuilder::new(&limits(3, 1 << 20), Some(100), Some(2));
        for i in 0..10 {
            if b.push(vec![json!(i)]) == Next::Stop {
                break;
            }
        }
        let r = b.finish(vec![], None);
        assert_eq!(r.rows, vec![vec![json!(2)], vec![json!(3)], vec![json!(4)]]);
        assert_eq!(r.truncated.expect("more").next_offset, 5);
    }

    #[test]
    fn byte_limit_truncates_with_notice() {
        let mut b = ResultBuilder::new(&limits(100, 20), None, None);
        assert_eq!(b.push(vec![json!("aaaaaaaaaa")]), Next::Continue);
        assert_eq!(b.push(vec![json!("bbbbbbbbbb")]), Next::Stop);
        let r = b.finish(vec![], None);
        let t = r.truncated.expect("truncated");
        assert_eq!(t.reason, TruncationReason::MaxBytes);
        assert_eq!(t.next_offset, 1);
        assert!(t.message.contains("20 byte limit"));
    }

    #[test]
    fn a_call_can_lower_the_byte_limit_but_not_raise_it() {
        let mut b = ResultBuilder::new(&limits(100, 1000), None, None).with_max_bytes(Some(20));
        assert_eq!(b.push(vec![json!("aaaaaaaaaa")]), Next::Continue);
        assert_eq!(b.push(vec![json!("bbbbbbbbbb")]), Next::Stop);
        assert_eq!(b.finish(vec![], None).truncated.expect("cut").limit, 20);
        let b = ResultBuilder::new(&limits(100, 20), None, None).with_max_bytes(Some(1 << 30));
        assert_eq!(b.max_bytes, 20);
    }
}
