//! X509-SVID client authentication: which certificates the hub accepts,
//! and the precise reason it gives for each one it refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ewii_quic::verifier::{
    InMemoryTrust, SvidVerifier, TrustBundle, TrustSource, reason_of, svid_error,
};
use ewii_test_pki::{Leaf, TestCa, set_validity};
use ewii_wire::svid::{SpiffeId, SvidError, check_leaf};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

const TRUST_DOMAIN: &str = "spiffe://example.org";
const ID: &str = "spiffe://example.org/ws/acme/client";
const HOUR: Duration = Duration::from_secs(3600);

/// A verifier trusting `ca` for the whole `example.org` trust domain, and
/// the trust source behind it (to revoke serials).
fn verifier_for(ca: &TestCa) -> (Arc<InMemoryTrust>, SvidVerifier) {
    let trust = Arc::new(InMemoryTrust::new().with_bundle(TRUST_DOMAIN, bundle(ca)));
    let verifier = SvidVerifier::new(Arc::clone(&trust) as Arc<dyn TrustSource>);
    (trust, verifier)
}

/// A trust bundle holding `ca` only.
fn bundle(ca: &TestCa) -> TrustBundle {
    TrustBundle::from_der(ca.certificates()).unwrap()
}

fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn leaf_cert(leaf: &Leaf) -> &CertificateDer<'static> {
    &leaf.chain[0]
}

/// Verifies `leaf`, expects a refusal, checks that exactly the counter of
/// its reason went up by one, and returns the reason.
fn refusal(verifier: &SvidVerifier, leaf: &Leaf) -> &'static str {
    refusal_of(verifier, leaf_cert(leaf), &[])
}

fn refusal_of(
    verifier: &SvidVerifier,
    cert: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> &'static str {
    let before = verifier.refusals();
    let err = verifier
        .verify(cert, intermediates, UnixTime::now())
        .expect_err("the certificate should be refused");
    let reason = err.reason();
    let after = verifier.refusals();

    let count = |map: &std::collections::BTreeMap<&str, u64>| map.get(reason).copied();
    assert_eq!(
        count(&after),
        Some(count(&before).unwrap_or(0) + 1),
        "{reason}: counter did not go up by one"
    );
    let total = |map: &std::collections::BTreeMap<&str, u64>| map.values().sum::<u64>();
    assert_eq!(
        total(&after),
        total(&before) + 1,
        "{reason}: other counters moved"
    );
    // The message is one readable sentence, not a debug dump.
    let message = err.to_string();
    assert!(!message.is_empty() && !message.contains('\n'), "{message}");
    reason
}

/// The refusal cases: a name, the verifier to use, the certificate, and the
/// expected reason.
struct Case {
    name: &'static str,
    verifier: SvidVerifier,
    leaf: Leaf,
    reason: &'static str,
}

/// The six refusals the X509-SVID rules require us to tell apart.
fn required_cases() -> Vec<Case> {
    let ca = TestCa::new("Ewii test CA A");
    let other_ca = TestCa::new("Ewii test CA B");
    let v = || verifier_for(&ca).1;
    vec![
        Case {
            name: "wrong trust bundle",
            verifier: v(),
            leaf: other_ca.svid(ID),
            reason: "untrusted_issuer",
        },
        Case {
            name: "expired",
            verifier: v(),
            leaf: ca.svid_with(ID, |p| {
                let now = SystemTime::now();
                set_validity(p, now - 48 * HOUR, now - HOUR);
            }),
            reason: "expired",
        },
        Case {
            name: "two URI SANs",
            verifier: v(),
            leaf: ca.svid_with(ID, |p| {
                p.subject_alt_names.push(SanType::URI(
                    "spiffe://example.org/ws/acme/other".try_into().unwrap(),
                ));
            }),
            reason: "uri_san_count",
        },
        Case {
            name: "CA certificate as leaf",
            verifier: v(),
            leaf: ca.svid_with(ID, |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            }),
            reason: "ca_as_leaf",
        },
        Case {
            name: "keyUsage without digitalSignature",
            verifier: v(),
            leaf: ca.svid_with(ID, |p| {
                p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
            }),
            reason: "missing_digital_signature",
        },
        Case {
            name: "https URI instead of spiffe",
            verifier: v(),
            leaf: ca.svid("https://example.org/ws/acme/client"),
            reason: "not_spiffe",
        },
    ]
}

