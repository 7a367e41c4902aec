//! Revocation webhooks: signing, verification and delivery.
//!
//! Each delivery is an HTTP `POST` of a JSON body with three headers:
//!
//! | header | value |
//! |---|---|
//! | [`SIGNATURE_HEADER`] `Ewii-Signature` | `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` |
//! | [`EVENT_HEADER`] `Ewii-Event` | the event, e.g. `deployment.revoked` |
//! | [`DELIVERY_HEADER`] `Ewii-Delivery` | the delivery id, the same on every retry |
//!
//! A `2xx` answer means delivered; anything else is retried with
//! [`backoff`]. Delivery is at-least-once, so a receiver must:
//!
//! 1. verify the signature over the raw body bytes, before parsing them,
//!    with [`verify`] (or the same steps in its own language: recompute the
//!    HMAC over `"<t>.<body>"` and compare in constant time);
//! 2. refuse timestamps outside its tolerance (5 minutes is usual), so a
//!    captured request cannot be replayed later;
//! 3. treat a repeated `Ewii-Delivery` id as already handled.
//!
//! The header may carry several `v1=` entries (e.g. while a secret is being
//! rotated); one matching entry is enough. Unknown schemes (`v2=` …) are
//! ignored so that new ones can be added without breaking receivers.
//!
//! Deliveries go out through [`crate::audit::egress`] (its HTTP client, URL
//! rule and CA handling), like the HTTPS audit exporter's.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use base64::Engine as _;
use ring::rand::SecureRandom as _;
use ring::{hmac, rand};

use crate::Store;
use crate::audit::egress::{self, EgressError};
use crate::state::store::unix;

/// The signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "Ewii-Signature";
/// The event header, e.g. `deployment.revoked`.
pub const EVENT_HEADER: &str = "Ewii-Event";
/// The delivery id header: the same id on every retry of one delivery, so
/// the receiver can drop duplicates.
pub const DELIVERY_HEADER: &str = "Ewii-Delivery";

/// Prefix of the secrets made by [`generate_secret`].
pub const SECRET_PREFIX: &str = "whsec_";

/// First retry delay of [`backoff`].
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay of [`backoff`], before jitter.
const BACKOFF_CAP: Duration = Duration::from_secs(600);

/// A webhook that could not be signed, verified or delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The signature header is not `t=<unix seconds>,v1=<hex>`.
    #[error(
        "malformed {SIGNATURE_HEADER} header: {0}; expected t=<unix seconds>,v1=<64 hex digits> \
         (pass the header value exactly as received)"
    )]
    MalformedSignature(&'static str),
    /// The signature's timestamp is too far from the receiver's clock.
    #[error(
        "webhook timestamp {timestamp} is {skew} s away from now ({now}), beyond the {tolerance} \
         s tolerance; if the clocks are right (check NTP on both sides) this is a replayed or \
         long-delayed request: refuse it"
    )]
    StaleTimestamp {
        /// The `t=` value.
        timestamp: i64,
        /// The receiver's clock, Unix seconds.
        now: i64,
        /// Seconds between the two.
        skew: u64,
        /// The receiver's tolerance, seconds.
        tolerance: i64,
    },
    /// No `v1=` signature matches the body under this secret.
    #[error(
        "webhook signature does not match; check the receiver uses this webhook's secret \
         (whsec_…) and verifies the raw body bytes before any parsing or re-encoding"
    )]
    SignatureMismatch,
    /// A delivery id or event name that cannot be sent as a header.
    #[error(
        "webhook {field} {value:?} cannot be sent as an HTTP header; use printable ASCII without \
         spaces"
    )]
    InvalidHeader {
        /// `id` or `event`.
        field: &'static str,
        /// The refused value.
        value: String,
    },
    /// The receiver answered, but not with 2xx.
    #[error(
        "the receiver answered HTTP {status}; the delivery is kept and retried until it answers \
         2xx (check the receiver's logs)"
    )]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The request did not get an answer (DNS, connect, TLS, timeout).
    #[error(
        "could not reach the receiver: {0}; check the URL, DNS, firewall and the receiver's TLS \
         certificate (an in-house CA needs its CA file configured); it will be retried"
    )]
    Send(#[source] reqwest::Error),
    /// The destination or its TLS setup was refused.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The system random generator failed.
    #[error(
        "the system random number generator failed; no secret was made (check /dev/urandom and \
         the getrandom system call are available)"
    )]
    Random,
}

