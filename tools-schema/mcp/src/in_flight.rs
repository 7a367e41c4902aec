//! One JSON-RPC id in flight per MCP session.
//!
//! JSON-RPC ids pair answers with requests; a client that sends a second
//! request with an id still in flight on the same session breaks that
//! pairing, and rmcp's session then answers neither (both callers wait for
//! the transport's timeout). [`refuse_duplicate_ids`] answers the second
//! one at once with a JSON-RPC error (`-32600`, naming the id) and lets the
//! first one finish undisturbed.
//!
//! An id is in flight from the moment its POST passes this layer until the
//! response body that carries its answer has been sent or dropped (the
//! client went away). Requests without `Mcp-Session-Id` (`initialize`, the
//! stateless 2026-07-28 revision) are independent of each other and pass
//! untouched, as do notifications, responses and anything that is not a
//! single JSON-RPC request: rmcp answers those as before.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The most requests in flight at once over all sessions of one endpoint;
/// beyond it a request is refused (busy) rather than tracked without bound.
pub const MAX_IN_FLIGHT: usize = 65_536;

/// JSON-RPC "Invalid Request".
const INVALID_REQUEST: i32 = -32600;
/// The implementation-defined "server busy" error.
const BUSY: i32 = -32000;

/// The ids in flight, by session. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    ids: Arc<Mutex<HashSet<(String, String)>>>,
    /// The body size the layer may buffer (the endpoint's body limit).
    max_body_bytes: usize,
}

impl InFlight {
    /// An empty table for an endpoint whose bodies are at most
    /// `max_body_bytes`.
    pub fn new(max_body_bytes: usize) -> InFlight {
        InFlight {
            ids: Arc::default(),
            max_body_bytes,
        }
    }

    /// Claims `(session, id)`; `Err(true)` if it is already in flight,
    /// `Err(false)` if the table is full.
    fn claim(&self, session: &str, id: &str) -> Result<Release, bool> {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.len() >= MAX_IN_FLIGHT {
            return Err(false);
        }
        let key = (session.to_owned(), id.to_owned());
        if !ids.insert(key.clone()) {
            return Err(true);
        }
        Ok(Release {
            ids: self.ids.clone(),
            key: Some(key),
        })
    }

    /// How many ids are in flight (for tests and metrics).
    pub fn len(&self) -> usize {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no id is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frees an id when dropped.
struct Release {
    ids: Arc<Mutex<HashSet<(String, String)>>>,
    key: Option<(String, String)>,
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        }
    }
}

/// A response body that frees its request's id once it is sent or dropped.
struct Releasing {
    inner: Body,
    _release: Release,
}

impl http_body::Body for Releasing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The parts of a JSON-RPC message this layer looks at.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<&'a str>,
}

/// At most 40 characters of an id, for the error message (the id itself
/// is echoed whole in the answer's `id`, as JSON-RPC requires).
fn excerpt(id: &str) -> String {
    let mut out: String = id.chars().take(40).collect();
    if out.len() < id.len() {
        out.push('…');
    }
    out
}

/// A JSON-RPC error answer to `id`, as `application/json`.
fn error_answer(id: &RawValue, code: i32, message: String) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": code, "message": message},
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The middleware: see the module documentation.
pub async fn refuse_duplicate_ids(
    State(in_flight): State<InFlight>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(session) = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, in_flight.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(serde_json::json!({
                    "error": format!(
                        "the request body exceeds the limit of {} bytes: send smaller messages",
                        in_flight.max_body_bytes
                    )
                })),
            )
                .into_response();
        }
    };
    let claimed = match serde_json::from_slice::<Probe<'_>>(&bytes) {
        Ok(Probe {
            id: Some(id),
            method: Some(_),
        }) => match in_flight.claim(&session, id.get()) {
            Ok(release) => Some(release),
            Err(true) => {
                return error_answer(
                    id,
                    INVALID_REQUEST,
                    format!(
                        "request id {} is already in flight on this session: give every \
                         request its own id (the earlier request is still running and will \
                         be answered)",
                        excerpt(id.get())
                    ),
                );
            }
            Err(false) => {
                return error_answer(
                    id,
                    BUSY,
                    "the server has too many requests in flight; retry shortly".to_owned(),
                );
            }
        },
        _ => None,
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    match claimed {
        None => response,
        Some(release) => {
            let (parts, body) = response.into_parts();
            Response::from_parts(
                parts,
                Body::new(Releasing {
                    inner: body,
                    _release: release,
                }),
            )
        }
    }
}
