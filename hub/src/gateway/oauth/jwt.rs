//! JWT access tokens (RFC 9068): the compact JWS parsed, its signature
//! checked with ring against a key of the issuer's JWKS, and its claims
//! held to the workspace's configuration.
//!
//! Only asymmetric algorithms are accepted (RS256/384/512, PS256/384/512,
//! ES256/384, EdDSA): the hub shares no secret with the authorization
//! server, so `none` and the HMAC family are refused before any key is
//! looked at, and the algorithm must match the key's type (and the key's
//! own `alg`, when the JWKS names one).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

use super::Refusal;

/// A key of an issuer's JWKS (RFC 7517), the members the hub uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm the key is for, if the JWKS says.
    #[serde(default)]
    pub alg: Option<String>,
    /// `sig` or `enc`; an `enc` key never verifies a token.
    #[serde(default, rename = "use")]
    pub key_use: Option<String>,
    /// RSA modulus.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(default)]
    pub e: Option<String>,
    /// EC curve or OKP subtype.
    #[serde(default)]
    pub crv: Option<String>,
    /// EC x coordinate or OKP public key.
    #[serde(default)]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default)]
    pub y: Option<String>,
}

/// A JWS split into what is checked.
#[derive(Debug)]
pub struct Jws {
    /// The protected header.
    pub header: Header,
    /// The claims (unverified until [`Jws::verify`] succeeds).
    pub claims: serde_json::Map<String, Value>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

/// The JOSE header members the hub reads.
#[derive(Debug, Deserialize)]
pub struct Header {
    /// Signature algorithm.
    pub alg: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Media type: `at+jwt` for an RFC 9068 access token.
    #[serde(default)]
    pub typ: Option<String>,
    /// Critical extensions: none is understood, so any is refused.
    #[serde(default)]
    pub crit: Option<Value>,
}

fn invalid(why: &str) -> Refusal {
    Refusal::InvalidToken(why.to_owned())
}

/// Whether `token` has the shape of a compact JWS (three base64url parts,
/// a JSON header): anything else is an opaque token.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let header = parts.next().unwrap_or("");
    parts.clone().count() == 2
        && B64URL
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
            .is_some_and(|h| h.is_object())
}

impl Jws {
    /// Parses a compact JWS; nothing is trusted yet.
    pub fn parse(token: &str) -> Result<Jws, Refusal> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a compact JWS"));
        };
        let header: Header = B64URL
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid("unreadable JOSE header"))?;
        let claims = B64URL
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Map<String, Value>>(&b).ok())
            .ok_or_else(|| invalid("unreadable claims"))?;
        let signature = B64URL
            .decode(s)
            .map_err(|_| invalid("unreadable signature"))?;
        Ok(Jws {
            header,
            claims,
            signing_input: format!("{h}.{p}").into_bytes(),
            signature,
        })
    }

    /// The header checks that need no key: a known asymmetric algorithm,
    /// no critical extensions, and `typ` `at+jwt` (RFC 9068 §2.1, so an
    /// ID token or another JWT is never taken for an access token).
    pub fn check_header(&self) -> Result<(), Refusal> {
        if self.header.crit.is_some() {
            return Err(invalid("critical JOSE header extensions are not supported"));
        }
        algorithm(&self.header.alg)?;
        let typ = self
            .header
            .typ
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase();
        if typ != "at+jwt" && typ != "application/at+jwt" {
            return Err(invalid("typ is not at+jwt: not an RFC 9068 access token"));
        }
        Ok(())
    }

    /// Whether `key` verifies the signature.
    pub fn verify(&self, key: &Jwk) -> bool {
        verify_with(&self.header.alg, key, &self.signing_input, &self.signature)
    }
}

