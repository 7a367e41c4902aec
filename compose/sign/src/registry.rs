//! The registry HTTP API calls signing needs (OCI distribution spec):
//! fetch a manifest, fetch a blob, push a blob (monolithic upload), push a
//! manifest. Anonymous access; `http://` for loopback registries (tests,
//! a local mirror), `https://` otherwise.

use std::sync::Arc;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};

use crate::SignError;

/// The manifest types asked for (an image, or an index of images).
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// An image reference: `host[:port]/repository[:tag|@sha256:…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]`.
    pub registry: String,
    /// The repository path within the registry.
    pub repository: String,
    /// A tag or a `sha256:` digest.
    pub reference: String,
}

impl ImageRef {
    /// Parses `host[:port]/repository[:tag|@sha256:…]` (tag `latest` when
    /// neither is given).
    pub fn parse(text: &str) -> Result<ImageRef, SignError> {
        let bad = || SignError::Reference(text.to_owned());
        let (registry, rest) = text.split_once('/').ok_or_else(bad)?;
        let (repository, reference) = if let Some((repo, digest)) = rest.split_once('@') {
            (repo, digest)
        } else {
            match rest.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo, tag),
                _ => (rest, "latest"),
            }
        };
        if registry.is_empty() || repository.is_empty() || reference.is_empty() {
            return Err(bad());
        }
        Ok(ImageRef {
            registry: registry.into(),
            repository: repository.into(),
            reference: reference.into(),
        })
    }

    /// `host[:port]/repository`: what the signature's payload names.
    pub fn repository_path(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// The SHA-256 digest of `bytes`, `sha256:<hex>`.
pub fn digest(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A registry client.
#[derive(Debug, Clone)]
pub struct Registry {
    http: reqwest::Client,
    base: String,
}

impl Registry {
    /// A client for `registry` (`host[:port]`).
    pub fn new(registry: &str) -> Result<Registry, SignError> {
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|e| SignError::Registry(format!("TLS: {e}")))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SignError::Registry(format!("TLS: {e}")))?
            .dangerous()
            // Not dangerous: the platform verifier validates fully; this is
            // how a custom verifier is installed.
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| SignError::Registry(e.to_string()))?;
        let scheme = if loopback { "http" } else { "https" };
        Ok(Registry {
            http,
            base: format!("{scheme}://{registry}/v2"),
        })
    }

    /// The manifest `reference` of `repository`, its bytes exactly as
    /// stored, and their digest (computed here, not taken from a header).
    /// `None` when the registry has no such manifest.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<(Vec<u8>, String)>, SignError> {
        let url = format!("{}/{repository}/manifests/{reference}", self.base);
        let Some(bytes) = self.get(&url, Some(MANIFEST_TYPES)).await? else {
            return Ok(None);
        };
        let d = digest(&bytes);
        Ok(Some((bytes, d)))
    }

    /// The blob `digest` of `repository`, checked against its digest.
    pub async fn blob(&self, repository: &str, want: &str) -> Result<Vec<u8>, SignError> {
        let url = format!("{}/{repository}/blobs/{want}", self.base);
        let bytes = self
            .get(&url, None)
            .await?
            .ok_or_else(|| SignError::Registry(format!("GET {url}: not found")))?;
        if digest(&bytes) != want {
            return Err(SignError::Verify(format!(
                "blob {want} does not match its digest"
            )));
        }
        Ok(bytes)
    }

    /// The body at `url` (`None` for 404), asking for `accept` types.
    async fn get(&self, url: &str, accept: Option<&str>) -> Result<Option<Vec<u8>>, SignError> {
        let mut request = self.http.get(url);
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        let resp = request
            .send()
            .await
            .map_err(|e| SignError::Registry(format!("GET {url}: {e}")))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let bytes = ok(resp, url)
            .await?
            .bytes()
            .await
            .map_err(|e| SignError::Registry(format!("GET {url}: {e}")))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Uploads `bytes` as a blob of `repository`; returns its digest.
    pub async fn push_blob(&self, repository: &str, bytes: Vec<u8>) -> Result<String, SignError> {
        let d = digest(&bytes);
        let url = format!("{}/{repository}/blobs/uploads/", self.base);
        let resp = self
            .http
            .post(&url)
            .send()
            .await
            .map_err(|e| SignError::Registry(format!("POST {url}: {e}")))?;
        let resp = ok(resp, &url).await?;
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| SignError::Registry(format!("POST {url}: no Location")))?;
        let mut put = reqwest::Url::parse(&url)
            .and_then(|base| base.join(location))
            .map_err(|e| SignError::Registry(format!("upload location {location}: {e}")))?;
        put.query_pairs_mut().append_pair("digest", &d);
        let resp = self
            .http
            .put(put.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| SignError::Registry(format!("PUT {put}: {e}")))?;
        ok(resp, put.as_str()).await?;
        Ok(d)
    }

    /// Stores `manifest` (of `media_type`) as `tag` of `repository`.
    pub async fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        media_type: &str,
        manifest: Vec<u8>,
    ) -> Result<(), SignError> {
        let url = format!("{}/{repository}/manifests/{tag}", self.base);
        let resp = self
            .http
            .put(&url)
            .header(CONTENT_TYPE, media_type)
            .body(manifest)
            .send()
            .await
            .map_err(|e| SignError::Registry(format!("PUT {url}: {e}")))?;
        ok(resp, &url).await?;
        Ok(())
    }
}

async fn ok(resp: reqwest::Response, url: &str) -> Result<reqwest::Response, SignError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    Err(SignError::Registry(format!(
        "{url}: {status}: {}",
        body.chars().take(300).collect::<String>()
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn references_parse() {
        let r = ImageRef::parse("127.0.0.1:5000/ewii/client:0.1.0").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("127.0.0.1:5000", "ewii/client", "0.1.0")
        );
        assert_eq!(r.repository_path(), "127.0.0.1:5000/ewii/client");
        let d = ImageRef::parse("reg.example/hub@sha256:ab").unwrap();
        assert_eq!(d.reference, "sha256:ab");
        assert_eq!(
            ImageRef::parse("reg.example/hub").unwrap().reference,
            "latest"
        );
        assert!(ImageRef::parse("no-slash").is_err());
    }
}