impl WebhookError {
    /// The HTTP status of a non-2xx answer, for the delivery record.
    pub fn status(&self) -> Option<u16> {
        match self {
            WebhookError::Status { status } => Some(*status),
            _ => None,
        }
    }
}

/// The [`SIGNATURE_HEADER`] value for `body` sent at `timestamp` (Unix
/// seconds): `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
///
/// The timestamp is inside the MAC so that a captured request cannot be
/// replayed with a fresh `t=`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, &signed_payload(timestamp, body));
    format!(
        "t={timestamp},v1={}",
        crate::state::tokens::hex(tag.as_ref())
    )
}

/// Checks a [`SIGNATURE_HEADER`] value against the raw `body`, for
/// receivers.
///
/// `now` is the receiver's clock (Unix seconds); a timestamp more than
/// `tolerance_s` seconds away from it, in either direction, is refused
/// ([`WebhookError::StaleTimestamp`]). The MAC comparison is constant-time
/// (`ring::hmac::verify`). Any one of several `v1=` entries may match;
/// unknown schemes are ignored.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), WebhookError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (scheme, value) = part
            .trim()
            .split_once('=')
            .ok_or(WebhookError::MalformedSignature("an entry without '='"))?;
        match scheme {
            "t" => {
                if timestamp.is_some() {
                    return Err(WebhookError::MalformedSignature("more than one t="));
                }
                let t = value
                    .parse::<i64>()
                    .map_err(|_| WebhookError::MalformedSignature("t= is not an integer"))?;
                timestamp = Some(t);
            }
            "v1" => candidates.push(
                unhex(value).ok_or(WebhookError::MalformedSignature("v1= is not 64 hex digits"))?,
            ),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::MalformedSignature("no t="))?;
    if candidates.is_empty() {
        return Err(WebhookError::MalformedSignature("no v1="));
    }
    let skew = now.abs_diff(timestamp);
    if skew > tolerance_s.max(0).unsigned_abs() {
        return Err(WebhookError::StaleTimestamp {
            timestamp,
            now,
            skew,
            tolerance: tolerance_s,
        });
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let payload = signed_payload(timestamp, body);
    // Check every candidate so the time taken does not depend on which one
    // matched.
    let mut matched = false;
    for tag in &candidates {
        matched |= hmac::verify(&key, &payload, tag).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(WebhookError::SignatureMismatch)
    }
}

/// A new webhook secret: `whsec_` followed by 32 random bytes, base64url
/// without padding. Show it to the operator once; store it sealed.
pub fn generate_secret() -> Result<String, WebhookError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::SystemRandom::new()
        .fill(&mut bytes[..])
        .map_err(|_| WebhookError::Random)?;
    Ok(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..])
    ))
}

/// The wait before retrying a delivery whose `attempt`-th try (1-based)
/// failed: 1 s, 2 s, 4 s … capped at 10 min, each ±20 % at random so that
/// many deliveries failing together do not retry together.
pub fn backoff(attempt: u32) -> Duration {
    egress::backoff(attempt, BACKOFF_BASE, BACKOFF_CAP)
}

/// One webhook delivery.
#[derive(Clone, Copy)]
pub struct Delivery<'a> {
    /// The delivery id ([`DELIVERY_HEADER`]), the same on every retry.
    pub id: &'a str,
    /// The event ([`EVENT_HEADER`]), e.g. `deployment.revoked`.
    pub event: &'a str,
    /// Where to `POST`: `https://…` (or `http://` to a loopback address).
    pub url: &'a str,
    /// The webhook's secret.
    pub secret: &'a [u8],
    /// The JSON body, sent and signed as these exact bytes.
    pub body: &'a [u8],
}

impl fmt::Debug for Delivery<'_> {
    // The secret and the URL (whose path is often a credential itself) are
    // left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("event", &self.event)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Sends one delivery, signed at `now` (Unix seconds). `Ok(status)` for a
/// 2xx answer; [`WebhookError::Status`] for any other answer (retry it);
/// [`WebhookError::Send`] when there was no answer (retry it).
pub async fn deliver(
    client: &reqwest::Client,
    d: &Delivery<'_>,
    now: i64,
) -> Result<u16, WebhookError> {
    egress::check_url(d.url)?;
    check_header("id", d.id)?;
    check_header("event", d.event)?;
    let response = client
        .post(d.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sign(d.secret, now, d.body))
        .header(EVENT_HEADER, d.event)
        .header(DELIVERY_HEADER, d.id)
        .body(d.body.to_vec())
        .send()
        .await
        // The URL may carry a credential in its path or query.
        .map_err(|e| WebhookError::Send(e.without_url()))?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        Ok(status)
    } else {
        Err(WebhookError::Status { status })
    }
}

