//! N idle tunnels on one hub, and the reconnect storm after `kill -9`.
//!
//! For each N, a fresh hub: the real `ewii-hub` binary with a fresh data
//! directory (`workspace create`, then N deployments and their enrolment
//! tokens through the hub's store, as `deployment create` makes them), and N
//! clients in this process, each the `ewii-client` library's runtime with
//! its own state directory and its own UDP socket, enrolling with its token
//! and then holding its tunnel. The hub's RSS (from /proc) with 0 tunnels
//! and with N gives the bytes per tunnel. Then the hub is killed with
//! SIGKILL and started again on the same ports and data; the storm lasts
//! until the hub's `/healthz` counts N connected deployments again.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow};
use ewii_client::client::{Client, ClientSettings};
use ewii_client::forward::{AdapterCredential, AllowList};
use ewii_client::identity::IdentitySource;
use ewii_hub::state::store::{Location, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// One N's figures.
struct Idle {
    n: usize,
    rss0: u64,
    rss_n: u64,
    up_s: f64,
    back_after_restart_s: f64,
    back_after_kill_s: f64,
}

fn free_port(udp: bool) -> Result<u16> {
    Ok(if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    })
}

fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

fn hub_cli(hub: &Path, data: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(hub)
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("EWII_HUB_MASTER_KEY")
        .env_remove("EWII_HUB_DATABASE_URL")
        .output()?;
    if !out.status.success() {
        return Err(anyhow!(
            "ewii-hub {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn serve(hub: &Path, data: &Path, quic: u16, http: u16, log: &Path) -> Result<Child> {
    Ok(Command::new(hub)
        .arg("--data")
        .arg(data)
        .args(["serve", "--name", "127.0.0.1", "--quic"])
        .arg(format!("127.0.0.1:{quic}"))
        .arg("--http")
        .arg(format!("127.0.0.1:{http}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?)
}

/// One real `ewii-adapter` (an empty SQLite database) for every client:
/// the hub opens an MCP session to a deployment's adapter when its tunnel
/// comes up, and drops a tunnel whose adapter does not answer. Its address
/// and its local credential.
fn adapter(bin: &Path, dir: &Path) -> Result<(Child, String, AdapterCredential)> {
    let home = dir.join("adapter");
    let db = dir.join("empty.db");
    std::fs::write(&db, b"")?;
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new(bin)
            .arg("--home")
            .arg(&home)
            .args(args)
            // The adapter derives nothing from the token that the idle bench uses.
            .env("EWII_ENROLLMENT_TOKEN", "ewii_enrol_bench_idle_tunnels")
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(anyhow!(
                "ewii-adapter {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(&["init", "--workspace-id", "acme"])?;
    let url = format!("sqlite://{}", db.display());
    run(&["add-database", "shop", "--driver", "sqlite", "--url", &url])?;
    let out_file = dir.join("adapter.out");
    let child = Command::new(bin)
        .arg("--home")
        .arg(&home)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("EWII_ENROLLMENT_TOKEN", "ewii_enrol_bench_idle_tunnels")
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&out_file)?)
        .stderr(std::fs::File::create(dir.join("adapter.log"))?)
        .spawn()?;
    let start = Instant::now();
    let addr = loop {
        let text = std::fs::read_to_string(&out_file).unwrap_or_default();
        if let Some(rest) = text.split("http://").nth(1) {
            break rest.split('/').next().unwrap_or_default().to_owned();
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(anyhow!("ewii-adapter serve printed no address"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let credential = AdapterCredential::from_file(&home.join("local-credential"))?;
    Ok((child, addr, credential))
}

/// The hub's count of connected deployments, from `/healthz`.
async fn connected(http: u16) -> Option<usize> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http))
        .await
        .ok()?;
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    let json = body.split("\r\n\r\n").nth(1)?;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get("connected_deployments")?.as_u64().map(|n| n as usize)
}

/// Polls until the hub counts `n` tunnels; the time waited.
async fn until_connected(http: u16, n: usize, limit: Duration) -> Result<f64> {
    let start = Instant::now();
    loop {
        if connected(http).await == Some(n) {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > limit {
            return Err(anyhow!(
                "{} of {n} tunnels after {limit:?}",
                connected(http).await.unwrap_or(0)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn one(hub: &Path, adapter_bin: &Path, n: usize) -> Result<Idle> {
    let dir = tempfile::tempdir()?;
    let (mut adapter_child, adapter_addr, credential) = adapter(adapter_bin, dir.path())?;
    let data = dir.path().join("hub");
    hub_cli(hub, &data, &["--json", "workspace", "create", "acme"])?;
    let ca_pem = hub_cli(hub, &data, &["hub-ca"])?;
    let hub_ca = ewii_quic::certificates_from_pem(&ca_pem, "ewii-hub hub-ca")?;
    let mut tokens = Vec::with_capacity(n);
    {
        let store = Store::open(&Location::Data(data.clone())).await?;
        for i in 0..n {
            let (_, t) = store
                .create_deployment(
                    "acme",
                    &format!("d{i}"),
                    Duration::from_secs(3600),
                    SystemTime::now(),
                )
                .await?;
            tokens.push(Zeroizing::new(t.token.expose().to_owned()));
        }
        store.close().await;
    }
    eprintln!("  {n} deployments created; starting the hub");
    let (quic, http) = (free_port(true)?, free_port(false)?);
    let log = dir.path().join("hub.log");
    let mut child = serve(hub, &data, quic, http, &log)?;
    until_connected(http, 0, Duration::from_secs(30))
        .await
        .context("the hub did not come up")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss0 = rss(child.id())?;
    eprintln!("  hub up (RSS {} KiB); starting {n} clients", rss0 >> 10);

    let settings = ClientSettings {
        hub: format!("127.0.0.1:{quic}"),
        hub_name: "127.0.0.1".into(),
        hub_ca,
        tls_ca: None,
        allow: AllowList::new(vec![format!("tcp:{adapter_addr}").parse()?])?,
        adapter_credential: Some(credential),
        log: None,
    };
    let cancel = CancellationToken::new();
    let start = Instant::now();
    // Enrol and connect 32 at a time: as many at once as a fleet coming up.
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut runs = Vec::with_capacity(n);
    for (i, token) in tokens.into_iter().enumerate() {
        let (settings, cancel, gate) = (settings.clone(), cancel.clone(), gate.clone());
        let state = dir.path().join(format!("client-{i}"));
        runs.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await?;
            let source = IdentitySource::Enrolled {
                state,
                token: Some(token),
            };
            let client = Client::start(settings, source, &cancel).await?;
            drop(permit);
            client.run(cancel).await?;
            Ok::<_, anyhow::Error>(())
        }));
    }
    until_connected(http, n, Duration::from_secs(300)).await?;
    let up_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_n = rss(child.id())?;

    // The storm.
    child.kill()?; // SIGKILL
    let killed = Instant::now();
    child.wait()?;
    let mut child = serve(hub, &data, quic, http, &log)?;
    let restarted = Instant::now();
    let result = until_connected(http, n, Duration::from_secs(180)).await;
    let back_after_kill_s = killed.elapsed().as_secs_f64();
    let back_after_restart_s = restarted.elapsed().as_secs_f64();
    cancel.cancel();
    for r in runs {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = adapter_child.kill();
    let _ = adapter_child.wait();
    result.map_err(|e| anyhow!("reconnect storm with {n} tunnels: {e}"))?;
    Ok(Idle {
        n,
        rss0,
        rss_n,
        up_s,
        back_after_restart_s,
        back_after_kill_s,
    })
}

/// Every N in `counts`, one fresh hub each. Markdown.
pub async fn run(hub: &Path, adapter: &Path, counts: &[usize]) -> Result<String> {
    let mut out = String::from(
        "| idle tunnels N | hub RSS, 0 tunnels | hub RSS, N tunnels | hub RSS per tunnel | all N enrolled and up | all N back after kill -9 (from the restart / from the kill) |\n|---|---|---|---|---|---|\n",
    );
    let mut lines = Vec::new();
    for &n in counts {
        eprintln!("{n} idle tunnels: enrolling and connecting");
        let r = one(hub, adapter, n).await?;
        let per = r.rss_n.saturating_sub(r.rss0) as f64 / r.n as f64;
        eprintln!(
            "{n} tunnels: {:.0} KB per tunnel; back {:.1} s after the restart",
            per / 1000.0,
            r.back_after_restart_s
        );
        out += &format!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.0} KB | {:.1} s | {:.1} s / {:.1} s |\n",
            r.n,
            r.rss0 as f64 / f64::from(1 << 20),
            r.rss_n as f64 / f64::from(1 << 20),
            per / 1000.0,
            r.up_s,
            r.back_after_restart_s,
            r.back_after_kill_s
        );
        if r.n >= 1000 {
            lines.push(format!(
                "{} issue #14 target: ≤ 200 KB hub RSS per idle tunnel at {} tunnels: {:.0} KB",
                if per <= 200_000.0 { "MET  " } else { "SHORT" },
                r.n,
                per / 1000.0
            ));
            lines.push(format!(
                "{} issue #14 target: all {} back within 30 s of a hub restart: {:.1} s",
                if r.back_after_restart_s <= 30.0 {
                    "MET  "
                } else {
                    "SHORT"
                },
                r.n,
                r.back_after_restart_s
            ));
        }
    }
    if !lines.is_empty() {
        out += &format!("\n```\n{}\n```\n", lines.join("\n"));
    }
    Ok(out)
}
