#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::refusal::{RefusalCode, Refused};
use crate::testdata::{self, CLIENT_ID as ID};

const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
const RESPONSE: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#;

/// A checked-in leaf for `ID` and its signing key.
fn svid(name: &str) -> (Certificate, Arc<dyn Signer>) {
    (testdata::cert(name), testdata::signer(name))
}

fn p256() -> (Certificate, Arc<dyn Signer>) {
    svid("svid-p256")
}

fn frame(kind: FrameType, body: &[u8]) -> Frame {
    Frame {
        kind,
        body: body.to_vec(),
    }
}

/// The frames the client sends for one reply.
fn reply_frames(key: &dyn Signer, request: &[u8], response: &[u8]) -> [Frame; 2] {
    let receipt = Receipt::sign(key, digest(request), response).unwrap();
    [
        frame(FrameType::Message, response),
        frame(FrameType::Receipt, &receipt.encode().unwrap()),
    ]
}

/// What the hub makes of `frames` as replies to `REQUEST`.
fn check(leaf: &Certificate, frames: Vec<Frame>) -> Result<Vec<Reply>, ReceiptError> {
    let mut c = ReplyCheck::new(leaf.clone(), REQUEST);
    let mut out = Vec::new();
    for f in frames {
        out.extend(c.push(f)?);
    }
    c.finish()?;
    Ok(out)
}

#[test]
fn a_valid_receipt_verifies_and_names_both_digests() {
    for name in ["svid-p256", "svid-ed25519", "svid-p384", "svid-rsa"] {
        let (leaf, key) = svid(name);
        let replies = check(&leaf, reply_frames(&*key, REQUEST, RESPONSE).into()).unwrap();
        let [Reply::Message { message, receipt }] = replies.as_slice() else {
            panic!("{replies:?}");
        };
        assert_eq!(message.as_ref(), RESPONSE);
        assert_eq!(receipt.request_digest, digest(REQUEST));
        assert_eq!(receipt.response_digest, digest(RESPONSE));
        receipt.verify(&leaf).unwrap();
        assert_eq!(
            receipt.signed_bytes(),
            [RECEIPT_CONTEXT, &digest(REQUEST), &digest(RESPONSE)].concat()
        );
        assert_eq!(receipt.request_digest_hex().len(), 64);
        assert_eq!(
            receipt.response_digest_hex(),
            receipt
                .response_digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(receipt.signature_b64())
                .unwrap(),
            receipt.signature
        );
    }
}

#[test]
fn several_replies_each_carry_their_own_receipt_and_refusals_need_none() {
    let (leaf, key) = p256();
    let mut frames: Vec<Frame> = reply_frames(&*key, REQUEST, b"first").into();
    frames.extend(reply_frames(&*key, REQUEST, b"second"));
    let refused = Refused::new(RefusalCode::AdapterUnreachable, "adapter gone");
    frames.push(frame(FrameType::Refused, &refused.encode()));
    let replies = check(&leaf, frames).unwrap();
    assert_eq!(replies.len(), 3);
    assert!(matches!(&replies[0], Reply::Message { message, .. } if message.as_ref() == b"first"));
    assert!(matches!(&replies[1], Reply::Message { message, .. } if message.as_ref() == b"second"));
    assert_eq!(replies[2], Reply::Refused(refused));
}

#[test]
fn a_flipped_byte_in_the_message_or_the_request_is_refused() {
    let (leaf, key) = p256();
    for i in 0..RESPONSE.len() {
        let [mut message, receipt] = reply_frames(&*key, REQUEST, RESPONSE);
        message.body[i] ^= 0x01;
        let err = check(&leaf, vec![message, receipt]).unwrap_err();
        assert!(
            matches!(err, ReceiptError::Signature(HandshakeError::BadSignature)),
            "byte {i}: {err:?}"
        );
    }
    // Signed for another request than the one the hub sent.
    let mut other = REQUEST.to_vec();
    other[3] ^= 0x20;
    let err = check(&leaf, reply_frames(&*key, &other, RESPONSE).into()).unwrap_err();
    assert!(matches!(err, ReceiptError::Signature(_)), "{err:?}");
}

#[test]
fn a_flipped_byte_in_the_signature_is_refused() {
    let (leaf, key) = p256();
    let [message, receipt] = reply_frames(&*key, REQUEST, RESPONSE);
    // Skip the scheme and the length: every signature byte.
    for i in 4..receipt.body.len() {
        let mut bad = receipt.clone();
        bad.body[i] ^= 0x80;
        let err = check(&leaf, vec![message.clone(), bad]).unwrap_err();
        assert!(
            matches!(err, ReceiptError::Signature(_)),
            "byte {i}: {err:?}"
        );
    }
    // Another scheme than the one signed with, or one outside the list.
    // (ed25519, rsa_pkcs1_sha256)
    for scheme in [0x0807_u16, 0x0401] {
        let mut bad = receipt.clone();
        bad.body[..2].copy_from_slice(&scheme.to_be_bytes());
        let err = check(&leaf, vec![message.clone(), bad]).unwrap_err();
        assert!(
            matches!(err, ReceiptError::Signature(_)),
            "{scheme:?}: {err:?}"
        );
    }
}

