//! `tools/list` paging, the same at the adapter and at the hub.
//!
//! A cursor is the offset of its page, as a previous page's `nextCursor`
//! gave it; the list is in a stable order, so a client that follows the
//! cursors sees every tool once (unless the list changes meanwhile, which
//! `list_changed` announces).

use std::ops::Range;

use rmcp::model::{ErrorData, ListToolsResult, PaginatedRequestParams, Tool};

/// Tools per `tools/list` page.
pub const TOOLS_PAGE_SIZE: usize = 100;

/// One page of a list of `len` tools: the index range to return and the
/// `nextCursor`. Anything but an offset within the list is refused with a
/// message for the client.
pub fn tools_page(
    len: usize,
    cursor: Option<&str>,
) -> Result<(Range<usize>, Option<String>), String> {
    let start = match cursor {
        None => 0,
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|s| *s <= len)
            .ok_or_else(|| {
                format!("invalid cursor '{c}': pass the nextCursor of the previous page")
            })?,
    };
    let end = start.saturating_add(TOOLS_PAGE_SIZE).min(len);
    Ok((start..end, (end < len).then(|| end.to_string())))
}

/// The `tools/list` answer for `request`'s page of `tools`; a bad cursor is
/// an invalid-params error.
pub fn list_page(
    mut tools: Vec<Tool>,
    request: Option<&PaginatedRequestParams>,
) -> Result<ListToolsResult, ErrorData> {
    let cursor = request.and_then(|r| r.cursor.as_deref());
    let (range, next_cursor) =
        tools_page(tools.len(), cursor).map_err(|m| ErrorData::invalid_params(m, None))?;
    tools.truncate(range.end);
    tools.drain(..range.start);
    Ok(ListToolsResult {
        tools,
        next_cursor,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use super::*;

    #[test]
    fn pages_follow_the_cursor_and_refuse_a_bad_one() {
        assert_eq!(tools_page(0, None).unwrap(), (0..0, None));
        assert_eq!(tools_page(3, None).unwrap(), (0..3, None));
        assert_eq!(tools_page(100, None).unwrap(), (0..100, None));
        assert_eq!(tools_page(101, None).unwrap(), (0..100, Some("100".into())));
        assert_eq!(tools_page(250, None).unwrap(), (0..100, Some("100".into())));
        assert_eq!(
            tools_page(250, Some("100")).unwrap(),
            (100..200, Some("200".into()))
        );
        assert_eq!(tools_page(250, Some("200")).unwrap(), (200..250, None));
        assert_eq!(tools_page(250, Some("250")).unwrap(), (250..250, None));
        for bad in ["251", "x", "-1", "", " 1", "1e2", &usize::MAX.to_string()] {
            let e = tools_page(250, Some(bad)).unwrap_err();
            assert!(e.contains("nextCursor"), "{bad}: {e}");
        }
    }

    fn tools(n: usize) -> Vec<Tool> {
        (0..n)
            .map(|i| Tool::new(format!("db_{i}"), "t", Arc::new(Default::default())))
            .collect()
    }

    #[test]
    fn following_the_cursors_lists_every_tool_once() {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let request = cursor.map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
            let page = list_page(tools(250), request.as_ref()).unwrap();
            assert!(page.tools.len() <= TOOLS_PAGE_SIZE);
            seen.extend(page.tools.into_iter().map(|t| t.name.into_owned()));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = (0..250).map(|i| format!("db_{i}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_bad_cursor_is_invalid_params() {
        let request = PaginatedRequestParams::default().with_cursor(Some("nope".into()));
        let e = list_page(tools(3), Some(&request)).unwrap_err();
        assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("invalid cursor 'nope'"), "{}", e.message);
    }
}
