//! A session: the keys of one handshake, split per QUIC stream.
//!
//! Requests travel on their own QUIC streams so that a large result never
//! blocks a small one. QUIC delivers each stream in order but streams in any
//! order relative to each other, so one sequence space across streams would
//! make honest reordering look like replay. Instead every stream gets its
//! own keys and sequence numbers:
//!
//! ```text
//! stream secret(direction) = HKDF-Expand(direction secret, "ewii/1 stream" || initiator u8 || number u64)
//! ```
//!
//! - The opener of a stream writes its 8-byte number in the clear, then
//!   records. The receiver derives the stream's keys from it, so a record
//!   moved to another stream fails its tag.
//! - Each side numbers the streams it opens from 0; the receiver keeps a
//!   replay window over the peer's numbers, advanced only once the stream's
//!   first record verifies, so a whole stream cannot be replayed.
//! - The control stream is the one the handshake ran on: the client's
//!   stream 0. It carries server-initiated MCP notifications.
//! - A stream ends with a `Close` record. A stream that ends without one was
//!   cut by someone in the middle, and its partial content is refused.

use zeroize::Zeroize;

use crate::frame::{self, Frame, FrameDecoder, FrameError, FrameType, MAX_MESSAGE};
use crate::record::{
    self, Direction, MAX_PLAINTEXT, Opener, RecordError, RecordKind, RejectStats, SESSION_ID_LEN,
    Sealer, TrafficSecret,
};
use crate::replay::{ReplayError, ReplayWindow};

/// Length of the stream number written at the start of a stream.
pub const STREAM_HEADER_LEN: usize = 8;

/// Which end of the tunnel this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The customer-side client (dials out).
    Client = 1,
    /// The hub (accepts).
    Hub = 2,
}

impl Role {
    fn sends(self) -> Direction {
        match self {
            Role::Client => Direction::ClientToHub,
            Role::Hub => Direction::HubToClient,
        }
    }

    fn receives(self) -> Direction {
        match self {
            Role::Client => Direction::HubToClient,
            Role::Hub => Direction::ClientToHub,
        }
    }

    fn peer(self) -> Role {
        match self {
            Role::Client => Role::Hub,
            Role::Hub => Role::Client,
        }
    }
}

/// What the handshake's key schedule hands the session.
pub struct SessionSecrets {
    /// Binds every record to this session (in the AAD).
    pub session_id: [u8; SESSION_ID_LEN],
    /// Root of the client → hub keys.
    pub client_to_hub: [u8; 32],
    /// Root of the hub → client keys.
    pub hub_to_client: [u8; 32],
}

impl Drop for SessionSecrets {
    fn drop(&mut self) {
        self.client_to_hub.zeroize();
        self.hub_to_client.zeroize();
    }
}

/// Why a stream could not be opened or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The peer reused a stream number (a replayed stream) or sent one far
    /// behind the window.
    #[error("stream {number} refused: {cause}")]
    StreamReplay {
        /// The number.
        number: u64,
        /// Replayed or too old.
        cause: ReplayError,
    },
    /// The control stream was already taken.
    #[error("the control stream is already in use")]
    ControlTaken,
}

