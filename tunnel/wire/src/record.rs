//! App-layer record protection.
//!
//! Over the TLS channel, every message travels in a record sealed with
//! ChaCha20-Poly1305 under the key of its direction:
//!
//! ```text
//! record = header (16 bytes) || ciphertext || tag (16 bytes)
//! header = version u8 (=1) || kind u8 || epoch u16 || seq u64 || length u32   (big-endian)
//! nonce  = iv XOR (0^4 || seq as u64 big-endian)                              (as TLS 1.3)
//! aad    = header || session id (32 bytes) || direction u8
//! ```
//!
//! - The sequence number is in the nonce *and* the AAD, so a record cannot
//!   be moved to another position; the session id and the direction in the
//!   AAD bind it to this session and this direction, so it cannot be
//!   replayed into another session or reflected back to its sender.
//! - The receiver checks the replay window before decrypting and advances it
//!   only after the tag verifies.
//! - `epoch` numbers the key generation. After a rekey the receiver accepts
//!   only the new epoch: a record under an old key is rejected unread.
//! - Every rejection is counted by reason; [`BURST_LIMIT`] rejections
//!   without enough good records in between close the session.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;

use crate::replay::{ReplayError, ReplayWindow};

/// Record format version.
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Session id length.
pub const SESSION_ID_LEN: usize = 32;
/// Largest plaintext in one record (1 MiB): larger messages are framed over
/// several records by the layer above.
pub const MAX_PLAINTEXT: usize = 1 << 20;
/// Records sealed under one key before the sender must rekey. ChaCha20's
/// nonce space is 2^64; rekeying far earlier bounds what one key protects.
pub const REKEY_AFTER_RECORDS: u64 = 1 << 32;
/// Rejections in a burst that close the session.
pub const BURST_LIMIT: u32 = 32;

/// Which way a record travels. Part of the AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client (customer side) to hub.
    ClientToHub = 1,
    /// Hub to client.
    HubToClient = 2,
}

/// What a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Application data (framed MCP JSON-RPC).
    Data = 1,
    /// The sender switches to the next key epoch after this record.
    KeyUpdate = 2,
    /// The sender closes the session.
    Close = 3,
}

impl RecordKind {
    fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Data),
            2 => Some(RecordKind::KeyUpdate),
            3 => Some(RecordKind::Close),
            _ => None,
        }
    }
}

/// Why a record was refused. Each has its own counter in [`RejectStats`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Shorter than a header and a tag, or shorter than its length field says.
    #[error("truncated record ({got} bytes, need {need})")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes the header requires.
        need: usize,
    },
    /// Longer than its length field says.
    #[error("record has {extra} trailing bytes")]
    TrailingBytes {
        /// Extra bytes.
        extra: usize,
    },
    /// Unknown version or kind.
    #[error("malformed record header: {0}")]
    Malformed(&'static str),
    /// Larger than [`MAX_PLAINTEXT`].
    #[error("record of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Sealed under another key generation.
    #[error("record is for key epoch {got}, expected {want}")]
    WrongEpoch {
        /// The record's epoch.
        got: u16,
        /// The receiver's current epoch.
        want: u16,
    },
    /// Replayed or too old.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The tag did not verify: tampered, wrong session, wrong direction or
    /// wrong key.
    #[error("record {seq} failed authentication")]
    BadTag {
        /// The claimed sequence number.
        seq: u64,
    },
    /// Too many rejections in a burst: the session is closed.
    #[error("session closed after a burst of {0} rejected records")]
    SessionClosed(u32),
    /// The sender has used this key for [`REKEY_AFTER_RECORDS`] records.
    #[error("the sending key is exhausted; rekey before sending more")]
    RekeyRequired,
}

/// Rejection counters of a receiver, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectStats {
    /// Truncated, trailing or malformed records.
    pub malformed: u64,
    /// Records under a stale or future key epoch.
    pub wrong_epoch: u64,
    /// Replayed records.
    pub replayed: u64,
    /// Records too old for the window.
    pub too_old: u64,
    /// Records whose tag failed.
    pub bad_tag: u64,
}

