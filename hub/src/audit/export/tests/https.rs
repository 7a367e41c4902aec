//! Exporter tests: the HTTPS sink: batches, bearer, retries until accepted.

use super::*;

#[derive(Default)]
struct Collector {
    posts: AtomicUsize,
    refused: Mutex<Vec<Vec<i64>>>,
    accepted: Mutex<Vec<Vec<Value>>>,
    auth: Mutex<Vec<String>>,
}

/// Refuses the first 3 batches with 503, then accepts.
async fn collect(
    State(c): State<Arc<Collector>>,
    headers: HeaderMap,
    axum::Json(batch): axum::Json<Vec<Value>>,
) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    c.auth.lock().unwrap().push(auth.to_string());
    if c.posts.fetch_add(1, Ordering::SeqCst) < 3 {
        c.refused.lock().unwrap().push(seqs(&batch));
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        c.accepted.lock().unwrap().push(batch);
        StatusCode::NO_CONTENT
    }
}

/// Log output of the whole test binary.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Captures every log line of this test binary, or `None` if another
/// test installed a global subscriber first. Global, because a scoped
/// subscriber misses events whose callsites another test thread
/// registers at the same time.
fn captured_logs() -> Option<&'static Logs> {
    static LOGS: std::sync::OnceLock<Option<Logs>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .ok()
            .map(|()| logs)
    })
    .as_ref()
}

#[tokio::test]
async fn siem_down_https_retries_the_same_batch_until_accepted() {
    install_provider();
    let logs = captured_logs();
    let collector = Arc::new(Collector::default());
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(collect))
        .with_state(collector.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let source = Arc::new(MemSource::default());
    for _ in 0..5 {
        source.append("allow");
    }
    let config = SinkConfig::Https {
        url,
        bearer: Some(BearerToken::new("s3cret-bearer".into())),
        ca_file: None,
        timeout: Duration::from_secs(5),
    };
    let name = config.name();
    let (wake, cancel, task) = start(config, source.clone(), fast());
    // More calls while the receiver refuses.
    for _ in 0..20 {
        source.append("deny");
        wake.notify_waiters();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually("the cursor to reach 25", || source.cursor_of(&name) == 25).await;

    let refused = collector.refused.lock().unwrap().clone();
    let accepted = collector.accepted.lock().unwrap().clone();
    let first = seqs(&accepted[0]);
    assert_eq!(
        refused,
        vec![first.clone(); 3],
        "the refused batch is retried as is"
    );
    assert_eq!(first[0], 1);
    let all: Vec<i64> = accepted.iter().flat_map(|b| seqs(b)).collect();
    assert_eq!(all, (1..=25).collect::<Vec<_>>());
    assert!(accepted.iter().all(|b| b.len() <= 7));
    assert!(
        collector
            .auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer s3cret-bearer")
    );
    stop(cancel, task).await;
    server.abort();

    let Some(logs) = logs else {
        eprintln!("another global subscriber is installed: log checks skipped");
        return;
    };
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.contains("s3cret"), "{logs}");
    // This exporter's lines: its name has this test's port.
    let ours = format!("exporter={name}");
    let count = |level: &str, text: &str| {
        logs.lines()
            .filter(|l| l.contains(&ours) && l.contains(level) && l.contains(text))
            .count()
    };
    assert_eq!(count("WARN", "audit export failing"), 1, "{logs}");
    assert_eq!(count("WARN", ""), 1, "one warning per outage: {logs}");
    assert_eq!(count("DEBUG", "audit export retry failed"), 2, "{logs}");
    assert_eq!(count("INFO", "audit export recovered"), 1, "{logs}");
}

#[tokio::test]
async fn https_over_tls_posts_batches_with_the_bearer_token() {
    install_provider();
    let pki = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let collector = Arc::new(Collector::default());
    collector.posts.store(3, Ordering::SeqCst); // accept from the start
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(collect))
        .with_state(collector.clone());
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/ingest",
        tcp.local_addr().unwrap().port()
    );
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(pki.server.clone()),
    };
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let source = Arc::new(MemSource::default());
    for i in 0..16 {
        source.append(if i % 2 == 0 { "allow" } else { "deny" });
    }
    let config = SinkConfig::Https {
        url,
        bearer: Some(BearerToken::new("t0ken".into())),
        ca_file: Some(ca),
        timeout: Duration::from_secs(5),
    };
    let name = config.name();
    let (_wake, cancel, task) = start(config, source.clone(), fast());
    eventually("the cursor to reach 16", || source.cursor_of(&name) == 16).await;
    let accepted = collector.accepted.lock().unwrap().clone();
    let sizes: Vec<usize> = accepted.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![7, 7, 2]);
    let records = source.records.lock().unwrap().clone();
    let all: Vec<Value> = accepted.concat();
    assert_eq!(all, records.iter().map(export_object).collect::<Vec<_>>());
    assert!(
        collector
            .auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer t0ken")
    );
    stop(cancel, task).await;
    server.abort();
}
