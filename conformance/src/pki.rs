//! The test PKI: [`ewii_test_pki`], re-exported whole (CAs, SVIDs with
//! tweaks, server certificates, the SPIRE-like [`SpireCa`], PEM files),
//! and a leaf as the key material a client presents.

pub use ewii_test_pki::*;

use ewii_quic::KeyMaterial;

/// The chain and key of `leaf`, as a client presents them.
pub fn key_material(leaf: &Leaf) -> KeyMaterial {
    KeyMaterial {
        chain: leaf.chain.clone(),
        key: leaf.key(),
    }
}