/// Further refusals, each with its own reason.
fn more_cases() -> Vec<Case> {
    let ca = TestCa::new("Ewii test CA");
    let v = || verifier_for(&ca).1;
    let now = SystemTime::now();
    let mut cases = vec![
        Case {
            name: "root SPIFFE ID (no path)",
            verifier: v(),
            leaf: ca.svid(TRUST_DOMAIN),
            reason: "root_path",
        },
        Case {
            name: "EKU serverAuth only",
            verifier: v(),
            leaf: ca.svid_with(ID, |p| {
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }),
            reason: "eku_without_client_auth",
        },
        Case {
            name: "keyCertSign on a leaf",
            verifier: v(),
            leaf: ca.svid_with(ID, |p| {
                p.key_usages.push(KeyUsagePurpose::KeyCertSign);
            }),
            reason: "forbidden_key_usage",
        },
        Case {
            name: "cRLSign on a leaf",
            verifier: v(),
            leaf: ca.svid_with(ID, |p| {
                p.key_usages.push(KeyUsagePurpose::CrlSign);
            }),
            reason: "forbidden_key_usage",
        },
        Case {
            name: "unknown trust domain",
            verifier: v(),
            leaf: ca.svid("spiffe://other.org/ws/acme/client"),
            reason: "unknown_trust_domain",
        },
        Case {
            name: "no keyUsage",
            verifier: v(),
            leaf: ca.svid_with(ID, |p| p.key_usages.clear()),
            reason: "missing_key_usage",
        },
        Case {
            name: "keyUsage not critical",
            verifier: v(),
            leaf: ca.svid_with(ID, |p| {
                p.key_usages.clear();
                // keyUsage (2.5.29.15) = BIT STRING digitalSignature, which
                // `from_oid_content` leaves non-critical.
                let ku = CustomExtension::from_oid_content(&[2, 5, 29, 15], vec![3, 2, 7, 0x80]);
                assert!(!ku.criticality());
                p.custom_extensions.push(ku);
            }),
            reason: "key_usage_not_critical",
        },
        Case {
            name: "not valid yet",
            verifier: v(),
            leaf: ca.svid_with(ID, |p| set_validity(p, now + HOUR, now + 48 * HOUR)),
            reason: "not_yet_valid",
        },
        Case {
            name: "uppercase trust domain",
            verifier: v(),
            leaf: ca.svid("spiffe://Example.org/ws/acme/client"),
            reason: "invalid_spiffe_id",
        },
        Case {
            name: "no SAN at all",
            verifier: v(),
            leaf: ca.svid_with(ID, |p| p.subject_alt_names.clear()),
            reason: "uri_san_count",
        },
    ];
    // Revocation needs the trust source itself.
    let (trust, verifier) = verifier_for(&ca);
    let leaf = ca.svid(ID);
    trust.revoke(&leaf.serial);
    cases.push(Case {
        name: "revoked serial",
        verifier,
        leaf,
        reason: "revoked",
    });
    cases
}

#[test]
fn valid_svid_verifies() {
    let ca = TestCa::new("Ewii test CA");
    let (_, verifier) = verifier_for(&ca);
    let leaf = ca.svid(ID);

    let verified = verifier
        .verify(leaf_cert(&leaf), &[], UnixTime::now())
        .unwrap();
    assert_eq!(verified.id, SpiffeId::parse(ID).unwrap());
    assert_eq!(verified.id.to_string(), ID);
    assert_eq!(verified.id.trust_domain(), "example.org");
    assert_eq!(verified.id.path(), "/ws/acme/client");
    assert_eq!(verified.serial, leaf.serial);
    assert_eq!(verified.serial.len(), 32, "16 random bytes in hex");
    let in_a_day = UnixTime::now().as_secs() as i64 + 24 * 3600;
    assert!((verified.not_after - in_a_day).abs() < 120, "{verified:?}");
    assert!(verifier.refusals().is_empty());

    // check_leaf agrees with the verifier.
    let leaf_info = check_leaf(leaf_cert(&leaf)).unwrap();
    assert_eq!(leaf_info.id, verified.id);
    assert_eq!(leaf_info.serial, verified.serial);
    assert_eq!(leaf_info.not_after, verified.not_after);
}

