//! Exporter tests: `--audit-export SPEC` parsing.

use super::*;

#[test]
fn parse_specs_and_names() {
    let c = parse_spec("jsonl:/var/log/ewii/audit.jsonl", None).unwrap();
    assert_eq!(
        c,
        SinkConfig::Jsonl {
            path: "/var/log/ewii/audit.jsonl".into(),
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP
        }
    );
    assert_eq!(c.name(), "jsonl:/var/log/ewii/audit.jsonl");
    assert_eq!(
        parse_spec("jsonl:/a.jsonl?max_bytes=1000&keep=0", None).unwrap(),
        SinkConfig::Jsonl {
            path: "/a.jsonl".into(),
            max_bytes: 1000,
            keep: 0
        }
    );

    let c = parse_spec("syslog+tcp://siem.example.com?hostname=hub-1", None).unwrap();
    assert_eq!(c.name(), "syslog:siem.example.com:514");
    assert!(
        matches!(&c, SinkConfig::Syslog { tls: None, hostname, app_name, .. }
        if hostname == "hub-1" && app_name == "ewii-hub")
    );
    let c = parse_spec("syslog+tls://[::1]?ca=/etc/ewii/siem-ca.pem", None).unwrap();
    assert_eq!(c.name(), "syslog:[::1]:6514");
    assert!(matches!(&c, SinkConfig::Syslog { tls: Some(t), .. }
        if t.server_name == "::1" && t.ca_file.as_deref() == Some(Path::new("/etc/ewii/siem-ca.pem"))));
    let c = parse_spec(
        "syslog+tls://10.0.0.5:1514?server_name=siem.corp&app_name=ewii",
        None,
    )
    .unwrap();
    assert!(
        matches!(&c, SinkConfig::Syslog { addr, tls: Some(t), app_name, .. }
        if addr == "10.0.0.5:1514" && t.server_name == "siem.corp" && app_name == "ewii")
    );

    let token = BearerToken::new("s3cr3t-token".into());
    let c = parse_spec(
        "https://siem.example.com/ingest?ca=/ca.pem&timeout=5&index=ewii",
        Some(token.clone()),
    )
    .unwrap();
    assert_eq!(
        c,
        SinkConfig::Https {
            url: "https://siem.example.com/ingest?index=ewii".into(),
            bearer: Some(token),
            ca_file: Some("/ca.pem".into()),
            timeout: Duration::from_secs(5),
        }
    );
    assert_eq!(c.name(), "https:https://siem.example.com/ingest");
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("index=ewii"),
        "{shown}"
    );
    parse_spec("http://127.0.0.1:8080/ingest", None).unwrap();

    for bad in [
        "audit.jsonl",
        "jsonl:audit.jsonl",
        "jsonl:/a.jsonl?max_bytes=lots",
        "jsonl:/a.jsonl?max_bytes=0",
        "jsonl:/a.jsonl?colour=red",
        "syslog+tcp://",
        "syslog+tcp://host:0",
        "syslog+udp://host",
        "syslog+tls://host?cert=/x",
        "http://siem.example.com/ingest",
        "https://admin:hunter2@siem.example.com/",
    ] {
        let err = parse_spec(bad, None).unwrap_err();
        assert!(matches!(err, ExportError::Spec(_)), "{bad}: {err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
