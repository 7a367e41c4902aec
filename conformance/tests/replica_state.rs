//! Replicas sharing one PostgreSQL store (issue #19, parts 3–5): three
//! `ewii-hub serve` processes on one database.
//!
//! - a revoke through the CLI closes the affected tunnels on every replica
//!   fast (PostgreSQL `NOTIFY`), p99 over 50 runs under 100 ms;
//! - with the notification connections killed, revocations still arrive
//!   (the poll) and `NOTIFY` comes back;
//! - a client given the three replicas' addresses moves to another when
//!   its replica is `kill -9`ed, and calls succeed again;
//! - one agent's rate limit holds across the three replicas;
//! - the syslog exporter runs on exactly one replica and resumes on
//!   another after its replica is `kill -9`ed.
//!
//! Skipped (`SKIPPED:`) without `EWII_TEST_POSTGRES_ADMIN_URL` outside CI.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ewii_client::connlog::ConnectionLog;
use ewii_conformance::adapter::TestAdapter;
use ewii_conformance::agent::{STEP, agent, http_get, tool_names};
use ewii_conformance::client::{TestClient, settings_at, static_client};
use ewii_conformance::db::Backend;
use ewii_conformance::process::{RunningProcess, Stream};
use ewii_conformance::site::agent_credential;
use ewii_conformance::svid::issue_svid;
use ewii_hub::state::store::Verification;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

/// One test of this file at a time: each runs three hub processes, several
/// clients and a load, and the latencies they measure (revocation p99,
/// failover time) are this machine's, not those of six such tests at once.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn now() -> SystemTime {
    SystemTime::now()
}

/// One `ewii-hub serve` process (logging at info, so its notification
/// listener says when it is up).
struct Replica {
    process: RunningProcess,
    quic: SocketAddr,
    http: SocketAddr,
    mcp_url: String,
}

impl Replica {
    async fn start(backend: &Backend, extra: &[&str]) -> Replica {
        let mut command = backend.command();
        command
            .env("EWII_LOG", "ewii_hub=info")
            .args(["--json", "serve", "--quic", "127.0.0.1:0"])
            .args(["--http", "127.0.0.1:0", "--name", "127.0.0.1"])
            .args(extra);
        let mut process = RunningProcess::spawn(command).expect("start ewii-hub serve");
        let line = process
            .wait_for_line(Duration::from_secs(20), |l| l.stream == Stream::Stdout)
            .await
            .unwrap_or_else(|e| panic!("ewii-hub serve did not start: {e}"));
        let started: Value = serde_json::from_str(&line.text).unwrap();
        let mcp_url = started["mcp_url"].as_str().unwrap().to_owned();
        Replica {
            process,
            quic: started["quic"].as_str().unwrap().parse().unwrap(),
            http: started["http"].as_str().unwrap().parse().unwrap(),
            mcp_url,
        }
    }

    /// The sum of its metric series starting with `series`.
    async fn metric(&self, series: &str) -> f64 {
        http_get(self.http, "/metrics")
            .await
            .body
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(series))
            .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
            .sum()
    }

    /// Lines of its log containing `text`.
    fn logged(&self, text: &str) -> usize {
        self.process
            .lines()
            .iter()
            .filter(|l| l.stream == Stream::Stderr && l.text.contains(text))
            .count()
    }

    async fn wait_connected(&self, n: f64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.metric("ewii_hub_connected_deployments").await;
            if got == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica {}: {got} tunnels, expected {n}",
                self.http
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Three replicas on a fresh PostgreSQL store with workspace `acme`, or
/// `None` when no PostgreSQL server is configured (outside CI).
async fn three_replicas(extra: &[&str]) -> Option<(Backend, Vec<Replica>)> {
    let backend = Backend::postgres().await?;
    backend
        .store
        .create_workspace("acme", None, now())
        .await
        .unwrap();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&backend, extra).await);
    }
    Some((backend, replicas))
}