#[test]
fn a_receipt_signed_by_another_key_is_refused() {
    let (leaf, _) = p256();
    let (_, other) = svid("svid-other");
    let err = check(&leaf, reply_frames(&*other, REQUEST, RESPONSE).into()).unwrap_err();
    assert_eq!(err, ReceiptError::Signature(HandshakeError::BadSignature));
}

#[test]
fn a_missing_or_malformed_receipt_is_refused() {
    let (leaf, key) = p256();
    let [message, receipt] = reply_frames(&*key, REQUEST, RESPONSE);
    let cases: Vec<(Vec<Frame>, ReceiptError)> = vec![
        (vec![message.clone()], ReceiptError::Missing),
        (
            vec![message.clone(), message.clone(), receipt.clone()],
            ReceiptError::Missing,
        ),
        (
            vec![message.clone(), frame(FrameType::Refused, &[0, 1])],
            ReceiptError::Missing,
        ),
        (vec![receipt.clone()], ReceiptError::Orphan),
        (
            vec![message.clone(), receipt.clone(), receipt.clone()],
            ReceiptError::Orphan,
        ),
        (
            vec![frame(FrameType::Route, b"tcp:127.0.0.1:1")],
            ReceiptError::UnexpectedFrame(FrameType::Route),
        ),
    ];
    for (frames, expected) in cases {
        let kinds: Vec<FrameType> = frames.iter().map(|f| f.kind).collect();
        assert_eq!(check(&leaf, frames).unwrap_err(), expected, "{kinds:?}");
    }
    for body in [
        &[][..],
        &[0x04],
        &receipt.body[..receipt.body.len() - 1],
        &[receipt.body.as_slice(), &[0]].concat(),
    ] {
        let err = check(
            &leaf,
            vec![message.clone(), frame(FrameType::Receipt, body)],
        )
        .unwrap_err();
        assert!(
            matches!(err, ReceiptError::Malformed(_)),
            "{body:?}: {err:?}"
        );
    }
}

#[test]
fn a_goodbye_verifies_only_for_its_identity_time_and_key() {
    let now = 1_750_000_000;
    for (name, other) in [("svid-p256", "svid-other"), ("svid-ed25519", "svid-p256")] {
        let (leaf, key) = svid(name);
        let sig = sign_goodbye(&*key, ID, now).unwrap();
        verify_goodbye(&leaf, ID, now, &sig, now).unwrap();
        verify_goodbye(&leaf, ID, now, &sig, now + 300).unwrap();
        verify_goodbye(&leaf, ID, now, &sig, now - 300).unwrap();

        // Altered time, another identity, another key.
        assert_eq!(
            verify_goodbye(&leaf, ID, now + 1, &sig, now),
            Err(GoodbyeError::BadSignature)
        );
        assert_eq!(
            verify_goodbye(&leaf, "spiffe://example.org/ws/acme/dep/us", now, &sig, now),
            Err(GoodbyeError::BadSignature)
        );
        let (_, other) = svid(other);
        let forged = sign_goodbye(&*other, ID, now).unwrap();
        assert_eq!(
            verify_goodbye(&leaf, ID, now, &forged, now),
            Err(GoodbyeError::BadSignature)
        );
    }
    let (leaf, key) = p256();
    let sig = sign_goodbye(&*key, ID, now).unwrap();
    assert_eq!(
        verify_goodbye(&leaf, ID, now, &sig, now + 301),
        Err(GoodbyeError::Stale {
            at: now,
            now: now + 301
        })
    );
    assert_eq!(
        verify_goodbye(&leaf, ID, now, &sig, now - 301),
        Err(GoodbyeError::Stale {
            at: now,
            now: now - 301
        })
    );
    assert_eq!(
        verify_goodbye(&leaf, ID, now, "not base64!", now),
        Err(GoodbyeError::Malformed)
    );
    assert_eq!(
        goodbye_message(ID, -5),
        [ID.as_bytes(), b"\0-5"].concat(),
        "the time is decimal, as i64::to_string writes it"
    );
}

proptest! {
    #[test]
    fn garbage_reply_streams_never_panic(
        frames in proptest::collection::vec(
            (0usize..6, proptest::collection::vec(any::<u8>(), 0..200)),
            0..8,
        )
    ) {
        let (leaf, _) = svid("svid-ed25519");
        let kinds = [
            FrameType::Message,
            FrameType::Receipt,
            FrameType::Refused,
            FrameType::Route,
            FrameType::Control,
            FrameType::Alert,
        ];
        let frames: Vec<Frame> = frames
            .into_iter()
            .map(|(k, body)| Frame { kind: kinds[k], body })
            .collect();
        // Nobody holds the key: no message is ever handed out.
        if let Ok(replies) = check(&leaf, frames) {
            prop_assert!(replies.iter().all(|r| matches!(r, Reply::Refused(_))));
        }
    }
}

#[test]
fn a_malformed_refusal_is_refused() {
    let (leaf, _) = p256();
    for body in [&[][..], &[0x00]] {
        let err = check(&leaf, vec![frame(FrameType::Refused, body)]).unwrap_err();
        assert!(
            matches!(err, ReceiptError::MalformedRefusal(_)),
            "{body:?}: {err:?}"
        );
    }
}