#[test]
fn required_refusals_have_distinct_reasons() {
    let mut reasons = BTreeSet::new();
    for case in required_cases() {
        let reason = refusal(&case.verifier, &case.leaf);
        assert_eq!(reason, case.reason, "{}", case.name);
        reasons.insert(reason);
    }
    assert_eq!(reasons.len(), 6, "{reasons:?}");
}

#[test]
fn more_refusals_have_their_own_reason() {
    for case in more_cases() {
        assert_eq!(
            refusal(&case.verifier, &case.leaf),
            case.reason,
            "{}",
            case.name
        );
    }
}

#[test]
fn refusals_accumulate_per_reason() {
    let ca = TestCa::new("Ewii test CA");
    let other_ca = TestCa::new("Other CA");
    let (_, verifier) = verifier_for(&ca);
    let foreign = other_ca.svid(ID);
    let root = ca.svid(TRUST_DOMAIN);
    for _ in 0..3 {
        refusal(&verifier, &foreign);
    }
    refusal(&verifier, &root);
    verifier
        .verify(leaf_cert(&ca.svid(ID)), &[], UnixTime::now())
        .unwrap();
    let refusals = verifier.refusals();
    assert_eq!(refusals.get("untrusted_issuer"), Some(&3));
    assert_eq!(refusals.get("root_path"), Some(&1));
    assert_eq!(refusals.len(), 2, "{refusals:?}");
}

#[test]
fn the_ca_certificate_itself_is_refused_as_leaf() {
    let ca = TestCa::new("Ewii test CA");
    let (_, verifier) = verifier_for(&ca);
    assert_eq!(refusal_of(&verifier, &ca.cert, &[]), "ca_as_leaf");
}

#[test]
fn refusals_through_rustls_carry_the_reason() {
    install_crypto_provider();
    for case in required_cases().into_iter().chain(more_cases()) {
        let before = case.verifier.refusals();
        let err = case
            .verifier
            .verify_client_cert(leaf_cert(&case.leaf), &[], UnixTime::now())
            .map(|_| ())
            .expect_err(case.name);
        assert_eq!(reason_of(&err), Some(case.reason), "{}", case.name);
        if case.reason == "revoked" {
            // Its own rustls error, so the client gets `certificate_revoked`.
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
                ),
                "{}: {err:?}",
                case.name
            );
        } else {
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(_))
                ),
                "{}: {err:?}",
                case.name
            );
            let svid_err: &SvidError = svid_error(&err).unwrap();
            assert_eq!(svid_err.reason(), case.reason);
        }
        let after = case.verifier.refusals();
        assert_eq!(
            after.get(case.reason).copied(),
            Some(before.get(case.reason).copied().unwrap_or(0) + 1),
            "{}",
            case.name
        );
    }
}

#[test]
fn reason_of_ignores_other_errors() {
    assert_eq!(
        reason_of(&rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired
        )),
        None
    );
    assert_eq!(reason_of(&rustls::Error::General("x".into())), None);
}

#[test]
fn rustls_interface_accepts_a_valid_svid() {
    install_crypto_provider();
    let ca = TestCa::new("Ewii test CA");
    let (_, verifier) = verifier_for(&ca);
    assert!(verifier.offer_client_auth());
    assert!(verifier.client_auth_mandatory());
    assert!(verifier.root_hint_subjects().is_empty());
    assert!(!verifier.supported_verify_schemes().is_empty());
    let leaf = ca.svid(ID);
    verifier
        .verify_client_cert(leaf_cert(&leaf), &[], UnixTime::now())
        .unwrap();
}