/// Why a stream's bytes were refused. Any of these ends the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A record was refused.
    #[error("record refused: {0}")]
    Record(#[from] RecordError),
    /// The frames inside were invalid.
    #[error("frame refused: {0}")]
    Frame(#[from] FrameError),
    /// Bytes followed the sender's `Close` record.
    #[error("data after the end of the stream")]
    AfterClose,
    /// The stream ended without its `Close` record: cut in the middle.
    #[error("the stream ended without its close record (truncated in transit)")]
    Truncated,
}

/// The keys of one handshake and the bookkeeping of the streams under them.
pub struct Session {
    role: Role,
    session_id: [u8; SESSION_ID_LEN],
    client_to_hub: TrafficSecret,
    hub_to_client: TrafficSecret,
    next_local: u64,
    peer_streams: ReplayWindow,
    control_taken: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("next_local", &self.next_local)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session from a completed handshake.
    pub fn new(role: Role, secrets: SessionSecrets) -> Session {
        let mut peer_streams = ReplayWindow::new();
        let next_local = match role {
            // The client's stream 0 is the control stream.
            Role::Client => 1,
            Role::Hub => {
                peer_streams.accept(0);
                0
            }
        };
        Session {
            role,
            session_id: secrets.session_id,
            client_to_hub: TrafficSecret::new(&secrets.client_to_hub),
            hub_to_client: TrafficSecret::new(&secrets.hub_to_client),
            next_local,
            peer_streams,
            control_taken: false,
        }
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The session id both ends derived.
    pub fn session_id(&self) -> &[u8; SESSION_ID_LEN] {
        &self.session_id
    }

    fn channel(&self, initiator: Role, number: u64) -> StreamChannel {
        let mut label = b"stream".to_vec();
        label.push(initiator as u8);
        label.extend_from_slice(&number.to_be_bytes());
        let secret = |d: Direction| match d {
            Direction::ClientToHub => self.client_to_hub.derive(&label),
            Direction::HubToClient => self.hub_to_client.derive(&label),
        };
        let (send, recv) = (self.role.sends(), self.role.receives());
        StreamChannel {
            sealer: Sealer::new(secret(send), self.session_id, send),
            opener: Opener::new(secret(recv), self.session_id, recv),
            inbuf: Vec::new(),
            frames: FrameDecoder::new(MAX_MESSAGE),
            peer_closed: false,
            verified: false,
            number,
        }
    }

    /// The control stream (the client's stream 0, where the handshake ran).
    pub fn control(&mut self) -> Result<StreamChannel, SessionError> {
        if self.control_taken {
            return Err(SessionError::ControlTaken);
        }
        self.control_taken = true;
        Ok(self.channel(Role::Client, 0))
    }

    /// Opens a stream of our own: its number (write [`StreamChannel::header`]
    /// first) and its channel.
    pub fn open_stream(&mut self) -> StreamChannel {
        let n = self.next_local;
        self.next_local += 1;
        self.channel(self.role, n)
    }

    /// A channel for a stream the peer opened with `number`. Call
    /// [`Session::confirm_stream`] once its first record verified.
    pub fn accept_stream(&self, number: u64) -> Result<StreamChannel, SessionError> {
        self.peer_streams
            .check(number)
            .map_err(|cause| SessionError::StreamReplay { number, cause })?;
        Ok(self.channel(self.role.peer(), number))
    }

    /// Marks the peer's stream `number` as used: checked again, because two
    /// QUIC streams may have claimed the same number concurrently.
    pub fn confirm_stream(&mut self, number: u64) -> Result<(), SessionError> {
        self.peer_streams
            .check(number)
            .map_err(|cause| SessionError::StreamReplay { number, cause })?;
        self.peer_streams.accept(number);
        Ok(())
    }
}

/// Record protection and framing for one stream, both directions.
pub struct StreamChannel {
    sealer: Sealer,
    opener: Opener,
    inbuf: Vec<u8>,
    frames: FrameDecoder,
    peer_closed: bool,
    verified: bool,
    number: u64,
}

impl std::fmt::Debug for StreamChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamChannel")
            .field("number", &self.number)
            .field("verified", &self.verified)
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

impl StreamChannel {
    /// This stream's number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The clear stream header the opener writes first.
    pub fn header(&self) -> [u8; STREAM_HEADER_LEN] {
        self.number.to_be_bytes()
    }

    /// Seals one frame as records (several if it exceeds a record), rekeying
    /// when the key's usage limit is reached.
    pub fn seal(&mut self, kind: FrameType, body: &[u8]) -> Result<Vec<u8>, StreamError> {
        // The frame's header, then its body, cut into records as
        // `frame::encode(kind, body)` would be, each sealed straight into
        // `out` (the body is copied once, not framed first).
        let header = frame::header(kind, body.len(), MAX_MESSAGE)?;
        let records = (header.len() + body.len()).div_ceil(MAX_PLAINTEXT).max(1);
        let mut out = Vec::with_capacity(
            header.len() + body.len() + records * (record::HEADER_LEN + record::TAG_LEN) + 64,
        );
        let mut prefix: &[u8] = &header;
        let mut rest = body;
        loop {
            let take = rest.len().min(MAX_PLAINTEXT - prefix.len());
            let (chunk, after) = rest.split_at(take);
            if self.sealer.needs_rekey() {
                out.extend(self.sealer.rekey()?);
            }
            self.sealer
                .seal_into(RecordKind::Data, prefix, chunk, &mut out)?;
            prefix = &[];
            rest = after;
            if rest.is_empty() {
                return Ok(out);
            }
        }
    }

    /// The `Close` record that ends our direction of the stream.
    pub fn seal_close(&mut self) -> Result<Vec<u8>, StreamError> {
        if self.sealer.needs_rekey() {
            let mut out = self.sealer.rekey()?;
            out.extend(self.sealer.seal(RecordKind::Close, &[])?);
            return Ok(out);
        }
        Ok(self.sealer.seal(RecordKind::Close, &[])?)
    }

    /// Takes received bytes (any split) and returns the frames they complete.
    /// Any error ends the stream.
    pub fn open(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, StreamError> {
        if self.peer_closed && !bytes.is_empty() {
            return Err(StreamError::AfterClose);
        }
        self.inbuf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(len) = record::record_len(&self.inbuf[start..])? {
            if self.inbuf.len() - start < len {
                break;
            }
            if self.peer_closed {
                return Err(StreamError::AfterClose);
            }
            // Decrypted where it lies: the plaintext goes to the frame
            // decoder without another copy.
            let (kind, plain) = self
                .opener
                .open_in_place(&mut self.inbuf[start..start + len])?;
            self.verified = true;
            let plaintext = &self.inbuf[start + plain.start..start + plain.end];
            start += len;
            match kind {
                RecordKind::Data => out.extend(self.frames.push(plaintext)?),
                RecordKind::KeyUpdate => {}
                RecordKind::Close => self.peer_closed = true,
            }
        }
        self.inbuf.drain(..start);
        Ok(out)
    }

    /// Call when the transport reports the end of the stream: fails unless
    /// the peer's `Close` record arrived and nothing is left half-received.
    pub fn finish(&self) -> Result<(), StreamError> {
        if self.peer_closed && self.inbuf.is_empty() && self.frames.is_empty() {
            Ok(())
        } else {
            Err(StreamError::Truncated)
        }
    }

    /// Whether at least one record verified (the stream is genuine).
    pub fn verified(&self) -> bool {
        self.verified
    }

    /// Whether the peer's `Close` record arrived.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Rejections on this stream, by reason.
    pub fn stats(&self) -> RejectStats {
        self.opener.stats()
    }
}

#[cfg(test)]
#[path = "session_test.rs"]
mod tests;
