//! `ewii`: the kit launcher. `ewii demo` runs the whole kit on this machine,
//! in one process on loopback — hub, QUIC tunnel, client, adapter — with a
//! bundled sample database, enrols the client, and shows an MCP agent
//! session going through the hub.

mod kit;
mod sample;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use ewii_adapter::AdapterHome;
use ewii_driver_core::SecretString;
use kit::{AGENT, DATABASE, DEPLOYMENT, Kit, STEP, WORKSPACE};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Ewii: reach databases inside customers' networks through MCP, without
/// opening an inbound port.
#[derive(Parser)]
#[command(name = "ewii", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole kit on loopback (hub, QUIC tunnel, client, adapter)
    /// with a bundled sample SQLite database, enrol the client, and show an
    /// agent's MCP session through the hub (initialize, tools/list,
    /// tools/call).
    Demo {
        /// Exit after the session instead of serving on.
        #[arg(long)]
        once: bool,
        /// Address of the hub's agent endpoint (`/mcp`) when serving on.
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: SocketAddr,
    },
}

const DEMO_SQL: &str = "SELECT c.country, count(DISTINCT o.id) AS orders, \
     round(sum(oi.quantity * oi.unit_price_cents) / 100.0, 2) AS revenue_eur \
     FROM orders o \
     JOIN customers c ON c.id = o.customer_id \
     JOIN order_items oi ON oi.order_id = o.id \
     WHERE o.status IN (?, ?) AND o.ordered_at >= ? \
     GROUP BY c.country ORDER BY revenue_eur DESC LIMIT 5";

fn main() {
    // One crypto provider for the whole process (the MCP client's HTTP stack
    // is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let logging = init_logging();
    let cli = Cli::parse();
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            rt.block_on(async {
                match cli.command {
                    Command::Demo { once, listen } => demo(once, listen, logging.as_ref()).await,
                }
            })
        });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Lets the demo quiet the default log filter while it stops the kit.
type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// Warnings and errors to stderr, or what `EWII_LOG` asks for. Returns a
/// handle on the filter unless `EWII_LOG` chose it.
fn init_logging() -> Option<FilterHandle> {
    let chosen = EnvFilter::try_from_env("EWII_LOG").ok();
    let by_user = chosen.is_some();
    let (filter, handle) = reload::Layer::new(chosen.unwrap_or_else(|| EnvFilter::new("warn")));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    (!by_user).then_some(handle)
}

async fn demo(once: bool, listen: SocketAddr, logging: Option<&FilterHandle>) -> Result<()> {
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut kit = Kit::default();
    let outcome = if once {
        run(&mut kit, work.path(), once, listen).await
    } else {
        // Ctrl-C stops the kit cleanly, while starting as well as serving.
        tokio::select! {
            outcome = run(&mut kit, work.path(), once, listen) => outcome,
            signal = tokio::signal::ctrl_c() => {
                println!("\nStopping.");
                signal.context("cannot wait for Ctrl-C")
            }
        }
    };
    // The client warns when its tunnel goes down; here that is the plan.
    if let Some(handle) = logging
        && let Err(e) = handle.reload(EnvFilter::new("warn,ewii_client::client=error"))
    {
        tracing::debug!(error = %e, "cannot change the log filter");
    }
    let stopped = kit.stop().await;
    outcome?;
    stopped?;
    if !once {
        println!("Stopped.");
    }
    Ok(())
}