/// Delivers queued webhook events until `cancel`: each due delivery is
/// leased, POSTed, and recorded as delivered or rescheduled with backoff.
pub async fn deliver_queued(store: Store, client: reqwest::Client, cancel: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = cancel.cancelled() => return,
        }
        let due = match store.due_deliveries(SystemTime::now(), 60, 20).await {
            Ok(d) => {
                failing = false;
                d
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read webhook deliveries");
                    failing = true;
                }
                continue;
            }
        };
        for d in due {
            let now = SystemTime::now();
            let delivery = Delivery {
                id: &d.id,
                event: &d.event,
                url: &d.url,
                secret: &d.secret,
                body: d.body.as_bytes(),
            };
            let result = deliver(&client, &delivery, unix(now)).await;
            let recorded = match result {
                Ok(status) => {
                    tracing::info!(delivery = %d.id, url = %d.url, status, "webhook delivered");
                    store.delivery_succeeded(&d.id, status, now).await
                }
                Err(e) => {
                    let attempt = u32::try_from(d.attempts + 1).unwrap_or(u32::MAX);
                    let wait = backoff(attempt);
                    let next = unix(now)
                        .saturating_add(i64::try_from(wait.as_secs().max(1)).unwrap_or(i64::MAX));
                    tracing::warn!(delivery = %d.id, url = %d.url, error = %e, retry_in_s = wait.as_secs(), "webhook delivery failed");
                    store
                        .delivery_failed(&d.id, e.status(), &e.to_string(), next)
                        .await
                }
            };
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "cannot record a webhook delivery");
            }
        }
    }
}

fn check_header(field: &'static str, value: &str) -> Result<(), WebhookError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WebhookError::InvalidHeader {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let t = timestamp.to_string();
    let mut payload = Vec::with_capacity(t.len() + 1 + body.len());
    payload.extend_from_slice(t.as_bytes());
    payload.push(b'.');
    payload.extend_from_slice(body);
    payload
}