fn hub_ca(backend: &Backend) -> Vec<CertificateDer<'static>> {
    let pem = backend.cli_json(&["--json", "hub-ca"]);
    CertificateDer::pem_slice_iter(pem["pem"].as_str().unwrap().as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// A deployment `name` with one client on each replica (each its own
/// SVID), with its connection log in `logs`.
async fn spread_deployment(
    backend: &Backend,
    replicas: &[Replica],
    ca: &[CertificateDer<'static>],
    adapter: &TestAdapter,
    logs: &tempfile::TempDir,
    name: &str,
) -> Vec<(TestClient, PathBuf)> {
    let store = &backend.store;
    store
        .create_deployment("acme", name, Duration::from_secs(600), now())
        .await
        .unwrap();
    let mut clients = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        let keys = issue_svid(store, "acme", name).await;
        let log = logs.path().join(format!("{name}-{i}.jsonl"));
        let mut settings = settings_at(r.quic, ca.to_vec(), adapter);
        settings.log = Some(Arc::new(ConnectionLog::open(&log).unwrap()));
        clients.push((TestClient::run(static_client(settings, keys)), log));
    }
    clients
}

/// Revokes `deployment` with the CLI; (CLI start, CLI exit).
fn cli_revoke(backend: &Backend, deployment: &str) -> (Instant, Instant) {
    let started = Instant::now();
    let out = backend.cli(&["revoke", "--workspace", "acme", "--deployment", deployment]);
    let done = Instant::now();
    assert!(
        out.status.success(),
        "revoke failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (started, done)
}

/// Waits until every client saw its tunnel closed (`tunnel_down` in its
/// connection log, written as the close arrives); when.
async fn all_closed(clients: &[(TestClient, PathBuf)], within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    let down =
        |log: &PathBuf| std::fs::read_to_string(log).is_ok_and(|t| t.contains("\"tunnel_down\""));
    while !clients.iter().all(|(_, log)| down(log)) {
        assert!(
            Instant::now() < deadline,
            "a revoked tunnel is still open after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Instant::now()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// 50 revokes through the CLI, each of a deployment with a tunnel on every
/// replica: every tunnel is closed, p99 from the revoke's commit (the CLI
/// exiting) to the last tunnel closed under 100 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_closes_tunnels_on_every_replica_fast() {
    let _serial = SERIAL.lock().await;
    let Some((backend, replicas)) = three_replicas(&[]).await else {
        return;
    };
    let ca = hub_ca(&backend);
    let adapter = TestAdapter::sqlite("shop").await;
    let logs = tempfile::tempdir().unwrap();
    let mut after_commit = Vec::new();
    let mut from_cli_start = Vec::new();
    for run in 0..50 {
        let name = format!("d{run}");
        let clients = spread_deployment(&backend, &replicas, &ca, &adapter, &logs, &name).await;
        for r in &replicas {
            r.wait_connected(1.0, STEP).await;
        }
        let (started, committed) = cli_revoke(&backend, &name);
        let closed = all_closed(&clients, Duration::from_secs(5)).await;
        after_commit.push(closed.saturating_duration_since(committed));
        from_cli_start.push(closed - started);
        for r in &replicas {
            r.wait_connected(0.0, STEP).await;
        }
    }
    after_commit.sort();
    from_cli_start.sort();
    let (p50, p99) = (
        percentile(&after_commit, 0.50),
        percentile(&after_commit, 0.99),
    );
    println!(
        "revoke → every tunnel on 3 replicas closed, 50 runs: after commit p50 {p50:?} p99 {p99:?} \
         max {:?}; from CLI start p50 {:?} p99 {:?}",
        after_commit[49],
        percentile(&from_cli_start, 0.50),
        percentile(&from_cli_start, 0.99),
    );
    assert!(
        p99 < Duration::from_millis(100),
        "p99 {p99:?} is not under 100 ms"
    );
}

/// The notification connections die (`pg_terminate_backend`): a revoke
/// still closes the tunnels (the poll, then the catch-up), the listeners
/// come back, and revokes are fast again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_notification_connection_falls_back_to_the_poll() {
    let _serial = SERIAL.lock().await;
    let Some((backend, replicas)) = three_replicas(&[]).await else {
        return;
    };
    let ca = hub_ca(&backend);
    let adapter = TestAdapter::sqlite("shop").await;
    let logs = tempfile::tempdir().unwrap();
    for r in &replicas {
        assert_eq!(r.logged("store notifications: listening"), 1);
    }
    // Five revokes, each right after every replica's listening connection
    // is killed: a listener comes back no sooner than 1 s after its loss,
    // so these arrive by the poll, at full speed while it is down.
    let mut down = Vec::new();
    for run in 0..5 {
        let name = format!("before{run}");
        let clients = spread_deployment(&backend, &replicas, &ca, &adapter, &logs, &name).await;
        for r in &replicas {
            r.wait_connected(1.0, STEP).await;
        }
        backend
            .raw_exec(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'ewii-hub-notify' AND datname = current_database()"
                    .into(),
            )
            .await;
        let (_, committed) = cli_revoke(&backend, &name);
        down.push(all_closed(&clients, Duration::from_secs(2)).await - committed);
        for r in &replicas {
            r.wait_connected(0.0, STEP).await;
        }
    }
    println!("listeners killed: revokes still enforced in {down:?}");
    // The slow pace (500 ms) would miss this for some replica.
    assert!(
        down.iter().all(|d| *d < Duration::from_millis(250)),
        "with the listeners down revokes took {down:?}: the poll did not go to full speed"
    );
    // Each listener saw its connection go and listens again.
    let deadline = Instant::now() + Duration::from_secs(15);
    for r in &replicas {
        loop {
            let lost = r.logged("store notifications: connection lost");
            if lost >= 1 && r.logged("store notifications: listening") == lost + 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a replica never listened again: {}",
                r.process.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // NOTIFY is back: the poll is at 500 ms now, so five revokes all under
    // 100 ms came by notification.
    for run in 0..5 {
        let name = format!("after{run}");
        let clients = spread_deployment(&backend, &replicas, &ca, &adapter, &logs, &name).await;
        for r in &replicas {
            r.wait_connected(1.0, STEP).await;
        }
        let (_, committed) = cli_revoke(&backend, &name);
        let took = all_closed(&clients, Duration::from_secs(5)).await - committed;
        println!("after the listeners came back: revoke enforced in {took:?}");
        assert!(
            took < Duration::from_millis(100),
            "revoke took {took:?}: NOTIFY did not resume"
        );
        for r in &replicas {
            r.wait_connected(0.0, STEP).await;
        }
    }
}

/// One agent with `rate_limit = { calls = 60, per_seconds = 60 }` calling
/// through all three replicas at once: after the burst of 60, exactly one
/// call a second is let through in total (±5 % over 30 s), not one per
/// replica. The calls name a tool no deployment has: the limit is taken
/// before the call is routed, so an allowed call comes back `unknown
/// tool`, a refused one as the `rate_limit` denial.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_holds_across_replicas() {
    let _serial = SERIAL.lock().await;
    let Some((backend, replicas)) = three_replicas(&[]).await else {
        return;
    };
    let credential = agent_credential(
        &backend.store,
        "acme",
        "bot",
        Some("rate_limit = { calls = 60, per_seconds = 60 }"),
    )
    .await;
    let allowed = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut per_replica = Vec::new();
    let mut workers = Vec::new();
    for r in &replicas {
        let a = agent(&r.mcp_url, &credential).await;
        let mine = Arc::new(AtomicUsize::new(0));
        per_replica.push(mine.clone());
        let (allowed, refused, stop) = (allowed.clone(), refused.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = a
                    .call_tool(rmcp::model::CallToolRequestParams::new("nowhere_db_query"))
                    .await;
                match r {
                    Ok(r) if r.is_error == Some(true) => {
                        let text = serde_json::to_string(&r.content).unwrap();
                        assert!(text.contains("rate_limit"), "{text}");
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => panic!("a call to no tool succeeded: {r:?}"),
                    Err(e) => {
                        assert!(e.to_string().contains("unknown tool"), "{e}");
                        allowed.fetch_add(1, Ordering::SeqCst);
                        mine.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    // The burst: 60 calls, then refusals everywhere.
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused.load(Ordering::SeqCst) < 30 {
        assert!(Instant::now() < deadline, "no refusal after the burst");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let burst = allowed.load(Ordering::SeqCst);
    let window = Duration::from_secs(30);
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let in_window = allowed.load(Ordering::SeqCst) - burst;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let split: Vec<usize> = per_replica
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .collect();
    let expected = elapsed.as_secs_f64() * 60.0 / 60.0;
    let error = (in_window as f64 - expected) / expected;
    println!(
        "rate limit 60/min across 3 replicas: burst {burst} (limit 60), then {in_window} in \
         {elapsed:?} (expected {expected:.1}, error {:+.1} %), refused {}, allowed per replica {split:?}",
        error * 100.0,
        refused.load(Ordering::SeqCst)
    );
    assert!(
        (60..=61).contains(&burst),
        "the burst let {burst} calls through"
    );
    assert!(error.abs() <= 0.05, "off by {:.1} %", error * 100.0);
    assert!(
        split.iter().all(|n| *n > 0),
        "every replica let some through: {split:?}"
    );
}

/// Calls `SELECT n` through `agent` until `stop`, one `n` from `next` per
/// call; the answers, by `n`, and any `n` answered twice.
fn call_loop(
    a: ewii_conformance::agent::Agent,
    next: Arc<AtomicUsize>,
    answered: Arc<std::sync::Mutex<BTreeMap<usize, usize>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let n = next.fetch_add(1, Ordering::SeqCst);
            let mut args = serde_json::Map::new();
            args.insert("sql".into(), json!(format!("SELECT {n} AS n")));
            let r = tokio::time::timeout(
                STEP,
                a.call_tool(
                    rmcp::model::CallToolRequestParams::new("eu_shop_query").with_arguments(args),
                ),
            )
            .await;
            match r {
                Ok(Ok(r)) if r.is_error != Some(true) => {
                    let got = r.structured_content.clone().unwrap_or_default();
                    assert!(
                        got.to_string().contains(&format!("{n}")),
                        "answer to {n}: {got}"
                    );
                    *answered.lock().unwrap().entry(n).or_default() += 1;
                }
                Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
                // The replica is gone (or the session with it).
                Ok(Err(_)) | Err(_) => return,
            }
        }
    })
}

/// A client given the three replicas' addresses (replica 2 first) serves
/// its deployment under a load of calls; replica 2 is `kill -9`ed: the
/// client reaches replica 1 or 3, an agent there gets answers again within
/// 10 s, no call is answered twice, and `audit verify` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_moves_to_another_replica_when_its_replica_dies() {
    let _serial = SERIAL.lock().await;
    let Some((backend, mut replicas)) = three_replicas(&[]).await else {
        return;
    };
    let store = &backend.store;
    let ca = hub_ca(&backend);
    let adapter = TestAdapter::sqlite("shop").await;
    store
        .create_deployment("acme", "eu", Duration::from_secs(600), now())
        .await
        .unwrap();
    let keys = issue_svid(store, "acme", "eu").await;
    let credential = agent_credential(store, "acme", "load", None).await;
    let mut settings = settings_at(replicas[1].quic, ca.clone(), &adapter);
    settings.hub = [1, 2, 0]
        .iter()
        .map(|i: &usize| replicas[*i].quic.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let client = TestClient::run(static_client(settings, keys));
    replicas[1].wait_connected(1.0, STEP).await;

    let next = Arc::new(AtomicUsize::new(1));
    let answered = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let a = agent(&replicas[1].mcp_url, &credential).await;
        workers.push(call_loop(a, next.clone(), answered.clone(), stop.clone()));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.lock().unwrap().len() < 100 {
        assert!(Instant::now() < deadline, "calls did not flow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replicas[1].process.kill();
    let killed = Instant::now();
    let before = answered.lock().unwrap().len();
    // Their calls to the dead replica go unanswered: drop them.
    for w in workers.drain(..) {
        w.abort();
    }

    // Agents on replicas 1 and 3 call until one of them is answered.
    let survivors = [0usize, 2];
    let mut agents = Vec::new();
    for i in survivors {
        agents.push((i, agent(&replicas[i].mcp_url, &credential).await));
    }
    let (back_at, on) = 'wait: loop {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "no replica answered within 20 s of the kill"
        );
        for (i, a) in &agents {
            if tool_names(a).await.iter().any(|t| t == "eu_shop_query") {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let r = ewii_conformance::agent::call(
                    a,
                    "eu_shop_query",
                    json!({"sql": format!("SELECT {n} AS n")}),
                )
                .await;
                if r.is_error != Some(true) {
                    *answered.lock().unwrap().entry(n).or_default() += 1;
                    break 'wait (killed.elapsed(), *i);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "replica 2 killed after {before} answered calls: the client reached replica {} and calls \
         succeed again {back_at:?} after the kill",
        on + 1
    );
    assert!(back_at < Duration::from_secs(10), "took {back_at:?}");
    // More load on the replica the client reached.
    let (_, a) = agents.into_iter().find(|(i, _)| *i == on).unwrap();
    stop.store(false, Ordering::SeqCst);
    let w = call_loop(a, next.clone(), answered.clone(), stop.clone());
    let target = answered.lock().unwrap().len() + 50;
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.lock().unwrap().len() < target {
        assert!(
            Instant::now() < deadline,
            "calls did not flow on replica {}",
            on + 1
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let _ = tokio::time::timeout(STEP, w).await;
    client.stop().await;

    let twice: Vec<_> = answered
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, times)| **times > 1)
        .map(|(n, _)| *n)
        .collect();
    assert!(twice.is_empty(), "answered twice: {twice:?}");
    // One outcome per call in the trail, whichever replica audited it.
    let records = store.audit_after(0, 1_000_000).await.unwrap();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for r in records.iter().filter(|r| r.record["kind"] == "outcome") {
        *outcomes
            .entry(r.record["statement"].to_string())
            .or_default() += 1;
    }
    let repeated: BTreeSet<_> = outcomes.iter().filter(|(_, c)| **c > 1).collect();
    assert!(repeated.is_empty(), "audited twice: {repeated:?}");
    let verify = backend.cli_json(&["--json", "audit", "verify"]);
    assert_eq!(verify["status"], "intact", "{verify}");
    assert!(matches!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { .. }
    ));
    println!("audit verify: {verify}");
}

/// A syslog (RFC 5425 octet-counted, over TCP) receiver: every message of
/// every connection, with the connection's number.
fn syslog_receiver(
    listener: tokio::net::TcpListener,
) -> Arc<std::sync::Mutex<Vec<(usize, String)>>> {
    use tokio::io::AsyncReadExt;
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        let mut conns = 0usize;
        while let Ok((mut conn, _)) = listener.accept().await {
            conns += 1;
            let (id, sink) = (conns, sink.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                while let Ok(n) = conn.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(sp) = buf.iter().position(|b| *b == b' ') {
                        let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
                        if buf.len() < sp + 1 + len {
                            break;
                        }
                        let msg = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap();
                        sink.lock().unwrap().push((id, msg));
                        buf.drain(..sp + 1 + len);
                    }
                }
            });
        }
    });
    got
}

/// The audit sequence number a syslog message carries.
fn seq_of(msg: &str) -> i64 {
    let at = msg.find("seq=\"").expect("a seq parameter") + 5;
    msg[at..].split('"').next().unwrap().parse().unwrap()
}

/// Waits until the receiver holds every record of the trail; the count of
/// each sequence number received.
async fn all_exported(
    backend: &Backend,
    got: &std::sync::Mutex<Vec<(usize, String)>>,
) -> BTreeMap<i64, usize> {
    let deadline = Instant::now() + STEP;
    loop {
        let trail: BTreeSet<i64> = backend
            .store
            .audit_after(0, 1_000_000)
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        let mut counts = BTreeMap::new();
        for (_, m) in got.lock().unwrap().iter() {
            *counts.entry(seq_of(m)).or_insert(0usize) += 1;
        }
        if !trail.is_empty() && trail.iter().all(|s| counts.contains_key(s)) {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "records not exported: trail {} record(s), received {}",
            trail.len(),
            counts.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const DUTY_LINE: &str = "single duties: this replica runs them";

/// Audits calls through each of `replicas` (calls of a tool no deployment
/// has: each is audited, allowed or not).
async fn audited_calls(replicas: &[&Replica], credential: &str, per_replica: usize) {
    for r in replicas {
        let a = agent(&r.mcp_url, credential).await;
        for _ in 0..per_replica {
            let _ = a
                .call_tool(rmcp::model::CallToolRequestParams::new("nowhere_db_query"))
                .await;
        }
    }
}

/// Three replicas with the same syslog exporter: exactly one runs it, the
/// trail arrives once per record, over one connection; that replica is
/// `kill -9`ed: another takes over and exports the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn syslog_exporter_runs_on_one_replica_and_fails_over() {
    let _serial = SERIAL.lock().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spec = format!("syslog+tcp://{}", listener.local_addr().unwrap());
    let Some((backend, mut replicas)) = three_replicas(&["--audit-export", &spec]).await else {
        return;
    };
    let got = syslog_receiver(listener);
    let credential = agent_credential(&backend.store, "acme", "siem", None).await;
    let deadline = Instant::now() + STEP;
    let holder = loop {
        let holders: Vec<usize> = (0..3)
            .filter(|i| replicas[*i].logged(DUTY_LINE) > 0)
            .collect();
        if let [one] = holders.as_slice() {
            break *one;
        }
        assert!(
            holders.len() <= 1,
            "several replicas run the exporter: {holders:?}"
        );
        assert!(Instant::now() < deadline, "no replica runs the exporter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    audited_calls(&replicas.iter().collect::<Vec<_>>(), &credential, 10).await;
    let counts = all_exported(&backend, &got).await;
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        twice.is_empty(),
        "delivered twice in steady state: {twice:?}"
    );
    let conns: BTreeSet<usize> = got.lock().unwrap().iter().map(|(c, _)| *c).collect();
    assert_eq!(conns.len(), 1, "one exporter connection in steady state");
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(
            r.logged(DUTY_LINE),
            usize::from(i == holder),
            "replica {}",
            i + 1
        );
    }
    let steady = counts.len();

    replicas[holder].process.kill();
    let killed = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    let deadline = Instant::now() + STEP;
    let new_holder = loop {
        let holders: Vec<usize> = survivors
            .iter()
            .copied()
            .filter(|i| replicas[*i].logged(DUTY_LINE) > 0)
            .collect();
        assert!(
            holders.len() <= 1,
            "several replicas took over: {holders:?}"
        );
        if let [one] = holders.as_slice() {
            break *one;
        }
        assert!(
            Instant::now() < deadline,
            "no replica took the exporter over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took_over = killed.elapsed();
    let alive: Vec<&Replica> = survivors.iter().map(|i| &replicas[*i]).collect();
    audited_calls(&alive, &credential, 10).await;
    let counts = all_exported(&backend, &got).await;
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    println!(
        "syslog exporter: replica {} ran it ({steady} records once each); killed, replica {} took \
         over in {took_over:?}; {} records in all, delivered twice across the failover: {twice:?}",
        holder + 1,
        new_holder + 1,
        counts.len()
    );
    // At-least-once across a failover: a record may come twice only if the
    // old holder died between sending it and saving its cursor; here every
    // record had been acknowledged before the kill.
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
}

/// A client enrols with a token through replica 3 (its first address), and
/// its SVID, issued there, opens its tunnel on replica 1 once replica 3 is
/// `kill -9`ed: the replicas share the workspace CAs, the token and the
/// issued SVIDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enrolled_on_one_replica_serves_through_another() {
    let _serial = SERIAL.lock().await;
    let Some((backend, mut replicas)) = three_replicas(&[]).await else {
        return;
    };
    let store = &backend.store;
    let adapter = TestAdapter::sqlite("shop").await;
    let (_, token) = store
        .create_deployment("acme", "eu", Duration::from_secs(600), now())
        .await
        .unwrap();
    let home = ewii_conformance::client::ClientHome::new();
    let mut settings = settings_at(replicas[2].quic, hub_ca(&backend), &adapter);
    settings.hub = format!("{},{}", replicas[2].quic, replicas[0].quic);
    settings.log = Some(Arc::new(ConnectionLog::open(&home.log).unwrap()));
    let cancel = tokio_util::sync::CancellationToken::new();
    let client = tokio::time::timeout(
        STEP,
        ewii_client::client::Client::start(
            settings,
            ewii_conformance::client::enrolled(&home.state, Some(token.token.expose())),
            &cancel,
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let client = TestClient::run_with(client, cancel);
    replicas[2].wait_connected(1.0, STEP).await;
    replicas[2].process.kill();
    replicas[0].wait_connected(1.0, STEP).await;
    let credential = agent_credential(store, "acme", "a", None).await;
    let a = agent(&replicas[0].mcp_url, &credential).await;
    let r =
        ewii_conformance::agent::call(&a, "eu_shop_query", ewii_conformance::sample::count_query())
            .await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let log = std::fs::read_to_string(&home.log).unwrap();
    let ups: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"tunnel_up\""))
        .collect();
    assert!(ups.len() >= 2, "{log}");
    assert!(ups[0].contains(&replicas[2].quic.to_string()), "{log}");
    assert!(
        ups.last().unwrap().contains(&replicas[0].quic.to_string()),
        "{log}"
    );
    client.stop().await;
}