/// Everything the demo does between starting and stopping the kit.
async fn run(kit: &mut Kit, work: &Path, once: bool, listen: SocketAddr) -> Result<()> {
    println!(
        "Ewii demo: the whole kit on loopback in one process (hub, QUIC tunnel, client, adapter),\n\
         with a bundled sample database.\n"
    );
    let http = if once {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        // Say what to do about a taken address before starting anything.
        std::net::TcpListener::bind(listen).map_err(|e| {
            anyhow!(
                "cannot listen on {listen}: {e}; is another demo running? Pick another address \
                 with --listen 127.0.0.1:PORT"
            )
        })?;
        listen
    };
    let db_path = work.join("shop.db");
    let summary = sample::create(&db_path).await?;
    println!(
        "  sample database: {} ({} customers, {} products, {} orders, {} order lines)",
        db_path.display(),
        summary.customers,
        summary.products,
        summary.orders,
        summary.items
    );

    // The operator's side: a workspace for the customer, a deployment with
    // its enrolment token, an agent with its bearer credential.
    let operator = kit.provision(&work.join("hub-data")).await?;
    println!("  hub: workspace {WORKSPACE}, deployment {DEPLOYMENT}, agent {AGENT}");
    let hub = kit.start_hub(http).await?;
    let (quic_addr, mcp_url) = (hub.quic_addr, hub.mcp_url());
    println!("  hub: enrolment and tunnels on QUIC {quic_addr}, agents on {mcp_url}");

    // The customer's side, with the one token the operator gave it: the
    // adapter keys its credential store with it, the client enrols with it.
    let home = AdapterHome::new(work.join("adapter-home"));
    let adapter_url = kit
        .start_adapter(&home, &operator.enrolment_token, &db_path)
        .await?;
    println!(
        "  adapter: {adapter_url}, database {DATABASE} read-only, credentials encrypted in {}",
        home.dir().display()
    );
    println!(
        "  adapter: serves only callers presenting its local credential ({}); the client reads \
         that file",
        home.local_credential_path().display()
    );
    let state = work.join("client-state");
    let svid = kit.start_client(&state, &operator.enrolment_token).await?;
    println!(
        "  client: enrolled as {} (SVID serial {}, valid until {}), key made locally, kept in {}",
        svid.spiffe_id,
        short_serial(&svid.serial),
        svid.expires_at_rfc3339(),
        state.display()
    );
    if svid.spiffe_id != operator.spiffe_id {
        bail!(
            "the client enrolled as {} instead of {}",
            svid.spiffe_id,
            operator.spiffe_id
        );
    }
    let tools = kit.wait_for_tunnel().await?;
    println!(
        "  client: tunnel up to the hub (QUIC, TLS 1.3, end-to-end encrypted records); the hub \
         lists {tools} tools of deployment {DEPLOYMENT}"
    );
    println!("\n  path of every tool call:");
    println!("    agent (bearer credential)");
    println!("      → hub {mcp_url}");
    println!("      → QUIC tunnel {quic_addr}");
    println!("      → client {}", svid.spiffe_id);
    println!("      → adapter {adapter_url}");
    println!("      → SQLite {} (read-only)\n", db_path.display());

    agent_session(&mcp_url, &operator.agent_credential).await?;
    if let Some((n, out, back)) = kit.forwards() {
        println!(
            "\n  client: forwarded {n} requests to the adapter ({out} bytes out, {back} bytes \
             back), each logged in {}",
            state.join("connections.jsonl").display()
        );
    }

    if !once {
        println!(
            "\nServing on. Connect any MCP client to the hub as agent '{AGENT}':\n\
             \x20 URL     {mcp_url}   (transport: Streamable HTTP)\n\
             \x20 header  Authorization: Bearer {}\n\
             For MCP Inspector: run `npx @modelcontextprotocol/inspector`, pick transport \
             \"Streamable HTTP\", paste the URL,\n\
             and set the header Authorization to `Bearer …` (its Authentication section). \
             Without the header the hub answers 401.\n\
             Press Ctrl-C to stop.",
            operator.agent_credential.expose()
        );
        // Until Ctrl-C (see `demo`).
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// A serial number short enough to read: its first 16 hex digits.
fn short_serial(serial: &str) -> String {
    if serial.chars().count() > 16 {
        format!("{}…", serial.chars().take(16).collect::<String>())
    } else {
        serial.to_owned()
    }
}

/// What an AI agent does: initialize with its credential, wait for the
/// deployment's tools, run one.
async fn agent_session(url: &str, credential: &SecretString) -> Result<()> {
    let config = ClientConfig::new(
        Default::default(),
        Implementation::new("ewii-demo-agent", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned())
            .auth_header(credential.expose().to_owned()),
    );
    println!("agent → initialize");
    let client = tokio::time::timeout(STEP, config.serve(transport))
        .await
        .context("the MCP session did not start within 20 s")?
        .context("the MCP session did not start")?;
    if let Some(info) = client.peer_info() {
        let server = info
            .server_info
            .as_ref()
            .map(|s| format!("{} {}", s.name, s.version))
            .unwrap_or_else(|| "server".into());
        println!("agent ← {server}, protocol {}", info.protocol_version);
    }
    let outcome = list_and_call(&client).await;
    client.cancel().await.ok();
    outcome
}

async fn list_and_call(client: &RunningService<RoleClient, ClientConfig>) -> Result<()> {
    println!("\nagent → tools/list");
    let prefix = format!("{DEPLOYMENT}_");
    let deadline = Instant::now() + STEP;
    let tools = loop {
        let tools = tokio::time::timeout(STEP, client.list_all_tools())
            .await
            .context("tools/list timed out")?
            .context("tools/list failed")?;
        if tools.iter().any(|t| t.name.starts_with(&prefix)) {
            break tools;
        }
        if Instant::now() >= deadline {
            bail!(
                "the hub lists no tools of deployment {DEPLOYMENT} after {} s: the deployment is \
                 not connected (run with EWII_LOG=info to see the client's and the hub's logs)",
                STEP.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("agent ← {} tools", tools.len());
    for t in &tools {
        let ro = t
            .annotations
            .as_ref()
            .and_then(|a| a.read_only_hint)
            .unwrap_or(false);
        println!(
            "    {:<25} {:<10} {}",
            t.name,
            if ro { "read-only" } else { "writes" },
            t.title.as_deref().unwrap_or("")
        );
    }

    let tool = format!("{DEPLOYMENT}_{DATABASE}_query");
    let args = json!({ "sql": DEMO_SQL, "params": ["shipped", "delivered", "2026-01-01"] });
    println!("\nagent → tools/call {tool}");
    println!("    sql:    {DEMO_SQL}");
    println!("    params: {}", args["params"]);
    let Value::Object(map) = args else {
        bail!("demo arguments are not an object");
    };
    let result = tokio::time::timeout(
        STEP,
        client.call_tool(CallToolRequestParams::new(tool).with_arguments(map)),
    )
    .await
    .context("tools/call timed out")?
    .context("tools/call failed")?;
    if result.is_error == Some(true) {
        let text: Vec<String> = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        bail!("the demo query failed: {}", text.join(" "));
    }
    let data = result
        .structured_content
        .context("the result carries no structuredContent")?;
    print_table(&data);
    Ok(())
}

fn print_table(data: &Value) {
    let columns: Vec<String> = data["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["name"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = data["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_array()
                        .map(|cells| {
                            cells
                                .iter()
                                .map(|v| match v {
                                    Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    println!("agent ← {} rows", rows.len());
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .chain([columns[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("    {}", line(&columns));
    println!(
        "    {}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    );
    for r in &rows {
        println!("    {}", line(r));
    }
    if let Some(msg) = data["truncated"]["message"].as_str() {
        println!("    ({msg})");
    }
}
