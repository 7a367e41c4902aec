//! Signs and verifies OCI images in cosign's key-based format, so that
//! `cosign verify --key cosign.pub IMAGE` accepts what
//! `ewii-image-sign sign` wrote, with the tree's one crypto provider
//! (ring).
//!
//! Why not the `sigstore` crate (0.15): checked with `cargo tree -i`, its
//! default features bring OpenSSL (`native-tls`) and aws-lc-rs (through
//! `tough`'s rustls); `default-features = false, features = ["cosign",
//! "rustls-tls"]` still brings aws-lc-rs, since its `rustls-tls` feature is
//! defined as aws-lc-rs. Key-based cosign signing needs only ECDSA P-256
//! (ring has it), SHA-256, a JSON payload and four registry calls, so this
//! crate implements exactly that. Keyless signing (Fulcio, Rekor) is left
//! to cosign itself in the release workflow.
//!
//! - [`keys`]: the ECDSA P-256 key pair: PKCS#8 private key, the public
//!   key in cosign's `PUBLIC KEY` (SubjectPublicKeyInfo) PEM form.
//! - [`payload`]: cosign's "simple signing" payload naming the image's
//!   repository and manifest digest; building and checking it.
//! - [`registry`]: the few registry HTTP API calls (manifests, blobs).
//! - [`cosign`]: signing an image (the signature as the
//!   `sha256-<hex>.sig` tag's layer, annotated
//!   `dev.cosignproject.cosign/signature`) and verifying it.
#![forbid(unsafe_code)]

pub mod cosign;
pub mod keys;
pub mod payload;
pub mod registry;

/// What can go wrong signing or verifying.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A key file could not be read, parsed or written.
    #[error("key: {0}")]
    Key(String),
    /// The registry refused a request or answered nonsense.
    #[error("registry: {0}")]
    Registry(String),
    /// An image reference that is not `host[:port]/repo[:tag|@digest]`.
    #[error("image reference {0:?}: expected host[:port]/repository[:tag|@sha256:…]")]
    Reference(String),
    /// No signature verified for the image.
    #[error("verification failed: {0}")]
    Verify(String),
}
