//! The audit trail's cost per call: what the hub does for every routed
//! call (its intent, committed before the call is sent; its outcome,
//! committed before the result is released), through the hub's own
//! [`AuditLog`] over its own [`Store`], on SQLite (the hub's default, in a
//! data directory like `ewii-hub --data`) and on PostgreSQL.
//!
//! Sequential: one call at a time, two commits each: the latency the trail
//! adds to every call. Concurrent: `tasks` callers at once, where the
//! writer's group commit shares commits between calls.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Result, anyhow};
use ewii_hub::audit::trail::{AuditLog, AuditRecord};
use ewii_hub::state::master_key::MasterKey;
use ewii_hub::state::store::{Location, Store};

/// One store's figures, µs per call.
struct Cost {
    sequential_us: f64,
    concurrent_us: f64,
    concurrent_p_us: f64,
}

fn record(i: u64) -> AuditRecord {
    let mut r = AuditRecord::started(SystemTime::now(), format!("bench-{i}"));
    r.workspace = "acme".into();
    r.agent = "bot".into();
    r.tool = "eu_crm_query".into();
    r.deployment = Some("eu".into());
    r.database = Some("crm".into());
    r.statement = Some("SELECT 1".into());
    r.statement_class = Some("read".into());
    r.decision = "allow".into();
    r.bytes_in = 19;
    r
}

/// One call's records: intent, then outcome.
async fn one_call(log: &AuditLog, i: u64) -> Result<()> {
    let mut r = record(i);
    log.record_intent(&mut r).await?;
    r.outcome = "ok".into();
    r.rows = Some(1);
    r.bytes_out = 60;
    r.duration_ms = 1;
    log.record(r).await?;
    Ok(())
}

async fn measure(store: Store, calls: u64, tasks: u64) -> Result<Cost> {
    let log = AuditLog::start(store);
    for i in 0..20 {
        one_call(&log, i).await?; // warm-up: pool connections, statements
    }
    let start = Instant::now();
    for i in 0..calls {
        one_call(&log, 1_000 + i).await?;
    }
    let sequential_us = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let log = Arc::clone(&log);
        handles.push(tokio::spawn(async move {
            for i in 0..calls {
                one_call(&log, 1_000_000 * (t + 2) + i).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let elapsed = start.elapsed().as_secs_f64() * 1e6;
    Ok(Cost {
        sequential_us,
        concurrent_us: elapsed / (calls * tasks) as f64,
        concurrent_p_us: elapsed / calls as f64,
    })
}

/// SQLite (a fresh data directory) and, with `postgres`, a PostgreSQL
/// database (created empty by the caller). Markdown.
pub async fn run(postgres: Option<String>, calls: u64, tasks: u64) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    // As `ewii-hub --data DIR`: a private directory holding master.key and hub.db.
    let data = dir.path().join("hub");
    std::fs::create_dir(&data)?;
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    MasterKey::load_or_create(&data.join("master.key"))?;
    let sqlite = Store::open(&Location::Data(data)).await?;
    rows.push((
        "SQLite (the hub's default, `--data`)",
        measure(sqlite, calls, tasks).await?,
    ));
    if let Some(url) = postgres {
        let key = MasterKey::generate()?;
        let pg = Store::connect(&url, key)
            .await
            .map_err(|e| anyhow!("PostgreSQL store at the given URL: {e}"))?;
        rows.push(("PostgreSQL", measure(pg, calls, tasks).await?));
    }
    let mut out = format!(
        "| store | sequential: µs per call (2 commits) | {tasks} concurrent callers: µs per call | {tasks} concurrent: latency per call, µs |\n|---|---|---|---|\n"
    );
    for (name, c) in rows {
        out += &format!(
            "| {name} | {:.0} | {:.0} | {:.0} |\n",
            c.sequential_us, c.concurrent_us, c.concurrent_p_us
        );
    }
    out += &format!(
        "\n{calls} calls per caller; a call is its intent and its outcome record, each awaited until committed.\n"
    );
    Ok(out)
}
