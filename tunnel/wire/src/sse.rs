//! A sans-IO `text/event-stream` decoder (WHATWG HTML §9.2.6): how MCP
//! streamable HTTP carries an adapter's messages in a response body. The
//! client's forwarder feeds it the bytes of each response as they arrive.

use crate::frame::MAX_MESSAGE;

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` type; `None` means the default, `message`.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, if this event set one.
    pub id: Option<String>,
    /// The `retry:` reconnection delay in milliseconds, if set.
    pub retry: Option<u64>,
}

/// A sans-IO `text/event-stream` decoder (WHATWG HTML §9.2.6).
///
/// Feed it bytes as they arrive, split anywhere; it returns each event
/// when its terminating blank line is seen. Lines end with CRLF, LF or CR;
/// `:` lines are comments; a leading UTF-8 BOM is skipped. Unlike a
/// browser it also returns events that carry only `id:`/`retry:` (so a
/// caller can see priming events) and leaves skipping them to the caller.
///
/// Memory is bounded: when one event's data, or one line, exceeds the
/// limit, the decoder stops, drops what it buffered and reports
/// [`SseDecoder::overflowed`].
#[derive(Debug)]
pub struct SseDecoder {
    limit: usize,
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF opening the next chunk is the
    /// second half of that CRLF, not an empty line.
    after_cr: bool,
    /// The first line was seen (a BOM can only open the stream).
    started: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    overflowed: bool,
}

/// Room for a field name and `: ` on top of the data limit, so that a
/// `data:` line carrying exactly `limit` bytes is accepted.
const SSE_LINE_OVERHEAD: usize = 16;

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::new()
    }
}

impl SseDecoder {
    /// A decoder with the [`MAX_MESSAGE`] limit.
    pub fn new() -> Self {
        SseDecoder::with_limit(MAX_MESSAGE)
    }

    /// A decoder refusing events whose data exceeds `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        SseDecoder {
            limit,
            line: Vec::new(),
            after_cr: false,
            started: false,
            data: String::new(),
            has_data: false,
            event: None,
            id: None,
            retry: None,
            overflowed: false,
        }
    }

    /// Whether an event or a line went over the limit; the decoder then
    /// ignores all further input.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Feeds `chunk` and returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.overflowed || rest.is_empty() {
            return events;
        }
        if std::mem::take(&mut self.after_cr) && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        while !rest.is_empty() {
            let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') else {
                self.line.extend_from_slice(rest);
                self.check_line();
                break;
            };
            self.line.extend_from_slice(&rest[..end]);
            if self.check_line() {
                break;
            }
            let cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut events);
            if self.overflowed {
                break;
            }
        }
        events
    }

    /// Marks overflow when the pending line is too long; `true` if so.
    fn check_line(&mut self) -> bool {
        if self.line.len() > self.limit.saturating_add(SSE_LINE_OVERHEAD) {
            self.overflow();
        }
        self.overflowed
    }

    fn overflow(&mut self) {
        self.overflowed = true;
        self.line = Vec::new();
        self.data = String::new();
        self.event = None;
        self.id = None;
    }

    fn process_line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) {
        let mut line = line;
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                let value = String::from_utf8_lossy(value);
                if self.data.len() + value.len() > self.limit {
                    self.overflow();
                    return;
                }
                self.data.push_str(&value);
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            // The spec ignores an id containing NUL.
            b"id" if !value.contains(&0) => {
                self.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Ok(ms) = std::str::from_utf8(value).unwrap_or("").parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let seen =
            self.has_data || self.event.is_some() || self.id.is_some() || self.retry.is_some();
        if !seen {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        self.has_data = false;
        events.push(SseEvent {
            event: self.event.take(),
            data,
            id: self.id.take(),
            retry: self.retry.take(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        chunks.iter().flat_map(|c| d.push(c)).collect()
    }

    fn message(data: &str) -> SseEvent {
        SseEvent {
            data: data.into(),
            ..Default::default()
        }
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBF: keep-alive comment\r\n\
        id: 0\r\nretry: 3000\r\ndata:\r\n\r\n\
        data: {\"jsonrpc\":\"2.0\",\"id\":1}\n\n\
        event: message\rid: 7\rdata: line one\rdata:line two\r\r\
        data: a\r\ndata:  b\n\
        \n\
        event: other\ndata: x\nretry: nope\n\n\
        : comment only\n\n\
        id\ndata\n\n\
        data: trailing, never terminated";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                id: Some("0".into()),
                retry: Some(3000),
                ..Default::default()
            },
            message("{\"jsonrpc\":\"2.0\",\"id\":1}"),
            SseEvent {
                event: Some("message".into()),
                id: Some("7".into()),
                data: "line one\nline two".into(),
                retry: None,
            },
            message("a\n b"),
            SseEvent {
                event: Some("other".into()),
                data: "x".into(),
                ..Default::default()
            },
            SseEvent {
                id: Some(String::new()),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn sse_decodes_fields_line_endings_and_comments() {
        assert_eq!(decode_all(&[STREAM]), expected());
    }

    #[test]
    fn sse_split_at_every_byte_position_gives_the_same_events() {
        let whole = decode_all(&[STREAM]);
        for at in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(at);
            assert_eq!(decode_all(&[a, b]), whole, "split at {at}");
        }
        for (i, j) in [(1, 2), (3, 40), (60, 61), (61, 62), (100, 150)] {
            let parts = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
            assert_eq!(decode_all(&parts), whole, "split at {i} and {j}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(decode_all(&bytes), whole, "byte by byte");
    }

    #[test]
    fn sse_crlf_split_between_cr_and_lf_is_one_line_end() {
        // A CR closing a chunk and an LF opening the next is one CRLF, not
        // CR followed by an empty line (which would dispatch early).
        let events = decode_all(&[b"data: a\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(events, vec![message("a\nb")]);
    }

    #[test]
    fn sse_bom_only_at_stream_start() {
        let events = decode_all(&[b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"]);
        // The second BOM makes the field name unknown: ignored, and the
        // blank line dispatches nothing.
        assert_eq!(events, vec![message("x")]);
    }

    #[test]
    fn sse_overflow_stops_the_decoder() {
        let mut d = SseDecoder::with_limit(8);
        assert_eq!(d.push(b"data: 12345678\n\n"), vec![message("12345678")]);
        assert!(!d.overflowed());
        // Two lines that together exceed the limit.
        let events = d.push(b"data: ok\n\ndata: 1234\ndata: 5678\n\n");
        assert_eq!(events, vec![message("ok")]);
        assert!(d.overflowed());
        assert!(d.push(b"data: small\n\n").is_empty());

        // One endless line, never terminated, is cut off too.
        let mut d = SseDecoder::with_limit(8);
        for _ in 0..10 {
            d.push(b"data: 0123456789");
        }
        assert!(d.overflowed());
    }
}
