//! cosign's "simple signing" payload: the signed statement that a
//! repository's manifest has a digest.

use serde_json::{Value, json};

use crate::SignError;

/// The payload's `critical.type`.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// The payload cosign signs for `repository` (`host[:port]/name`, no tag)
/// at manifest `digest` (`sha256:…`). serde_json orders keys as cosign
/// writes them.
pub fn simple_signing(repository: &str, digest: &str) -> Vec<u8> {
    json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": Value::Null,
    })
    .to_string()
    .into_bytes()
}

/// Checks a (signature-verified) payload names `repository` at `digest`.
pub fn check(payload: &[u8], repository: &str, digest: &str) -> Result<(), SignError> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| SignError::Verify(format!("the signed payload is not JSON: {e}")))?;
    let critical = &value["critical"];
    if critical["type"] != SIGNATURE_TYPE {
        return Err(SignError::Verify(format!(
            "the signed payload's type is {}, not {SIGNATURE_TYPE:?}",
            critical["type"]
        )));
    }
    let signed = critical["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap_or_default();
    if signed != digest {
        return Err(SignError::Verify(format!(
            "the signature is for {signed}, the image is {digest}"
        )));
    }
    let reference = critical["identity"]["docker-reference"]
        .as_str()
        .unwrap_or_default();
    if reference != repository {
        return Err(SignError::Verify(format!(
            "the signature is for the repository {reference}, not {repository}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_payload_is_cosigns_byte_for_byte() {
        let p = simple_signing("reg.example/ewii-client", "sha256:ab");
        assert_eq!(
            String::from_utf8(p.clone()).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"reg.example/ewii-client"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":null}"#
        );
        check(&p, "reg.example/ewii-client", "sha256:ab").unwrap();
        assert!(check(&p, "reg.example/ewii-client", "sha256:cd").is_err());
        assert!(check(&p, "reg.example/ewii-hub", "sha256:ab").is_err());
    }
}
