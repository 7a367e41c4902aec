//! Signing and verifying as cosign does with a key (`cosign sign --key`,
//! `cosign verify --key`): the signature of image `R@sha256:H` lives in
//! the same repository under the tag `sha256-H.sig`, an OCI manifest
//! whose layers are simple-signing payloads
//! (`application/vnd.dev.cosign.simplesigning.v1+json`), each annotated
//! with its base64 signature (`dev.cosignproject.cosign/signature`).

use base64::Engine as _;
use serde_json::{Value, json};

use crate::SignError;
use crate::keys::{SigningKey, VerifyingKey};
use crate::payload;
use crate::registry::{ImageRef, Registry};

/// The media type of a signature layer.
pub const PAYLOAD_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation carrying the signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The tag holding the signatures of manifest `digest`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// The manifest digest of `image` now, as the registry serves it.
pub async fn resolve(registry: &Registry, image: &ImageRef) -> Result<String, SignError> {
    match registry
        .manifest(&image.repository, &image.reference)
        .await?
    {
        Some((_, d)) => Ok(d),
        None => Err(SignError::Registry(format!(
            "{}:{} not found",
            image.repository_path(),
            image.reference
        ))),
    }
}

/// Signs `image`'s current manifest digest with `key` and stores the
/// signature as its `.sig` tag. Returns the digest signed.
pub async fn sign(image: &ImageRef, key: &SigningKey) -> Result<String, SignError> {
    let registry = Registry::new(&image.registry)?;
    let manifest_digest = resolve(&registry, image).await?;
    let body = payload::simple_signing(&image.repository_path(), &manifest_digest);
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&body)?);
    let size = body.len();
    let payload_digest = registry.push_blob(&image.repository, body).await?;
    // The config cosign writes: one layer, no platform.
    let config = json!({
        "architecture": "", "os": "", "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "rootfs": {"type": "layers", "diff_ids": [payload_digest]},
    })
    .to_string()
    .into_bytes();
    let config_size = config.len();
    let config_digest = registry.push_blob(&image.repository, config).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config_size, "digest": config_digest},
        "layers": [{
            "mediaType": PAYLOAD_TYPE,
            "size": size,
            "digest": payload_digest,
            "annotations": {SIGNATURE_ANNOTATION: signature},
        }],
    })
    .to_string()
    .into_bytes();
    registry
        .push_manifest(
            &image.repository,
            &signature_tag(&manifest_digest),
            OCI_MANIFEST,
            manifest,
        )
        .await?;
    Ok(manifest_digest)
}

/// Verifies that `image`'s current manifest digest carries a signature by
/// `key` for its repository. Returns the verified digest.
pub async fn verify(image: &ImageRef, key: &VerifyingKey) -> Result<String, SignError> {
    let registry = Registry::new(&image.registry)?;
    let manifest_digest = resolve(&registry, image).await?;
    let tag = signature_tag(&manifest_digest);
    let Some((manifest, _)) = registry.manifest(&image.repository, &tag).await? else {
        return Err(SignError::Verify(format!(
            "no signatures found for {}@{manifest_digest}",
            image.repository_path()
        )));
    };
    let manifest: Value = serde_json::from_slice(&manifest)
        .map_err(|e| SignError::Verify(format!("signature manifest: {e}")))?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let mut reasons = Vec::new();
    for layer in &layers {
        let (Some(layer_digest), Some(signature)) = (
            layer["digest"].as_str(),
            layer["annotations"][SIGNATURE_ANNOTATION].as_str(),
        ) else {
            reasons.push("a layer without a signature".to_owned());
            continue;
        };
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else {
            reasons.push("a signature that is not base64".to_owned());
            continue;
        };
        let body = registry.blob(&image.repository, layer_digest).await?;
        if !key.verifies(&body, &signature) {
            reasons.push("a signature by another key (or over another payload)".to_owned());
            continue;
        }
        match payload::check(&body, &image.repository_path(), &manifest_digest) {
            Ok(()) => return Ok(manifest_digest),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    Err(SignError::Verify(format!(
        "no valid signature for {}@{manifest_digest} with this key ({} examined: {})",
        image.repository_path(),
        layers.len(),
        if reasons.is_empty() {
            "none".to_owned()
        } else {
            reasons.join("; ")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_tag_is_cosigns() {
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
    }
}