#[test]
fn svid_from_an_intermediate_verifies_with_the_intermediate() {
    let root = TestCa::new("Ewii test root CA");
    let intermediate = root.intermediate("Ewii test intermediate CA");
    let (_, verifier) = verifier_for(&root);
    let leaf = intermediate.svid(ID);

    let verified = verifier
        .verify(
            leaf_cert(&leaf),
            std::slice::from_ref(&intermediate.cert),
            UnixTime::now(),
        )
        .unwrap();
    assert_eq!(verified.id.to_string(), ID);
    assert_eq!(verified.serial, leaf.serial);

    // Without the intermediate the chain does not reach the bundle.
    assert_eq!(refusal(&verifier, &leaf), "untrusted_issuer");
}

#[test]
fn svid_issued_outside_ewii_is_accepted() {
    // The shape of a third-party (e.g. SPIRE) SVID: P-256, no subject, the
    // URI SAN only (critical, since the subject is empty), keyUsage
    // digitalSignature critical, no basicConstraints, no EKU.
    let ca = TestCa::new("SPIRE-like CA");
    let (_, verifier) = verifier_for(&ca);
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(ID.try_into().unwrap())];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages.clear();
    params.is_ca = IsCa::NoCa;
    let now = SystemTime::now();
    set_validity(&mut params, now - HOUR, now + HOUR);
    let leaf = ca.issue(params);

    let verified = verifier
        .verify(leaf_cert(&leaf), &[], UnixTime::now())
        .unwrap();
    assert_eq!(verified.id.to_string(), ID);
}

#[test]
fn other_san_types_next_to_the_uri_are_fine() {
    let ca = TestCa::new("Ewii test CA");
    let (_, verifier) = verifier_for(&ca);
    let leaf = ca.svid_with(ID, |p| {
        p.subject_alt_names
            .push(SanType::DnsName("client.example.org".try_into().unwrap()));
    });
    verifier
        .verify(leaf_cert(&leaf), &[], UnixTime::now())
        .unwrap();
}

#[test]
fn longest_prefix_picks_the_workspace_bundle() {
    let domain_ca = TestCa::new("example.org CA");
    let acme_ca = TestCa::new("acme workspace CA");
    let trust = InMemoryTrust::new()
        .with_bundle(TRUST_DOMAIN, bundle(&domain_ca))
        .with_bundle("spiffe://example.org/ws/acme", bundle(&acme_ca));
    let verifier = SvidVerifier::new(Arc::new(trust));
    let ok = |leaf: &Leaf| {
        verifier
            .verify(leaf_cert(leaf), &[], UnixTime::now())
            .map(|v| v.id.to_string())
    };

    assert_eq!(ok(&acme_ca.svid(ID)).unwrap(), ID);
    let elsewhere = "spiffe://example.org/ws/globex/client";
    assert_eq!(ok(&domain_ca.svid(elsewhere)).unwrap(), elsewhere);
    // acme's IDs are acme CA's alone; the domain CA cannot issue them.
    assert_eq!(refusal(&verifier, &domain_ca.svid(ID)), "untrusted_issuer");
    // Prefixes match on segment boundaries: /ws/acme2 is not under /ws/acme.
    assert_eq!(
        refusal(
            &verifier,
            &acme_ca.svid("spiffe://example.org/ws/acme2/client")
        ),
        "untrusted_issuer"
    );
    assert_eq!(
        ok(&domain_ca.svid("spiffe://example.org/ws/acme2/client")).unwrap(),
        "spiffe://example.org/ws/acme2/client"
    );
}

#[test]
fn invalid_prefix_is_reported_by_try_with_bundle() {
    let ca = TestCa::new("Ewii test CA");
    let err = InMemoryTrust::new()
        .try_with_bundle("https://example.org", bundle(&ca))
        .unwrap_err();
    assert_eq!(err.reason(), "not_spiffe");
    // A trailing slash on a prefix is tolerated.
    let trust = InMemoryTrust::new()
        .try_with_bundle("spiffe://example.org/ws/", bundle(&ca))
        .unwrap();
    assert!(trust.bundle_for(&SpiffeId::parse(ID).unwrap()).is_some());
}