/// A traffic secret: the root of one direction's keys, epoch after epoch.
pub struct TrafficSecret {
    prk: hkdf::Prk,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand(prk, "ewii/1 " || label) into `out`.
#[allow(clippy::expect_used)]
fn expand(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) {
    // ring refuses only outputs longer than 255 × 32 bytes; ours are 12 or
    // 32. Failing loudly beats continuing with an all-zero key.
    prk.expand(&[b"ewii/1 ", label], Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-Expand output of at most 32 bytes");
}

impl TrafficSecret {
    /// Wraps 32 bytes of secret from the handshake's key schedule.
    pub fn new(secret: &[u8; 32]) -> Self {
        TrafficSecret {
            prk: hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret),
        }
    }

    /// The secret of the next epoch: HKDF-Expand(secret, "ewii/1 rekey").
    pub fn next(&self) -> TrafficSecret {
        let mut s = [0u8; 32];
        expand(&self.prk, b"rekey", &mut s);
        TrafficSecret::new(&s)
    }

    /// A secret for a sub-channel: HKDF-Expand(secret, "ewii/1 " || label).
    /// Each QUIC stream gets its own, so records of concurrent streams never
    /// share a key or a sequence space (see `session`).
    pub fn derive(&self, label: &[u8]) -> TrafficSecret {
        let mut s = [0u8; 32];
        expand(&self.prk, label, &mut s);
        TrafficSecret::new(&s)
    }

    #[allow(clippy::expect_used)]
    fn key_and_iv(&self) -> (LessSafeKey, [u8; NONCE_LEN]) {
        let mut key = [0u8; 32];
        let mut iv = [0u8; NONCE_LEN];
        expand(&self.prk, b"key", &mut key);
        expand(&self.prk, b"iv", &mut iv);
        let key = UnboundKey::new(&CHACHA20_POLY1305, &key)
            .map(LessSafeKey::new)
            .expect("a 32-byte key is valid for ChaCha20-Poly1305");
        (key, iv)
    }
}

/// The total length of the record that starts with `bytes`, once its header
/// is complete: `Ok(None)` while fewer than [`HEADER_LEN`] bytes are present.
/// A stream reader uses it to cut records out of a byte stream; the length
/// is bounded by [`MAX_PLAINTEXT`] before anyone buffers for it.
pub fn record_len(bytes: &[u8]) -> Result<Option<usize>, RecordError> {
    if bytes.len() < HEADER_LEN {
        return Ok(None);
    }
    if bytes[0] != VERSION {
        return Err(RecordError::Malformed("unknown version"));
    }
    let len = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    if len > MAX_PLAINTEXT {
        return Err(RecordError::TooLarge(len));
    }
    Ok(Some(HEADER_LEN + len + TAG_LEN))
}

fn header(kind: RecordKind, epoch: u16, seq: u64, len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = VERSION;
    h[1] = kind as u8;
    h[2..4].copy_from_slice(&epoch.to_be_bytes());
    h[4..12].copy_from_slice(&seq.to_be_bytes());
    h[12..16].copy_from_slice(&len.to_be_bytes());
    h
}

/// One direction's key state, shared by its sealer and its opener: the
/// current epoch's key and IV, and what every record is bound to.
struct DirectionKeys {
    secret: TrafficSecret,
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    session: [u8; SESSION_ID_LEN],
    direction: Direction,
    epoch: u16,
}

impl DirectionKeys {
    fn new(secret: TrafficSecret, session: [u8; SESSION_ID_LEN], direction: Direction) -> Self {
        let (key, iv) = secret.key_and_iv();
        DirectionKeys {
            secret,
            key,
            iv,
            session,
            direction,
            epoch: 0,
        }
    }

