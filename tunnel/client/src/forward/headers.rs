//! The MCP streamable HTTP headers a relayed request carries beyond the
//! session's: the SEP-2575 per-request protocol version and the SEP-2243
//! routing headers (`Mcp-Method`, `Mcp-Name`), required from protocol
//! 2026-07-28 on. Parsing a message never blocks forwarding: one that does
//! not fit is relayed as is, with no method-dependent headers.

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

const HEADER_MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const HEADER_MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// The first protocol version whose servers require the SEP-2243 routing
/// headers (`Mcp-Method`, `Mcp-Name`). Versions are dates, so string order
/// is chronological order.
const STANDARD_HEADERS_VERSION: &str = "2026-07-28";
/// Where a request carries its own protocol version (SEP-2575).
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The few fields of an outgoing message the transport rules need. Parsing
/// it never blocks forwarding: a message that does not fit is relayed as
/// is, with no method-dependent headers.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Peek {
    pub(crate) method: Option<String>,
    params: Option<PeekParams>,
}

#[derive(Debug, Default, Deserialize)]
struct PeekParams {
    name: Option<serde_json::Value>,
    uri: Option<serde_json::Value>,
    #[serde(rename = "taskId")]
    task_id: Option<serde_json::Value>,
    #[serde(rename = "_meta")]
    meta: Option<serde_json::Value>,
}

impl Peek {
    pub(crate) fn of(message: &[u8]) -> Peek {
        serde_json::from_slice(message).unwrap_or_default()
    }

    /// The SEP-2575 per-request protocol version, if the message names one.
    pub(crate) fn meta_version(&self) -> Option<&str> {
        self.params
            .as_ref()?
            .meta
            .as_ref()?
            .get(META_PROTOCOL_VERSION)?
            .as_str()
    }

    /// SEP-2243 routing headers, required from protocol 2026-07-28 on:
    /// `Mcp-Method` for every request and notification, `Mcp-Name` for the
    /// methods that target a named tool, prompt, resource or task.
    /// (`Mcp-Param-*` headers need the tool's input schema, which the
    /// forwarder does not see; the adapter's tools declare none.)
    pub(crate) fn standard_headers(&self, version: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        let applies = version
            .to_str()
            .is_ok_and(|v| v >= STANDARD_HEADERS_VERSION);
        let Some(method) = self.method.as_deref().filter(|_| applies) else {
            return out;
        };
        if let Ok(value) = HeaderValue::from_str(method) {
            out.push((HEADER_MCP_METHOD, value));
        }
        let params = self.params.as_ref();
        let name = match method {
            "tools/call" | "prompts/get" => params.and_then(|p| p.name.as_ref()),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                params.and_then(|p| p.uri.as_ref())
            }
            "tasks/get" | "tasks/update" | "tasks/cancel" => {
                params.and_then(|p| p.task_id.as_ref())
            }
            _ => None,
        };
        if let Some(name) = name.and_then(serde_json::Value::as_str)
            && let Ok(value) = HeaderValue::from_str(&encode_header_value(name))
        {
            out.push((HEADER_MCP_NAME, value));
        }
        out
    }
}

/// SEP-2243 value encoding: a value that cannot travel as a bare header
/// (non-ASCII, control characters, edge whitespace, or one that looks like
/// the sentinel) is sent as `=?base64?<standard base64>?=`.
fn encode_header_value(value: &str) -> String {
    let needs_base64 = value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
        || value.chars().any(|c| !(' '..='~').contains(&c))
        || (value.starts_with("=?base64?") && value.ends_with("?="));
    if needs_base64 {
        format!("=?base64?{}?=", base64(value.as_bytes()))
    } else {
        value.to_owned()
    }
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_headers_only_from_2026_07_28() {
        let call = Peek::of(
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"shop_query","arguments":{"sql":"SELECT 1"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(call.meta_version(), Some("2026-07-28"));
        let old = call.standard_headers(&HeaderValue::from_static("2025-06-18"));
        assert!(old.is_empty());
        let new = call.standard_headers(&HeaderValue::from_static("2026-07-28"));
        assert_eq!(
            new,
            vec![
                (HEADER_MCP_METHOD, HeaderValue::from_static("tools/call")),
                (HEADER_MCP_NAME, HeaderValue::from_static("shop_query")),
            ]
        );
        let read = Peek::of(
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"file:///é"}}"#
                .as_bytes(),
        );
        let headers = read.standard_headers(&HeaderValue::from_static("2026-07-28"));
        assert_eq!(
            headers[1].1,
            HeaderValue::from_str(&format!("=?base64?{}?=", base64("file:///é".as_bytes())))
                .unwrap()
        );
        // Not JSON at all: relayed with no method headers.
        assert!(
            Peek::of(b"{not json")
                .standard_headers(&HeaderValue::from_static("2026-07-28"))
                .is_empty()
        );
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
        assert_eq!(encode_header_value("plain"), "plain");
        assert_eq!(encode_header_value(" lead"), "=?base64?IGxlYWQ=?=");
    }
}
