//! Exporter tests: the syslog sink over TCP and TLS, reconnection, an outage.

use super::*;

#[tokio::test]
async fn syslog_over_tcp_sends_octet_counted_rfc5424() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let receiver = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        read_frames(&mut conn, &mut Vec::new(), 2).await
    });
    let config = SinkConfig::Syslog {
        addr,
        tls: None,
        app_name: DEFAULT_APP_NAME.into(),
        hostname: "hub-1".into(),
    };
    let batch = [record(1, "allow"), record(2, "deny")];
    let mut sink = Sink::open(&config).await.unwrap();
    sink.send(&batch).await.unwrap();
    let frames = receiver.await.unwrap();
    check_syslog(&frames[0], &batch[0], "hub-1");
    check_syslog(&frames[1], &batch[1], "hub-1");
}

#[tokio::test]
async fn syslog_over_tls_checks_the_receiver_certificate() {
    install_provider();
    let pki = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    let receiver = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            // The first client does not trust the CA and gives up.
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                return read_frames(&mut tls, &mut Vec::new(), 2).await;
            }
        }
    });
    let config = |ca_file| SinkConfig::Syslog {
        addr: addr.clone(),
        tls: Some(SyslogTls {
            server_name: "localhost".into(),
            ca_file,
        }),
        app_name: DEFAULT_APP_NAME.into(),
        hostname: "hub-1".into(),
    };
    let err = Sink::open(&config(None)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ExportError::Syslog {
                action: "TLS handshake",
                ..
            }
        ),
        "{err}"
    );

    let batch = [record(7, "deny"), record(8, "allow")];
    let mut sink = Sink::open(&config(Some(ca))).await.unwrap();
    sink.send(&batch).await.unwrap();
    let frames = receiver.await.unwrap();
    check_syslog(&frames[0], &batch[0], "hub-1");
    check_syslog(&frames[1], &batch[1], "hub-1");
}

#[tokio::test]
async fn syslog_reconnects_when_the_receiver_closed_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let receiver = tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        let a = read_frames(&mut first, &mut Vec::new(), 3).await;
        drop(first);
        closed_tx.send(()).unwrap();
        let (mut second, _) = listener.accept().await.unwrap();
        let b = read_frames(&mut second, &mut Vec::new(), 3).await;
        [a, b].concat()
    });
    let source = Arc::new(MemSource::default());
    let config = SinkConfig::Syslog {
        addr,
        tls: None,
        app_name: DEFAULT_APP_NAME.into(),
        hostname: "hub-1".into(),
    };
    let (wake, cancel, task) = start(config, source.clone(), fast());
    for _ in 0..3 {
        source.append("allow");
    }
    wake.notify_waiters();
    closed_rx.await.unwrap();
    // Let the FIN arrive before the next batch.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..3 {
        source.append("deny");
    }
    wake.notify_waiters();
    let frames = tokio::time::timeout(Duration::from_secs(5), receiver)
        .await
        .unwrap()
        .unwrap();
    let got: Vec<i64> = frames
        .iter()
        .map(|f| parse_syslog(f).json["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![1, 2, 3, 4, 5, 6]);
    stop(cancel, task).await;
}

#[tokio::test]
async fn siem_down_syslog_loses_nothing_and_never_blocks_calls() {
    // A port with nothing listening yet: connections are refused.
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);

    let source = Arc::new(MemSource::default());
    let config = SinkConfig::Syslog {
        addr: addr.to_string(),
        tls: None,
        app_name: DEFAULT_APP_NAME.into(),
        hostname: "hub-1".into(),
    };
    let name = config.name();
    let (wake, cancel, task) = start(config, source.clone(), fast());

    // Tool calls go on while the SIEM is down; none waits for it.
    let mut slowest = Duration::ZERO;
    for i in 0..60 {
        let t = Instant::now();
        source.append(if i % 5 == 0 { "deny" } else { "allow" });
        wake.notify_waiters();
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(source.cursor_of(&name), 0, "nothing was delivered");

    let listener = TcpListener::bind(addr).await.unwrap();
    let source2 = source.clone();
    let receiver = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        read_frames(&mut conn, &mut Vec::new(), 100).await
    });
    for _ in 0..40 {
        let t = Instant::now();
        source2.append("allow");
        wake.notify_waiters();
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let frames = tokio::time::timeout(Duration::from_secs(5), receiver)
        .await
        .expect("all records arrive")
        .unwrap();
    let got: Vec<i64> = frames
        .iter()
        .map(|f| parse_syslog(f).json["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        got,
        (1..=100).collect::<Vec<_>>(),
        "every record once, in order"
    );
    let records = source.records.lock().unwrap().clone();
    for (frame, record) in frames.iter().zip(&records) {
        check_syslog(frame, record, "hub-1");
    }
    eventually("the cursor to reach 100", || source.cursor_of(&name) == 100).await;
    assert!(
        slowest < Duration::from_millis(50),
        "an append waited {slowest:?}"
    );
    stop(cancel, task).await;
}
