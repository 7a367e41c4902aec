//! `ewii`: the kit launcher. `ewii demo` runs the kit on this machine with a
//! bundled sample database and shows an MCP agent session against it.

mod sample;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ewii_adapter::serve::{self, HttpOptions};
use ewii_adapter::store::DatabaseEntry;
use ewii_adapter::{Adapter, AdapterHome, admin};
use ewii_driver_core::{Limits, SecretString};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig, Implementation, ProtocolVersion};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

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
    /// Run the kit on loopback with a bundled sample SQLite database and
    /// show an agent's MCP session (initialize, tools/list, tools/call).
    Demo {
        /// Exit after the session instead of serving on.
        #[arg(long)]
        once: bool,
        /// Address the MCP endpoint listens on when serving on.
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("EWII_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            rt.block_on(async {
                match cli.command {
                    Command::Demo { once, listen } => demo(once, listen).await,
                }
            })
        });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn random_token() -> Result<SecretString> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(SecretString::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

async fn demo(once: bool, listen: SocketAddr) -> Result<()> {
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    let db_path = work.path().join("shop.db");
    println!("Ewii demo: the kit on loopback, with a bundled sample database.\n");
    let summary = sample::create(&db_path).await?;
    println!(
        "  sample database  {} ({} customers, {} products, {} orders, {} order lines)",
        db_path.display(),
        summary.customers,
        summary.products,
        summary.orders,
        summary.items
    );

    // The customer's side: an adapter home with the database attached
    // read-only, its URL encrypted at rest.
    let home = AdapterHome::new(work.path().join("adapter-home"));
    let token = random_token()?;
    admin::init(&home, "demo", &token)?;
    let shop = DatabaseEntry {
        driver: "sqlite".into(),
        url: SecretString::new(format!("sqlite://{}", db_path.display())),
        read_only: true,
        limits: Limits {
            max_rows: 50,
            ..Limits::default()
        },
    };
    admin::add_database(&home, &token, "shop", shop.clone(), true).await?;
    // The demo holds the configuration it just stored: no need to derive
    // the store key a third time to read it back.
    let (adapter, change) = Adapter::new(vec![shop.to_config("shop")]).await;
    if let Some((name, e)) = change.failed.first() {
        bail!("the sample database '{name}' did not open: {e}");
    }

    let addr = if once {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        listen
    };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}; is another demo running? Pick another with --listen 127.0.0.1:PORT")
    })?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    println!(
        "  MCP adapter      {url} (read-only, credentials encrypted in {})",
        home.dir().display()
    );
    println!("  (the hub and the QUIC tunnel join this path in later releases)\n");

    let cancel = CancellationToken::new();
    let server = tokio::spawn({
        let adapter = adapter.clone();
        let cancel = cancel.clone();
        async move { serve::serve_tcp(adapter, listener, &HttpOptions::default(), cancel).await }
    });

    let session = agent_session(&url).await;
    if let Err(e) = session {
        cancel.cancel();
        let _ = server.await;
        return Err(e);
    }

    if !once {
        println!(
            "\nServing on. Point MCP Inspector or any MCP client at {url}\n  (transport: Streamable HTTP; e.g. `npx @modelcontextprotocol/inspector`, then paste the URL).\nPress Ctrl-C to stop."
        );
        tokio::signal::ctrl_c().await.ok();
        println!("Stopping.");
    }
    cancel.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(r)) => r?,
        Ok(Err(e)) => bail!("the MCP server task failed: {e}"),
        Err(_) => {}
    }
    adapter.close().await;
    Ok(())
}

/// What an AI agent does first: initialize, discover the tools, run one.
async fn agent_session(url: &str) -> Result<()> {
    let config = ClientConfig::new(
        Default::default(),
        Implementation::new("ewii-demo-agent", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
    println!("agent → initialize");
    let client = config
        .serve(StreamableHttpClientTransport::from_uri(url.to_owned()))
        .await
        .context("the MCP session did not start")?;
    if let Some(info) = client.peer_info() {
        let server = info
            .server_info
            .as_ref()
            .map(|s| format!("{} {}", s.name, s.version))
            .unwrap_or_else(|| "server".into());
        println!("agent ← {server}, protocol {}", info.protocol_version);
    }

    println!("\nagent → tools/list");
    let tools = client.list_all_tools().await.context("tools/list failed")?;
    println!("agent ← {} tools", tools.len());
    for t in &tools {
        let ro = t
            .annotations
            .as_ref()
            .and_then(|a| a.read_only_hint)
            .unwrap_or(false);
        println!(
            "    {:<22} {:<10} {}",
            t.name,
            if ro { "read-only" } else { "writes" },
            t.title.as_deref().unwrap_or("")
        );
    }

    let args = json!({ "sql": DEMO_SQL, "params": ["shipped", "delivered", "2026-01-01"] });
    println!("\nagent → tools/call shop_query");
    println!("    sql:    {DEMO_SQL}");
    println!("    params: {}", args["params"]);
    let Value::Object(map) = args else {
        bail!("demo arguments are not an object");
    };
    let result = client
        .call_tool(CallToolRequestParams::new("shop_query").with_arguments(map))
        .await
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
    client.cancel().await.ok();
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
