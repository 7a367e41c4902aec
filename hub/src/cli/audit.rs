//! `ewii-hub audit`: verify and follow the audit trail.

use super::print_json;

use anyhow::Result;
use clap::Subcommand;
use ewii_hub::Store;
use ewii_hub::state::store::Verification;

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// Check the hash chain; names the first broken record. Exit code 3 if broken.
    /// Intents without an outcome are listed, not broken: calls still running, or
    /// calls the hub stopped in.
    Verify,
    /// Print the last records (`kind`: intent, outcome or decision).
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
        /// Keep printing new records as they are written.
        #[arg(short, long)]
        follow: bool,
    },
}

pub(crate) async fn audit(store: &Store, cmd: AuditCmd, json: bool) -> Result<()> {
    match cmd {
        AuditCmd::Verify => match store.verify_audit().await? {
            v @ Verification::Intact { .. } => {
                if json {
                    print_json(&serde_json::to_value(&v)?)?;
                } else if let Verification::Intact {
                    records,
                    head_hash,
                    open_intents,
                } = v
                {
                    println!("Audit trail intact: {records} record(s), head hash {head_hash}");
                    if !open_intents.is_empty() {
                        println!(
                            "{} call(s) with an intent but no outcome recorded (records {}): \
                             still running, or the hub stopped before they finished, so their \
                             statement may or may not have run",
                            open_intents.len(),
                            seq_list(&open_intents)
                        );
                    }
                }
            }
            v @ Verification::Broken { .. } => {
                if json {
                    print_json(&serde_json::to_value(&v)?)?;
                } else if let Verification::Broken {
                    seq,
                    reason,
                    verified,
                } = &v
                {
                    eprintln!(
                        "Audit trail BROKEN at record {seq}: {reason} ({verified} record(s) before it verified)"
                    );
                }
                std::process::exit(3);
            }
        },
        AuditCmd::Tail { lines, follow } => {
            let mut last = 0;
            let tail = store.audit_tail(lines).await?;
            // The tail is the end of the chain: an intent whose outcome is
            // not in it has none (yet).
            let finished: std::collections::BTreeSet<i64> = tail
                .iter()
                .filter_map(|r| r.record.get("intent_seq").and_then(|v| v.as_i64()))
                .collect();
            for r in &tail {
                print_record(&r.record, json, !finished.contains(&r.seq));
                last = r.seq;
            }
            if follow {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    for r in store.audit_after(last, 500).await? {
                        // Followed intents are in flight: their outcome
                        // comes as its own line.
                        print_record(&r.record, json, false);
                        last = r.seq;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `1, 2, 3` (the first 20, then `…`).
pub(crate) fn seq_list(seqs: &[i64]) -> String {
    let mut out: Vec<String> = seqs.iter().take(20).map(i64::to_string).collect();
    if seqs.len() > 20 {
        out.push("…".into());
    }
    out.join(", ")
}

/// One record, as stored (`--json`) or as a line; `unfinished`: an intent
/// whose outcome is not in the trail.
pub(crate) fn print_record(r: &serde_json::Value, json: bool, unfinished: bool) {
    if json {
        println!("{r}");
        return;
    }
    let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("-");
    let n = |k: &str| r.get(k).map_or("-".to_string(), |v| v.to_string());
    let decision = match r.get("rule").and_then(|v| v.as_str()) {
        Some(rule) => format!("{} ({rule})", s("decision")),
        None => s("decision").to_owned(),
    };
    let statement = r
        .get("statement")
        .and_then(|v| v.as_str())
        .map(|st| format!("  {st}"))
        .unwrap_or_default();
    let head = format!(
        "#{} {} {}/{} {}",
        n("seq"),
        s("time"),
        s("workspace"),
        s("agent"),
        s("tool"),
    );
    match r.get("kind").and_then(|v| v.as_str()) {
        Some("intent") => {
            let status = if unfinished {
                " -> no outcome recorded (still running, or the hub stopped before it finished)"
            } else {
                ""
            };
            println!("{head} intent {decision}{status}{statement}");
        }
        Some("outcome") => println!(
            "{head} outcome {decision} -> {} rows={} {}ms (intent #{})",
            s("outcome"),
            n("rows"),
            n("duration_ms"),
            n("intent_seq"),
        ),
        // Decisions, and records from before intents existed.
        _ => println!(
            "{head} {decision} -> {} rows={} {}ms{statement}",
            s("outcome"),
            n("rows"),
            n("duration_ms"),
        ),
    }
}