    /// Switches to the next epoch's secret, key and IV.
    fn advance(&mut self) {
        self.secret = self.secret.next();
        (self.key, self.iv) = self.secret.key_and_iv();
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// iv XOR (0^4 || seq), as TLS 1.3.
    fn nonce(&self, seq: u64) -> Nonce {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(n)
    }

    /// header || session id || direction.
    fn aad(&self, header: &[u8; HEADER_LEN]) -> Aad<[u8; HEADER_LEN + SESSION_ID_LEN + 1]> {
        let mut a = [0u8; HEADER_LEN + SESSION_ID_LEN + 1];
        a[..HEADER_LEN].copy_from_slice(header);
        a[HEADER_LEN..HEADER_LEN + SESSION_ID_LEN].copy_from_slice(&self.session);
        a[HEADER_LEN + SESSION_ID_LEN] = self.direction as u8;
        Aad::from(a)
    }
}

/// The sending half of one direction.
pub struct Sealer {
    keys: DirectionKeys,
    next_seq: u64,
    sealed_under_key: u64,
}

impl Sealer {
    /// A sealer for `direction` of `session`, starting at epoch 0.
    pub fn new(secret: TrafficSecret, session: [u8; SESSION_ID_LEN], direction: Direction) -> Self {
        Sealer {
            keys: DirectionKeys::new(secret, session, direction),
            next_seq: 0,
            sealed_under_key: 0,
        }
    }

    /// Whether the key should be updated before the next record.
    pub fn needs_rekey(&self) -> bool {
        self.sealed_under_key >= REKEY_AFTER_RECORDS
    }

    /// The current key epoch.
    pub fn epoch(&self) -> u16 {
        self.keys.epoch
    }

    /// Seals one record.
    pub fn seal(&mut self, kind: RecordKind, payload: &[u8]) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TAG_LEN);
        self.seal_into(kind, &[], payload, &mut out)?;
        Ok(out)
    }

    /// Seals one record whose plaintext is `prefix` then `payload`,
    /// appending it to `out` and encrypting it there: no copy of the
    /// plaintext besides the one into `out`. The same bytes as [`Sealer::seal`]
    /// of the concatenation.
    pub fn seal_into(
        &mut self,
        kind: RecordKind,
        prefix: &[u8],
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let total = prefix.len() + payload.len();
        if total > MAX_PLAINTEXT {
            return Err(RecordError::TooLarge(total));
        }
        if self.needs_rekey() && kind != RecordKind::KeyUpdate {
            return Err(RecordError::RekeyRequired);
        }
        let seq = self.next_seq;
        let len = u32::try_from(total).map_err(|_| RecordError::TooLarge(total))?;
        let h = header(kind, self.keys.epoch, seq, len);
        out.reserve(HEADER_LEN + total + TAG_LEN);
        out.extend_from_slice(&h);
        let start = out.len();
        out.extend_from_slice(prefix);
        out.extend_from_slice(payload);
        let tag = self
            .keys
            .key
            .seal_in_place_separate_tag(self.keys.nonce(seq), self.keys.aad(&h), &mut out[start..])
            .map_err(|_| RecordError::Malformed("sealing failed"))?;
        out.extend_from_slice(tag.as_ref());
        self.next_seq += 1;
        self.sealed_under_key += 1;
        if kind == RecordKind::KeyUpdate {
            self.keys.advance();
            self.sealed_under_key = 0;
        }
        Ok(())
    }

    /// Sends a `KeyUpdate` record and switches to the next key epoch.
    pub fn rekey(&mut self) -> Result<Vec<u8>, RecordError> {
        self.seal(RecordKind::KeyUpdate, &[])
    }
}

/// The receiving half of one direction.
pub struct Opener {
    keys: DirectionKeys,
    window: ReplayWindow,
    stats: RejectStats,
    burst: u32,
    good_since_reject: u32,
    closed: bool,
}

impl Opener {
    /// An opener for `direction` of `session`, starting at epoch 0.
    pub fn new(secret: TrafficSecret, session: [u8; SESSION_ID_LEN], direction: Direction) -> Self {
        Opener {
            keys: DirectionKeys::new(secret, session, direction),
            window: ReplayWindow::new(),
            stats: RejectStats::default(),
            burst: 0,
            good_since_reject: 0,
            closed: false,
        }
    }

    /// Rejections so far, by reason.
    pub fn stats(&self) -> RejectStats {
        self.stats
    }

    /// Whether a burst of rejections closed the session.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Opens one record: returns its kind and plaintext, or why it was
    /// dropped. After [`RecordError::SessionClosed`] every call fails.
    pub fn open(&mut self, record: &[u8]) -> Result<(RecordKind, Vec<u8>), RecordError> {
        let mut buf = record.to_vec();
        let (kind, plain) = self.open_in_place(&mut buf)?;
        buf.truncate(plain.end);
        buf.drain(..plain.start);
        Ok((kind, buf))
    }