/// A SHA-256-sized MAC from hex (either case).
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16);
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let hi = digit(pair[0])?;
            let lo = digit(pair[1])?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::audit::egress::test_support::{TlsListener, install_provider, test_pki};

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn sign_verify_round_trip() {
        let secret = generate_secret().unwrap();
        let body = br#"{"event":"deployment.revoked","deployment":"eu-shop"}"#;
        let header = sign(secret.as_bytes(), 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        verify(secret.as_bytes(), &header, body, 1_700_000_100, 300).unwrap();
        // Upper-case hex and an extra unknown scheme are accepted.
        let (t, v1) = header.split_once(",v1=").unwrap();
        let other = format!("{t},v2=abc,v1={}", v1.to_uppercase());
        verify(secret.as_bytes(), &other, body, 1_700_000_000, 300).unwrap();
        // One matching v1 among several (secret rotation).
        let old = sign(b"old secret", 1_700_000_000, body);
        let both = format!("{header},{}", old.split_once(',').unwrap().1);
        verify(secret.as_bytes(), &both, body, 1_700_000_000, 300).unwrap();
    }

    #[test]
    fn verify_refuses_tampering_wrong_secret_and_stale_timestamps() {
        let secret = b"whsec_test";
        let body = br#"{"deployment":"eu-shop"}"#.to_vec();
        let header = sign(secret, 1_000, &body);

        let mut changed = body.clone();
        changed[3] ^= 1;
        assert!(matches!(
            verify(secret, &header, &changed, 1_000, 300),
            Err(WebhookError::SignatureMismatch)
        ));
        assert!(matches!(
            verify(b"whsec_other", &header, &body, 1_000, 300),
            Err(WebhookError::SignatureMismatch)
        ));
        assert!(matches!(
            verify(secret, &header, &body, 1_301, 300),
            Err(WebhookError::StaleTimestamp { skew: 301, .. })
        ));
        // From the future too.
        assert!(matches!(
            verify(secret, &header, &body, 600, 300),
            Err(WebhookError::StaleTimestamp { .. })
        ));
        // A replayed signature with a fresh t= does not match.
        let replayed = header.replace("t=1000", "t=1200");
        assert!(matches!(
            verify(secret, &replayed, &body, 1_200, 300),
            Err(WebhookError::SignatureMismatch)
        ));
        for bad in [
            "",
            "t=1000",
            "v1=00",
            "t=x,v1=00",
            "t=1,t=1,v1=00",
            "garbage",
        ] {
            assert!(
                matches!(
                    verify(secret, bad, &body, 1_000, 300),
                    Err(WebhookError::MalformedSignature(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn secrets_are_random_and_url_safe() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(a.strip_prefix(SECRET_PREFIX).unwrap())
            .unwrap();
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for (attempt, base) in [(0u32, 1.0f64), (1, 1.0), (2, 2.0), (3, 4.0), (10, 512.0)] {
            let d = backoff(attempt).as_secs_f64();
            assert!(d >= base * 0.8 && d <= base * 1.2, "{attempt}: {d}");
        }
        for attempt in [11, 40, u32::MAX] {
            let d = backoff(attempt).as_secs_f64();
            assert!((480.0..=720.0).contains(&d), "{attempt}: {d}");
        }
    }

    #[test]
    fn delivery_debug_hides_the_secret() {
        let d = Delivery {
            id: "d1",
            event: "deployment.revoked",
            url: "https://hooks.example.com/T000/secret-path",
            secret: b"whsec_supersecret",
            body: b"{}",
        };
        let shown = format!("{d:?}");
        assert!(!shown.contains("supersecret") && !shown.contains("secret-path"));
    }

    #[derive(Default)]
    struct Receiver {
        requests: AtomicUsize,
        verified: Mutex<Vec<(String, String)>>,
    }

    const SECRET: &[u8] = b"whsec_receiver_test";

    async fn receive(
        State(rx): State<Arc<Receiver>>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        if header("content-type") != "application/json"
            || verify(SECRET, &header(SIGNATURE_HEADER), &body, now(), 300).is_err()
        {
            return StatusCode::UNAUTHORIZED;
        }
        rx.verified
            .lock()
            .unwrap()
            .push((header(DELIVERY_HEADER), header(EVENT_HEADER)));
        if rx.requests.fetch_add(1, Ordering::SeqCst) < 2 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }

    #[tokio::test]
    async fn deliver_retries_until_the_receiver_accepts() {
        install_provider();
        let rx = Arc::new(Receiver::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(rx.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let client = egress::http_client(Duration::from_secs(5), None).unwrap();
        let body = br#"{"event":"deployment.revoked","workspace":"acme","deployment":"eu-shop"}"#;
        let d = Delivery {
            id: "dlv_01",
            event: "deployment.revoked",
            url: &url,
            secret: SECRET,
            body,
        };
        let mut attempt = 0;
        let status = loop {
            attempt += 1;
            match deliver(&client, &d, now()).await {
                Ok(status) => break status,
                Err(e) => {
                    assert_eq!(e.status(), Some(503), "{e}");
                    assert!(attempt < 5, "gave up after {attempt} attempts");
                    // The real schedule, scaled down 100 times.
                    tokio::time::sleep(backoff(attempt) / 100).await;
                }
            }
        };
        assert_eq!((status, attempt), (200, 3));
        let verified = rx.verified.lock().unwrap().clone();
        assert_eq!(
            verified,
            vec![("dlv_01".to_string(), "deployment.revoked".to_string()); 3]
        );

        // A wrong secret is refused by the receiver's verify.
        let forged = Delivery {
            secret: b"whsec_wrong",
            ..d
        };
        let err = deliver(&client, &forged, now()).await.unwrap_err();
        assert_eq!(err.status(), Some(401));
        server.abort();
    }

    #[tokio::test]
    async fn http_client_trusts_only_the_given_extra_ca() {
        install_provider();
        let pki = test_pki();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();

        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}/hook",
            tcp.local_addr().unwrap().port()
        );
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(pki.server.clone()),
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let d = Delivery {
            id: "dlv_tls",
            event: "deployment.revoked",
            url: &url,
            secret: SECRET,
            body: b"{}",
        };
        let untrusting = egress::http_client(Duration::from_secs(5), None).unwrap();
        let err = deliver(&untrusting, &d, now()).await.unwrap_err();
        assert!(matches!(err, WebhookError::Send(_)), "{err}");
        assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");

        let trusting = egress::http_client(Duration::from_secs(5), Some(&ca)).unwrap();
        assert_eq!(deliver(&trusting, &d, now()).await.unwrap(), 200);

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            egress::http_client(Duration::from_secs(5), Some(&empty)),
            Err(egress::EgressError::CaFile { .. })
        ));
        server.abort();
    }
}
