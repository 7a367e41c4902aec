//! What replicas say to each other: one JSON message each way per QUIC
//! stream (the stream's end delimits it), bounded in size.

use rmcp::model::{ErrorData, RequestMetaObject};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::gateway::upstream::{RawRouted, ReceiptInfo, UpstreamError};

/// Largest request one replica sends another (a call's arguments).
pub const MAX_REQUEST: usize = 8 << 20;
/// Largest reply (a call's result, as large as a tunnel carries).
pub const MAX_REPLY: usize = ewii_wire::frame::MAX_MESSAGE + (1 << 20);

/// A request from one replica to another.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRequest {
    /// Relay this authorised, audited call to a tunnel the peer holds.
    Call(Box<ForwardedCall>),
    /// These workspaces' live tunnels or catalogs changed on the sender:
    /// read the registry again and tell their agents.
    Changed {
        /// The workspaces' names.
        workspaces: Vec<String>,
    },
}

/// A `tools/call` the sending replica has authorised and audited, for a
/// tunnel the receiving replica holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedCall {
    /// The deployment's workspace.
    pub workspace: String,
    /// The deployment.
    pub deployment: String,
    /// Its SPIFFE ID, as the sender's registry has it.
    pub spiffe_id: String,
    /// The connection the sender's registry names: a tunnel that has
    /// reconnected since is not this one, and the call is not sent.
    pub connection: u64,
    /// The tool, as the adapter names it.
    pub tool: String,
    /// Its arguments (after the policy's changes).
    pub arguments: Option<serde_json::Map<String, serde_json::Value>>,
    /// The request's `_meta` (audit ticket, statement classes).
    pub meta: RequestMetaObject,
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerReply {
    /// The adapter's result, raw, with the client's receipt.
    Answer {
        /// The result as the adapter wrote it.
        result: Box<RawValue>,
        /// The client's receipt.
        receipt: ReceiptInfo,
        /// The answer's size on the tunnel.
        bytes: u64,
    },
    /// The call failed at the holding replica.
    Failed(Failure),
    /// The peer does not hold that connection of the deployment (any
    /// more): nothing was sent.
    NotHeld,
    /// A notice was taken.
    Ack,
}

/// Why a relayed call failed at the holding replica ([`UpstreamError`]
/// on the wire).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// [`UpstreamError::SessionLost`].
    SessionLost,
    /// [`UpstreamError::Refused`].
    Refused(String),
    /// [`UpstreamError::Tunnel`].
    Tunnel(String),
    /// [`UpstreamError::NoAnswer`].
    NoAnswer,
    /// [`UpstreamError::Malformed`].
    Malformed(String),
    /// [`UpstreamError::Rpc`].
    Rpc(ErrorData),
    /// [`UpstreamError::Unreachable`].
    Unreachable(String),
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Failure {
        match e {
            UpstreamError::SessionLost => Failure::SessionLost,
            UpstreamError::Refused(s) => Failure::Refused(s),
            UpstreamError::Tunnel(s) => Failure::Tunnel(s),
            UpstreamError::NoAnswer => Failure::NoAnswer,
            UpstreamError::Malformed(s) => Failure::Malformed(s),
            UpstreamError::Rpc(e) => Failure::Rpc(e),
            UpstreamError::Unreachable(s) => Failure::Unreachable(s),
        }
    }
}

impl From<Failure> for UpstreamError {
    fn from(f: Failure) -> UpstreamError {
        match f {
            Failure::SessionLost => UpstreamError::SessionLost,
            Failure::Refused(s) => UpstreamError::Refused(s),
            Failure::Tunnel(s) => UpstreamError::Tunnel(s),
            Failure::NoAnswer => UpstreamError::NoAnswer,
            Failure::Malformed(s) => UpstreamError::Malformed(s),
            Failure::Rpc(e) => UpstreamError::Rpc(e),
            Failure::Unreachable(s) => UpstreamError::Unreachable(s),
        }
    }
}

impl PeerReply {
    /// The reply to a relayed call's outcome.
    pub fn of(outcome: Result<RawRouted, UpstreamError>) -> PeerReply {
        match outcome {
            Ok(routed) => match RawValue::from_string(routed.result) {
                Ok(result) => PeerReply::Answer {
                    result,
                    receipt: routed.receipt,
                    bytes: routed.bytes,
                },
                Err(e) => PeerReply::Failed(Failure::Malformed(e.to_string())),
            },
            Err(e) => PeerReply::Failed(e.into()),
        }
    }
}