    /// [`Opener::open`] decrypting in `record` itself: its kind and where
    /// its plaintext lies in `record`. A refused record leaves `record`'s
    /// contents unspecified.
    pub fn open_in_place(
        &mut self,
        record: &mut [u8],
    ) -> Result<(RecordKind, std::ops::Range<usize>), RecordError> {
        if self.closed {
            return Err(RecordError::SessionClosed(self.burst));
        }
        match self.open_inner(record) {
            Ok(r) => {
                // Good traffic slowly forgives earlier rejections.
                self.good_since_reject += 1;
                if self.good_since_reject >= 4 {
                    self.burst = self.burst.saturating_sub(1);
                    self.good_since_reject = 0;
                }
                Ok(r)
            }
            Err(e) => {
                self.count(&e);
                self.burst += 1;
                self.good_since_reject = 0;
                if self.burst >= BURST_LIMIT {
                    self.closed = true;
                    return Err(RecordError::SessionClosed(self.burst));
                }
                Err(e)
            }
        }
    }

    fn count(&mut self, e: &RecordError) {
        let s = &mut self.stats;
        match e {
            RecordError::WrongEpoch { .. } => s.wrong_epoch += 1,
            RecordError::Replay(ReplayError::Replayed(_)) => s.replayed += 1,
            RecordError::Replay(ReplayError::TooOld { .. }) => s.too_old += 1,
            RecordError::BadTag { .. } => s.bad_tag += 1,
            _ => s.malformed += 1,
        }
    }

    fn open_inner(
        &mut self,
        record: &mut [u8],
    ) -> Result<(RecordKind, std::ops::Range<usize>), RecordError> {
        // Decode the header without trusting any length it has not bounded.
        if record.len() < HEADER_LEN + TAG_LEN {
            return Err(RecordError::Truncated {
                got: record.len(),
                need: HEADER_LEN + TAG_LEN,
            });
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&record[..HEADER_LEN]);
        if h[0] != VERSION {
            return Err(RecordError::Malformed("unknown version"));
        }
        let kind = RecordKind::from_byte(h[1]).ok_or(RecordError::Malformed("unknown kind"))?;
        let epoch = u16::from_be_bytes([h[2], h[3]]);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&h[4..12]);
        let seq = u64::from_be_bytes(seq_bytes);
        let len = u32::from_be_bytes([h[12], h[13], h[14], h[15]]) as usize;
        if len > MAX_PLAINTEXT {
            return Err(RecordError::TooLarge(len));
        }
        let need = HEADER_LEN + len + TAG_LEN;
        if record.len() < need {
            return Err(RecordError::Truncated {
                got: record.len(),
                need,
            });
        }
        if record.len() > need {
            return Err(RecordError::TrailingBytes {
                extra: record.len() - need,
            });
        }
        if epoch != self.keys.epoch {
            return Err(RecordError::WrongEpoch {
                got: epoch,
                want: self.keys.epoch,
            });
        }
        // RFC 6479: check before decrypting, advance only after the tag.
        self.window.check(seq)?;
        let plain_len = self
            .keys
            .key
            .open_in_place(
                self.keys.nonce(seq),
                self.keys.aad(&h),
                &mut record[HEADER_LEN..],
            )
            .map_err(|_| RecordError::BadTag { seq })?
            .len();
        self.window.accept(seq);
        if kind == RecordKind::KeyUpdate {
            self.keys.advance();
        }
        Ok((kind, HEADER_LEN..HEADER_LEN + plain_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SESSION: [u8; SESSION_ID_LEN] = [7; SESSION_ID_LEN];

    fn pair(dir: Direction) -> (Sealer, Opener) {
        let secret = [42u8; 32];
        (
            Sealer::new(TrafficSecret::new(&secret), SESSION, dir),
            Opener::new(TrafficSecret::new(&secret), SESSION, dir),
        )
    }

    #[test]
    fn round_trip_and_reorder_inside_the_window() {
        let (mut s, mut o) = pair(Direction::ClientToHub);
        let records: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                s.seal(RecordKind::Data, format!("msg {i}").as_bytes())
                    .expect("seal")
            })
            .collect();
        for i in [0usize, 3, 1, 2, 9, 4, 8, 5, 7, 6] {
            let (kind, plain) = o.open(&records[i]).expect("open");
            assert_eq!(
                (kind, plain),
                (RecordKind::Data, format!("msg {i}").into_bytes())
            );
        }
        assert_eq!(o.stats(), RejectStats::default());
    }

