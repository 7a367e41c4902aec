//! `ewii-bench`: the parts of conformance/bench/run.sh written in Rust.
//!
//! - `tunnel` ([`tunnel`]): bulk throughput through a tunnel against raw quinn.
//! - `audit` ([`audit`]): the audit trail's commit cost per call, SQLite and PostgreSQL.
//! - `idle` ([`idle`]): N idle tunnels on one hub, and the reconnect storm.
//!
//! Each prints its table (Markdown) and writes it to `--out`.
#![forbid(unsafe_code)]

mod audit;
mod idle;
mod tunnel;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Ewii's benchmarks that need no MCP client (see conformance/bench/run.sh)")]
struct Cli {
    #[command(subcommand)]
    part: Part,
}

#[derive(Subcommand)]
enum Part {
    /// Bulk throughput: a tunnel request stream against a raw quinn stream.
    Tunnel {
        /// MiB per transfer.
        #[arg(long, default_value_t = 256)]
        mib: u64,
        /// KiB per message (a reply in the tunnel, a write on the raw stream).
        #[arg(long, default_value_t = 1024)]
        message_kib: usize,
        /// Transfers of each kind (the best counts).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Where the table goes.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The audit trail's cost per call (intent + outcome commits).
    Audit {
        /// An empty PostgreSQL database for the PostgreSQL store.
        #[arg(long)]
        postgres: Option<String>,
        /// Calls per caller.
        #[arg(long, default_value_t = 500)]
        calls: u64,
        /// Concurrent callers in the second measurement.
        #[arg(long, default_value_t = 16)]
        tasks: u64,
        /// Where the table goes.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Idle tunnels on one hub and the reconnect storm after kill -9.
    Idle {
        /// The ewii-hub binary.
        #[arg(long)]
        hub: PathBuf,
        /// The ewii-adapter binary (one adapter answers for every client).
        #[arg(long)]
        adapter: PathBuf,
        /// Tunnel counts, space-separated (a fresh hub for each).
        #[arg(long, default_value = "100 1000")]
        counts: String,
        /// Where the table goes.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (table, out) = runtime.block_on(async {
        Ok::<_, anyhow::Error>(match cli.part {
            Part::Tunnel {
                mib,
                message_kib,
                rounds,
                out,
            } => (
                tunnel::run(mib << 20, message_kib << 10, rounds).await?,
                out,
            ),
            Part::Audit {
                postgres,
                calls,
                tasks,
                out,
            } => (audit::run(postgres, calls, tasks).await?, out),
            Part::Idle {
                hub,
                adapter,
                counts,
                out,
            } => {
                let counts = counts
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<Vec<usize>, _>>()?;
                (idle::run(&hub, &adapter, &counts).await?, out)
            }
        })
    })?;
    print!("{table}");
    if let Some(path) = out {
        std::fs::write(path, table)?;
    }
    Ok(())
}
