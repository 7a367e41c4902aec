//! The test PKI: [`ewii_test_pki`], re-exported whole (CAs, SVIDs with
//! tweaks, server certificates, the SPIRE-like [`SpireCa`], PEM files),
//! and the two conversions the suites need on top of it: a leaf as the key
//! material a client presents, a CA as the trust bundle a verifier holds.

pub use ewii_test_pki::*;

use ewii_quic::{KeyMaterial, TrustBundle};

/// The chain and key of `leaf`, as a client presents them.
pub fn key_material(leaf: &Leaf) -> KeyMaterial {
    KeyMaterial {
        chain: leaf.chain.clone(),
        key: leaf.key(),
    }
}

/// A trust bundle holding `ca` only.
pub fn bundle(ca: &TestCa) -> TrustBundle {
    TrustBundle::from_der(ca.certificates()).expect("a test CA is a trust bundle")
}