#[test]
fn revocation_is_by_serial() {
    let ca = TestCa::new("Ewii test CA");
    let (trust, verifier) = verifier_for(&ca);
    let revoked = ca.svid(ID);
    let renewed = ca.svid(ID);
    assert_ne!(revoked.serial, renewed.serial);
    trust.revoke(&revoked.serial.to_uppercase());

    let err = verifier
        .verify(leaf_cert(&revoked), &[], UnixTime::now())
        .unwrap_err();
    assert_eq!(
        err,
        SvidError::Revoked {
            id: SpiffeId::parse(ID).unwrap(),
            serial: revoked.serial.clone(),
        }
    );
    verifier
        .verify(leaf_cert(&renewed), &[], UnixTime::now())
        .unwrap();
}

#[test]
fn trust_bundles_from_pem() {
    let a = TestCa::new("CA A");
    let b = TestCa::new("CA B");
    let pem = format!("{}\n{}", a.cert_pem, b.cert_pem);
    let bundle = TrustBundle::from_pem(&pem).unwrap();
    assert_eq!(bundle.certificates(), &[a.cert.clone(), b.cert.clone()]);
    assert_eq!(bundle.anchors().len(), 2);

    // Either CA of the bundle may issue.
    let verifier = SvidVerifier::new(Arc::new(
        InMemoryTrust::new().with_bundle(TRUST_DOMAIN, bundle),
    ));
    for ca in [&a, &b] {
        verifier
            .verify(leaf_cert(&ca.svid(ID)), &[], UnixTime::now())
            .unwrap();
    }

    assert_eq!(
        TrustBundle::from_pem("").unwrap_err().reason(),
        "empty_bundle"
    );
    assert_eq!(
        TrustBundle::from_der(vec![]).unwrap_err().reason(),
        "empty_bundle"
    );
    assert_eq!(
        TrustBundle::from_der(vec![CertificateDer::from(vec![1, 2, 3])])
            .unwrap_err()
            .reason(),
        "malformed"
    );
    let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    assert_eq!(
        TrustBundle::from_pem(broken).unwrap_err().reason(),
        "malformed"
    );
}

#[test]
fn leaf_pem_files_round_trip() {
    let ca = TestCa::new("Ewii test CA");
    let leaf = ca.svid(ID);
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = leaf.write_pem(dir.path(), "client");
    let cert_pem = std::fs::read_to_string(&cert_path).unwrap();
    let bundle = TrustBundle::from_pem(&cert_pem).unwrap();
    assert_eq!(bundle.certificates(), leaf.chain.as_slice());
    assert!(
        std::fs::read_to_string(&key_path)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "key file must not be group/world readable");
    }
    let _ = leaf.key();
}

/// Drives an in-memory TLS 1.3 handshake between a client presenting
/// `client` and a hub verifying with `verifier`; returns the hub's error, if
/// any.
fn handshake(ca: &TestCa, verifier: Arc<SvidVerifier>, client: &Leaf) -> Result<(), rustls::Error> {
    install_crypto_provider();
    let server_leaf = ca.server("hub.example.org");
    let server_config =
        rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_client_cert_verifier(verifier)
            .with_single_cert(server_leaf.chain.clone(), server_leaf.key())
            .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone()).unwrap();
    let client_config =
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_root_certificates(roots)
            .with_client_auth_cert(client.chain.clone(), client.key())
            .unwrap();

    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    let mut client = rustls::ClientConnection::new(
        Arc::new(client_config),
        "hub.example.org".try_into().unwrap(),
    )
    .unwrap();

    for _ in 0..10 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        if !server.is_handshaking() && !client.is_handshaking() {
            // The hub reads the client's SPIFFE ID back from the certificate.
            let peer = server.peer_certificates().unwrap();
            assert_eq!(check_leaf(&peer[0]).unwrap().id.to_string(), ID);
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn tls13_handshake_with_svid_client_auth() {
    let ca = TestCa::new("Ewii test CA");
    let (_, verifier) = verifier_for(&ca);
    let verifier = Arc::new(verifier);

    handshake(&ca, Arc::clone(&verifier), &ca.svid(ID)).unwrap();
    assert!(verifier.refusals().is_empty());

    let err = handshake(&ca, Arc::clone(&verifier), &ca.svid(TRUST_DOMAIN)).unwrap_err();
    assert_eq!(reason_of(&err), Some("root_path"), "{err:?}");
    assert_eq!(verifier.refusals().get("root_path"), Some(&1));
}
