//! The result caps: `row_limit` and `max_bytes` applied to what the agent
//! receives.

use super::POLICY_SET_HINT;

use ewii_driver_core::{byte_truncation, row_size};
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value;
/// The refusal text for a result that carries more rows than `row_limit`.
pub fn row_limit_exceeded(limit: u32, got: usize) -> String {
    format!(
        "agent policy rule `row_limit`: this agent may receive at most {limit} row(s) per call \
         and the result held {got}, so it was withheld; ask for at most {limit} rows with \
         `max_rows` and read further pages with `offset`. {POLICY_SET_HINT}"
    )
}

/// What the hub's truncation notices call the policy's byte limit.
const MAX_BYTES_NAME: &str = "the agent policy's `max_bytes`";

/// Cuts `result` to at most `limit` bytes of data, as the policy's
/// `max_bytes` rule says (see the [module documentation](self)); returns
/// whether anything was cut.
///
/// - A result with `rows`: trailing rows are dropped until the rows' JSON
///   fits, `truncated` is set with a notice naming `max_bytes`, and the
///   text content is rebuilt from the cut result (so neither the structured
///   nor the text content carries more than the limit allows).
/// - A structured result without rows whose JSON is over the limit is
///   withheld with the same kind of notice.
/// - A text-only result is cut to the limit at a character boundary.
pub fn cap_result_bytes(result: &mut CallToolResult, limit: u64) -> bool {
    if let Some(structured) = result.structured_content.as_mut() {
        if let Some(rows) = structured.get("rows").and_then(Value::as_array) {
            let mut used = 0u64;
            let mut kept = 0usize;
            let mut next_size = None;
            for row in rows {
                let size = match row {
                    Value::Array(values) => row_size(values),
                    other => row_size(std::slice::from_ref(other)),
                };
                if used + size > limit {
                    next_size = Some(size);
                    break;
                }
                used += size;
                kept += 1;
            }
            let Some(next_size) = next_size else {
                return false;
            };
            let offset = structured
                .get("offset")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let kept64 = u64::try_from(kept).unwrap_or(u64::MAX);
            let truncation = byte_truncation(
                limit,
                MAX_BYTES_NAME,
                kept64,
                offset.saturating_add(kept64),
                next_size,
            );
            let notice = format!("TRUNCATED: {}", truncation.message);
            if let Some(Value::Array(rows)) = structured.get_mut("rows") {
                rows.truncate(kept);
            }
            if let Value::Object(map) = structured {
                map.insert("row_count".into(), Value::from(kept64));
                map.insert(
                    "truncated".into(),
                    serde_json::to_value(&truncation).unwrap_or(Value::Null),
                );
            }
            let text = structured.to_string();
            result.content = vec![ContentBlock::text(text), ContentBlock::text(notice)];
            return true;
        }
        let size = u64::try_from(structured.to_string().len()).unwrap_or(u64::MAX);
        if size <= limit {
            return false;
        }
        *result = CallToolResult::error(vec![ContentBlock::text(format!(
            "TRUNCATED: the result is {size} bytes, over the {limit} byte limit \
             ({MAX_BYTES_NAME}), so it was withheld; ask for less (a narrower table, a \
             shorter statement). {POLICY_SET_HINT}"
        ))]);
        return true;
    }
    let total: usize = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.len()))
        .sum();
    if u64::try_from(total).unwrap_or(u64::MAX) <= limit {
        return false;
    }
    let mut budget = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut cut = Vec::new();
    for block in &result.content {
        let Some(t) = block.as_text() else { continue };
        if budget == 0 {
            break;
        }
        let mut end = t.text.len().min(budget);
        while !t.text.is_char_boundary(end) {
            end -= 1;
        }
        budget -= end;
        cut.push(ContentBlock::text(t.text[..end].to_owned()));
    }
    cut.push(ContentBlock::text(format!(
        "TRUNCATED: the text was cut at the {limit} byte limit ({MAX_BYTES_NAME})."
    )));
    result.content = cut;
    true
}

/// The length of the result's `rows` array, if it has one.
pub fn rows_in(structured: &Value) -> Option<u64> {
    let len = structured.get("rows")?.as_array()?.len();
    Some(u64::try_from(len).unwrap_or(u64::MAX))
}