#[derive(Clone, Copy)]
enum Alg {
    Rsa(&'static signature::RsaParameters),
    Ec(&'static signature::EcdsaVerificationAlgorithm, &'static str),
    EdDsa,
}

fn algorithm(alg: &str) -> Result<Alg, Refusal> {
    Ok(match alg {
        "RS256" => Alg::Rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => Alg::Rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => Alg::Rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => Alg::Rsa(&signature::RSA_PSS_2048_8192_SHA256),
        "PS384" => Alg::Rsa(&signature::RSA_PSS_2048_8192_SHA384),
        "PS512" => Alg::Rsa(&signature::RSA_PSS_2048_8192_SHA512),
        "ES256" => Alg::Ec(&signature::ECDSA_P256_SHA256_FIXED, "P-256"),
        "ES384" => Alg::Ec(&signature::ECDSA_P384_SHA384_FIXED, "P-384"),
        "EdDSA" | "Ed25519" => Alg::EdDsa,
        _ => return Err(invalid("signature algorithm not accepted")),
    })
}

fn verify_with(alg_name: &str, key: &Jwk, input: &[u8], sig: &[u8]) -> bool {
    let Ok(alg) = algorithm(alg_name) else {
        return false;
    };
    if key.key_use.as_deref().is_some_and(|u| u != "sig")
        || key.alg.as_deref().is_some_and(|a| a != alg_name)
    {
        return false;
    }
    let b64 = |v: &Option<String>| v.as_deref().and_then(|s| B64URL.decode(s).ok());
    match alg {
        Alg::Rsa(params) => {
            let (Some(n), Some(e)) = (b64(&key.n), b64(&key.e)) else {
                return false;
            };
            key.kty == "RSA"
                && RsaPublicKeyComponents { n, e }
                    .verify(params, input, sig)
                    .is_ok()
        }
        Alg::Ec(params, curve) => {
            let (Some(x), Some(y)) = (b64(&key.x), b64(&key.y)) else {
                return false;
            };
            if key.kty != "EC" || key.crv.as_deref() != Some(curve) || x.len() != y.len() {
                return false;
            }
            let mut point = Vec::with_capacity(1 + x.len() * 2);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            UnparsedPublicKey::new(params, point)
                .verify(input, sig)
                .is_ok()
        }
        Alg::EdDsa => {
            let Some(x) = b64(&key.x) else { return false };
            key.kty == "OKP"
                && key.crv.as_deref() == Some("Ed25519")
                && UnparsedPublicKey::new(&signature::ED25519, x)
                    .verify(input, sig)
                    .is_ok()
        }
    }
}

/// Whether the `aud` claim (a string or an array) contains `audience`.
pub fn audience_contains(claims: &serde_json::Map<String, Value>, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// The time checks: `exp` required and not past, `nbf` (when present) not
/// ahead, both with `skew` seconds of tolerance for clock drift.
pub fn check_times(
    claims: &serde_json::Map<String, Value>,
    now: i64,
    skew: i64,
) -> Result<i64, Refusal> {
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("no exp claim"))?;
    if now > exp.saturating_add(skew) {
        return Err(invalid("the token has expired"));
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf
            .as_i64()
            .ok_or_else(|| invalid("unreadable nbf claim"))?;
        if nbf > now.saturating_add(skew) {
            return Err(invalid("the token is not valid yet (nbf)"));
        }
    }
    Ok(exp)
}

/// The token's scopes: the space-separated `scope` claim (RFC 9068), or
/// an `scp` array as some servers send.
pub fn scopes(claims: &serde_json::Map<String, Value>) -> Vec<String> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        (_, Some(Value::Array(a))) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        (_, Some(Value::String(s))) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_none_and_hmac_and_other_types() {
        let jws = |header: &str| {
            let h = B64URL.encode(header);
            let p = B64URL.encode(r#"{"exp":1}"#);
            Jws::parse(&format!("{h}.{p}.")).unwrap()
        };
        assert!(
            jws(r#"{"alg":"none","typ":"at+jwt"}"#)
                .check_header()
                .is_err()
        );
        assert!(
            jws(r#"{"alg":"HS256","typ":"at+jwt"}"#)
                .check_header()
                .is_err()
        );
        assert!(
            jws(r#"{"alg":"RS256","typ":"JWT"}"#)
                .check_header()
                .is_err()
        );
        assert!(jws(r#"{"alg":"RS256"}"#).check_header().is_err());
        assert!(
            jws(r#"{"alg":"RS256","typ":"at+jwt","crit":["x"]}"#)
                .check_header()
                .is_err()
        );
        assert!(
            jws(r#"{"alg":"RS256","typ":"at+JWT"}"#)
                .check_header()
                .is_ok()
        );
        assert!(
            jws(r#"{"alg":"ES256","typ":"application/at+jwt"}"#)
                .check_header()
                .is_ok()
        );
    }

    #[test]
    fn times_with_skew() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert!(check_times(&claims(serde_json::json!({})), 100, 5).is_err());
        assert!(check_times(&claims(serde_json::json!({"exp": 100})), 105, 5).is_ok());
        assert!(check_times(&claims(serde_json::json!({"exp": 100})), 106, 5).is_err());
        assert!(check_times(&claims(serde_json::json!({"exp": 200, "nbf": 110})), 105, 5).is_ok());
        assert!(check_times(&claims(serde_json::json!({"exp": 200, "nbf": 111})), 105, 5).is_err());
    }

    #[test]
    fn audience_string_or_array() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert!(audience_contains(
            &claims(serde_json::json!({"aud": "r"})),
            "r"
        ));
        assert!(audience_contains(
            &claims(serde_json::json!({"aud": ["x", "r"]})),
            "r"
        ));
        assert!(!audience_contains(
            &claims(serde_json::json!({"aud": ["x"]})),
            "r"
        ));
        assert!(!audience_contains(&claims(serde_json::json!({})), "r"));
    }

    #[test]
    fn jwt_shape() {
        assert!(!looks_like_jwt("opaque-token"));
        assert!(!looks_like_jwt("a.b.c"));
        assert!(looks_like_jwt(&format!("{}.e30.", B64URL.encode("{}"))));
    }
}