    #[test]
    fn replay_tamper_truncation_and_cross_direction_are_rejected_and_counted() {
        let (mut s, mut o) = pair(Direction::ClientToHub);
        let r0 = s.seal(RecordKind::Data, b"hello").expect("seal");
        o.open(&r0).expect("first time");
        assert!(matches!(
            o.open(&r0),
            Err(RecordError::Replay(ReplayError::Replayed(0)))
        ));

        let r1 = s.seal(RecordKind::Data, b"world").expect("seal");
        // Each flipped byte on its own receiver (so many in a row would
        // close the session as a burst, tested below).
        for i in 0..r1.len() {
            let (_, mut fresh) = pair(Direction::ClientToHub);
            let mut bad = r1.clone();
            bad[i] ^= 0x01;
            assert!(
                fresh.open(&bad).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
        let mut tampered = r1.clone();
        tampered[HEADER_LEN] ^= 0x01;
        assert!(matches!(
            o.open(&tampered),
            Err(RecordError::BadTag { seq: 1 })
        ));
        assert!(matches!(
            o.open(&r1[..r1.len() - 1]),
            Err(RecordError::Truncated { .. })
        ));
        assert!(matches!(
            o.open(&r1[..10]),
            Err(RecordError::Truncated { .. })
        ));
        // The untouched record still opens: nothing above moved the window.
        assert_eq!(o.open(&r1).expect("genuine").1, b"world");

        // A hub-to-client record fed back to the hub (reflection) fails.
        // (Sequence numbers 0 and 1 are taken: use fresh ones so that the
        // tag, not the replay window, is what decides.)
        let (mut back, _) = pair(Direction::HubToClient);
        for _ in 0..5 {
            back.seal(RecordKind::Data, b"skip").expect("seal");
        }
        let reflected = back.seal(RecordKind::Data, b"x").expect("seal");
        assert!(matches!(
            o.open(&reflected),
            Err(RecordError::BadTag { .. })
        ));

        // Another session's record fails too.
        let mut other = Sealer::new(
            TrafficSecret::new(&[42; 32]),
            [8; 32],
            Direction::ClientToHub,
        );
        for _ in 0..6 {
            other.seal(RecordKind::Data, b"skip").expect("seal");
        }
        let foreign = other.seal(RecordKind::Data, b"x").expect("seal");
        let r = o.open(&foreign);
        assert!(matches!(r, Err(RecordError::BadTag { .. })), "{r:?}");

        let st = o.stats();
        assert_eq!(st.replayed, 1);
        assert!(st.bad_tag >= 2 && st.malformed >= 2, "{st:?}");
    }

    #[test]
    fn a_forged_record_never_moves_the_window() {
        let (mut s, mut o) = pair(Direction::ClientToHub);
        let genuine = s.seal(RecordKind::Data, b"genuine").expect("seal");
        // Claim a far-ahead sequence number: the tag fails, and the window
        // must not have advanced to it.
        let mut forged = genuine.clone();
        forged[4..12].copy_from_slice(&1_000_000u64.to_be_bytes());
        assert!(matches!(
            o.open(&forged),
            Err(RecordError::BadTag { seq: 1_000_000 })
        ));
        assert_eq!(o.open(&genuine).expect("still fresh").1, b"genuine");
    }

    #[test]
    fn records_beyond_the_window_are_rejected() {
        let (mut s, mut o) = pair(Direction::HubToClient);
        let old = s.seal(RecordKind::Data, b"old").expect("seal");
        let mut last = Vec::new();
        for _ in 0..=crate::replay::WINDOW {
            last = s.seal(RecordKind::Data, b"n").expect("seal");
        }
        o.open(&last).expect("newest");
        assert!(matches!(
            o.open(&old),
            Err(RecordError::Replay(ReplayError::TooOld { .. }))
        ));
        assert_eq!(o.stats().too_old, 1);
    }

    #[test]
    fn after_rekey_old_key_records_are_rejected() {
        let (mut s, mut o) = pair(Direction::ClientToHub);
        let before = s.seal(RecordKind::Data, b"epoch 0").expect("seal");
        let update = s.rekey().expect("key update");
        let after = s.seal(RecordKind::Data, b"epoch 1").expect("seal");
        assert_eq!(s.epoch(), 1);
        o.open(&update).expect("key update opens");
        assert_eq!(o.open(&after).expect("new key").1, b"epoch 1");
        assert!(matches!(
            o.open(&before),
            Err(RecordError::WrongEpoch { got: 0, want: 1 })
        ));
        // Re-labelling an old record with the new epoch breaks its tag.
        let mut relabelled = before.clone();
        relabelled[3] = 1;
        assert!(matches!(
            o.open(&relabelled),
            Err(RecordError::BadTag { .. })
        ));
    }

    #[test]
    fn a_burst_of_bad_records_closes_the_session() {
        let (mut s, mut o) = pair(Direction::ClientToHub);
        let good = s.seal(RecordKind::Data, b"ok").expect("seal");
        o.open(&good).expect("open");
        let mut last = Ok((RecordKind::Data, Vec::new()));
        for _ in 0..BURST_LIMIT {
            last = o.open(&good);
        }
        assert!(matches!(last, Err(RecordError::SessionClosed(_))));
        assert!(o.is_closed());
        let fresh = s.seal(RecordKind::Data, b"late").expect("seal");
        assert!(matches!(o.open(&fresh), Err(RecordError::SessionClosed(_))));
    }

    #[test]
    fn occasional_losses_do_not_close_the_session() {
        let (mut s, mut o) = pair(Direction::ClientToHub);
        for i in 0..1000u32 {
            let r = s.seal(RecordKind::Data, b"ok").expect("seal");
            if i % 5 == 0 {
                let _ = o.open(&r[..5]);
            }
            o.open(&r).expect("good records keep flowing");
        }
        assert!(!o.is_closed());
    }

    proptest! {
        /// The decoder never panics and never accepts garbage.
        #[test]
        fn garbage_is_rejected_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (_, mut o) = pair(Direction::ClientToHub);
            prop_assert!(o.open(&bytes).is_err());
        }

        /// Any single-bit change to a genuine record is rejected.
        #[test]
        fn any_bit_flip_is_rejected(payload in proptest::collection::vec(any::<u8>(), 0..64), bit in 0usize..1024) {
            let (mut s, mut o) = pair(Direction::ClientToHub);
            let mut r = s.seal(RecordKind::Data, &payload).expect("seal");
            let bit = bit % (r.len() * 8);
            r[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(o.open(&r).is_err());
        }
    }
}

#[cfg(test)]
mod vectors {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The records sealed for the vectors of `docs/protocol.md`.
    fn vector_records() -> Vec<(String, String)> {
        let secret: [u8; 32] = std::array::from_fn(|i| i as u8);
        let session: [u8; SESSION_ID_LEN] = std::array::from_fn(|i| 0xa0 + i as u8);
        let mut s = Sealer::new(TrafficSecret::new(&secret), session, Direction::ClientToHub);
        let first = s
            .seal(RecordKind::Data, b"{\"jsonrpc\":\"2.0\"}")
            .expect("seal");
        let second = s.seal(RecordKind::Data, b"").expect("seal");
        vec![
            ("record-0".into(), hex(&first)),
            ("record-1".into(), hex(&second)),
        ]
    }

    /// `docs/protocol.md` carries the same bytes (lines `record-N: <hex>`),
    /// so an implementation in another language can check itself against it.
    #[test]
    fn protocol_doc_vectors_match_byte_for_byte() {
        let doc = include_str!("../../../docs/protocol.md");
        for (name, want) in vector_records() {
            let line = doc
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| {
                    panic!("docs/protocol.md has no `{name}:` line; expected {want}")
                });
            assert_eq!(
                line.trim(),
                want,
                "{name} in docs/protocol.md differs from the code"
            );
        }
    }
}
